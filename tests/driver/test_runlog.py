"""The run log's sinks: every event's numbers reach TensorBoard (read back from the event files), the
learner's per-step metrics on a global step across rounds, W&B only when asked for."""
from __future__ import annotations

import json
import sys
import types

import pytest

from driver.rundir import read_tolerant
from driver.runlog import RunLog, TensorBoardSink, build_sinks, flatten_scalars, global_train_steps, read_train_metrics
from flowpo.config import Config, LoggingConfig
from flowpo.errors import FlowPOError


def scalars_in(log_dir) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    return {tag: [(e.step, round(e.value, 6)) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def write_history(log: RunLog, round_index: int, history) -> None:
    log.adapter_dir(round_index).mkdir(parents=True, exist_ok=True)
    (log.adapter_dir(round_index) / "train_metrics.json").write_text(json.dumps(history))


def test_events_reach_tensorboard(tmp_path):
    log = RunLog(tmp_path, sinks=[TensorBoardSink(tmp_path / "tensorboard")])
    log.event("run_start", name="t", problems=["a", "b"])  # no numbers: nothing to plot
    log.event("round_start", round=1, adapter="base", problems=2)
    write_history(log, 1, [{"step": 1, "loss": 0.69, "accuracy": 0.0}, {"step": 2, "loss": 0.5, "accuracy": 1.0}])
    log.event("train", round=1, algorithm="score_dpo", pairs=8, loss=0.5, adapter=str(log.adapter_dir(1)))
    log.event("round_end", round=1, mean_score=0.25, loss=0.5, pairs=8, failures={"crash": 3, "ok": 5},
              executor_llm={"calls": 10, "cache_hits": 4, "retries": {"429": 2}}, ok=True, adapter="base")
    log.event("round_start", round=2, adapter="round-1", problems=2)
    log.event("train_skipped", round=2, reason="no pairs")
    log.event("round_end", round=2, mean_score=0.5, loss=None, failures={"ok": 8})
    # Round 3's history has no "step" keys: positions count, after round 1's two steps.
    write_history(log, 3, [{"loss": 0.4}, {"loss": 0.3}, "not a dict"])
    log.event("train", round=3, pairs=4, loss=0.3)
    log.event("run_end", rounds=3)
    log.close()

    got = scalars_in(tmp_path / "tensorboard")
    assert got["round_start/problems"] == [(1, 2.0), (2, 2.0)]
    assert got["round_end/mean_score"] == [(1, 0.25), (2, 0.5)]
    assert got["round_end/failures/crash"] == [(1, 3.0)]
    assert got["round_end/failures/ok"] == [(1, 5.0), (2, 8.0)]
    assert got["round_end/executor_llm/cache_hits"] == [(1, 4.0)]
    assert got["round_end/executor_llm/retries/429"] == [(1, 2.0)]
    assert got["train/pairs"] == [(1, 8.0), (3, 4.0)]
    # Per-step metrics: round 1 at steps 1-2, round 3 continues at 3-4 (round 2 did not train).
    assert got["train_step/loss"] == [(1, 0.69), (2, 0.5), (3, 0.4), (4, 0.3)]
    assert got["train_step/accuracy"] == [(1, 0.0), (2, 1.0)]
    assert got["run_end/rounds"] == [(3, 3.0)]  # no round field: the last round seen
    # Strings, bools, None, lists, the round and the time are not scalars.
    assert got["round_end/loss"] == [(1, 0.5)]  # round 2's None is left out
    assert not {"round_end/ok", "round_end/round", "round_end/time", "run_start/problems",
                "round_end/adapter", "train_step/step"} & set(got)
    # metrics.jsonl is unchanged in shape: one line per event, fields as given.
    lines = read_tolerant(tmp_path / "metrics.jsonl")
    assert [e["event"] for e in lines] == ["run_start", "round_start", "train", "round_end", "round_start",
                                          "train_skipped", "round_end", "train", "run_end"]
    assert lines[3]["failures"] == {"crash": 3, "ok": 5} and lines[3]["ok"] is True


def test_plain_run_log_has_no_sinks(tmp_path):
    log = RunLog(tmp_path)
    log.event("round_end", round=1, mean_score=1.0)
    log.close()
    assert not (tmp_path / "tensorboard").exists()
    assert read_tolerant(tmp_path / "metrics.jsonl")[0]["mean_score"] == 1.0


def test_flatten_scalars():
    fields = {"a": 1, "b": 2.5, "c": {"d": 3, "e": {"f": 4.0}, "s": "x"}, "t": True, "n": None, "l": [1, 2]}
    assert flatten_scalars(fields, "ev") == {"ev/a": 1.0, "ev/b": 2.5, "ev/c/d": 3.0, "ev/c/e/f": 4.0}
    assert flatten_scalars({}, "ev") == {}


def test_global_train_steps():
    histories = {1: [{"step": 1}, {"step": 2}, {"step": 3}], 2: [], 3: [{}, {}], 4: [{"step": 5}]}
    got = [(k, step) for k, step, _ in global_train_steps(histories)]
    # Round 1 ends at 3; round 2 adds none; round 3 (no step keys) is 4, 5; round 4's step 5 -> 5 + 5.
    assert got == [(1, 1), (1, 2), (1, 3), (3, 4), (3, 5), (4, 10)]
    assert global_train_steps({}) == []


def test_readers_tolerate_torn_and_bad_files(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"a": 1}\n\n[1, 2]\n{"b": 2}\n{"c": ')  # a crash cut the last line
    assert read_tolerant(path) == [{"a": 1}, {"b": 2}]
    assert read_tolerant(tmp_path / "missing.jsonl") == []
    assert read_train_metrics(tmp_path / "no-such-adapter") == []
    (tmp_path / "train_metrics.json").write_text("{not json")
    with pytest.warns(UserWarning, match="unreadable train metrics"):
        assert read_train_metrics(tmp_path) == []
    (tmp_path / "train_metrics.json").write_text('{"loss": 1}')
    assert read_train_metrics(tmp_path) == []


def test_from_config_builds_the_asked_sinks(tmp_path):
    config = Config(name="t", run_dir=str(tmp_path / "off"), logging=LoggingConfig(tensorboard=False))
    log = RunLog.from_config(config)
    assert log.sinks == [] and log.run_dir == tmp_path / "off"
    config = Config(name="t", run_dir=str(tmp_path / "on"))  # the default: TensorBoard on, W&B off
    with RunLog.from_config(config) as log:
        assert [type(s).__name__ for s in log.sinks] == ["TensorBoardSink"]
        log.event("round_end", round=1, mean_score=0.5)
    assert scalars_in(tmp_path / "on" / "tensorboard")["round_end/mean_score"] == [(1, 0.5)]


def test_wandb_missing_fails_clearly(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb raises ImportError
    with pytest.raises(FlowPOError, match="pip install wandb.*logging.wandb: false"):
        build_sinks(LoggingConfig(tensorboard=False, wandb=True), tmp_path, name="t")


class FakeRun:
    def __init__(self):
        self.calls = []

    def define_metric(self, name, **kwargs):
        self.calls.append(("define", name, kwargs.get("step_metric")))

    def log(self, data):
        self.calls.append(("log", data))

    def finish(self):
        self.calls.append(("finish",))


def test_wandb_sink_logs_rounds_and_train_steps(tmp_path, monkeypatch):
    run, inits = FakeRun(), []
    fake = types.ModuleType("wandb")
    fake.init = lambda **kwargs: inits.append(kwargs) or run
    monkeypatch.setitem(sys.modules, "wandb", fake)
    sinks = build_sinks(LoggingConfig(tensorboard=False, wandb=True, wandb_project="p", wandb_entity=""),
                        tmp_path, name="t", config={"rounds": 2})
    log = RunLog(tmp_path, sinks=sinks)
    write_history(log, 1, [{"step": 1, "loss": 0.7}])
    log.event("train", round=1, pairs=2, loss=0.7)
    log.close()
    assert inits == [{"project": "p", "entity": None, "name": "t", "dir": str(tmp_path), "config": {"rounds": 2}}]
    logs = [c[1] for c in run.calls if c[0] == "log"]
    assert logs == [{"train/pairs": 2.0, "train/loss": 0.7, "round": 1},
                    {"train_step/loss": 0.7, "train_step/global_step": 1}]
    defines = {c[1]: c[2] for c in run.calls if c[0] == "define"}
    assert defines["train/*"] == "round" and defines["train_step/*"] == "train_step/global_step"
    assert run.calls[-1] == ("finish",)
