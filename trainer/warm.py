"""The learner on Ray Train, warm: one TorchTrainer for the run, whose workers train round after round.

Every worker loads the base model once and then waits on its inbox (a ``ray.util.queue.Queue``) for
the next round: its settings, and the round's items and (when the workers must load it) the packed
start checkpoint, both as object-store references. It trains with DDP (gloo on CPU, nccl on GPU) on
its shard; rank 0 saves the checkpoint in its node's temporary space, puts it packed in the object
store and its reference in the outbox; the driver writes it into ``out_dir`` on its own node. The
adapter and optimizer state stay in the workers' memory: the next round that starts from this
round's checkpoint continues from memory, anything else (the first round of a resumed run, a round
after a failure) is shipped from disk. ``None`` in the inboxes ends the loop and ``fit`` returns.

``fit`` blocks, so it runs on a thread of the driver; the driver polls the outbox with a timeout and
checks that thread, so a worker group that dies mid-round is an error, never a hang.
"""
from __future__ import annotations

import dataclasses
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from flowpo.config import TrainConfig
from flowpo.errors import FlowPOError
from trainer.checkpoint import pack, remove, unpack, unpack_local
from trainer.learner import (
    OLD_IS_BASE,
    LearnerSettings,
    Policy,
    equal_shards,
    prepare_round,
    read_old_weights,
    save_round,
    train_round,
)

POLL_S = 1.0  # how often the driver checks the worker group while it waits for a reply

# A worker computes on every core of its node (worker_loop), and torch's OpenMP threads (libgomp)
# spin up to 300,000 times while they wait for one another. Whatever else computes on the node (the
# engines, the sandboxes, another job) keeps one of them off the cores in many parallel steps, and the
# others burn their cores spinning for it. Passive waiting: beside two busy actors on a 2-core machine,
# the learner's round took 1.94x less time and 2.25x less CPU; alone it took 1.22x more in that run
# (bench/results/learner-threads/). 50,000 spins took as long as the default both ways. A driver whose
# environment sets OMP_WAIT_POLICY or GOMP_SPINCOUNT (GOMP_SPINCOUNT=300000 is libgomp's default) has
# its own setting passed on instead.
WAIT_ENVS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


def worker_resources(train: TrainConfig) -> dict[str, float]:
    """What one Ray Train worker reserves. ``train.resources`` pins workers to nodes, as
    generator.resources does the replicas: a model directory is read on the worker's own node, and a
    CPU-only executor node may not hold it."""
    return {"CPU": train.cpus_per_worker, **({"GPU": 1} if train.use_gpu else {}), **train.resources}


class LearnerFailed(FlowPOError):
    """The learner's worker group ended: a worker died or raised. The next ``train`` starts a new
    group from the checkpoints on disk."""


@dataclasses.dataclass(frozen=True)
class Work:
    """One round, as every worker's inbox receives it."""
    settings: LearnerSettings
    items: Any  # ObjectRef of the round's items (PreferencePair or PromptGroup), all workers' shards
    start: Any  # ObjectRef of the packed start checkpoint, or None: the adapter in memory, or a fresh LoRA
    old: Any  # ObjectRef of the packed adapter that wrote the round's data, where π_old is not the start
    world: int  # the ranks that train this round: all, or 1 when there are fewer items than workers
    warm: bool  # continue from the adapter in memory (the previous round's result)


@dataclasses.dataclass(frozen=True)
class Ready:
    rank: int
    pid: int
    load_s: float  # loading the tokenizer and the base model
    placement_group: Any = None  # the worker group's, as the worker sees it (None outside one)


@dataclasses.dataclass(frozen=True)
class Done:
    checkpoint: Any  # ObjectRef of the packed checkpoint
    history: list  # one record per optimizer step
    times: dict  # rank 0's seconds: load_s, data_s, reference_s, steps_s, save_s


