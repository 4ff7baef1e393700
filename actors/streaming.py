"""The one streaming engine: items flow through stages of Ray actors, each moving on as soon as
its stage finishes. Training rounds, evaluation and the benches all run on it.

What lives here and nowhere else: per-stage queues; a bounded number of items in flight per actor,
each item sent to the least loaded actor (backpressure); items whose actor died sent again, with a
limit per item; items whose actor Ray is restarting tried again a little later without stalling
the other stages; actors that stop answering (a lost node) left out, and the run stopped with a
clear message when a stage has no actor left for longer than its timeout; barrier mode (a stage
opens only when every earlier one is drained, for comparison); and the stage clock (busy time and span per stage).

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

from actors.launch import actor_name
from flowpo.config import Config
from flowpo.errors import FlowPOError
from flowpo.records import Workflow

MAX_ITEM_RETRIES = 3
RESTART_WAIT_S = 2.0  # between tries of an item whose actor Ray is restarting
PROBE_EVERY_S = 5.0  # how often each actor is asked whether it is up (one tiny call)


def restarting(exc: Exception) -> bool:
    """Ray's "unavailable" for a call sent to an actor that it is restarting (not the call's doing),
    as against one for a call whose actor died under it."""
    return isinstance(exc, ray.exceptions.ActorUnavailableError) and "is restarting" in str(exc)


def get_through_restarts(call: Callable[[], Any], timeout_s: float, retries: int = MAX_ITEM_RETRIES) -> Any:
    """``ray.get(call())`` for a call that may be repeated: made again while Ray restarts its actor
    (for ``timeout_s`` at most) and after the actor died under it (``retries`` times at most, as an
    item: a call that kills every actor it meets must not loop forever). An actor Ray will not
    restart raises."""
    deaths, deadline = 0, time.monotonic() + timeout_s
    while True:
        try:
            return ray.get(call())
        except ray.exceptions.ActorUnavailableError as exc:
            if not restarting(exc):
                deaths += 1
            if deaths > retries or time.monotonic() > deadline:
                raise
            time.sleep(RESTART_WAIT_S)


class Slots:
    """A set of actors, at most ``limit`` items in flight each; an item goes to the least loaded of
    those that are up (``down``: its last call or probe failed; it gets nothing until it answers)."""

    def __init__(self, handles: list, limit: int, names: list[str] | None = None):
        self.load = [0] * len(handles)
        self.handles, self.limit = handles, limit
        self.names = names or [f"actor {i}" for i in range(len(handles))]
        self.down: set[int] = set()

    def up(self) -> list[int]:
        return [i for i in range(len(self.handles)) if i not in self.down]

    def free(self) -> bool:
        return any(self.load[i] < self.limit for i in self.up())

    def take(self) -> tuple[int, Any]:
        i = min(self.up(), key=self.load.__getitem__, default=None)  # ties: the first, in order
        if i is None or self.load[i] >= self.limit:
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
    # Called with ("actor_failure" or "restart_wait", stage) as each happens: the driver writes them
    # to its run log, so that a round's counts survive the driver's own death (driver/resume.py).
    notify: Callable[[str, str], None] | None = None

    def count(self, stage: str) -> None:
        """An actor of ``stage`` died under work that is being done again."""
        self.by_stage[stage] += 1
        if self.notify:
            self.notify("actor_failure", stage)

    def record(self, stage: str, key: Hashable, exc: Exception, advice: str) -> None:
        self.count(stage)
        self.attempts[key] += 1
        if self.attempts[key] > MAX_ITEM_RETRIES:
            raise FlowPOError(
                f"the {stage} stage lost {key} {self.attempts[key]} times (last: {type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:300]}). An actor keeps dying: check the Ray logs "
                f"(/tmp/ray/session_latest/logs){advice}.") from None


class Health:
    """Which actors answer. Each is probed every ``PROBE_EVERY_S`` with Ray's own ``__ray_ready__``
    (served beside its work: every actor keeps spare concurrency). A failed call or probe marks an
    actor down (it gets no items until a probe answers); one down, or with a probe unanswered, for
    ``timeout_s`` is lost: its node is gone, or the cluster has no room to restart it."""

    def __init__(self, slot_sets: list[Slots], timeout_s: float):
        self.sets, self.timeout_s = slot_sets, timeout_s
        self.silent_since: dict = {(s, i): None for s in slot_sets for i in range(len(s.handles))}
        self.probes: dict = {}  # ObjectRef -> ((slots, index), sent at)
        self.asked = self.looked = -PROBE_EVERY_S

    def mark_down(self, slots: Slots, i: int) -> None:
        slots.down.add(i)
        if self.silent_since[(slots, i)] is None:
            self.silent_since[(slots, i)] = time.monotonic()

    def check(self) -> list[tuple[Slots, int]]:
        """Read answered probes, send due ones; the actors silent for longer than the timeout."""
        now = time.monotonic()
        if now - self.looked < 0.5:  # the loop runs per finished item: thousands a second at scale
            return []
        self.looked = now
        done, _ = ray.wait(list(self.probes), num_returns=len(self.probes), timeout=0) if self.probes else ([], [])
        for ref in done:
            (slots, i), _ = self.probes.pop(ref)
            try:
                ray.get(ref)
            except ray.exceptions.RayError:
                self.mark_down(slots, i)
                continue
            self.silent_since[(slots, i)] = None
            slots.down.discard(i)
        if now - self.asked >= PROBE_EVERY_S:
            self.asked, asking = now, {key for key, _ in self.probes.values()}
            for slots, i in self.silent_since:
                if (slots, i) not in asking:
                    self.probes[slots.handles[i].__ray_ready__.remote()] = ((slots, i), now)
        unanswered = [key for key, sent in self.probes.values() if now - sent > self.timeout_s]
        silent = [key for key, since in self.silent_since.items() if since is not None and now - since > self.timeout_s]
        return list(dict.fromkeys(unanswered + silent))


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
    message of an item that keeps losing its actor, or of a stage left without actors (e.g. how to
    resume). An actor silent for ``actor_timeout_s`` is given up: its items go to the others, and
    when a stage has no actor left the run stops."""

    def __init__(self, stages: list[Stage], *, key: Callable[[str, Any], Hashable], barrier: bool = False,
                 advice: str = "", faults: Faults | None = None, clock: StageClock | None = None,
                 actor_timeout_s: float = 600.0):
        self.stages = {s.name: s for s in stages}
        self.queues: dict[str, deque] = {s.name: deque() for s in stages}
        self.key, self.barrier, self.advice = key, barrier, advice
        self.faults = faults or Faults()
        self.clock = clock or StageClock()
        self.health = Health(list({id(s.slots): s.slots for s in stages}.values()), actor_timeout_s)
        self.pending: dict = {}  # ObjectRef -> (stage, slot, item)
        self.waiting: list = []  # (when, stage, item): items whose actor is restarting

    def put(self, stage: str, item: Any) -> None:
        self.queues[stage].append(item)

    def run(self, on_result: Callable[[str, Any, Any], None]) -> None:
        while self.pending or self.waiting or any(self.queues.values()):
            self._release_waiting()
            self._give_up(self.health.check())
            self._submit_ready()
            if not self.pending:
                time.sleep(min([PROBE_EVERY_S, *(max(0.0, w[0] - time.monotonic()) for w in self.waiting)]))
                continue
            ready, _ = ray.wait(list(self.pending), num_returns=1,
                                timeout=RESTART_WAIT_S if self.waiting else PROBE_EVERY_S)
            if ready:
                self._finish(ready[0], on_result)

    def _give_up(self, lost: list[tuple[Slots, int]]) -> None:
        """Lost actors get no more items and their items go back to their queues; a stage with
        items to do and no actor left stops the run."""
        for slots, i in lost:
            slots.down.add(i)
            for ref, (stage, slot, item) in list(self.pending.items()):
                if slot == i and self.stages[stage].slots is slots:
                    del self.pending[ref]  # its answer, should it ever come, is ignored
                    slots.give_back(slot)
                    self.queues[stage].appendleft(item)
        lost_sets = {id(slots) for slots, _ in lost}
        for name, stage in self.stages.items():
            if id(stage.slots) in lost_sets and not stage.slots.up() and self._has_work(name):
                silent = ", ".join(stage.slots.names)
                raise FlowPOError(
                    f"the {name} stage has no actor left: {silent} did not answer for "
                    f"{self.health.timeout_s:.0f} s. Their node is gone, or the cluster has no room to restart "
                    f"them (pipeline.actor_timeout_s sets the wait). Every finished item is kept{self.advice}.")

    def _has_work(self, stage: str) -> bool:
        return bool(self.queues[stage]) or any(w[1] == stage for w in self.waiting) or \
            any(v[0] == stage for v in self.pending.values())

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
        except ray.exceptions.RayActorError as exc:
            self.health.mark_down(self.stages[stage].slots, slot)  # nothing for it until a probe answers
            self._retry(stage, item, exc)
            return
        on_result(stage, item, result)

    def _retry(self, stage: str, item: Any, exc: Exception) -> None:
        """An item whose actor failed under it goes to another actor, or to this one once it is back.
        Ray says "unavailable" both for a call sent to an actor it is restarting (not this item's
        doing: not counted) and for a call whose actor died under it (a lost try, counted: an item
        that kills every actor it meets must not loop forever)."""
        if restarting(exc):
            self.faults.restart_waits[stage] += 1
            if self.faults.notify:
                self.faults.notify("restart_wait", stage)
        else:
            self.faults.record(stage, self.key(stage, item), exc, self.advice)
        if isinstance(exc, ray.exceptions.ActorUnavailableError):
            self.waiting.append((time.monotonic() + RESTART_WAIT_S, stage, item))
        else:
            self.queues[stage].appendleft(item)

# ---------------------------------------------------------------------------------------------
# The stages of a round, as training and evaluation both run them


def round_stages(actors, config: Config, **send) -> list[Stage]:
    """Generate → dry run → execute → evaluate over the run's actors; dry runs and executions share
    the executors' budget. ``send`` holds each stage's (actor, item) -> ObjectRef."""
    def names(role: str, handles: list) -> list[str]:
        return [actor_name(config, role, i) for i in range(len(handles))]

    generators = Slots(actors.generators, config.generator.max_inflight_problems,
                       names("generator", actors.generators))
    executors = Slots(actors.executors, max(1, config.sandbox.sandboxes_per_executor // config.evaluator.repeats),
                      names("executor", actors.executors))
    # Host-scored tasks (math, QA) have no evaluator sandboxes; a few scorings at once each is plenty.
    evaluators = Slots(actors.evaluators, max(config.evaluator.sandboxes_per_evaluator, 4),
                       names("evaluator", actors.evaluators))
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
