"""A short chaos run (bench/chaos.py's, in CI): round 1 of examples/local.yaml, 2 problems × 4
workflows, once without faults, then with the same seeds while an executor actor is SIGKILLed, a
sandbox container is `docker kill`ed and the driver is SIGKILLed and resumed (`flowpo train
--resume`), all from outside, as a crash or the OOM killer would. The faulty run must end with every
(round, problem, sample index) once; the fault-free run's workflow, bit for bit, in every slot its
first driver recorded (round 1's come from the base model and the seeds), and in every slot the
resumed driver generated again, the same unless vLLM on CPU took another token in that other batch;
and nothing left behind: no process, sandbox container, /dev/shm entry or flowpo-* temporary
directory of either run.

The executor LLM is the test session's vLLM server (as in tests/test_cluster_job.py) and the round
does not train (no pairs): each driver starts one vLLM engine, its generator, which keeps the test
near 5 minutes on 2 cores. The whole bench, with the learner, the generator and the other faults:
`.venv/bin/python -m bench.chaos`.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from bench.chaos import Runner, check_samples, compare_runs, read_samples
from bench.faults import Fault

pytestmark = [pytest.mark.slow, pytest.mark.stack, pytest.mark.ray, pytest.mark.docker, pytest.mark.vllm]

REPO = Path(__file__).resolve().parents[1]
PROBLEMS = ["HumanEval/23", "HumanEval/53"]
K = 4


def test_a_run_killed_three_ways_ends_as_the_fault_free_run_and_leaves_nothing(
        model_dir, docker_backend, vllm_available, executor_llm_url):
    overrides = ["rounds=1", f"task.problem_ids=[{','.join(PROBLEMS)}]", f"generator.k={K}",
                 "train.num_pairs=0", "logging.reports=false", "logging.tensorboard=false",
                 "executor_llm.backend=openai", f"executor_llm.base_url={executor_llm_url}",
                 "executor_llm.shared_limits=never"]
    root = Path(tempfile.mkdtemp(prefix="fpx-", dir="/tmp"))  # short: Ray's socket paths live under it
    runner = Runner(root, REPO / "examples" / "local.yaml", overrides, env={"OPENAI_API_KEY": "sk-chaos-test"},
                    leg_timeout_s=600, max_legs=4)
    passed = False
    try:
        clean = runner.run("clean")
        assert clean.complete, f"the fault-free run failed: {clean.legs[-1].error}"
        plan = [Fault("executor", after_samples=1), Fault("sandbox", after_samples=2),
                Fault("driver", after_samples=4)]
        chaos = runner.run("chaos", plan)
        clean_samples, chaos_samples = read_samples(Path(clean.run_dir)), read_samples(Path(chaos.run_dir))
        slots = compare_runs(clean_samples, chaos_samples, 1, clean.run_dir, chaos.run_dir,
                             [leg.samples_at_end for leg in chaos.legs])
        faults = [f.record() for f in chaos.faults]
        legs = [(leg.rc, leg.ended_by, leg.error, leg.samples_at_end) for leg in chaos.legs]
        print(f"fault-free run {clean.wall_s:.0f} s; chaos run {chaos.wall_s:.0f} s, drivers {legs}; faults {faults}; "
              f"round 1: {slots[1]['same_workflow']}/{len(clean_samples)} same workflows, "
              f"{slots[1]['written_by_a_resumed_driver']} written by the resumed driver")
        check(clean, chaos, clean_samples, chaos_samples, slots, faults, legs)
        passed = True
    finally:
        if passed:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"runs kept in {root}")


def check(clean, chaos, clean_samples, chaos_samples, slots, faults, legs) -> None:
    assert [f.outcome for f in chaos.faults] == ["injected"] * 3, faults
    assert chaos.complete, legs
    # the driver's kill is the one resume: Ray restarted the executor, the pool replaced the sandbox
    assert [leg.ended_by for leg in chaos.legs] == ["driver fault", ""], legs
    expected = {(1, p, j) for p in PROBLEMS for j in range(K)}
    for samples in (clean_samples, chaos_samples):
        found = check_samples(samples, expected)
        assert found["lost"] == [] and found["duplicated"] == [] and found["extra"] == [], found
    # Every slot the first driver recorded holds the fault-free run's workflow, bit for bit: the executor
    # and sandbox faults hit those items, which were executed again, never generated again.
    differences = slots[1]["differences"]
    first = [d for d in differences if not d["same_workflow"] and not d["chaos"]["driver"]]
    assert first == [], first
    # A slot the resumed driver recorded was generated again, from the same prompt and seed, in another
    # batch (the round's other unfinished slots only): vLLM on CPU can take another token there
    # (docs/usage.md, Reproducibility; seen on this machine: HumanEval/23 #1, where the model
    # repeats `+ len(str(solution.code))` and the fault-free run stopped after 119 characters with
    # `+ 1`). Nothing else may differ.
    again = [d for d in differences if not d["same_workflow"] and d["chaos"]["driver"]]
    flips = "another workflow from the same seed, generated by a resumed driver"
    assert all(d["why"].startswith(flips) for d in again), again
    assert slots[1]["same_workflow"] + len(again) == len(expected), differences

    for run in (clean, chaos):
        left = run.leftovers
        for kind in ("processes", "containers", "shm", "tmp"):
            assert left[kind] == [], f"the {run.name} run left {kind}: {left[kind]}"
