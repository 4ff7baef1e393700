"""`flowpo solve` on the round's real flow (driver/flow.py, the streaming engine, real Ray actors) with
stand-in actors that do arithmetic instead of vLLM and sandboxes, so every rule is checked in seconds:
a single question, a file, a resume after an interruption (only the missing slots run again), --samples
with the majority vote and with a code question's tests, a prompt too long for the generator, the
bounded feed window, and the pure parts (reading questions, the vote, the output directory). The real
stack (vLLM, Docker) runs in tests/driver/test_export_roundtrip.py.
"""
from __future__ import annotations

import dataclasses
import json
import sys
import threading

import pytest
import ray

from actors.launch import Actors
from driver.evaluate import Checkpoint
from driver.solve import (
    ANSWERS_FILE,
    SAMPLES_FILE,
    Question,
    SolveJob,
    Source,
    output_dir,
    plan_questions,
    read_questions,
    resumed_job,
    solve,
)
from driver.trained import Trained
from driver.vote import normal_form, pick
from flowpo.config import Config, TaskConfig
from flowpo.errors import FlowPOError
from flowpo.records import Execution, ScoredSample, Workflow

# ---------------------------------------------------------------------------------------------
# Stand-in actors: a question's text says what each of its workflows answers

# pytest imports this file as a top-level module of its own folder, which Ray's workers cannot
# import: the stand-ins travel by value.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


def script(text: str) -> list[str]:
    """'answers: a|b|!crash' -> sample i answers the i-th item ('!crash' fails as a crash)."""
    return text.split("answers:", 1)[1].strip().split("|")


@ray.remote(num_cpus=0, max_concurrency=100)
class FakeGenerator:
    def __init__(self):
        self.calls: list[tuple[str, tuple]] = []

    def generate_for(self, problem, round_index, slots, attempt, adapter):
        self.calls.append((problem.problem_id, tuple(slots)))
        return [Workflow(problem_id=problem.problem_id, round=round_index, sample_index=i, adapter=adapter[0],
                         prompt="P", completion=f"wf {i}", code=f"# workflow {i} of {problem.problem_id}",
                         generate_s=0.01) for i in slots]

    def prompt_lengths(self, problems):
        return {p.problem_id: 5000 if "very long" in p.prompt else 100 for p in problems}

    def requests(self):
        return self.calls


@ray.remote(num_cpus=0, max_concurrency=100)
class FakeExecutor:
    """'!flaky:x' ends in llm_error the first time its slot runs and answers x after that."""

    def __init__(self):
        self.ran: set[tuple[str, int]] = set()

    def execute_repeats(self, workflow, problem, repeats):
        items = script(problem.prompt)
        answer = items[workflow.sample_index % len(items)]
        slot = (problem.problem_id, workflow.sample_index)
        if answer.startswith("!flaky:"):
            if slot not in self.ran:
                self.ran.add(slot)
                return [Execution(workflow=workflow, answer="", failure="llm_error", error="executor LLM gone",
                                  llm_calls=1, prompt_tokens=10, completion_tokens=0, execute_s=0.02)]
            answer = answer.removeprefix("!flaky:")
        failed = answer == "!crash"
        return [Execution(workflow=workflow, answer="" if failed else answer, failure="crash" if failed else "",
                          error="boom" if failed else "", llm_calls=1, prompt_tokens=10, completion_tokens=5,
                          execute_s=0.02, cost_usd=0.001)]


@ray.remote(num_cpus=0, max_concurrency=100)
class FakeEvaluator:
    """The question's tests pass when the answer is 'good' (the two-sandbox harness, in spirit)."""

    def __init__(self):
        self.seen = 0

    def evaluate_repeats(self, executions, problem):
        self.seen += 1
        passed = executions[0].answer == "good"
        assert problem.test, "only questions with tests are evaluated"
        return ScoredSample(executions[0], score=1.0 if passed else 0.0, evaluate_s=0.01,
                            details={"repeat_details": [{"test": "passed" if passed else "failed"}]})

    def count(self):
        return self.seen


@pytest.fixture(scope="module")
def fake_actors(ray_local):
    actors = Actors([FakeGenerator.remote()], [FakeExecutor.remote()], [FakeEvaluator.remote()], None)
    yield actors
    for handle in [*actors.generators, *actors.executors, *actors.evaluators]:
        ray.kill(handle)


