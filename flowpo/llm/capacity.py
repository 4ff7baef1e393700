"""An executor actor's executor-LLM concurrency, shared fairly among its workflows, and the meter of
how long each workflow was held back by the others.

The actor has ``capacity`` slots (executor_llm.max_concurrency) for requests in flight. A freed slot
goes to a waiting call of the workflow that holds the fewest slots (ties: the call that has waited
longest), so a workflow that sends many calls at once queues behind its own calls, not in front of
the others'.

The meter is wall time, never a sum over concurrent calls. At each moment a workflow with a call
waiting for capacity is either *held back by others* (its ``queued_s`` grows) or *queued behind
itself* (its ``self_queued_s`` grows). It is held back by others while

- a call of its own waits for an actor slot and it holds fewer than its fair share of the slots,
  ceil(capacity / workflows that hold or wait for a slot); or
- a call of its own waits for a run-wide grant of the shared limiter, none of its calls is on the
  wire, and its own requests in the limiter's window (when the run's limits are known) hold less
  than ``OWN_WINDOW_SHARE`` of the run's rpm and of its tpm.

Anything else is its own doing: its calls beyond its share wait behind its earlier ones, and a
window it filled itself is its own. Retry backoff counts in neither meter: at that moment nobody can
tell whether the workflow's own request provoked the error (the broker's control request decides
that for a call that fails for good).
"""
from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections import deque
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Callable, Protocol

from flowpo.llm.limiter import RateLimits

# A workflow whose own requests hold this share of the run's rpm or tpm window waits for its own use.
OWN_WINDOW_SHARE = 0.5


class Meter(Protocol):
    """What the capacity writes to: one workflow's usage (flowpo.llm.broker.WorkflowUsage)."""
    queued_s: float
    self_queued_s: float


@dataclass
class Request:
    """One request of a workflow in the run's window: its tokens (the estimate until it ends)."""
    tokens: int
    ended_at: float | None = None


@dataclass
class Calls:
    """One workflow's calls as its actor sees them."""
    meter: Meter
    queue: deque = field(default_factory=deque)  # (arrival number, future) of calls waiting for a slot
    holding: int = 0  # calls holding a slot: on the wire, or waiting for a run-wide grant
    awaiting_grant: int = 0
    on_wire: int = 0
    window: deque = field(default_factory=deque)  # its own Requests in the run's window
    settled: bool = False  # its run ended: its meter is final

    def busy(self) -> bool:
        return bool(self.queue or self.holding or self.awaiting_grant or self.on_wire)