class Worker:
    """One Ray Train worker's rounds on the policy it keeps."""

    def __init__(self, policy: Policy, rank: int):
        self.policy, self.rank = policy, rank
        self.model = None  # the policy's scorer wrapped by DDP; a new one for a new policy

    def round(self, work: Work) -> Done | None:
        import ray

        if self.rank >= work.world:  # fewer items than workers: rank 0 trains them all
            self.model = None  # and this copy is stale: the next round ships the start to every worker
            return None
        times: dict = {}
        began = time.perf_counter()
        s = work.settings
        if work.warm:
            self.policy.carry_on(s)
        else:
            start_dir = str(unpack_local(ray.get(work.start), "flowpo-learner-start-")) if work.start else ""
            try:
                self.policy.start(s, start_dir)
            finally:
                if start_dir:
                    remove(start_dir)  # loaded: the policy and optimizer hold it now
            self.model = None
        times["load_s"] = time.perf_counter() - began
        items = ray.get(work.items)
        mbs = prepare_round(self.policy, s, items, rank=self.rank, world=work.world, times=times,
                            old_weights=self._old_weights(work))
        history = train_round(self.policy, s, self._model(s, work.world), mbs, world=work.world, times=times)
        if self.rank != 0:
            return None
        began = time.perf_counter()
        out = tempfile.mkdtemp(prefix="flowpo-learner-out-")
        try:
            save_round(self.policy, s, out, items, history, work.world)
            checkpoint = ray.put(pack(out))
        finally:
            remove(out)  # shipped: nothing of the round stays on this node
        times["save_s"] = time.perf_counter() - began
        return Done(checkpoint, history, times)

    def _old_weights(self, work: Work):
        """π_old (trainer.learner.read_old_weights), from this node's copy of the adapter that wrote the
        round's data where it is shipped."""
        import ray

        if work.old is None:
            return read_old_weights(work.settings, "", self.policy.device)
        old_dir = unpack_local(ray.get(work.old), "flowpo-learner-old-")
        try:
            return read_old_weights(work.settings, str(old_dir), self.policy.device)
        finally:
            remove(old_dir)

    def _model(self, s: LearnerSettings, world: int):
        import ray.train.torch

        from trainer.batching import CompletionScorer

        if world > 1 and self.model is not None:
            return self.model  # the same policy as the last round's: DDP's replicas are still in step
        scorer = CompletionScorer(self.policy.policy, share_prompt=s.train.share_prompt)
        if world == 1:
            self.model = None  # a DDP wrapper left from a larger round must not hook this round's backward
            return scorer
        self.model = ray.train.torch.prepare_model(scorer)  # broadcasts rank 0's weights to every replica
        return self.model


def worker_loop(config: dict) -> None:
    """Runs on every Ray Train worker: load the model, say so, then one round per inbox message."""
    import ray.train
    import ray.train.torch
    import torch

    context = ray.train.get_context()
    rank = context.get_world_rank()
    if not config["use_gpu"]:
        # Ray pins OMP threads to the reserved (often fractional) CPUs; share this node's cores instead.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // context.get_local_world_size()))
    began = time.perf_counter()
    worker = Worker(Policy(config["base_model"], bf16=config["bf16"], device=ray.train.torch.get_device()), rank)
    config["outbox"].put(Ready(rank, os.getpid(), time.perf_counter() - began,
                               ray.util.get_current_placement_group()))
    inbox = config["inboxes"][rank]
    while (work := inbox.get()) is not None:
        done = worker.round(work)
        if done is not None:
            config["outbox"].put(done)
        worker.policy.release()


def worker_env() -> dict[str, str]:
    """What the workers' environment gets before torch loads OpenMP (see WAIT_ENVS)."""
    return {k: os.environ[k] for k in WAIT_ENVS if os.environ.get(k)} or {"OMP_WAIT_POLICY": "PASSIVE"}