def job_of(source: Source, *, samples: int = 1, family: str = "text", config: Config | None = None) -> SolveJob:
    config = config or Config(task=TaskConfig(name="humaneval"))
    config = dataclasses.replace(config, pipeline=dataclasses.replace(config.pipeline, actor_timeout_s=30))
    trained = Trained(Checkpoint("round-1", ""), config, None, None, "round-1 of a test run")
    return SolveJob(trained, {"checkpoint": "base", "merged": False}, source, samples, family, "")


def lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def write_questions(path, rows) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


# ---------------------------------------------------------------------------------------------
# Through the flow


def test_a_single_question(fake_actors, tmp_path):
    out = output_dir(str(tmp_path / "out"), None)
    report = solve(job_of(Source(inline=("answers: 42",))), out, actors=fake_actors)
    (answer,) = lines(out / ANSWERS_FILE)
    assert answer["id"] == "1" and answer["question"] == "answers: 42"
    assert (answer["answer"], answer["failure"], answer["rule"], answer["chosen"]) == ("42", "", "single", 0)
    assert answer["workflow"] == "# workflow 0 of 1" and answer["checkpoint"] == "round-1"
    assert answer["usage"] == {"llm_calls": 1, "prompt_tokens": 10, "completion_tokens": 5, "cache_hits": 0,
                               "cost_usd": 0.001}
    assert set(answer["timings"]) == {"generate_s", "execute_s"}
    assert report.summary["answered"] == 1 and report.summary["failures"] == {}
    assert "1 of 1 questions answered" in report.markdown
    job = json.loads((out / "solve.json").read_text())
    assert job["samples"] == 1 and job["source"]["inline"] == ["answers: 42"]
    assert (out / "config.yaml").is_file() and (out / "summary.json").is_file()


def test_a_file_with_failures_and_a_prompt_too_long(fake_actors, tmp_path):
    path = tmp_path / "questions.jsonl"
    write_questions(path, [{"id": "a", "question": "answers: Paris"}, {"question": "answers: !crash"},
                           {"prompt": "a very long question, answers: x"}])
    out = output_dir(str(tmp_path / "out"), None)
    report = solve(job_of(Source(str(path))), out, actors=fake_actors)
    answers = {a["id"]: a for a in lines(out / ANSWERS_FILE)}
    assert set(answers) == {"a", "2", "3"}  # ids: the row's, else its line number
    assert answers["a"]["answer"] == "Paris" and answers["a"]["failure"] == ""
    assert (answers["2"]["answer"], answers["2"]["failure"], answers["2"]["error"]) == ("", "crash", "boom")
    assert answers["3"]["failure"] == "prompt_too_long" and answers["3"]["samples"] == 0
    assert "5000 tokens" in answers["3"]["error"]
    assert len(lines(out / SAMPLES_FILE)) == 2  # no workflow for the refused question
    assert report.summary["failures"] == {"crash": 1, "prompt_too_long": 1} and report.summary["ok"] == 1


def test_samples_are_voted_and_the_vote_is_recorded(fake_actors, tmp_path):
    out = output_dir(str(tmp_path / "out"), None)
    job = job_of(Source(inline=("answers: Paris|!crash| paris.|Lyon|Lyon",)), samples=5)
    solve(job, out, actors=fake_actors)
    (answer,) = lines(out / ANSWERS_FILE)
    # "Paris" and " paris." are one answer in normal form (2 votes), as is Lyon (2): the first given wins.
    assert answer["rule"] == "majority" and answer["answer"] == "Paris" and answer["chosen"] == 0
    assert answer["votes"] == [{"answer": "paris", "count": 2, "samples": [0, 2]},
                               {"answer": "lyon", "count": 2, "samples": [3, 4]}]
    assert answer["samples"] == 5 and answer["sample_failures"] == {"crash": 1}
    assert answer["usage"]["llm_calls"] == 5  # every workflow's calls, summed
    assert sorted(s["sample_index"] for s in lines(out / SAMPLES_FILE)) == [0, 1, 2, 3, 4]


