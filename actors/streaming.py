"""The one streaming engine: items flow through stages of Ray actors, each moving on as soon as
its stage finishes. Training rounds, evaluation and the benches all run on it.

What lives here and nowhere else: per-stage queues; a bounded number of items in flight per actor,
each item sent to the least loaded actor (backpressure); items whose actor died sent again, with a
limit per item; items whose actor Ray is restarting tried again a little later without stalling
the other stages; barrier mode (a stage opens only when every earlier one is drained, for
comparison); and the stage clock (busy time and span per stage).

The caller decides what a stage's result means: ``on_result(stage, item, result)`` puts follow-up
items into later stages (or records a finished one).
"""
from __future__ import annotations

import dataclasses
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any, Callable, Hashable

import ray

from flowpo.config import Config
from flowpo.errors import FlowPOError
from flowpo.records import Workflow

MAX_ITEM_RETRIES = 3
RESTART_WAIT_S = 2.0  # between tries of an item whose actor Ray is restarting


class Slots:
    """A set of actors, at most ``limit`` items in flight each; an item goes to the least loaded."""

    def __init__(self, handles: list, limit: int):
        self.load = [0] * len(handles)
        self.handles, self.limit = handles, limit

    def free(self) -> bool:
        return min(self.load, default=self.limit) < self.limit

    def take(self) -> tuple[int, Any]:
        i = min(range(len(self.handles)), key=self.load.__getitem__)  # ties: the first, in order
        if self.load[i] >= self.limit:
            raise RuntimeError("no free actor")  # callers check free() first
        self.load[i] += 1
        return i, self.handles[i]

    def give_back(self, i: int) -> None:
        self.load[i] -= 1


@dataclass(frozen=True)
class Stage:
    """One stage: the actors that serve it (several stages may share one ``Slots``, and so one
    budget per actor) and how one item is sent to one actor."""
    name: str
    slots: Slots
    send: Callable[[Any, Any], Any]  # (actor handle, item) -> ObjectRef


@dataclass
class Faults:
    """Items whose actor died under them (Ray restarts the actor; the item is sent again)."""
    by_stage: Counter = dataclasses.field(default_factory=Counter)
    attempts: Counter = dataclasses.field(default_factory=Counter)  # item key -> failed tries
    restart_waits: Counter = dataclasses.field(default_factory=Counter)  # stage -> tries that met a restarting actor

    def record(self, stage: str, key: Hashable, exc: Exception, advice: str) -> None:
        self.by_stage[stage] += 1
        self.attempts[key] += 1
        if self.attempts[key] > MAX_ITEM_RETRIES:
            raise FlowPOError(
                f"the {stage} stage lost {key} {self.attempts[key]} times (last: {type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:300]}). An actor keeps dying: check the Ray logs "
                f"(/tmp/ray/session_latest/logs){advice}.") from None


@dataclass
class StageClock:
    """Per stage: seconds with at least one item in flight (busy), and the first submit and last
    finish; with the round's wall time these give each stage's utilization."""
    busy: Counter = dataclasses.field(default_factory=Counter)
    first: dict = dataclasses.field(default_factory=dict)
    last: dict = dataclasses.field(default_factory=dict)
    began: float = dataclasses.field(default_factory=time.monotonic)
    _mark: float = dataclasses.field(default_factory=time.monotonic)

    def tick(self, in_flight: Counter) -> None:
        now = time.monotonic()
        for stage, count in in_flight.items():
            if count:
                self.busy[stage] += now - self._mark
        self._mark = now

    def submitted(self, stage: str) -> None:
        self.first.setdefault(stage, time.monotonic() - self.began)

    def finished(self, stage: str) -> None:
        self.last[stage] = time.monotonic() - self.began

    def summary(self) -> dict:
        wall = time.monotonic() - self.began
        return {"wall_s": round(wall, 3), **{f"{stage}_busy_s": round(busy, 3) for stage, busy in self.busy.items()},
                **{f"{stage}_span_s": round(self.last.get(stage, 0) - self.first[stage], 3) for stage in self.first}}


