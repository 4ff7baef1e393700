"""Two real rounds on SmolLM2-135M: vLLM generator actor, Docker sandbox, the executor LLM over the
OpenAI HTTP API (the test session's vLLM server; the hosted one, started by the run, trains in
tests/flowpo/test_own_task_readme.py), hidden tests, Score-DPO on Ray Train, and round 2 generated
with the round-1 adapter loaded by LoRARequest. The two-round run is also the resume test: it dies in
round 1's training step and again as round 2 starts generating, and is resumed each time, as a
user resumes with `flowpo train --resume RUN_DIR`.

A crash is an exception raised inside the driver at the chosen point; what a resume needs is the
run directory, which such an exception leaves exactly as a killed process would (a torn last line,
the one thing only a real kill makes, is covered in tests/driver/test_resume.py). A crash during
execution, mid-round, is resumed by real signals elsewhere: tests/test_cluster_job.py stops a job
(`ray job stop`) after some of round 1's samples and resumes it, tests/test_chaos.py SIGKILLs the
driver after 4 of 8; both check that every slot ends up recorded exactly once.

The learner's steps on the real model cost seconds per sequence on 2 CPU cores: the runs train on as
few pairs or groups as still show the point (they are built from the round's samples, a step with
gradient accumulation runs, an adapter is written, loaded and served)."""
import json
from collections import Counter

import pytest

from driver.runlog import RunLog
from flowpo.config import load_config

pytestmark = [pytest.mark.slow, pytest.mark.stack, pytest.mark.docker, pytest.mark.vllm, pytest.mark.ray]

SAMPLE_FIELDS = {"problem_id", "round", "adapter", "workflow", "answer", "score", "failure", "timings"}


class Crash(Exception):
    """The injected crash."""


def records(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_two_rounds_end_to_end_resumed_after_crashes_in_training_and_generation(
        model_dir, docker_backend, vllm_available, executor_llm_url, tmp_path, monkeypatch, local_ray):
    import driver.train
    from driver.train import train

    run_dir = tmp_path / "run"
    # The example config on its easiest problem (strlen): about a quarter of the generated workflows
    # pass there, so 16 samples hold a pass and a failure (a pair) with probability ≈ 0.99. Two pairs:
    # one optimizer step that accumulates two micro-batches. A server of one's own as the executor LLM
    # needs no key (executor_llm.api_key_env empty).
    config = load_config("examples/local.yaml", [
        f"run_dir={run_dir}", "task.problem_ids=[HumanEval/23]", "generator.k=16", "train.num_pairs=2",
        "train.grad_accum_steps=2", "executor_llm.backend=openai", f"executor_llm.base_url={executor_llm_url}",
        "executor_llm.shared_limits=never"])
    per_round = config.generator.k * len(config.task.problem_ids)
    original_event, original_train_round = RunLog.event, driver.train.train_round

    # 1. Training: the run scores round 1's samples, then dies in the training step.
    def train_then_crash(*args, **kwargs):
        raise Crash("during training")

    monkeypatch.setattr(driver.train, "train_round", train_then_crash)
    with pytest.raises(Crash):
        train(config)
    after_first = records(run_dir / "samples.jsonl")
    assert len(after_first) == per_round

    # 2. Generation: the resumed run trains round 1 this time; it dies as round 2 starts generating.
    monkeypatch.setattr(driver.train, "train_round", original_train_round)

    def event_then_crash(self, event, **fields):
        original_event(self, event, **fields)
        if event == "round_start" and fields.get("round") == 2:
            raise Crash("during generation")

    monkeypatch.setattr(RunLog, "event", event_then_crash)
    with pytest.raises(Crash):
        train(config, resume=True)
    monkeypatch.setattr(RunLog, "event", original_event)

    # 3. The last resume completes the run.
    summaries = train(config, resume=True)
    assert [s.round for s in summaries] == [2]

    assert (run_dir / "config.yaml").is_file()
    samples = records(run_dir / "samples.jsonl")
    events = records(run_dir / "metrics.jsonl")
    keys = Counter((s["round"], s["problem_id"], s["sample_index"]) for s in samples)
    assert sorted(keys) == [(r, "HumanEval/23", j) for r in (1, 2) for j in range(per_round)]
    assert set(keys.values()) == {1}, "a sample was duplicated"
    assert samples[:per_round] == after_first, "samples already scored were executed again"
    assert all(SAMPLE_FIELDS <= set(s) for s in samples)
    # every stage produced records: generated code, executions with LLM calls, scores
    assert any(s["workflow"].startswith("class Workflow") for s in samples)
    assert any(s["usage"]["llm_calls"] > 0 for s in samples)
    assert all(s["score"] in (0.0, 1.0) for s in samples if s["score"] is not None)

    trained = [e for e in events if e["event"] in ("train", "train_skipped") and e["round"] == 1]
    assert [e["event"] for e in trained] == ["train"], "round 1 trained twice, never, or found no pair"
    assert (run_dir / "adapters" / "round-1" / "adapter_model.safetensors").is_file()
    assert {s["adapter"] for s in samples if s["round"] == 1} == {"base"}
    assert {s["adapter"] for s in samples if s["round"] == 2} == {"round-1"}
    probe = next(e for e in events if e["event"] == "adapter_loaded" and e["round"] == 1)
    assert abs(probe["probe_logprob_adapter"] - probe["probe_logprob_base"]) > 1e-4
    assert [e["round"] for e in events if e["event"] == "round_end"] == [1, 2]


def test_iogrpo_trains_on_the_local_config(model_dir, docker_backend, vllm_available, executor_llm_url, tmp_path,
                                           local_ray):
    """SPOGW's ioGRPO on the local example as a user would run it (`train.algorithm=iogrpo`, group
    sizes derived from k): one round forms sharpened groups and trains an adapter on them."""
    from driver.train import train

    run_dir = tmp_path / "run"
    # k = 16 on strlen: groups of n = 14 of the 16, sharpened to 4 + 4; a pass among 16 samples
    # (about a quarter pass) gives score variance with probability ≈ 0.99. One group, the one of highest
    # score variance among the C(16, 14) drawn: its 8 sequences are one step (two groups took 82 s of
    # steps and 20 s of round-start log-probs on the loaded 2-core machine, one 36 s and 14 s).
    config = load_config("examples/local.yaml", [
        f"run_dir={run_dir}", "rounds=1", "task.problem_ids=[HumanEval/23]", "generator.k=16",
        "train.algorithm=iogrpo", "train.num_groups=1", "train.grad_accum_steps=1", "logging.reports=false",
        "executor_llm.backend=openai", f"executor_llm.base_url={executor_llm_url}",
        "executor_llm.shared_limits=never"])
    (summary,) = train(config)

    events = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    trained = [e for e in events if e["event"] == "train"]
    assert trained and trained[0]["groups"] == 1 and trained[0]["algorithm"] == "iogrpo", events[-3:]
    assert (run_dir / "adapters" / "round-1" / "adapter_model.safetensors").is_file()
    assert summary.unit == "groups" and summary.pairs == 1 and "1 groups" in summary.line()
