"""`flowpo execute`: replaying recorded workflows.

The selection, the checks of a samples.jsonl and the transfer table are tested on fixed lines with
the expected numbers worked out by hand. One end-to-end test replays a hand-written samples.jsonl
of five GSM8K workflows through real Ray actors (an executor with Docker sandboxes, a host-scoring
evaluator) whose executor LLM is a real local HTTP server speaking the OpenAI chat protocol
(``ChatServer`` from tests/llm/test_broker.py, the real ``openai`` client over HTTP): recorded with
a weak executor model, replayed with a strong one, the transfer use case.
"""
from __future__ import annotations

import json

import pytest

from driver.execute import Selection, Source, output_dir, plan_replay, read_records, resolve_source
from driver.transfer import Tally, Transfer, render_table
from flowpo.errors import FlowPOError
from flowpo.prompts import MATH_SIMPLE_WORKFLOW
from flowpo.records import Execution, ScoredSample, Workflow
from tests.llm.test_broker import ChatServer, Scripted, completion

CONSTANT = ("class Workflow:\n    def __init__(self, llm):\n        self.llm = llm\n\n"
            "    async def __call__(self, problem, entry_point):\n        return \"72\"\n")
CRASH = CONSTANT.replace('return "72"', 'raise RuntimeError("boom")')


def recorded(problem_id: str, round_: int, index: int, code: str, score, failure: str = "", invalid: str = "") -> dict:
    """A samples.jsonl line as a training run writes it (ScoredSample.to_log)."""
    wf = Workflow(problem_id=problem_id, round=round_, sample_index=index, adapter=f"round-{round_ - 1}",
                  prompt="P", completion="C", code=code, generate_s=0.5, invalid_reason=invalid)
    ex = Execution(workflow=wf, answer="", failure=failure, error="", llm_calls=1, prompt_tokens=10,
                   completion_tokens=5, execute_s=1.0)
    return ScoredSample(ex, score=score, evaluate_s=0.1).to_log()


def write_lines(path, records) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def replayed(score, failure="", tokens=(10, 5), cost=0.0, repeats=None) -> dict:
    """The parts of a replayed line the table reads."""
    line = {"score": score, "failure": failure,
            "usage": {"prompt_tokens": tokens[0], "completion_tokens": tokens[1], "cost_usd": cost}}
    if repeats:
        line["details"] = {"repeat_usage": repeats}
    return line


# ---------------------------------------------------------------------------------------------
# Selection and the checks of a samples.jsonl


LINES = [recorded("GSM8K/0", 1, 0, MATH_SIMPLE_WORKFLOW, 0.0), recorded("GSM8K/0", 1, 1, CONSTANT, 1.0),
         recorded("GSM8K/1", 2, 0, CRASH, 0.0, "crash"), recorded("GSM8K/1", 2, 1, "x", 0.0, "invalid_workflow", "bad"),
         recorded("GSM8K/1", 2, 2, MATH_SIMPLE_WORKFLOW, None, "llm_error")]


@pytest.mark.parametrize("selection, kept", [
    (Selection(), [0, 1, 2, 3, 4]),
    (Selection(rounds=frozenset({2})), [2, 3, 4]),
    (Selection(problems=frozenset({"GSM8K/0"})), [0, 1]),
    (Selection(min_score=0.5), [1]),  # the unscored line fails a score bound
    (Selection(max_score=0.0), [0, 2, 3]),
    (Selection(only_valid=True), [0, 1, 2, 4]),
    (Selection(rounds=frozenset({2}), only_valid=True, max_score=0.0), [2]),
])
def test_selection_keeps_lines_every_filter_keeps(selection, kept):
    assert [i for i, line in enumerate(LINES) if selection.keeps(line)] == kept


def test_selection_describes_itself():
    assert Selection().describe() == "all"
    assert (Selection(rounds=frozenset({2, 1}), min_score=0.5, only_valid=True).describe()
            == "round 1, 2; recorded score >= 0.5; valid only")


