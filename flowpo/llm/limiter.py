"""One rate limit for the whole run's executor-LLM calls: requests and tokens per window, requests
in flight, and a backoff that every caller shares after a 429.

``RateWindow`` is the accounting alone, a plain class on an injected clock (unit-tested without
sleeps). ``SharedRateLimiter`` puts it behind ``async acquire`` / ``release``, the ``Limiter``
protocol the broker calls around each HTTP request; ``actors.launch`` runs one as an async Ray
actor that every broker of the run consults.

Why a request keeps its place in the window until ``window_s`` after it *ended*, not after it was
granted: the API counts a request when it arrives, which is somewhere between our grant and the
answer. Counting in-flight requests, and finished ones until a window after their answer, makes
every window of arrivals the API can see hold at most ``rpm`` requests, whatever the latencies.
The cost is a slot held for one latency longer (about 5 % of throughput at 3 s per call).
"""
from __future__ import annotations

import asyncio
import os
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Protocol

CHARS_PER_TOKEN = 4  # OpenAI's rule of thumb for English text; only the pre-send estimate uses it
TOKENS_PER_MESSAGE = 4  # role and separators of one chat message


@dataclass(frozen=True)
class RateLimits:
    """Limits of the whole run; 0 means unlimited."""
    rpm: int = 0  # requests per window
    tpm: int = 0  # prompt + completion tokens per window
    max_concurrent: int = 0  # requests in flight
    window_s: float = 60.0  # a minute for real APIs; tests shorten it
    default_backoff_s: float = 1.0  # shared pause after a 429 that named no Retry-After
    grant_timeout_s: float = 600.0  # a grant never released (its caller died) frees its slot after this

    def __post_init__(self):
        for name in ("rpm", "tpm", "max_concurrent", "window_s", "default_backoff_s", "grant_timeout_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"RateLimits.{name} must be >= 0, got {getattr(self, name)}")
        if self.window_s == 0 or self.grant_timeout_s == 0:
            raise ValueError("RateLimits.window_s and grant_timeout_s must be > 0")

    @property
    def active(self) -> bool:
        return bool(self.rpm or self.tpm or self.max_concurrent)


def estimate_tokens(messages: list, max_tokens: int) -> int:
    """Tokens a chat request may use, before it is sent: its text at ~4 characters a token, a few
    per message, and the whole ``max_tokens`` of the answer (the API reserves that much too)."""
    chars = sum(len(m.get("content", "")) for m in messages if isinstance(m, dict))
    return -(-chars // CHARS_PER_TOKEN) + TOKENS_PER_MESSAGE * len(messages) + max_tokens


class RateWindow:
    """The accounting: who holds a slot, what the last window used, and until when all pause."""

    def __init__(self, limits: RateLimits):
        self.limits = limits
        self._granted: dict[str, tuple[float, int]] = {}  # grant -> (granted at, estimated tokens)
        self._ended: deque[tuple[float, int]] = deque()  # (ended at, tokens) of the last window
        self._ended_tokens = 0
        self._epoch = os.urandom(4).hex()  # a restarted limiter never takes an old grant for a new one
        self._count = 0
        self.paused_until = 0.0
        self.counts = {"granted": 0, "released": 0, "rate_limited": 0, "shared_backoffs": 0,
                       "expired_grants": 0, "unknown_releases": 0}

    def _cost(self, estimated_tokens: int) -> int:
        # a request larger than the whole token budget could never go: it goes alone instead
        return min(estimated_tokens, self.limits.tpm) if self.limits.tpm else estimated_tokens

    def _forget(self, now: float) -> None:
        for grant, (at, tokens) in list(self._granted.items()):
            if now - at >= self.limits.grant_timeout_s:
                del self._granted[grant]
                self.counts["expired_grants"] += 1
                self._end(at + self.limits.grant_timeout_s, tokens)
        while self._ended and self._ended[0][0] <= now - self.limits.window_s:
            self._ended_tokens -= self._ended.popleft()[1]

    def _end(self, at: float, tokens: int) -> None:
        self._ended.append((at, tokens))
        self._ended_tokens += tokens
        if len(self._ended) > 1 and self._ended[-2][0] > at:  # an expired grant ended in the past
            self._ended = deque(sorted(self._ended))

    def wait_s(self, estimated_tokens: int, now: float) -> float:
        """0 when a request of ``estimated_tokens`` may go at ``now``; else how long until it might
        (a release may free a slot sooner: callers also wake on those)."""
        self._forget(now)
        lim, waits = self.limits, [self.paused_until - now]
        next_expiry = min((at + lim.grant_timeout_s for at, _ in self._granted.values()), default=now) - now
        if lim.max_concurrent and len(self._granted) >= lim.max_concurrent:
            waits.append(next_expiry)
        if lim.rpm and len(self._granted) + len(self._ended) >= lim.rpm:
            waits.append(self._ended[0][0] + lim.window_s - now if self._ended else next_expiry)
        excess = self.tokens_in_window() + self._cost(estimated_tokens) - lim.tpm
        if lim.tpm and excess > 0:
            waits.append(self._tokens_free_s(excess, now, next_expiry))
        return max(0.0, *waits)

    def _tokens_free_s(self, excess: int, now: float, fallback: float) -> float:
        """Seconds until finished requests leaving the window free ``excess`` tokens."""
        freed = 0
        for at, tokens in self._ended:
            freed += tokens
            if freed >= excess:
                return at + self.limits.window_s - now
        return fallback

    def grant(self, estimated_tokens: int, now: float) -> str:
        """Take a slot (call after ``wait_s`` said 0)."""
        self._count += 1
        grant = f"{self._epoch}-{self._count}"
        self._granted[grant] = (now, self._cost(estimated_tokens))
        self.counts["granted"] += 1
        return grant

    def release(self, grant: str, used_tokens: int, now: float, *, rate_limited: bool = False,
                retry_after_s: float | None = None) -> None:
        """The request ended: its estimate is replaced by ``used_tokens``; a 429 pauses everyone
        for ``retry_after_s`` (the API's Retry-After; ``default_backoff_s`` when it gave none)."""
        if rate_limited:
            self.counts["rate_limited"] += 1
            pause = self.limits.default_backoff_s if retry_after_s is None else retry_after_s
            if now + pause > self.paused_until:
                self.paused_until = now + pause
                self.counts["shared_backoffs"] += 1
        if self._granted.pop(grant, None) is None:  # expired, or granted before a restart
            self.counts["unknown_releases"] += 1
            return
        self.counts["released"] += 1
        self._end(now, max(0, used_tokens))

    def tokens_in_window(self) -> int:
        return self._ended_tokens + sum(tokens for _, tokens in self._granted.values())

    def snapshot(self, now: float) -> dict:
        self._forget(now)
        return {**self.counts, "in_flight": len(self._granted),
                "requests_in_window": len(self._granted) + len(self._ended),
                "tokens_in_window": self.tokens_in_window(), "paused_s": max(0.0, self.paused_until - now)}


class Limiter(Protocol):
    """What the broker needs of a shared limiter: one call before each HTTP request, one after."""

    async def acquire(self, estimated_tokens: int) -> str: ...

    async def release(self, grant: str, used_tokens: int, *, rate_limited: bool = False,
                      retry_after_s: float | None = None) -> None: ...


class SharedRateLimiter:
    """``RateWindow`` for many concurrent callers of one event loop (in a test, or inside the async
    Ray actor that ``actors.launch`` starts). Callers are served first come, first served."""

    def __init__(self, limits: RateLimits, clock: Callable[[], float] = time.monotonic):
        self.window = RateWindow(limits)
        self._clock = clock
        self._turn: asyncio.Lock | None = None  # built in the loop that uses it
        self._changed: asyncio.Event | None = None
        self._waits = {"waits": 0, "waited_s": 0.0, "max_wait_s": 0.0}

    def _loop_state(self) -> tuple[asyncio.Lock, asyncio.Event]:
        if self._turn is None:
            self._turn, self._changed = asyncio.Lock(), asyncio.Event()
        return self._turn, self._changed

    async def acquire(self, estimated_tokens: int) -> str:
        turn, changed = self._loop_state()
        start = self._clock()
        async with turn:  # asyncio.Lock is FIFO: the head of the queue alone waits for capacity
            while (wait := self.window.wait_s(estimated_tokens, self._clock())) > 0:
                changed.clear()
                waiter = asyncio.ensure_future(changed.wait())
                await asyncio.wait({waiter}, timeout=wait)
                waiter.cancel()
            grant = self.window.grant(estimated_tokens, self._clock())
        waited = self._clock() - start
        if waited > 0.001:
            self._waits["waits"] += 1
            self._waits["waited_s"] += waited
            self._waits["max_wait_s"] = max(self._waits["max_wait_s"], waited)
        return grant

    async def release(self, grant: str, used_tokens: int, *, rate_limited: bool = False,
                      retry_after_s: float | None = None) -> None:
        self.window.release(grant, used_tokens, self._clock(), rate_limited=rate_limited,
                            retry_after_s=retry_after_s)
        self._loop_state()[1].set()

    async def stats(self) -> dict:
        """Counters since start, and what the current window holds (for ``round_end``)."""
        lim = self.window.limits
        return {**self.window.snapshot(self._clock()), **self._waits, "rpm": lim.rpm, "tpm": lim.tpm,
                "max_concurrent": lim.max_concurrent, "window_s": lim.window_s}