class FairCapacity:
    """Fair slots and the meters; one event loop (the broker builds one per loop)."""

    def __init__(self, capacity: int, limits: RateLimits | None = None, clock: Callable[[], float] = time.monotonic):
        if capacity < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {capacity}")
        self.capacity = capacity
        self.limits = limits if limits is not None and (limits.rpm or limits.tpm) else None
        self._clock = clock
        self._free = capacity
        self._calls: dict[int, Calls] = {}  # by id() of the meter, which the record keeps alive
        self._arrivals = itertools.count()
        self._since = clock()

    # -- the actor's slots --------------------------------------------------------------------

    @asynccontextmanager
    async def slot(self, meter: Meter):
        await self._acquire(meter)
        try:
            yield
        finally:
            self._release(meter)

    async def _acquire(self, meter: Meter) -> None:
        self._advance()
        calls = self._record(meter)
        waiter = asyncio.get_running_loop().create_future()
        calls.queue.append((next(self._arrivals), waiter))
        self._dispatch()  # a free slot is taken at once (awaiting a done future does not suspend)
        try:
            await waiter
        except asyncio.CancelledError:
            self._advance()
            if waiter.done() and not waiter.cancelled():  # granted just before the cancellation landed
                self._release(meter)
            else:
                for entry in calls.queue:
                    if entry[1] is waiter:
                        calls.queue.remove(entry)
                        break
                self._dispatch()
            raise

    def _release(self, meter: Meter) -> None:
        calls = self._calls[id(meter)]
        self._advance()
        calls.holding -= 1
        self._free += 1
        self._dispatch()

    def _dispatch(self) -> None:
        while self._free > 0:
            best = None
            for calls in self._calls.values():
                while calls.queue and calls.queue[0][1].cancelled():  # its task is unwinding
                    calls.queue.popleft()
                if calls.queue and (best is None or (calls.holding, calls.queue[0][0]) <
                                    (best.holding, best.queue[0][0])):
                    best = calls
            if best is None:
                return
            _, waiter = best.queue.popleft()
            best.holding += 1
            self._free -= 1
            waiter.set_result(None)

    # -- the shared limiter's stage -------------------------------------------------------------

    @contextmanager
    def awaiting_grant(self, meter: Meter):
        self._advance()
        calls = self._record(meter)
        calls.awaiting_grant += 1
        try:
            yield
        finally:
            self._advance()
            calls.awaiting_grant -= 1

    @contextmanager
    def on_wire(self, meter: Meter, estimated_tokens: int = 0):
        """A request in flight; set ``tokens`` on what it yields to what the request used."""
        self._advance()
        calls = self._record(meter)
        calls.on_wire += 1
        request = Request(estimated_tokens)
        if self.limits is not None:
            calls.window.append(request)
        try:
            yield request
        finally:
            self._advance()
            calls.on_wire -= 1
            request.ended_at = self._clock()

    # -- the meters -------------------------------------------------------------------------

    def settle(self, meter: Meter) -> None:
        """Bring ``meter`` up to now and stop it: the workflow's run ended (calls it left behind are
        being cancelled, and still hold their slots until they are)."""
        self._advance()
        calls = self._calls.get(id(meter))
        if calls is not None:
            calls.settled = True

    def held_back(self, meter: Meter) -> bool:
        """Whether ``meter``'s workflow is held back by others now (for tests and logs)."""
        calls = self._calls.get(id(meter))
        return calls is not None and self._held_back(calls, self._share(), self._clock())

    def _advance(self) -> None:
        """Add the time since the last change to each waiting workflow's meter, as the state then was
        (its own requests leave the run's window as time passes: the interval is split there)."""
        now, start = self._clock(), self._since
        elapsed, self._since = now - start, now
        share = self._share()
        for key, calls in list(self._calls.items()):
            if not calls.busy():  # nothing outstanding: kept only while its own requests are in the window
                if calls.settled or not self._in_window(calls, now):
                    del self._calls[key]
                continue
            if calls.settled or elapsed <= 0 or not (calls.queue or calls.awaiting_grant):
                continue
            if calls.queue and calls.holding < share:
                others = elapsed
            elif calls.awaiting_grant and not calls.on_wire:
                others = max(0.0, now - max(start, self._window_frees_at(calls, start)))
            else:
                others = 0.0
            calls.meter.queued_s += others
            calls.meter.self_queued_s += elapsed - others

    def _share(self) -> int:
        demanding = sum(1 for c in self._calls.values() if c.queue or c.holding)
        return math.ceil(self.capacity / max(1, demanding))

    def _held_back(self, calls: Calls, share: int, now: float) -> bool:
        if calls.queue and calls.holding < share:
            return True
        return bool(calls.awaiting_grant) and not calls.on_wire and self._window_frees_at(calls, now) <= now

    def _fills(self, requests: int, tokens: int) -> bool:
        lim = self.limits
        return lim is not None and bool((lim.rpm and requests >= OWN_WINDOW_SHARE * lim.rpm) or
                                        (lim.tpm and tokens >= OWN_WINDOW_SHARE * lim.tpm))

    def _window_frees_at(self, calls: Calls, at: float) -> float:
        """When its own requests stop filling the run's window (``at`` when they do not at ``at``)."""
        live = sorted((math.inf if r.ended_at is None else r.ended_at, r.tokens) for r in self._in_window(calls, at))
        requests, tokens, moment = len(live), sum(t for _, t in live), at
        for ended, used in live:
            if not self._fills(requests, tokens):
                break
            moment = ended + self.limits.window_s  # the oldest leaves the window
            requests, tokens = requests - 1, tokens - used
        return moment

    def _in_window(self, calls: Calls, now: float) -> list[Request]:
        """Its own requests the run's window still counts: in flight, or ended less than window_s ago
        (as the limiter counts them)."""
        if self.limits is None:
            return []
        horizon = now - self.limits.window_s
        calls.window = deque(r for r in calls.window if r.ended_at is None or r.ended_at > horizon)
        return list(calls.window)

    def _record(self, meter: Meter) -> Calls:
        calls = self._calls.get(id(meter))
        if calls is None:
            calls = self._calls[id(meter)] = Calls(meter)
        return calls