@pytest.mark.parametrize("bad, message", [
    ("{not json\n", ":2: not valid JSON"),
    (json.dumps({k: v for k, v in LINES[0].items() if k != "workflow"}) + "\n", ":2: no 'workflow' field"),
    (json.dumps({**LINES[0], "round": "1"}) + "\n", ":2: field round must be int"),
    (json.dumps({**LINES[0], "score": "high"}) + "\n", ":2: field score must be a number or null"),
    ("[1, 2]\n", ":2: expected a JSON object"),
])
def test_a_bad_line_is_named_with_file_and_line(tmp_path, bad, message):
    path = tmp_path / "samples.jsonl"
    path.write_text(json.dumps(LINES[0]) + "\n" + bad + json.dumps(LINES[1]) + "\n")
    with pytest.raises(FlowPOError, match=message) as caught:
        list(read_records(path))
    assert str(caught.value).startswith(f"{path}:2:")


def test_a_torn_last_line_is_left_out_and_blank_lines_skipped(tmp_path):
    path = tmp_path / "samples.jsonl"
    path.write_text(json.dumps(LINES[0]) + "\n\n" + json.dumps(LINES[1]) + "\n" + json.dumps(LINES[2])[:40])
    assert [n for n, _ in read_records(path)] == [1, 3]
    assert [n for n, _ in read_records(path, max_lines=1)] == [1]


def test_plan_counts_the_selection_and_refuses_problems_outside_the_split(tmp_path):
    path = tmp_path / "samples.jsonl"
    write_lines(path, LINES)
    plan = plan_replay(path, Selection(), {"GSM8K/0", "GSM8K/1"}, "gsm8k (all split)", skip_missing=False)
    assert (plan.lines, plan.selected, plan.missing) == (5, 5, {})
    with pytest.raises(FlowPOError, match=r"3 selected workflow\(s\) are for problems not in gsm8k \(test split\): "
                                          r"GSM8K/1\. .*--skip-missing"):
        plan_replay(path, Selection(), {"GSM8K/0"}, "gsm8k (test split)", skip_missing=False)
    plan = plan_replay(path, Selection(), {"GSM8K/0"}, "gsm8k (test split)", skip_missing=True)
    assert (plan.selected, plan.missing) == (2, {"GSM8K/1": 3})
    with pytest.raises(FlowPOError, match=r"no recorded workflow to replay among its 5 line\(s\) "
                                          r"\(selection: round 7\)"):
        plan_replay(path, Selection(rounds=frozenset({7})), {"GSM8K/0"}, "x", skip_missing=False)


def test_sources_and_output_directories(tmp_path):
    with pytest.raises(FlowPOError, match="samples.jsonl: not found"):
        resolve_source(str(tmp_path), None)
    write_lines(tmp_path / "samples.jsonl", LINES)
    with pytest.raises(FlowPOError, match="no config.yaml beside samples.jsonl; pass --with CONFIG"):
        resolve_source(str(tmp_path / "samples.jsonl"), None)
    with pytest.raises(FlowPOError, match="--with .*nope.yaml: config file not found"):
        resolve_source(str(tmp_path), str(tmp_path / "nope.yaml"))
    (tmp_path / "config.yaml").write_text("rounds: 1\n")
    source = resolve_source(str(tmp_path), None)
    assert source == Source(tmp_path / "samples.jsonl", tmp_path / "config.yaml", tmp_path)
    with pytest.raises(FlowPOError, match="already holds a samples.jsonl, which a replay never overwrites"):
        output_dir(source, str(tmp_path))  # the run directory itself
    first = output_dir(source, None)
    (first / "samples.jsonl").write_text("")
    second = output_dir(source, None)  # the same second: a fresh directory beside it
    assert first.parent == second.parent == tmp_path / "replays" and first != second


# ---------------------------------------------------------------------------------------------
# The transfer table, by hand


def test_tally_means_pass_rates_and_the_paired_delta():
    tally = Tally()
    tally.add(0.0, replayed(1.0))  # recorded 0, replayed 1: +1
    tally.add(1.0, replayed(0.5, repeats={"prompt_tokens": 30, "completion_tokens": 10, "cost_usd": 0.25}))
    tally.add(None, replayed(1.0))  # recorded unscored: in the replayed mean, not in the delta
    tally.add(0.5, replayed(None, "llm_error"))  # replay unscored: in the recorded mean, not in the delta
    tally.add(0.0, replayed(0.0, "crash", cost=0.05))
    row = tally.row("round 1")
    # recorded: 0, 1, 0.5, 0 over 4 scored = 1.5 / 4; replayed: 1, 0.5, 1, 0 over 4 = 2.5 / 4
    assert row["recorded_mean"] == pytest.approx(0.375) and row["replayed_mean"] == pytest.approx(0.625)
    # paired (scored both times): (1-0) + (0.5-1) + (0-0) over 3
    assert row["paired"] == 3 and row["delta"] == pytest.approx(0.5 / 3)
    assert row["recorded_pass_rate"] == pytest.approx(1 / 4) and row["replayed_pass_rate"] == pytest.approx(2 / 4)
    assert row["crash_rate"] == pytest.approx(1 / 5) and row["invalid_rate"] == 0.0
    assert row["infra_failures"] == 1
    # tokens: 15 + 40 (the repeats' total) + 15 + 15 + 15 = 100 over 5; cost 0.25 + 0.05 over 5
    assert row["tokens_per_workflow"] == pytest.approx(20.0) and row["cost_per_workflow"] == pytest.approx(0.06)