def test_code_questions_with_tests_take_the_first_that_passes(fake_actors, tmp_path):
    path = tmp_path / "code.jsonl"
    write_questions(path, [{"id": "add", "prompt": "def add(a, b):\n    answers: bad|good|good",
                            "tests": ["assert add(1, 2) == 3"]}])
    out = output_dir(str(tmp_path / "out"), None)
    before = ray.get(fake_actors.evaluators[0].count.remote())
    solve(job_of(Source(str(path)), samples=3, family="code"), out, actors=fake_actors)
    (answer,) = lines(out / ANSWERS_FILE)
    assert (answer["rule"], answer["chosen"], answer["passed"], answer["answer"]) == ("tests", 1, [1, 2], "good")
    assert [s["test"] for s in sorted(lines(out / SAMPLES_FILE), key=lambda s: s["sample_index"])] == \
        ["failed", "passed", "passed"]
    assert ray.get(fake_actors.evaluators[0].count.remote()) - before == 3  # only tested questions are evaluated


def test_resume_keeps_what_finished_and_runs_only_the_missing_slots(fake_actors, tmp_path):
    path = tmp_path / "questions.jsonl"
    write_questions(path, [{"id": f"q{i}", "question": "answers: a|b|a"} for i in range(4)])
    out = output_dir(str(tmp_path / "out"), None)
    solve(job_of(Source(str(path)), samples=3), out, actors=fake_actors)
    whole = {a["id"]: a for a in lines(out / ANSWERS_FILE)}
    # The interruption: q2 and q3 unanswered, q2 with two of its three workflows in, the last line torn.
    kept = [a for a in lines(out / ANSWERS_FILE) if a["id"] in ("q0", "q1")]
    (out / ANSWERS_FILE).write_text("".join(json.dumps(a) + "\n" for a in kept) + '{"id": "q2", "ques')
    samples = [s for s in lines(out / SAMPLES_FILE) if s["question_id"] in ("q0", "q1")
               or (s["question_id"] == "q2" and s["sample_index"] < 2)]
    (out / SAMPLES_FILE).write_text("".join(json.dumps(s) + "\n" for s in samples))
    generator = fake_actors.generators[0]
    before = len(ray.get(generator.requests.remote()))
    with pytest.raises(FlowPOError, match="already holds a solve"):
        output_dir(str(out), None)  # never written over
    report = solve(job_of(Source(str(path)), samples=3), out, resume=True, actors=fake_actors)
    asked = ray.get(generator.requests.remote())[before:]
    assert sorted(asked) == [("q2", (2,)), ("q3", (0, 1, 2))]  # the missing slots, no more
    after = {a["id"]: a for a in lines(out / ANSWERS_FILE)}
    assert sorted(after) == ["q0", "q1", "q2", "q3"] and len(lines(out / ANSWERS_FILE)) == 4
    for qid in after:
        assert {k: after[qid][k] for k in ("answer", "chosen", "votes")} == \
               {k: whole[qid][k] for k in ("answer", "chosen", "votes")}
    assert report.summary["answered_before_resume"] == 2 and report.summary["answered_now"] == 2
    assert report.summary["workflows_now"] == 4


def test_resume_answers_again_what_failed_for_infrastructure_reasons(fake_actors, tmp_path):
    """An llm_error is the executor LLM's failure, not the checkpoint's answer: --resume runs that
    slot again (and only it), re-answers its question, and keeps the replaced lines in retried.jsonl."""
    path = tmp_path / "questions.jsonl"
    write_questions(path, [{"id": "r0", "question": "answers: a|!flaky:a|b"},
                           {"id": "r1", "question": "answers: c|c|!crash"}])
    out = output_dir(str(tmp_path / "out"), None)
    first = solve(job_of(Source(str(path)), samples=3), out, actors=fake_actors)
    assert first.summary["failures"] == {} and "infrastructure" not in first.markdown  # a|_|b: 'a' still wins
    assert [s["failure"] for s in lines(out / SAMPLES_FILE) if s["question_id"] == "r0"].count("llm_error") == 1
    generator = fake_actors.generators[0]
    before = len(ray.get(generator.requests.remote()))
    report = solve(job_of(Source(str(path)), samples=3), out, resume=True, actors=fake_actors)
    assert ray.get(generator.requests.remote())[before:] == [("r0", (1,))]  # the failed slot, no more
    answers = lines(out / ANSWERS_FILE)
    assert [a["id"] for a in answers] == ["r1", "r0"]  # one line per question
    r0 = answers[1]
    assert (r0["answer"], r0["sample_failures"]) == ("a", {})
    assert [(v["answer"], v["samples"]) for v in r0["votes"]] == [("a", [0, 1]), ("b", [2])]
    slots = sorted((s["question_id"], s["sample_index"], s["failure"]) for s in lines(out / SAMPLES_FILE))
    assert slots == [("r0", 0, ""), ("r0", 1, ""), ("r0", 2, ""), ("r1", 0, ""), ("r1", 1, ""), ("r1", 2, "crash")]
    retried = lines(out / "retried.jsonl")
    assert sorted((r["file"], r["line"].get("failure")) for r in retried) == \
        [(ANSWERS_FILE, ""), (SAMPLES_FILE, "llm_error")]
    assert report.summary["answered_again_after_infra_failure"] == 1 and "answered again" in report.markdown
    # a crash is the workflow's own answer: nothing left to run
    again = solve(job_of(Source(str(path)), samples=3), out, resume=True, actors=fake_actors)
    assert again.summary["answered_now"] == 0 and len(lines(out / ANSWERS_FILE)) == 2


