"""The warm learner: one Ray Train worker group for many rounds (gloo on CPU), on a tiny random-weight
model. Its rounds must equal cold rounds, each started from the previous checkpoint on disk
(``train_local``); a worker that dies mid-round must be an error, and the next round restarts from disk."""
import dataclasses
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from flowpo.config import TrainConfig
from flowpo.maths.groups import PromptGroup
from flowpo.maths.pairs import PreferencePair
from trainer.learner import LearnerSettings, train_local
from trainer.warm import Learner, LearnerFailed

pytestmark = pytest.mark.ray

PAIRS = [PreferencePair("a", "Write a workflow:", " return solution.code", " return max(x)", 1.0, 0.0),
         PreferencePair("b", "Q:", " yes", " no no", 0.75, 0.25),
         PreferencePair("c", "Solve it step by step:", " 42", " 41", 1.0, 0.5),
         PreferencePair("d", "R:", " a b", " c", 0.5, 0.0)]
# scores (0, 0, 1, 1) → A = (−1, −1, 1, 1); (0, 1) → A = (−1, 1)
GROUPS = [PromptGroup("a", "Write a workflow:", (" x", " y z", " return 1", " return 2"), (0.0, 0.0, 1.0, 1.0),
                      (-1.0, -1.0, 1.0, 1.0)),
          PromptGroup("b", "Q:", (" no", " yes"), (0.0, 1.0), (-1.0, 1.0))]


def train_section(**overrides) -> TrainConfig:
    values = dict(beta=0.1, epochs=2, learning_rate=1e-2, grad_accum_steps=2, max_seq_len=64, lora_r=4, lora_alpha=8,
                  lora_dropout=0.0, target_modules=["q_proj", "v_proj"], seed=0, use_gpu=False, bf16=False,
                  num_workers=1, cpus_per_worker=1)
    return TrainConfig(**{**values, **overrides})


def round_settings(model, train: TrainConfig, out: Path, round_index: int, start: str = "") -> LearnerSettings:
    """As the driver makes them: from the run's train section, starting from the previous round's checkpoint."""
    return LearnerSettings.for_round(train, base_model=model, out_dir=str(out), init_adapter=start,
                                     round_index=round_index)


def lora(out) -> dict:
    from safetensors.torch import load_file

    return load_file(str(Path(out) / "adapter_model.safetensors"))


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


def same_steps(warm: list[dict], cold: list[dict]) -> None:
    assert [h["step"] for h in warm] == [h["step"] for h in cold]
    for w, c in zip(warm, cold):
        assert w["loss"] == pytest.approx(c["loss"], abs=1e-6)
        assert w["grad_norm"] == pytest.approx(c["grad_norm"], rel=1e-4)


def read_history(out) -> list[dict]:
    import json

    return json.loads((Path(out) / "train_metrics.json").read_text())


def test_two_warm_rounds_equal_two_cold_rounds(tiny_model_dir, ray_local, tmp_path):
    # Score-DPO with the optimizer carried: round 2 continues the in-memory adapter, AdamW moments and
    # step; LoRA dropout on (the same masks both ways)
    train = train_section(carry_optimizer=True, lora_dropout=0.1)
    with Learner(tiny_model_dir, train, storage_dir=tmp_path / "ray") as learner:
        learner.train(PAIRS, round_settings(tiny_model_dir, train, tmp_path / "w1", 1))
        pids = list(learner.pids)
        second = learner.train(PAIRS[::-1], round_settings(tiny_model_dir, train, tmp_path / "w2", 2,
                                                           str(tmp_path / "w1")))
        assert learner.pids == pids and learner.running  # the same worker process trained both rounds
    assert not learner.running  # close ended the workers' loop
    cold1 = train_local(PAIRS, round_settings(tiny_model_dir, train, tmp_path / "c1", 1))
    cold2 = train_local(PAIRS[::-1], round_settings(tiny_model_dir, train, tmp_path / "c2", 2, str(tmp_path / "c1")))
    same_steps(read_history(tmp_path / "w1"), cold1)
    same_steps(read_history(tmp_path / "w2"), cold2)
    assert [h["step"] for h in cold2] == [5, 6, 7, 8] and second["step"] == 8  # the step count continues
    assert max_diff(lora(tmp_path / "w2"), lora(tmp_path / "c2")) < 1e-5
    assert max_diff(lora(tmp_path / "w2"), lora(tmp_path / "w1")) > 1e-4  # round 2 did move the adapter
    first, then = learner.round_times[1], learner.round_times[2]
    assert first["startup_s"] > 0 and then["startup_s"] == 0  # the model was loaded once
    assert {"load_s", "data_s", "reference_s", "steps_s", "save_s", "unpack_s", "wall_s"} <= set(then)
    assert then["wall_s"] >= then["steps_s"] + then["reference_s"]


