"""A local stand-in for a rate-limited OpenAI-compatible API, for tests, benches and dry runs.

``POST /v1/chat/completions`` answers after a random latency (uniform in ``latency_s``, seeded),
with deterministic content (``answer(messages)``; an echo of the last message by default) and a
real-looking ``usage``. Over its limit of ``rpm`` requests or ``tpm`` tokens per ``window_s`` it
answers 429 with ``Retry-After`` (and ``retry-after-ms``), like the real API. ``GET /stats`` and
``LocalAPI.stats()`` tell what it served and how many 429s it sent.

It runs on aiohttp (a dependency of ``ray[default]``), on one event loop in a background thread,
so thousands of concurrent requests cost no thread each: ``LocalAPI(...).start()`` / ``.stop()``,
``.url`` for the client's base_url; or ``python -m flowpo.llm.local_api --port 8000 ...``.

How it counts, so tests can check a client against it: a request counts where it *arrives*; one
answered 429 does not count; tokens are the request's prompt (``estimate_tokens`` of its
messages) plus its answer, charged on arrival.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import threading
import time
from collections import deque
from typing import Callable

from aiohttp import web

from flowpo.llm.limiter import CHARS_PER_TOKEN, estimate_tokens

Answer = Callable[[list], str]


def echo(messages: list) -> str:
    return "echo: " + str(messages[-1].get("content", "")) if messages else "echo:"


def max_in_window(times: list[float], window_s: float) -> int:
    """Most of ``times`` (sorted) inside any half-open window [t, t + window_s)."""
    best, first = 0, 0
    for last, t in enumerate(times):
        while times[first] <= t - window_s:
            first += 1
        best = max(best, last - first + 1)
    return best


class LocalAPI:
    def __init__(self, *, latency_s: tuple[float, float] = (0.5, 3.0), rpm: int = 0, tpm: int = 0,
                 window_s: float = 60.0, answer: Answer = echo, host: str = "127.0.0.1", port: int = 0,
                 seed: int = 0):
        lo, hi = latency_s
        if not 0 <= lo <= hi or rpm < 0 or tpm < 0 or window_s <= 0:
            raise ValueError(f"LocalAPI: need 0 <= latency low <= high, rpm, tpm >= 0 and window_s > 0; got "
                             f"latency_s={latency_s}, rpm={rpm}, tpm={tpm}, window_s={window_s}")
        self.latency_s, self.rpm, self.tpm, self.window_s = (lo, hi), rpm, tpm, window_s
        self.answer, self.host, self.port = answer, host, port
        self._random = random.Random(seed)
        self._lock = threading.Lock()  # the loop thread writes; tests and benches read from theirs
        self._window: deque[tuple[float, int]] = deque()  # (arrived at, tokens) of accepted requests
        self._window_tokens = 0
        self.arrivals: list[float] = []  # monotonic arrival time of every accepted request
        self.counts = {"requests": 0, "served": 0, "rate_limited": 0, "bad_requests": 0,
                       "prompt_tokens": 0, "completion_tokens": 0, "in_flight": 0, "max_in_flight": 0}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    # -- serving -----------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/stats", self._stats)
        return app

    async def _chat(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            messages, max_tokens = body["messages"], int(body.get("max_tokens") or 256)
            content = self.answer(messages)
            prompt_tokens = estimate_tokens(messages, 0)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            with self._lock:
                self.counts["bad_requests"] += 1
            return _error(400, f"bad request: {type(exc).__name__}: {exc}")
        completion_tokens = min(max_tokens, -(-len(content) // CHARS_PER_TOKEN))
        wait_s = self._admit(prompt_tokens + completion_tokens)
        if wait_s is not None:
            return _error(429, "Rate limit reached (local API)", {
                "retry-after": str(max(1, math.ceil(wait_s))), "retry-after-ms": str(max(1, math.ceil(wait_s * 1000)))})
        try:
            await asyncio.sleep(self._random.uniform(*self.latency_s))
        finally:
            with self._lock:
                self.counts["in_flight"] -= 1
        with self._lock:
            self.counts["served"] += 1
            self.counts["prompt_tokens"] += prompt_tokens
            self.counts["completion_tokens"] += completion_tokens
        return web.json_response({
            "id": f"chatcmpl-local-{self.counts['served']}", "object": "chat.completion", "created": int(time.time()),
            "model": str(body.get("model", "local")),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens}})

    def _admit(self, tokens: int) -> float | None:
        """Count an arriving request; None when it is within the limits, else seconds until it would be."""
        now = time.monotonic()
        with self._lock:
            self.counts["requests"] += 1
            while self._window and self._window[0][0] <= now - self.window_s:
                self._window_tokens -= self._window.popleft()[1]
            over_rpm = self.rpm and len(self._window) >= self.rpm
            over_tpm = self.tpm and self._window and self._window_tokens + tokens > self.tpm
            if over_rpm or over_tpm:
                self.counts["rate_limited"] += 1
                return self._window[0][0] + self.window_s - now
            self._window.append((now, tokens))
            self._window_tokens += tokens
            self.arrivals.append(now)
            self.counts["in_flight"] += 1
            self.counts["max_in_flight"] = max(self.counts["max_in_flight"], self.counts["in_flight"])
        return None

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    def stats(self) -> dict:
        """Counters, and the most accepted requests any ``window_s`` window saw."""
        with self._lock:
            arrivals = list(self.arrivals)
            counts = dict(self.counts)
        return {**counts, "max_requests_in_window": max_in_window(arrivals, self.window_s),
                "rpm": self.rpm, "tpm": self.tpm, "window_s": self.window_s}

    # -- running -----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The OpenAI client's base_url."""
        if self._runner is None:
            raise RuntimeError("LocalAPI is not started")
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> LocalAPI:
        """Serve from a background thread; returns once the port is bound."""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="local-api", daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._bind(), self._loop).result(30)
        return self

    async def _bind(self) -> None:
        runner = web.AppRunner(self.app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, backlog=4096)
        await site.start()
        self.port = runner.addresses[0][1]
        self._runner = runner

    def stop(self) -> None:
        if self._loop is None:
            return
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
        self._loop = self._runner = self._thread = None

    def __enter__(self) -> LocalAPI:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _error(status: int, message: str, headers: dict | None = None) -> web.Response:
    kind = "rate_limit_exceeded" if status == 429 else "invalid_request_error"
    return web.json_response({"error": {"message": message, "type": kind, "code": kind}}, status=status,
                             headers=headers)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m flowpo.llm.local_api", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--latency", type=float, nargs=2, default=(0.5, 3.0), metavar=("LOW_S", "HIGH_S"))
    parser.add_argument("--rpm", type=int, default=0, help="requests per window; 0 = unlimited")
    parser.add_argument("--tpm", type=int, default=0, help="tokens per window; 0 = unlimited")
    parser.add_argument("--window", type=float, default=60.0, help="window of --rpm and --tpm, in seconds")
    parser.add_argument("--seed", type=int, default=0, help="seed of the latencies")
    args = parser.parse_args(argv)
    api = LocalAPI(latency_s=tuple(args.latency), rpm=args.rpm, tpm=args.tpm, window_s=args.window,
                   host=args.host, port=args.port, seed=args.seed).start()
    print(f"serving {api.url} (stats: http://{api.host}:{api.port}/stats); Ctrl-C stops", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        print(json.dumps(api.stats()))
    finally:
        api.stop()


if __name__ == "__main__":
    main()
