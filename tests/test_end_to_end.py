"""Two real rounds on SmolLM2-135M: vLLM generator actor, Docker sandbox, executor LLM over the
OpenAI HTTP API (a vLLM server in a Ray actor), hidden tests, Score-DPO on Ray Train, and round 2
generated with the round-1 adapter loaded by LoRARequest.

The learner's steps on the real model cost seconds per sequence on 2 CPU cores: the runs train on as
few pairs or groups as still show the point (they are built from the round's samples, a step with
gradient accumulation runs, an adapter is written, loaded and served)."""
import json

import pytest

from flowpo.config import load_config

pytestmark = [pytest.mark.slow, pytest.mark.stack, pytest.mark.docker, pytest.mark.vllm, pytest.mark.ray]

SAMPLE_FIELDS = {"problem_id", "round", "adapter", "workflow", "answer", "score", "failure", "timings"}


def test_two_rounds_end_to_end(model_dir, docker_backend, vllm_available, tmp_path):
    import ray

    from driver.train import train

    run_dir = tmp_path / "run"
    # The example config on its easiest problem (strlen): about a quarter of the generated workflows
    # pass there, so 16 samples hold a pass and a failure (a pair) with probability ≈ 0.99. Two pairs:
    # one optimizer step that accumulates two micro-batches.
    config = load_config("examples/local.yaml", [
        f"run_dir={run_dir}", "task.problem_ids=[HumanEval/23]", "generator.k=16", "train.num_pairs=2",
        "train.grad_accum_steps=2"])
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        summaries = train(config)
    finally:
        ray.shutdown()

    assert (run_dir / "config.yaml").is_file()
    samples = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    events = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert all(SAMPLE_FIELDS <= set(s) for s in samples)
    per_round = config.generator.k * len(config.task.problem_ids)
    assert [sum(s["round"] == r for s in samples) for r in (1, 2)] == [per_round, per_round]
    # every stage produced records: generated code, executions with LLM calls, scores
    assert any(s["workflow"].startswith("class Workflow") for s in samples)
    assert any(s["usage"]["llm_calls"] > 0 for s in samples)
    assert all(s["score"] in (0.0, 1.0) for s in samples if s["score"] is not None)

    trained = [e for e in events if e["event"] == "train"]
    assert trained and trained[0]["round"] == 1, "round 1 found no pair; nothing to check round 2 against"
    assert (run_dir / "adapters" / "round-1" / "adapter_model.safetensors").is_file()
    assert {s["adapter"] for s in samples if s["round"] == 1} == {"base"}
    assert {s["adapter"] for s in samples if s["round"] == 2} == {"round-1"}
    probe = next(e for e in events if e["event"] == "adapter_loaded" and e["round"] == 1)
    assert abs(probe["probe_logprob_adapter"] - probe["probe_logprob_base"]) > 1e-4
    assert [s.round for s in summaries] == [1, 2]


def test_iogrpo_trains_on_the_local_config(model_dir, docker_backend, vllm_available, executor_llm_url, tmp_path):
    """SPOGW's ioGRPO on the local example as a user would run it (`train.algorithm=iogrpo`, group
    sizes derived from k): one round forms sharpened groups and trains an adapter on them. The executor
    LLM is the test session's vLLM server (the hosted one is the test above's): one engine start less."""
    import ray

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
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        (summary,) = train(config)
    finally:
        ray.shutdown()

    events = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    trained = [e for e in events if e["event"] == "train"]
    assert trained and trained[0]["groups"] == 1 and trained[0]["algorithm"] == "iogrpo", events[-3:]
    assert (run_dir / "adapters" / "round-1" / "adapter_model.safetensors").is_file()
    assert summary.unit == "groups" and summary.pairs == 1 and "1 groups" in summary.line()
