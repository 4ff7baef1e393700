"""Rounds that overlap (pipeline.overlap_rounds): the driver's bookkeeping, with stand-ins for the
actors and the learner (the real stack runs it in tests/test_end_to_end.py's ioGRPO run and in
``python -m bench.overlap``). Which adapter writes each round and which one its training starts from,
hand-computed; the next round streaming while this one trains; a crash in the middle of an overlapped
round and its resume; and the setting off, which keeps the papers' rounds exactly."""
import json
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

import driver.train
from driver.resume import RunState, read_run_state
from driver.rundir import adapter_name
from driver.runlog import RunLog
from driver.train import run_rounds
from flowpo.config import Config
from flowpo.errors import FlowPOError
from flowpo.records import Execution, Problem, ScoredSample, Workflow

K = 2
PROBLEMS = [Problem(problem_id="p", prompt="P", entry_point="f")]


class Crash(Exception):
    """The injected crash."""


class Stack:
    """Stand-ins for what run_rounds drives: streaming writes each slot's sample with the adapter it is
    given, training writes an adapter directory and logs its train event, both recording when they ran."""

    def __init__(self, monkeypatch, run_dir: Path, train_s: float = 0.3):
        self.run_dir, self.train_s = run_dir, train_s
        self.calls: list[tuple] = []  # (what, round, adapter or init, data adapter)
        self.lock = threading.Lock()
        self.crash_stream_of: int | None = None
        self.training_now = threading.Event()
        for name in ("stream_round", "train_round", "shipped", "ship_adapter", "stage_stats", "adapter_probe"):
            monkeypatch.setattr(driver.train, name, getattr(self, name))

    def record(self, *call):
        with self.lock:
            self.calls.append(call)

    def stream_round(self, round_index, todo, actors, config, log, adapter, faults, clock):
        # with rounds that overlap, a round after the first streams while the one before it trains
        overlapping = config.pipeline.overlap_rounds and round_index > 1 and self.training_now.wait(2)
        self.record("stream", round_index, adapter[0], overlapping)
        time.sleep(0.05)  # generating takes time
        if round_index == self.crash_stream_of:
            raise Crash(f"during round {round_index}'s stream")
        samples = []
        for problem, slots in todo:
            for j in range(K) if slots is None else slots:
                wf = Workflow(problem_id=problem.problem_id, round=round_index, sample_index=j, adapter=adapter[0],
                              prompt="P", completion=f"c{j}", code="class Workflow: ...", generate_s=0.0)
                execution = Execution(workflow=wf, answer="a", failure="", error="", llm_calls=1, prompt_tokens=5,
                                      completion_tokens=5, execute_s=0.0)
                sample = ScoredSample(execution, score=float(j), evaluate_s=0.0)
                samples.append(sample)
                log.sample(sample.to_log())
        return samples

    def train_round(self, round_index, samples, config, log, model_path, init_adapter, learner=None,
                    data_adapter=None, faults=None):
        self.training_now.set()
        self.record("train", round_index, init_adapter, data_adapter)
        time.sleep(self.train_s)  # the next round streams meanwhile, when rounds overlap
        out = self.run_dir / "adapters" / adapter_name(round_index)
        out.mkdir(parents=True)
        (out / "adapter_config.json").write_text("{}")
        log.event("train", round=round_index, adapter=str(out), pairs=1, loss=0.5)
        self.training_now.clear()
        return 1, 0.5, str(out)

    def shipped(self, version, path):
        return version, path  # no object store here

    def ship_adapter(self, generators, version, path, timeout_s):
        return (version, path), 0.0

    def stage_stats(self, actors):
        return {}

    def adapter_probe(self, generator, sample, adapter, pipeline):
        return {}


def config_for(run_dir: Path, overlap: bool, rounds: int = 3) -> Config:
    config = Config()
    config.run_dir, config.rounds, config.generator.k = str(run_dir), rounds, K
    config.pipeline.overlap_rounds, config.logging.reports, config.logging.tensorboard = overlap, False, False
    return config


def run(config: Config, state: RunState | None = None):
    log = RunLog(Path(config.run_dir))
    if state is None:
        log.write_config(config)
    actors = type("Actors", (), {"generators": [None]})()
    return run_rounds(config, PROBLEMS, actors=actors, log=log, model_path="m", state=state, learner=None)


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_which_adapter_writes_a_round_and_how_stale_it_is():
    state = RunState(adapters={1: "/r/adapters/round-1", 2: "/r/adapters/round-2"})
    assert state.data_adapter(3, overlap=False) == ("round-2", "/r/adapters/round-2")
    assert state.data_adapter(3, overlap=True) == ("round-1", "/r/adapters/round-1")  # round 2 still training
    assert state.data_adapter(2, overlap=True) == ("base", "")
    assert state.data_adapter(1, overlap=True) == ("base", "")
    assert [state.staleness(3, v) for v in ("round-2", "round-1", "base")] == [0, 1, 2]
    skipped = RunState(adapters={1: "/r/adapters/round-1"})  # round 2 had no pair: no round-2 adapter
    assert skipped.data_adapter(3, overlap=True) == ("round-1", "/r/adapters/round-1")
    assert skipped.staleness(3, "round-1") == 0


