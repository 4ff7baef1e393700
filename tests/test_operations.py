"""Operations on the real system (SmolLM2-135M on vLLM, Docker sandboxes, Ray, Ray Train):
resume after a crash in training and in generation, and actors killed mid-round.

A crash is an exception raised inside the driver at the chosen point; what a resume needs is the
run directory, which such an exception leaves exactly as a killed process would (a torn last line,
the one thing only a real kill makes, is covered in tests/driver/test_resume.py). A crash during
execution, mid-round, is resumed by real signals elsewhere: tests/test_cluster_job.py stops a job
(`ray job stop`) after some of round 1's samples and resumes it, tests/test_chaos.py SIGKILLs the
driver after 4 of 8; both check that every slot ends up recorded exactly once.

The executor LLM is the test session's vLLM server (``executor_llm_url``, as in tests/test_chaos.py),
so each driver starts one vLLM engine, its generator, instead of two: what these tests prove is the
driver's resume and the restarts of its actors, not the hosted server, which
tests/test_end_to_end.py runs through two rounds and tests/actors/test_shm_cleanup.py starts and stops."""
import json
import threading
import time
from collections import Counter

import pytest

from driver.runlog import RunLog
from flowpo.config import load_config

pytestmark = [pytest.mark.slow, pytest.mark.stack, pytest.mark.docker, pytest.mark.vllm, pytest.mark.ray]


class Crash(Exception):
    """The injected crash."""


@pytest.fixture
def local_ray(fresh_ray):
    fresh_ray.init(num_cpus=2, include_dashboard=False)
    return fresh_ray


@pytest.fixture
def small_config(executor_llm_url):
    """A server of one's own as the executor LLM needs no key (executor_llm.api_key_env empty)."""

    def config(run_dir, *extra):
        # One pair a round: what is checked is whether and with which adapter a round trained, not
        # how well (a learner step on the real model costs ~15 s of CPU per pair).
        return load_config("examples/local.yaml", [
            f"run_dir={run_dir}", "task.problem_ids=[HumanEval/23]", "generator.k=6", "rounds=2",
            "train.num_pairs=1", "train.grad_accum_steps=1", "executor_llm.backend=openai",
            f"executor_llm.base_url={executor_llm_url}", "executor_llm.shared_limits=never", *extra])

    return config


def records(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_resume_after_crashes_in_training_and_generation(model_dir, docker_backend, vllm_available, tmp_path,
                                                         monkeypatch, small_config, local_ray):
    import driver.train
    from driver.train import train

    run_dir = tmp_path / "run"
    original_event = RunLog.event
    original_train_round = driver.train.train_round

    # 1. Training: the run scores round 1's samples, then dies in the training step.
    def train_then_crash(*args, **kwargs):
        raise Crash("during training")

    monkeypatch.setattr(driver.train, "train_round", train_then_crash)
    with pytest.raises(Crash):
        train(small_config(run_dir))
    after_first = records(run_dir / "samples.jsonl")
    assert len(after_first) == 6

    # 2. Generation: the resumed run trains round 1 this time; it dies as round 2 starts generating.
    monkeypatch.setattr(driver.train, "train_round", original_train_round)

    def event_then_crash(self, event, **fields):
        original_event(self, event, **fields)
        if event == "round_start" and fields.get("round") == 2:
            raise Crash("during generation")

    monkeypatch.setattr(RunLog, "event", event_then_crash)
    with pytest.raises(Crash):
        train(small_config(run_dir), resume=True)
    monkeypatch.setattr(RunLog, "event", original_event)

    # 3. The last resume completes the run.
    summaries = train(small_config(run_dir), resume=True)
    samples = records(run_dir / "samples.jsonl")
    keys = Counter((s["round"], s["problem_id"], s["sample_index"]) for s in samples)
    assert sorted(keys) == [(r, "HumanEval/23", j) for r in (1, 2) for j in range(6)]
    assert set(keys.values()) == {1}, "a sample was duplicated"
    assert samples[:6] == after_first, "samples already scored were executed again"
    events = records(run_dir / "metrics.jsonl")
    trained = [e for e in events if e["event"] in ("train", "train_skipped") and e["round"] == 1]
    assert len(trained) == 1, "round 1 trained twice or never"
    if trained[0]["event"] == "train":  # round 2 samples the policy round 1 trained
        assert {s["adapter"] for s in samples if s["round"] == 2} == {"round-1"}
    assert [e["round"] for e in events if e["event"] == "round_end"] == [1, 2]
    assert [s.round for s in summaries] == [2]


def test_killed_actors_restart_and_their_items_are_retried(model_dir, docker_backend, vllm_available, tmp_path,
                                                          small_config, local_ray):
    ray = local_ray
    from driver.train import train

    run_dir = tmp_path / "run"
    # No training: what is checked is the round's items, and the learner would add 20 s.
    config = small_config(run_dir, "rounds=1", "task.problem_ids=[HumanEval/23, HumanEval/53]",
                          "generator.max_inflight_problems=1", "train.num_pairs=0")
    killed = []

    def saboteur():
        samples = run_dir / "samples.jsonl"
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline and not (samples.is_file() and samples.read_text().count("\n") >= 1):
            time.sleep(0.2)
        for role in ("executor", "evaluator", "generator"):
            name = next(n for n in ray.util.list_named_actors() if f"-{role}-" in n)
            ray.kill(ray.get_actor(name), no_restart=False)
            killed.append(role)
            time.sleep(1.0)

    thread = threading.Thread(target=saboteur, daemon=True)
    thread.start()
    train(config)
    thread.join(10)
    assert killed == ["executor", "evaluator", "generator"]
    samples = records(run_dir / "samples.jsonl")
    keys = Counter((s["problem_id"], s["sample_index"]) for s in samples)
    assert sorted(keys) == [(p, j) for p in ("HumanEval/23", "HumanEval/53") for j in range(6)]
    assert set(keys.values()) == {1}
    round_end = next(e for e in records(run_dir / "metrics.jsonl") if e["event"] == "round_end")
    # The executor had workflows in flight when it died: they were sent again, and counted — as
    # lost with their actor, or as met with an actor Ray was restarting (which one is Ray's timing).
    resent = Counter(round_end["actor_failures"]) + Counter(round_end["restart_waits"])
    assert resent["execute"] >= 1, round_end
    assert round_end["retried_items"] == sum(round_end["actor_failures"].values())