def test_a_worker_group_started_ahead_holds_the_model_before_its_first_round(tiny_model_dir, ray_local, tmp_path,
                                                                            monkeypatch):
    # The driver starts it as round 1 starts streaming: the round then waits for no start-up.
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    train = train_section()
    with Learner(tiny_model_dir, train, storage_dir=tmp_path / "ray") as learner:
        learner.start()
        assert learner.running and learner.pids == []  # start() did not wait for the workers
        assert learner.ready() > 0 and len(learner.pids) == 1
        # its threads wait passively: they do not spin on cores that other work needs (trainer.warm)
        assert "OMP_WAIT_POLICY=PASSIVE" in Path(f"/proc/{learner.pids[0]}/environ").read_text().split("\0")
        learner.train(PAIRS, round_settings(tiny_model_dir, train, tmp_path / "w1", 1))
    assert learner.round_times[1]["startup_s"] == 0
    assert (tmp_path / "w1" / "adapter_model.safetensors").is_file()


def kill_when_taken(learner: Learner, rank: int) -> threading.Thread:
    """Kill worker ``rank`` once the workers have taken the round from their inboxes (it is training)."""
    def kill():
        while any(inbox.size() for inbox in learner._inboxes):
            time.sleep(0.05)
        time.sleep(0.5)
        os.kill(learner.pids[rank], signal.SIGKILL)

    thread = threading.Thread(target=kill, daemon=True)
    thread.start()
    return thread


def test_two_workers_through_a_small_round_a_killed_worker_and_a_restart_from_disk(tiny_model_dir, ray_local,
                                                                                   tmp_path):
    # ioGRPO, reference "previous": each round's π_ref and π_old are its start, in memory or from disk.
    # Round 2 has one group for two workers: rank 0 trains it alone, and round 3 ships round 2's
    # checkpoint to both. Round 4 loses rank 1 mid-round: rank 0 waits in a collective for it, and
    # the group must be ended, not left hanging; round 4 again starts a new group from disk.
    two = train_section(algorithm="iogrpo", num_workers=2, grad_accum_steps=1)
    one = dataclasses.replace(two, num_workers=1, grad_accum_steps=2)  # 2 workers × 1 = 1 worker × 2 a step
    rounds = [GROUPS, GROUPS[1:], GROUPS, GROUPS[::-1]]
    with Learner(tiny_model_dir, two, storage_dir=tmp_path / "ray") as learner:
        for k, items in enumerate(rounds[:3], start=1):
            start = str(tmp_path / f"w{k - 1}") if k > 1 else ""
            learner.train(items, round_settings(tiny_model_dir, two, tmp_path / f"w{k}", k, start))
        assert [learner.round_times[k]["startup_s"] > 0 for k in (1, 2, 3)] == [True, False, False]
        killed, began = learner.pids[1], time.monotonic()
        thread = kill_when_taken(learner, rank=1)
        long = dataclasses.replace(two, epochs=400)  # long enough to be killed while it trains
        with pytest.raises(LearnerFailed, match="worker group ended in round 4"):
            learner.train(rounds[3], round_settings(tiny_model_dir, long, tmp_path / "w4", 4, str(tmp_path / "w3")))
        thread.join()
        assert time.monotonic() - began < 60 and not learner.running
        learner.train(rounds[3], round_settings(tiny_model_dir, two, tmp_path / "w4", 4, str(tmp_path / "w3")))
        assert killed not in learner.pids and learner.round_times[4]["startup_s"] > 0
    for k, items in enumerate(rounds, start=1):
        start = str(tmp_path / f"c{k - 1}") if k > 1 else ""
        cold = train_local(items, round_settings(tiny_model_dir, one if len(items) == 2 else two,
                                                 tmp_path / f"c{k}", k, start))
        warm = read_history(tmp_path / f"w{k}")
        same_steps(warm, cold)
        assert warm[0]["kl"] == pytest.approx(0, abs=1e-7)
        assert max_diff(lora(tmp_path / f"w{k}"), lora(tmp_path / f"c{k}")) < 1e-5