def test_transfer_rows_per_round_and_the_total():
    transfer = Transfer()
    transfer.add({"round": 2, "score": 0.0}, replayed(1.0))
    transfer.add({"round": 1, "score": 1.0}, replayed(1.0))
    transfer.add({"round": 2, "score": 0.0}, replayed(0.0, "invalid_workflow", tokens=(0, 0)))
    rows = transfer.rows()
    assert [r["group"] for r in rows] == ["round 1", "round 2", "all"]
    assert [r["workflows"] for r in rows] == [1, 2, 3]
    assert rows[1]["delta"] == pytest.approx(0.5) and rows[1]["invalid_rate"] == pytest.approx(0.5)
    assert rows[2]["recorded_mean"] == pytest.approx(1 / 3) and rows[2]["replayed_mean"] == pytest.approx(2 / 3)
    assert rows[2]["delta"] == pytest.approx(1 / 3) and rows[2]["tokens_per_workflow"] == pytest.approx(10.0)
    table = render_table(rows)
    assert "| round 2 | 2 | 0.000 | 0.500 | +0.500 (n=2) | 0.0% | 50.0% | 0.0% | 50.0% | 0 | 8 |" in table
    empty = Tally()
    empty.add(None, replayed(None, "sandbox_error"))
    assert "| all | 1 | — | — | — | — | — | 0.0% | 0.0% | 1 | 15 |" in render_table([empty.row("all")])


# ---------------------------------------------------------------------------------------------
# The command line: bad input is one short error


def test_cli_names_a_bad_line(tmp_path, capsys):
    from driver.cli import main

    path = tmp_path / "samples.jsonl"
    path.write_text(json.dumps(LINES[0]) + "\n" + json.dumps({"problem_id": "HumanEval/0", "round": 1}) + "\n")
    (tmp_path / "config.yaml").write_text("task:\n  name: humaneval\n")
    assert main(["execute", str(path), "--round", "1"]) == 2
    assert f"flowpo: error: {path}:2: no 'sample_index' field" in capsys.readouterr().err
    assert main(["execute", str(tmp_path / "none.jsonl")]) == 2
    assert "none.jsonl: not found" in capsys.readouterr().err
    write_lines(path, LINES[:1])
    assert main(["execute", str(tmp_path), "--problem", "GSM8K/0"]) == 2  # the config's task is HumanEval
    assert "1 selected workflow(s) are for problems not in humaneval (all split): GSM8K/0" in capsys.readouterr().err
    assert not (tmp_path / "replays").exists()  # nothing written before the input is known good


# ---------------------------------------------------------------------------------------------
# End to end: real Ray actors, a real process sandbox, a real local HTTP executor LLM

STRONG = "strong-executor"
PROBLEMS = [{"question": "Natalia sold 48 clips in April and half as many in May. How many clips altogether?",
             "answer": "48 / 2 = 24, 48 + 24 = 72\n#### 72"},
            {"question": "Tom has 2 apples and buys 3 more. How many apples does he have?",
             "answer": "2 + 3 = 5\n#### 5"}]


class ExecutorLLM(ChatServer):
    """Answers right when asked as STRONG, wrong as any other model (the run's weaker executor)."""

    def _next(self, request: dict) -> Scripted:
        super()._next(request)  # records the request
        body = request["body"]
        right = "72" if "clips" in body["messages"][-1]["content"] else "5"
        return Scripted(body=completion(f"Step by step.\nAnswer: {right if body['model'] == STRONG else '0'}"))