def test_resume_reads_the_job_it_recorded(tmp_path, monkeypatch):
    out = output_dir(str(tmp_path / "out"), None)
    out.mkdir()
    (out / "solve.json").write_text(json.dumps({"checkpoint": "base", "merged": False, "source": {
        "path": "", "inline": ["answers: 1"]}, "samples": 3, "family": "math", "description": "d", "notes": []}))
    (out / "config.yaml").write_text("task:\n  name: gsm8k\ngenerator:\n  seed: 7\n")
    job = resumed_job(out, ["generator.temperature=0.3"])
    assert (job.samples, job.family, job.description, job.source.inline) == (3, "math", "d", ("answers: 1",))
    assert job.config.generator.seed == 7 and job.config.generator.temperature == 0.3
    with pytest.raises(FlowPOError, match="no solve.json there"):
        resumed_job(tmp_path)


def test_the_window_bounds_the_problems_in_flight(fake_actors):
    from driver.flow import Generate, stream_flow
    from flowpo.records import Problem

    pulled, finished, peak = [], [], [0]
    lock = threading.Lock()

    def requests():
        for i in range(20):
            with lock:
                pulled.append(i)
                peak[0] = max(peak[0], len(pulled) - len(finished))
            yield Generate("lane", Problem(f"p{i}", "answers: x|y", family="text"), [0, 1])

    def on_executed(_, executions):
        if executions[0].workflow.sample_index == 1:  # a problem's last slot (they finish in order here)
            finished.append(executions[0].workflow.problem_id)
        return False

    config = dataclasses.replace(Config(), generator=dataclasses.replace(Config().generator, k=2))
    stream_flow(fake_actors, config, round_index=0, adapters={"lane": ("lane", "")}, generate=requests(),
                on_sample=lambda *_: pytest.fail("nothing is evaluated"), on_executed=on_executed, window=3)
    assert len(pulled) == 20 and len(finished) == 20
    assert peak[0] <= 3 + 1  # the window, and the one pulled as the last of a problem finishes


# ---------------------------------------------------------------------------------------------
# Pure parts


def test_reading_questions(tmp_path):
    path = tmp_path / "q.jsonl"
    write_questions(path, [{"question": "Q1"}, {"task_id": "HE/1", "prompt": "def f():", "entry_point": "f"},
                           {"problem": "Q3", "tests": ["assert 1", "assert 2"]}])
    assert list(read_questions(path, TaskConfig())) == [
        Question("1", "Q1"), Question("HE/1", "def f():", "f"), Question("3", "Q3", "", "assert 1\nassert 2")]
    txt = tmp_path / "q.txt"
    txt.write_text("first\n\nsecond\n")
    assert [q.text for q in read_questions(txt, TaskConfig())] == ["first", "second"]
    # A task of your own: its column map and template say where the question is.
    own = TaskConfig(name="capitals", path="x.jsonl", template="Country: {country}", columns=dataclasses.replace(
        TaskConfig().columns, id="code", answer="capital"))
    write_questions(path, [{"code": "FR", "country": "France"}])
    assert list(read_questions(path, own)) == [Question("FR", "Country: France")]
    write_questions(path, [{"text": "no question field"}])
    with pytest.raises(FlowPOError, match=r"q.jsonl:1: no question: give it as one of question, problem"):
        list(read_questions(path, TaskConfig()))
    path.write_text('{"question": "ok"}\n{bad\n')
    with pytest.raises(FlowPOError, match=r"q.jsonl:2: not valid JSON"):
        list(read_questions(path, TaskConfig()))