def test_the_setting_off_keeps_the_papers_rounds(tmp_path, monkeypatch):
    stack = Stack(monkeypatch, tmp_path, train_s=0.0)
    summaries = run(config_for(tmp_path, overlap=False))
    adapters = [str(tmp_path / "adapters" / adapter_name(k)) for k in (1, 2)]
    assert stack.calls == [("stream", 1, "base", False), ("train", 1, "", ""),
                           ("stream", 2, "round-1", False), ("train", 2, adapters[0], adapters[0]),
                           ("stream", 3, "round-2", False), ("train", 3, adapters[1], adapters[1])]
    assert [s.adapter for s in summaries] == ["base", "round-1", "round-2"]
    ends = [e for e in records(tmp_path / "metrics.jsonl") if e["event"] == "round_end"]
    assert [e["staleness"] for e in ends] == [0, 0, 0]
    assert all(e["stage_times"].get("rounds_overlap_s", 0) == 0 for e in ends)


def test_the_next_round_streams_while_this_one_trains(tmp_path, monkeypatch):
    stack = Stack(monkeypatch, tmp_path)
    run(config_for(tmp_path, overlap=True))
    adapters = [str(tmp_path / "adapters" / adapter_name(k)) for k in (1, 2)]
    streams = [c for c in stack.calls if c[0] == "stream"]
    trains = [c for c in stack.calls if c[0] == "train"]
    # round 2 is written by the base model while round 1 trains, round 3 by round 1's adapter while
    # round 2 trains (from round 1's adapter, π_old the base model's data)
    assert streams == [("stream", 1, "base", False), ("stream", 2, "base", True), ("stream", 3, "round-1", True)]
    assert trains == [("train", 1, "", ""), ("train", 2, adapters[0], ""), ("train", 3, adapters[1], adapters[0])]
    samples = records(tmp_path / "samples.jsonl")
    assert Counter((s["round"], s["adapter"]) for s in samples) == {(1, "base"): K, (2, "base"): K,
                                                                    (3, "round-1"): K}
    ends = [e for e in records(tmp_path / "metrics.jsonl") if e["event"] == "round_end"]
    assert [e["round"] for e in ends] == [1, 2, 3]
    assert [e["staleness"] for e in ends] == [0, 1, 1]
    assert [e["stage_times"].get("rounds_overlap_s", 0) > 0 for e in ends] == [True, True, False]


def test_a_crash_mid_overlapped_round_resumes_with_nothing_lost_or_doubled(tmp_path, monkeypatch):
    """The driver dies streaming round 2 while round 1 trains: round 1's training is waited for (its
    adapter is kept), and the resume trains nothing twice, generates the rest of round 2 with the
    adapter that wrote its first samples, and ends as an uninterrupted overlapped run."""
    stack = Stack(monkeypatch, tmp_path)
    config = config_for(tmp_path, overlap=True)
    stack.crash_stream_of = 2
    with pytest.raises(Crash):
        run(config)
    state = read_run_state(tmp_path)
    assert set(state.samples) == {1} and set(state.adapters) == {1}, "round 1's training was lost with the crash"
    stack.crash_stream_of = None
    summaries = run(config, read_run_state(tmp_path))
    samples = records(tmp_path / "samples.jsonl")
    keys = Counter((s["round"], s["problem_id"], s["sample_index"]) for s in samples)
    assert sorted(keys) == [(r, "p", j) for r in (1, 2, 3) for j in range(K)] and set(keys.values()) == {1}
    assert Counter(c[1] for c in stack.calls if c[0] == "train") == {1: 1, 2: 1, 3: 1}
    assert {(s["round"], s["adapter"]) for s in samples} == {(1, "base"), (2, "base"), (3, "round-1")}
    assert [s.round for s in summaries] == [1, 2, 3]


def test_a_resume_under_the_other_setting_is_refused(tmp_path, monkeypatch):
    Stack(monkeypatch, tmp_path, train_s=0.0)
    run(config_for(tmp_path, overlap=False, rounds=2))
    lines = (tmp_path / "samples.jsonl").read_text().splitlines()
    (tmp_path / "samples.jsonl").write_text("\n".join(lines[:-1]) + "\n")  # round 2 half done, by round-1
    metrics = [line for line in (tmp_path / "metrics.jsonl").read_text().splitlines()
               if not (json.loads(line).get("round") == 2 and json.loads(line)["event"] != "round_start")]
    (tmp_path / "metrics.jsonl").write_text("\n".join(metrics) + "\n")
    with pytest.raises(FlowPOError, match="round 2's recorded samples were written by round-1.*overlap_rounds"):
        run(config_for(tmp_path, overlap=True, rounds=2), read_run_state(tmp_path))
