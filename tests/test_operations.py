"""Operations on the real system (SmolLM2-135M on vLLM, Docker sandboxes, Ray): actors killed
mid-round. Resume after crashes in training and in generation is tests/test_end_to_end.py's two-round
run; resume after real signals is tests/test_cluster_job.py's (`ray job stop`) and tests/test_chaos.py's
(SIGKILL).

The executor LLM is the test session's vLLM server (``executor_llm_url``, as in tests/test_chaos.py),
so the driver starts one vLLM engine, its generator, instead of two: what this proves is the restarts
of the driver's actors, not the hosted server, which tests/flowpo/test_own_task_readme.py trains with
and tests/actors/test_shm_cleanup.py starts and stops."""
import json
import threading
import time
from collections import Counter

import pytest

from flowpo.config import load_config

pytestmark = [pytest.mark.slow, pytest.mark.stack, pytest.mark.docker, pytest.mark.vllm, pytest.mark.ray]


def records(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_killed_actors_restart_and_their_items_are_retried(model_dir, docker_backend, vllm_available, tmp_path,
                                                          executor_llm_url, local_ray):
    ray = local_ray
    from driver.train import train

    run_dir = tmp_path / "run"
    # No training: what is checked is the round's items, and the learner would add 20 s. A server of
    # one's own as the executor LLM needs no key (executor_llm.api_key_env empty).
    config = load_config("examples/local.yaml", [
        f"run_dir={run_dir}", "rounds=1", "task.problem_ids=[HumanEval/23, HumanEval/53]", "generator.k=6",
        "generator.max_inflight_problems=1", "train.num_pairs=0", "executor_llm.backend=openai",
        f"executor_llm.base_url={executor_llm_url}", "executor_llm.shared_limits=never"])
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
