"""The run's one executor-LLM rate limiter, as brokers in other actors see it.

``actors.launch.start_limiter`` wraps ``flowpo.llm.limiter.SharedRateLimiter`` as an async Ray actor
(many brokers wait on it at once without blocking it); ``RemoteLimiter`` is the ``Limiter`` protocol
over that actor's handle, which travels inside each broker into the executor and evaluator actors.

If the limiter actor dies, Ray restarts it (``max_restarts=-1``) with an empty window: a broker
waiting on it asks the restarted one again (the API's 429s, which every broker reports, cover the
window it forgot). If it is gone for good, calls fail at once with an LLMCallError naming the
limiter (an infrastructure failure, ``llm_error``, never scored) rather than hang or go on
unlimited (four actors unlimited would quadruple the rate the API sees).
"""
from __future__ import annotations

import asyncio
import logging

import ray

from flowpo.errors import LLMCallError

log = logging.getLogger(__name__)

RESTART_TRIES = 3  # asks of a dead limiter before a call fails (Ray queues them while it restarts)
RESTART_WAIT_S = 0.5


class RemoteLimiter:
    def __init__(self, handle):
        self.handle = handle
        self._giving_back: set[asyncio.Task] | None = None  # per process; never pickled

    def __getstate__(self) -> dict:
        return {"handle": self.handle, "_giving_back": None}

    def __repr__(self) -> str:
        return f"RemoteLimiter({self.handle!r})"

    async def acquire(self, estimated_tokens: int) -> str:
        tries = 0
        while True:
            tries += 1
            ref = self.handle.acquire.remote(estimated_tokens)
            try:
                return await ref
            except asyncio.CancelledError:
                # The caller gave up (its sandbox timed out) but the actor will still grant: hand that
                # grant back when it comes, or it would hold a slot until the grant times out.
                self._keep(asyncio.ensure_future(self._give_back(ref)))
                raise
            except ray.exceptions.RayActorError as exc:  # restarting, or gone: ask again, a few times
                if tries >= RESTART_TRIES:
                    raise LLMCallError(f"the shared executor-LLM rate limiter is unavailable ({type(exc).__name__}, "
                                       f"{tries} tries); the call fails rather than go on without the run's "
                                       "limit") from exc
                await asyncio.sleep(RESTART_WAIT_S * tries)

    async def release(self, grant: str, used_tokens: int, *, rate_limited: bool = False,
                      retry_after_s: float | None = None) -> None:
        try:
            await self.handle.release.remote(grant, used_tokens, rate_limited=rate_limited,
                                             retry_after_s=retry_after_s)
        except ray.exceptions.RayActorError as exc:
            # the request itself is done; a restarted limiter never knew this grant
            log.warning("executor-LLM rate limiter lost a release: %s", type(exc).__name__)

    async def _give_back(self, ref) -> None:
        try:
            grant = await ref
        except ray.exceptions.RayActorError as exc:
            log.warning("executor-LLM rate limiter died before granting a cancelled call: %s", type(exc).__name__)
            return
        await self.release(grant, 0)

    def _keep(self, task: asyncio.Task) -> None:
        # the event loop holds tasks weakly: keep a reference until it is done
        if self._giving_back is None:
            self._giving_back = set()
        self._giving_back.add(task)
        task.add_done_callback(self._giving_back.discard)