@pytest.fixture
def executor_llm():
    server = ExecutorLLM()
    server.start()
    yield server
    server.stop()


@pytest.mark.ray
@pytest.mark.docker
def test_replay_with_another_executor_model(tmp_path, executor_llm, docker_backend, ray_local, monkeypatch, capsys):
    from driver.cli import main

    monkeypatch.setenv("FLOWPO_REPLAY_TEST_KEY", "sk-replay-test")
    (tmp_path / "gsm8k.jsonl").write_text("".join(json.dumps(p) + "\n" for p in PROBLEMS))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    write_lines(run_dir / "samples.jsonl", LINES)  # recorded with the weak model: AnswerGenerate scored 0
    original = (run_dir / "samples.jsonl").read_bytes()
    (tmp_path / "replay.yaml").write_text(f"""
task: {{name: gsm8k, path: {tmp_path / 'gsm8k.jsonl'}, split: all}}
executor_llm: {{backend: openai, base_url: "{executor_llm.url}", api_key_env: FLOWPO_REPLAY_TEST_KEY, model: weak}}
sandbox: {{backend: docker, num_executors: 1, sandboxes_per_executor: 4, executor_num_cpus: 0.25, timeout_s: 30}}
evaluator: {{num_evaluators: 1, num_cpus: 0.25, repeats: 2}}
""")
    code = main(["execute", str(run_dir), "--with", str(tmp_path / "replay.yaml"), f"executor_llm.model={STRONG}"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert (run_dir / "samples.jsonl").read_bytes() == original
    (replay_dir,) = (run_dir / "replays").iterdir()
    lines = [json.loads(line) for line in (replay_dir / "samples.jsonl").read_text().splitlines()]
    by_line = {line["origin"]["line"]: line for line in lines}
    assert sorted(by_line) == [1, 2, 3, 4, 5]
    for number, line in by_line.items():
        was = LINES[number - 1]
        fields = ("round", "problem_id", "sample_index", "score")
        assert {k: line["origin"][k] for k in fields} == {k: was[k] for k in fields}
        assert line["workflow"] == was["workflow"] and line["round"] == was["round"]
        assert len(line["details"]["repeat_scores"]) == 2  # evaluator.repeats of the replay's config
    assert [by_line[n]["score"] for n in range(1, 6)] == [1.0, 1.0, 0.0, 0.0, 1.0]
    assert [by_line[n]["failure"] for n in range(1, 6)] == ["", "", "crash", "invalid_workflow", ""]
    assert by_line[1]["details"]["repeat_usage"]["llm_calls"] == 2  # one AnswerGenerate call per repeat
    # Only the two AnswerGenerate workflows called the LLM, twice each, all as the replay's model.
    assert len(executor_llm.requests) == 4
    assert {r["body"]["model"] for r in executor_llm.requests} == {STRONG}
    assert {r["headers"]["authorization"] for r in executor_llm.requests} == {"Bearer sk-replay-test"}

    results = json.loads((replay_dir / "results.json").read_text())
    assert (results["selected"], results["repeats"], results["executor_model"]) == (5, 2, STRONG)
    rows = {r["group"]: r for r in results["groups"]}
    assert list(rows) == ["round 1", "round 2", "all"]
    # Round 1: recorded 0 and 1, replayed 1 and 1. Round 2: recorded 0, 0 and unscored; replayed 0, 0, 1.
    first, second = rows["round 1"], rows["round 2"]
    assert (first["recorded_mean"], first["replayed_mean"], first["delta"]) == (0.5, 1.0, 0.5)
    assert second["recorded_mean"] == 0.0 and second["replayed_mean"] == pytest.approx(1 / 3) and second["delta"] == 0.0
    assert second["crash_rate"] == pytest.approx(1 / 3) and second["invalid_rate"] == pytest.approx(1 / 3)
    assert rows["all"]["recorded_mean"] == 0.25 and rows["all"]["replayed_mean"] == pytest.approx(0.6)
    assert rows["all"]["delta"] == 0.25 and rows["all"]["paired"] == 4
    table = render_table(results["groups"])
    assert table in (replay_dir / "results.md").read_text() and table in out
    assert "| round 1 | 2 | 0.500 | 1.000 | +0.500 (n=2) | 50.0% | 100.0% | 0.0% | 0.0% | 0 |" in table
    assert (replay_dir / "config.yaml").is_file()