def test_plan_refuses_duplicate_ids_tests_outside_code_and_bad_tests():
    with pytest.raises(FlowPOError, match="question id 'a' appears twice"):
        plan_questions([Question("a", "x"), Question("a", "y")], "text")
    with pytest.raises(FlowPOError, match="tests are for code questions"):
        plan_questions([Question("a", "x", tests="assert True")], "math")
    with pytest.raises(FlowPOError, match="its test is not valid Python"):
        plan_questions([Question("a", "def f(x):", tests="assert f(1) ==")], "code")
    with pytest.raises(FlowPOError, match="no question to solve"):
        plan_questions([], "text")
    assert plan_questions([Question("a", "def f(x):", tests="assert f(1) == 1"), Question("b", "y")],
                          "code").with_tests == 1


@pytest.mark.parametrize("answers, family, chosen, first_votes", [
    (["42", "41", "42.0"], "math", 0, {"answer": "42", "count": 2, "samples": [0, 2]}),  # math normal form
    (["\\boxed{\\frac12}", "1/3", "\\frac{1}{2}"], "math", 0,
     {"answer": "\\frac{1}{2}", "count": 2, "samples": [0, 2]}),
    (["", "B", "b"], "text", 1, {"answer": "b", "count": 2, "samples": [1, 2]}),  # an empty answer has no vote
    (["x", "y"], "qa", 0, {"answer": "x", "count": 1, "samples": [0]}),  # a tie: the answer given first
])
def test_the_majority_vote(answers, family, chosen, first_votes):
    result = pick([{"sample_index": i, "answer": a, "failure": ""} for i, a in enumerate(answers)], "majority", family)
    assert result["chosen"] == chosen and result["votes"][0] == first_votes


def test_rules_when_nothing_answered():
    crashed = [{"sample_index": i, "answer": "", "failure": "crash"} for i in range(2)]
    assert pick(crashed, "majority", "text") == {"chosen": 0}
    tested = [{"sample_index": 0, "answer": "", "failure": "crash"}, {"sample_index": 1, "answer": "x", "failure": "",
                                                                      "test": "failed"}]
    assert pick(tested, "tests", "code") == {"chosen": 1, "passed": []}  # none passed: the first that ran
    assert normal_form("  def f():\n\n    return 1   \n", "code") == "def f():\n    return 1"


def test_the_command_line_refuses_with_one_line(tmp_path, capsys):
    from driver.cli import main

    questions = tmp_path / "q.jsonl"
    write_questions(questions, [{"id": "a", "question": "x"}, {"id": "a", "question": "y"}])
    done = tmp_path / "done"
    done.mkdir()
    (done / "solve.json").write_text("{}")
    for argv, message in [
        (["solve"], "flowpo solve needs a CHECKPOINT"),
        (["solve", "base", "--input", str(tmp_path / "none.jsonl")], "none.jsonl: file not found"),
        (["solve", "base", "--input", str(questions), "--question", "x"], "not both"),
        (["solve", "base", "--question", "x", "--samples", "0"],
         "--samples 0: workflows per question must be at least 1"),
        (["solve", str(tmp_path), "--question", "x"], "neither a run directory"),
        (["solve", "base", "--question", "x", "--out", str(done)], "already holds a solve"),
        (["solve", "base", "--input", str(questions), "--out", str(tmp_path / "new")], "question id 'a' appears twice"),
        (["solve", "--resume", str(tmp_path)], "no solve.json there"),
        (["export", str(tmp_path), "--out", str(tmp_path / "gen")], "no config.yaml there"),
        (["serve", "base", "--api-key-env", "FLOWPO_NO_SUCH_VARIABLE"], "the environment variable is not set"),
    ]:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (argv, err)
    assert not (tmp_path / "new").exists()  # refused before anything was written
