"""What a run directory says is done: torn last lines, duplicates, rounds, adapters; and the
sample log line round-trips to the record the learner trains on."""
import json

import pytest

from driver.resume import read_run_state
from driver.rundir import read_repairing
from flowpo.errors import FlowPOError
from flowpo.records import Execution, ScoredSample, Workflow


def sample(round_index=1, problem="HumanEval/23", index=0, score=1.0) -> ScoredSample:
    workflow = Workflow(problem_id=problem, round=round_index, sample_index=index, adapter="base",
                        prompt="<prompt>", completion="text", code="class Workflow: ...", generate_s=0.5,
                        invalid_reason="", attempts=2)
    execution = Execution(workflow=workflow, answer="def f(): pass", failure="", error="", llm_calls=2,
                          prompt_tokens=30, completion_tokens=12, execute_s=1.25, cache_hits=1, cost_usd=0.001)
    return ScoredSample(execution, score=score, evaluate_s=0.25, details={"test": "passed"})


def test_a_log_line_round_trips_to_the_sample():
    original = sample()
    again = ScoredSample.from_log(json.loads(json.dumps(original.to_log())))
    assert again == original


def test_a_torn_last_line_is_cut_and_dropped(tmp_path):
    path = tmp_path / "samples.jsonl"
    path.write_text('{"a": 1}\n{"a": 2}\n{"a": 3, "b"')
    assert read_repairing(path) == [{"a": 1}, {"a": 2}]
    assert path.read_text() == '{"a": 1}\n{"a": 2}\n'  # the next append starts on a clean line


def test_a_damaged_middle_line_is_an_error_naming_the_line(tmp_path):
    path = tmp_path / "samples.jsonl"
    path.write_text('{"a": 1}\nnot json\n{"a": 3}\n')
    with pytest.raises(FlowPOError, match=r"samples.jsonl:2: not valid JSON"):
        read_repairing(path)


def write_run(tmp_path, samples, events):
    (tmp_path / "config.yaml").write_text("name: x\n")
    (tmp_path / "samples.jsonl").write_text("".join(json.dumps(s.to_log()) + "\n" for s in samples))
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))


def test_run_state_knows_rounds_slots_and_adapters(tmp_path):
    adapter = tmp_path / "adapters" / "round-1"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text("{}")
    write_run(tmp_path, [sample(1, index=0), sample(1, index=1), sample(2, index=0)], [
        {"event": "round_start", "round": 1}, {"event": "train", "round": 1, "adapter": str(adapter), "pairs": 4},
        {"event": "round_end", "round": 1}, {"event": "round_start", "round": 2}])
    state = read_run_state(tmp_path)
    assert state.ended == {1}
    assert state.done_slots(1) == {("HumanEval/23", 0), ("HumanEval/23", 1)}
    assert state.done_slots(2) == {("HumanEval/23", 0)} and state.done_slots(3) == set()
    assert state.adapter_before(1) == ("base", "")
    assert state.adapter_before(2) == ("round-1", str(adapter))


def test_an_adapter_whose_files_are_missing_does_not_count(tmp_path):
    write_run(tmp_path, [], [{"event": "train", "round": 1, "adapter": str(tmp_path / "gone")}])
    assert read_run_state(tmp_path).adapter_before(2) == ("base", "")


def test_duplicated_samples_and_foreign_directories_are_refused(tmp_path):
    write_run(tmp_path, [sample(), sample()], [])
    with pytest.raises(FlowPOError, match="appears twice"):
        read_run_state(tmp_path)
    with pytest.raises(FlowPOError, match="--resume .*elsewhere: no config.yaml there; is it a FlowPO run directory"):
        read_run_state(tmp_path / "elsewhere")


def test_a_resumed_round_keeps_the_faults_its_killed_driver_met(tmp_path):
    """The chaos bench killed the driver mid-round: the resumed round's round_end had lost the
    actor failures met before the kill. Each fault is logged as it happens and counted again."""
    from driver.runlog import RunLog
    from driver.train import round_faults

    write_run(tmp_path, [sample(1, index=0)], [
        {"event": "round_start", "round": 1},
        {"event": "fault", "round": 1, "kind": "actor_failure", "stage": "execute"},
        {"event": "fault", "round": 1, "kind": "actor_failure", "stage": "execute"},
        {"event": "fault", "round": 1, "kind": "restart_wait", "stage": "generate"}])
    state = read_run_state(tmp_path)
    assert state.starts[1] == 1 and state.starts[2] == 0  # round 1 was started once before: one restart
    log = RunLog(tmp_path)
    faults = round_faults(1, state, log)
    assert faults.by_stage == {"execute": 2} and faults.restart_waits == {"generate": 1}
    assert not faults.attempts  # each item's retry budget starts afresh
    faults.record("evaluate", ("p", 0), RuntimeError("actor died"), "")
    log.close()
    events = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert events[-1] == {**events[-1], "event": "fault", "round": 1, "kind": "actor_failure", "stage": "evaluate"}
    assert read_run_state(tmp_path).faults[1] == {("actor_failure", "execute"): 2,
                                                   ("restart_wait", "generate"): 1,
                                                   ("actor_failure", "evaluate"): 1}