def test_a_group_killed_with_its_controller_and_cleaner_leaves_no_reservation_behind(tiny_model_dir, ray_local,
                                                                                   tmp_path):
    """Ray's memory monitor killed a worker, Ray Train's controller and its PlacementGroupCleaner at once
    (in CI): the group's placement group outlived all three and held the CPU that the next group needed,
    which then waited for it without end. With the node's other CPU taken, the next round must start its
    group on that CPU, from the checkpoint on disk."""
    import psutil
    import ray

    @ray.remote(num_cpus=1)
    class Hog:
        """Holds the CPU it was given: the node has no room but what a dead worker group leaves."""

        def ready(self) -> bool:
            return True

    train = dataclasses.replace(train_section(), start_timeout_s=90)  # without the fix: a clear error, no hang
    hog = Hog.remote()
    try:
        ray.get(hog.ready.remote())
        with Learner(tiny_model_dir, train, storage_dir=tmp_path / "ray") as learner:
            learner.train(PAIRS, round_settings(tiny_model_dir, train, tmp_path / "w1", 1))
            worker = psutil.Process(learner.pids[0])
            ray_train = ("ray::TrainController", "ray::PlacementGroupCleaner")
            doomed = [worker] + [p for p in worker.parent().children()  # the raylet's workers
                                 if p.cmdline() and p.cmdline()[0].startswith(ray_train)]
            assert len(doomed) == 3, [p.cmdline()[:1] for p in doomed]
            for process in doomed:
                process.kill()
            psutil.wait_procs(doomed, timeout=30)
            deadline = time.monotonic() + 60
            while learner.running:  # fit() has seen its controller die
                assert time.monotonic() < deadline, "the learner's fit() did not end with its controller"
                time.sleep(0.5)
            learner.train(PAIRS, round_settings(tiny_model_dir, train, tmp_path / "w2", 2, str(tmp_path / "w1")))
            assert worker.pid not in learner.pids and learner.round_times[2]["startup_s"] > 0
        assert (tmp_path / "w2" / "adapter_model.safetensors").is_file()
    finally:
        ray.kill(hog)


def test_pi_old_from_an_older_adapter_on_the_workers_equals_the_local_learner(tiny_model_dir, ray_local, tmp_path):
    """Overlapped rounds (pipeline.overlap_rounds): round 3 trains from round 2's adapter on data that
    round 1's wrote, so ioGRPO's π_old is round 1's adapter, shipped to the workers packed. Its first
    step's importance ratio then differs from 1 (π_old is not the start), where a round whose data its
    starting adapter wrote has 1 exactly (no dropout), and the workers compute what the local learner does."""
    train = train_section(algorithm="iogrpo", epsilon=0.2, epochs=1, grad_accum_steps=1)

    def settings(out: str, k: int, start: str = "", data: str | None = None) -> LearnerSettings:
        return LearnerSettings.for_round(train, base_model=tiny_model_dir, out_dir=str(tmp_path / out),
                                         init_adapter=start and str(tmp_path / start), round_index=k,
                                         data_adapter=data if data is None else str(tmp_path / data))

    with Learner(tiny_model_dir, train, storage_dir=tmp_path / "ray") as learner:
        learner.train(GROUPS, settings("w1", 1))
        learner.train(GROUPS, settings("w2", 2, "w1"))
        learner.train(GROUPS, settings("w3", 3, "w2", data="w1"))
    train_local(GROUPS, settings("c1", 1))
    train_local(GROUPS, settings("c2", 2, "c1"))
    train_local(GROUPS, settings("c3", 3, "c2", data="c1"))
    assert settings("w3", 3, "w2", data="w1").old_adapter == str(tmp_path / "w1")
    same_steps(read_history(tmp_path / "w3"), read_history(tmp_path / "c3"))
    assert read_history(tmp_path / "w3")[0]["ratio"] == pytest.approx(read_history(tmp_path / "c3")[0]["ratio"],
                                                                       abs=1e-6)
    assert read_history(tmp_path / "w2")[0]["ratio"] == pytest.approx(1.0, abs=1e-6)
    assert abs(read_history(tmp_path / "w3")[0]["ratio"] - 1.0) > 1e-4


def test_a_round_for_another_model_is_refused(tiny_model_dir, tmp_path):
    train = train_section()
    learner = Learner(tiny_model_dir, train, storage_dir=tmp_path / "ray")
    other = LearnerSettings(train=dataclasses.replace(train, num_workers=2), base_model="other/model")
    with pytest.raises(ValueError, match="train.num_workers: 1 -> 2; base_model: .* -> 'other/model'"):
        learner.train(PAIRS, other)
    assert not learner.running  # refused before anything started


def test_learner_threads_wait_as_the_driver_says_if_it_says(monkeypatch):
    """The workers' threads wait as the driver's environment says where it does (trainer.warm.WAIT_ENVS),
    else passively (test_a_worker_group_started_ahead_holds_the_model_before_its_first_round)."""
    from trainer.warm import worker_env

    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    assert worker_env() == {"OMP_WAIT_POLICY": "ACTIVE"}
    monkeypatch.setenv("GOMP_SPINCOUNT", "1000")
    assert worker_env() == {"OMP_WAIT_POLICY": "ACTIVE", "GOMP_SPINCOUNT": "1000"}