class Learner:
    """The driver's handle on the warm learner: ``train`` one round after another on one worker group
    (started by the first round), ``close`` at the end of the run. ``round_times`` holds each round's
    seconds by round index (``startup_s``, ``submit_s``, ``load_s``, ``data_s``, ``reference_s``,
    ``steps_s``, ``save_s``, ``unpack_s``, ``wall_s``)."""

    def __init__(self, base_model: str, train: TrainConfig, *, storage_dir: str | Path, name: str = "learner"):
        self.base_model, self.train_config = base_model, train
        # Ray Train's run storage: only its own run records land there (no checkpoint is reported).
        self.storage_dir, self.name = Path(storage_dir).resolve(), name
        self.round_times: dict[int, dict] = {}
        self.pids: list[int] = []  # the workers' processes, by rank
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._inboxes: list = []
        self._outbox = None
        self._in_memory = ""  # the out_dir whose adapter and optimizer state every worker holds
        self._starts = 0
        self._placement_groups: list = []  # the worker groups' reservations, as their workers reported them

    def __enter__(self) -> "Learner":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def train(self, items: list, settings: LearnerSettings) -> dict:
        """Fit one round (items: PreferencePair or PromptGroup) from ``settings.start`` and write its
        checkpoint into ``settings.out_dir``; the last step's metrics (and the first loss)."""
        import ray

        self._check(settings)
        began = time.perf_counter()
        times = {"startup_s": self.ready()}
        mark = time.perf_counter()
        items, world = equal_shards(items, self.train_config.num_workers)
        warm = bool(settings.start) and settings.start == self._in_memory
        start = ray.put(pack(settings.start)) if settings.start and not warm else None
        shipped_old = settings.old_adapter and settings.old_adapter != OLD_IS_BASE
        old = ray.put(pack(settings.old_adapter)) if shipped_old else None
        work = Work(settings, ray.put(items), start, old, world, warm)
        self._in_memory = ""  # until this round's result is back
        for inbox in self._inboxes:
            inbox.put(work)
        times["submit_s"] = time.perf_counter() - mark
        done: Done = self._receive(f"in round {settings.round_index}")
        mark = time.perf_counter()
        unpack(ray.get(done.checkpoint), settings.out_dir)
        times.update(done.times, unpack_s=time.perf_counter() - mark)
        if world == self.train_config.num_workers:
            self._in_memory = settings.out_dir
        times["wall_s"] = time.perf_counter() - began
        self.round_times[settings.round_index] = times
        history = done.history
        return {**history[-1], "first_loss": history[0]["loss"]} if history else {}

    def close(self, timeout_s: float = 60) -> None:
        """End the workers' loop (``fit`` returns), then remove the queues."""
        import ray

        if self._thread is None:
            return
        if self._thread.is_alive():
            try:
                for inbox in self._inboxes:
                    inbox.put(None)
                self._thread.join(timeout_s)
            except ray.exceptions.RayActorError as exc:
                print(f"warning: learner: an inbox is gone ({exc}); removing the queues ends the worker group")
        self._close_queues()  # a worker still waiting then fails on its inbox, which ends the group
        self._thread.join(timeout_s)
        self._thread = None

    def _check(self, settings: LearnerSettings) -> None:
        """The worker group is built for one model and these train fields: a round must match them."""
        fixed = ("num_workers", "cpus_per_worker", "use_gpu", "bf16")
        mine, theirs = self.train_config, settings.train
        changed = [f"train.{f}: {getattr(mine, f)!r} -> {getattr(theirs, f)!r}" for f in fixed
                   if getattr(mine, f) != getattr(theirs, f)]
        if settings.base_model != self.base_model:
            changed.append(f"base_model: {self.base_model!r} -> {settings.base_model!r}")
        if changed:
            raise ValueError(f"learner: round {settings.round_index} does not fit the running learner "
                             f"({'; '.join(changed)}); start a new Learner for it")

    def start(self) -> None:
        """Start the worker group now and return at once: its start-up (Ray Train's workers, and the
        model's load on each) then overlaps whatever the driver does next, such as round 1's streaming;
        the first ``train`` waits only for what is left of it."""
        if not self.running:
            self._launch()

    def ready(self) -> float:
        """Start the worker group unless it runs, and wait until every worker has loaded the model;
        the seconds this waited (0 for a group that was ready)."""
        if self.running and self.pids:
            return 0.0
        began = time.perf_counter()
        if self._thread is not None and not self.running and not self.pids:
            cause = f"{type(self._error).__name__}: {self._error}" if self._error else "without an error"
            print(f"warning: learner: the worker group started ahead ended before it was ready ({cause}); "
                  "starting another")
        if not self.running:
            self._launch()
        if not self.pids:
            deadline = time.monotonic() + self.train_config.start_timeout_s
            ready = sorted((self._receive("while starting", deadline) for _ in range(self.train_config.num_workers)),
                           key=lambda r: r.rank)
            self.pids = [r.pid for r in ready]
            self._placement_groups += [r.placement_group for r in ready[:1] if r.placement_group is not None]
        return time.perf_counter() - began

    def _launch(self) -> None:
        """Start the worker group on a thread of its own; its workers say Ready once they hold the model."""
        from ray.train import FailureConfig, RunConfig, ScalingConfig
        from ray.train.torch import TorchTrainer
        from ray.util.queue import Queue

        self.close()
        self._release_placement_groups()
        t = self.train_config
        self.pids = []
        no_cpu = {"num_cpus": 0}  # a queue is a small actor that mostly waits
        self._inboxes = [Queue(actor_options=no_cpu) for _ in range(t.num_workers)]
        self._outbox = Queue(actor_options=no_cpu)
        self._starts += 1
        resources = worker_resources(t)
        trainer = TorchTrainer(
            worker_loop,
            train_loop_config={"base_model": self.base_model, "bf16": t.bf16, "use_gpu": t.use_gpu,
                               "inboxes": self._inboxes, "outbox": self._outbox},
            scaling_config=ScalingConfig(num_workers=t.num_workers, use_gpu=t.use_gpu, resources_per_worker=resources),
            # No retries: a restarted group would wait for rounds already handed to the dead one;
            # the next ``train`` starts a new group from disk instead.
            run_config=RunConfig(storage_path=str(self.storage_dir), failure_config=FailureConfig(max_failures=0),
                                 name=f"{self.name}-{time.strftime('%Y%m%d-%H%M%S')}-{self._starts}",
                                 worker_runtime_env={"env_vars": worker_env()}))
        self._error, self._in_memory = None, ""
        self._thread = threading.Thread(target=self._fit, args=(trainer,), name=f"{self.name}-fit", daemon=True)
        self._thread.start()

    def _fit(self, trainer) -> None:
        try:
            trainer.fit()
        except BaseException as exc:  # noqa: BLE001 - handed to the driver's thread by _receive
            self._error = exc

    def _receive(self, when: str, deadline: float = float("inf")):
        """The next message from the workers; LearnerFailed as soon as the worker group has ended, or
        once ``deadline`` (time.monotonic) has passed: Ray Train waits without end for resources it
        cannot reserve."""
        import ray
        from ray.util.queue import Empty

        while True:
            try:
                return self._outbox.get(timeout=POLL_S)
            except Empty:
                if not self._thread.is_alive():
                    raise self._failure(when) from self._error
                if time.monotonic() > deadline:
                    raise LearnerFailed(
                        f"learner: the Ray Train worker group did not start within train.start_timeout_s = "
                        f"{self.train_config.start_timeout_s:.0f} s: no node could hold its workers' "
                        f"{worker_resources(self.train_config)} (`ray status` shows what is taken). The rounds "
                        "trained before are saved in the run directory; `flowpo train --resume RUN_DIR` continues "
                        "the run once the cluster has room.") from None
            except ray.exceptions.RayActorError as exc:  # the queue itself is gone
                raise self._failure(when) from exc

    def _failure(self, when: str) -> LearnerFailed:
        cause = f"{type(self._error).__name__}: {self._error}" if self._error else "it stopped without an error"
        return LearnerFailed(
            f"learner: the Ray Train worker group ended {when} ({cause}). The rounds trained before are "
            "saved in the run directory: the next round starts a new worker group from the last one, and "
            "`flowpo train --resume RUN_DIR` continues a run that stopped here.")

    def _release_placement_groups(self) -> None:
        """Remove what earlier worker groups still reserve. Ray Train removes a group's placement group
        when the group ends, or, should its controller die (Ray's memory monitor kills it with the
        workers), its PlacementGroupCleaner does, unless that died too: the reservation then outlives
        them, and the next group waits for the CPUs it holds, forever (seen in CI)."""
        import ray

        for group in self._placement_groups:
            if ray.util.placement_group_table(group).get("state", "REMOVED") != "REMOVED":
                print(f"warning: learner: removing the placement group {group.id.hex()} that the ended worker "
                      "group still held")
                ray.util.remove_placement_group(group)
        self._placement_groups = []

    def _close_queues(self) -> None:
        for queue in [*self._inboxes, *([self._outbox] if self._outbox is not None else [])]:
            queue.shutdown(force=True)
        self._inboxes, self._outbox = [], None


def train_adapter(items: list, settings: LearnerSettings, *, storage_dir: str | Path, name: str = "learner") -> dict:
    """One round on a worker group of its own, started and stopped around it (what every round did
    before the warm learner): for tests, and for the benchmark's cold side."""
    with Learner(settings.base_model, settings.train, storage_dir=storage_dir, name=name) as learner:
        return learner.train(items, settings)
