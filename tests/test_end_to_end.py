"""Two real rounds on SmolLM2-135M: vLLM generator actor, Docker sandbox, the executor LLM over the
OpenAI HTTP API (the test session's vLLM server; the hosted one, started by the run, trains in
tests/flowpo/test_own_task_readme.py), hidden tests, Score-DPO on Ray Train, and round 2 generated
with the round-1 adapter loaded by LoRARequest. The two-round run is also the resume test: it dies in
round 1's training step and again as round 2 starts generating, and is resumed each time, as a
user resumes with `flowpo train --resume RUN_DIR`. The last resume switches the algorithm, as
`flowpo train --resume RUN_DIR train.algorithm=iogrpo` does: round 1 trained with Score-DPO, round 2
trains with SPOGW's ioGRPO, whose π_old is then the round-1 adapter that wrote the round. In round 2
that driver's actors are killed (`ray.kill`, restarted by Ray): the generator as the round starts, the
executor and the evaluator once its first sample is scored. The items they held are sent again and
counted, and the restarted generator writes the round with the round-1 adapter.

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
import shutil
import threading
import time
from collections import Counter

import pytest

from driver.runlog import RunLog
from flowpo.config import load_config
from tests.conftest import ray_of_its_own

pytestmark = [pytest.mark.slow, pytest.mark.stack, pytest.mark.docker, pytest.mark.vllm, pytest.mark.ray]

SAMPLE_FIELDS = {"problem_id", "round", "adapter", "workflow", "answer", "score", "failure", "timings"}


class Crash(Exception):
    """The injected crash."""


def records(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


E2E_OVERRIDES = ["task.problem_ids=[HumanEval/23]", "generator.k=16", "train.num_pairs=2", "train.grad_accum_steps=2",
                 "executor_llm.backend=openai", "executor_llm.shared_limits=never"]


@pytest.fixture(scope="module")
def scored_round(model_dir, docker_backend, vllm_available, executor_llm_url, tmp_path_factory):
    """A run of the local example that scored round 1's samples and died in the training step. The
    two-round test resumes a copy of it (the run directory moved, as a user may move one). Returns the
    run directory and its samples."""
    import driver.train
    from driver.train import train

    run_dir = tmp_path_factory.mktemp("scored") / "run"
    # The example config on its easiest problem (strlen): about a quarter of the generated workflows
    # pass there, so 16 samples hold a pass and a failure (a pair) with probability ≈ 0.99. Two pairs:
    # one optimizer step that accumulates two micro-batches. A server of one's own as the executor LLM
    # needs no key (executor_llm.api_key_env empty).
    config = load_config("examples/local.yaml", [f"run_dir={run_dir}", *E2E_OVERRIDES,
                                                 f"executor_llm.base_url={executor_llm_url}"])

    def train_then_crash(*args, **kwargs):
        raise Crash("during training")

    with ray_of_its_own() as ray, pytest.MonkeyPatch.context() as patch:
        ray.init(num_cpus=2, include_dashboard=False)
        patch.setattr(driver.train, "train_round", train_then_crash)
        with pytest.raises(Crash):
            train(config)
    samples = records(run_dir / "samples.jsonl")
    assert len(samples) == config.generator.k, "round 1 was not scored whole before the training step"
    return run_dir, samples


def test_two_rounds_end_to_end_resumed_after_crashes_in_training_and_generation(
        scored_round, executor_llm_url, tmp_path, monkeypatch, local_ray):
    from driver.train import train

    # 1. Training: the run scored round 1's samples, then died in the training step (``scored_round``).
    run_dir, after_first = tmp_path / "run", scored_round[1]
    shutil.copytree(scored_round[0], run_dir)
    config = load_config("examples/local.yaml", [f"run_dir={run_dir}", *E2E_OVERRIDES,
                                                 f"executor_llm.base_url={executor_llm_url}"])
    per_round = config.generator.k * len(config.task.problem_ids)
    original_event = RunLog.event

    # 2. Generation: the resumed run trains round 1 this time; it dies as round 2 starts generating.
    def event_then_crash(self, event, **fields):
        original_event(self, event, **fields)
        if event == "round_start" and fields.get("round") == 2:
            raise Crash("during generation")

    monkeypatch.setattr(RunLog, "event", event_then_crash)
    with pytest.raises(Crash):
        train(config, resume=True)
    monkeypatch.setattr(RunLog, "event", original_event)

    # 3. The last resume completes the run with ioGRPO, while its actors are killed in round 2. The run's
    # own config, then the overrides, as `flowpo train --resume RUN_DIR train.algorithm=iogrpo` reads
    # them (run_dir: the directory was moved). Group sizes derive from k = 16: groups of n = 14,
    # sharpened to 4 + 4; one group, the one of highest score variance, is one step of 8 sequences.
    iogrpo = load_config(run_dir / "config.yaml", [f"run_dir={run_dir}", "train.algorithm=iogrpo",
                                                    "train.num_groups=1", "train.grad_accum_steps=1"])
    killed = []
    saboteur = threading.Thread(target=kill_actors_in_round_two, args=(local_ray, run_dir, per_round, killed),
                                daemon=True)
    saboteur.start()
    summaries = train(iogrpo, resume=True)
    saboteur.join(10)
    assert [s.round for s in summaries] == [2]
    assert killed == ["generator", "executor", "evaluator"]

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

    trained = {r: [e for e in events if e["event"] in ("train", "train_skipped") and e["round"] == r] for r in (1, 2)}
    assert [e["event"] for e in trained[1]] == ["train"], "round 1 trained twice, never, or found no pair"
    assert trained[1][0]["algorithm"] == "score_dpo", trained[1]
    assert [(e["event"], e.get("algorithm"), e.get("groups")) for e in trained[2]] == [("train", "iogrpo", 1)], \
        trained[2]
    # π_old is the adapter the round starts from (round-1), the one that wrote round 2's workflows
    assert trained[2][0]["old_policy"] == "start" and trained[2][0]["adapter"].endswith("round-2"), trained[2]
    assert summaries[0].unit == "groups" and summaries[0].pairs == 1 and "1 groups" in summaries[0].line()
    for r in (1, 2):
        assert (run_dir / "adapters" / f"round-{r}" / "adapter_model.safetensors").is_file()
    assert {s["adapter"] for s in samples if s["round"] == 1} == {"base"}
    assert {s["adapter"] for s in samples if s["round"] == 2} == {"round-1"}
    probe = next(e for e in events if e["event"] == "adapter_loaded" and e["round"] == 1)
    assert abs(probe["probe_logprob_adapter"] - probe["probe_logprob_base"]) > 1e-4
    assert [e["round"] for e in events if e["event"] == "round_end"] == [1, 2]
    # The generator and the executor had work in flight when they died: it was sent again, and counted —
    # as lost with its actor, or as met with an actor Ray was restarting (which one is Ray's timing).
    round_end = next(e for e in events if e["event"] == "round_end" and e["round"] == 2)
    resent = Counter(round_end["actor_failures"]) + Counter(round_end["restart_waits"])
    assert resent["generate"] >= 1 and resent["execute"] >= 1, round_end
    assert round_end["retried_items"] == sum(round_end["actor_failures"].values())


def kill_actors_in_round_two(ray, run_dir, per_round: int, killed: list) -> None:
    """The last driver's generator 1 s after its round 2 starts (generating), then its executor and
    evaluator, 1 s apart, once round 2's first sample is recorded; each left to Ray to restart
    (``no_restart=False``), as a crash of each would."""
    def wait_for(ready) -> None:
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline and not ready():
            time.sleep(0.2)

    def round_two_starts() -> int:  # the driver that crashed as round 2 started logged one already
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
        return sum('"event": "round_start"' in line and '"round": 2,' in line for line in lines)

    def kill(role: str) -> None:
        name = next(n for n in ray.util.list_named_actors() if f"-{role}-" in n)
        ray.kill(ray.get_actor(name), no_restart=False)
        killed.append(role)
        time.sleep(1.0)

    wait_for(lambda: round_two_starts() == 2)
    time.sleep(1.0)
    kill("generator")
    wait_for(lambda: (run_dir / "samples.jsonl").read_text().count("\n") > per_round)
    kill("executor")
    kill("evaluator")