class Stream:
    """Stages in order; ``put`` items, then ``run`` until every queue and actor is empty.

    ``key(stage, item)`` names an item in retry counts and error messages; ``advice`` ends the
    message of an item that keeps losing its actor (e.g. how to resume)."""

    def __init__(self, stages: list[Stage], *, key: Callable[[str, Any], Hashable], barrier: bool = False,
                 advice: str = "", faults: Faults | None = None, clock: StageClock | None = None):
        self.stages = {s.name: s for s in stages}
        self.queues: dict[str, deque] = {s.name: deque() for s in stages}
        self.key, self.barrier, self.advice = key, barrier, advice
        self.faults = faults or Faults()
        self.clock = clock or StageClock()
        self.pending: dict = {}  # ObjectRef -> (stage, slot, item)
        self.waiting: list = []  # (when, stage, item): items whose actor is restarting

    def put(self, stage: str, item: Any) -> None:
        self.queues[stage].append(item)

    def run(self, on_result: Callable[[str, Any, Any], None]) -> None:
        while self.pending or self.waiting or any(self.queues.values()):
            self._release_waiting()
            self._submit_ready()
            if not self.pending:
                time.sleep(max(0.0, min(w[0] for w in self.waiting) - time.monotonic()))
                continue
            ready, _ = ray.wait(list(self.pending), num_returns=1,
                                timeout=RESTART_WAIT_S if self.waiting else None)
            if ready:
                self._finish(ready[0], on_result)

    def _release_waiting(self) -> None:
        now = time.monotonic()
        for _, stage, item in [w for w in self.waiting if w[0] <= now]:
            self.queues[stage].appendleft(item)
        self.waiting = [w for w in self.waiting if w[0] > now]

    def _submit_ready(self) -> None:
        for name, queue in self.queues.items():
            stage = self.stages[name]
            while queue and stage.slots.free() and self._open(name):
                item = queue.popleft()
                slot, handle = stage.slots.take()
                self.pending[stage.send(handle, item)] = (name, slot, item)
                self.clock.submitted(name)

    def _open(self, stage: str) -> bool:
        if not self.barrier:
            return True
        names = list(self.queues)
        earlier = names[:names.index(stage)]
        return not any(self.queues[s] or any(v[0] == s for v in self.pending.values()) for s in earlier)

    def _finish(self, ref, on_result: Callable[[str, Any, Any], None]) -> None:
        self.clock.tick(Counter(v[0] for v in self.pending.values()))
        stage, slot, item = self.pending.pop(ref)
        self.clock.finished(stage)
        self.stages[stage].slots.give_back(slot)
        try:
            result = ray.get(ref)
        except ray.exceptions.ActorUnavailableError as exc:
            # Ray says "unavailable" both for a call sent to an actor it is restarting (not this item's
            # doing) and for a call whose actor died under it (a lost try, counted: an item that kills
            # every actor it meets must not loop forever). Either way, try again after a pause.
            if "is restarting" in str(exc):
                self.faults.restart_waits[stage] += 1
            else:
                self.faults.record(stage, self.key(stage, item), exc, self.advice)
            self.waiting.append((time.monotonic() + RESTART_WAIT_S, stage, item))
            return
        except ray.exceptions.RayActorError as exc:  # it died under this item: Ray restarts it
            self.faults.record(stage, self.key(stage, item), exc, self.advice)
            self.queues[stage].appendleft(item)
            return
        on_result(stage, item, result)


# ---------------------------------------------------------------------------------------------
# The stages of a round, as training and evaluation both run them


def round_stages(actors, config: Config, **send) -> list[Stage]:
    """Generate → dry run → execute → evaluate over the run's actors; dry runs and executions share
    the executors' budget. ``send`` holds each stage's (actor, item) -> ObjectRef."""
    generators = Slots(actors.generators, config.generator.max_inflight_problems)
    executors = Slots(actors.executors, max(1, config.sandbox.sandboxes_per_executor // config.evaluator.repeats))
    # Host-scored tasks (math, QA) have no evaluator sandboxes; a few scorings at once each is plenty.
    evaluators = Slots(actors.evaluators, max(config.evaluator.sandboxes_per_evaluator, 4))
    return [Stage("generate", generators, send["generate"]), Stage("dry_run", executors, send["dry_run"]),
            Stage("execute", executors, send["execute"]), Stage("evaluate", evaluators, send["evaluate"])]


def after_dry_run(workflow: Workflow, failed: str, max_attempts: int) -> tuple[str, Workflow]:
    """Where a workflow goes after its dry run (``failed``: "" or why it failed on the probe
    problem): to execution; back to generation to be written again (ScoreFlow) while attempts
    remain; or to execution marked invalid (it is scored 0 without running)."""
    if not failed:
        return "execute", workflow
    if workflow.attempts < max_attempts:
        return "generate", workflow
    return "execute", dataclasses.replace(workflow, invalid_reason=failed)
