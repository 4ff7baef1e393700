"""Host-side LLM broker: the only holder of the executor LLM's client and API key.

Sandboxed operators send chat messages; the broker makes the call with ``openai.AsyncOpenAI`` over
HTTP and owns everything around it: retries with backoff (done here, not by the client, so they are
counted), a response cache for deterministic calls, per-workflow budgets, token cost and stats.
With a shared ``limiter`` (flowpo/llm/limiter.py) every HTTP request, retries included, takes a
run-wide slot first and reports its tokens and any 429 after, so all brokers back off together.
"""
from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass
from functools import partial

import openai

from flowpo.errors import BudgetExceeded, LLMCallError, RequestRejected
from flowpo.llm.limiter import Limiter, estimate_tokens
from flowpo.llm.protocol import (MalformedResponse, Reply, cache_key, check_messages, describe_error,
                                 is_rejection, is_retryable, parse_completion, plural, retry_after_s, retry_delay_s)


@dataclass(frozen=True)
class Budget:
    """Per-workflow limits; 0 means unlimited."""
    max_calls: int = 0
    max_tokens: int = 0


@dataclass(frozen=True)
class Pricing:
    prompt_usd_per_mtok: float = 0.0
    completion_usd_per_mtok: float = 0.0

    def cost_usd(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.prompt_usd_per_mtok + completion_tokens * self.completion_usd_per_mtok) / 1e6


@dataclass
class WorkflowUsage:
    """What one workflow's LLM calls used; the broker adds to it as calls finish."""
    calls: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    retries: int = 0
    queued_s: float = 0.0  # waiting for capacity (the actor's max_concurrency, the shared limit, retry backoff)

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class BrokerStats:
    calls: int = 0  # complete() calls the budget let through, cache hits included
    http_requests: int = 0
    retries: int = 0
    cache_hits: int = 0
    errors: int = 0  # calls that failed for good (LLMCallError)
    rejected: int = 0  # requests the API refused for their content (RequestRejected)
    budget_exceeded: int = 0


# ---------------------------------------------------------------------------------------------
# The broker


class LLMBroker:
    def __init__(self, base_url: str, api_key: str, model: str, *, temperature: float, max_tokens: int,
                 max_concurrency: int, timeout_s: float, max_retries: int, retry_base_s: float = 0.5,
                 retry_cap_s: float = 20.0, cache_size: int = 1024, budget: Budget = Budget(),
                 pricing: Pricing = Pricing(), limiter: Limiter | None = None):
        self.base_url = base_url
        self._api_key = api_key
        self.model = model
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.max_concurrency = max_concurrency
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.retry_base_s = retry_base_s
        self.retry_cap_s = retry_cap_s
        self.cache_size = cache_size
        self.budget = budget
        self.pricing = pricing
        self.limiter = limiter
        self._stats = BrokerStats()
        self._cache: OrderedDict[str, Reply] = OrderedDict()
        self._reset_loop_state()

    def _reset_loop_state(self) -> None:
        # Client, semaphore and in-flight tasks belong to one event loop: built lazily in the loop that
        # uses them, which also keeps the broker picklable (Ray ships it into the executor actor).
        self._loop = None
        self._client = None
        self._semaphore = None
        self._inflight: dict[str, asyncio.Task] = {}

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.update(_loop=None, _client=None, _semaphore=None, _inflight={})
        return state

    def __repr__(self) -> str:  # the API key stays out of logs and tracebacks
        return (f"LLMBroker(base_url={self.base_url!r}, model={self.model!r}, temperature={self.temperature}, "
                f"max_concurrency={self.max_concurrency}, cache_size={self.cache_size}, budget={self.budget}, "
                f"limiter={self.limiter!r})")

    def stats(self) -> dict:
        return asdict(self._stats)

    async def close(self) -> None:
        """Close the HTTP client's connections; a later call builds a new client."""
        if self._client is not None and self._loop is asyncio.get_running_loop():
            await self._client.close()
        self._reset_loop_state()

    def _ensure_client(self) -> openai.AsyncOpenAI:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._reset_loop_state()
            self._loop = loop
            # max_retries=0: the broker retries itself, so that every retry is counted and budgeted.
            self._client = openai.AsyncOpenAI(base_url=self.base_url, api_key=self._api_key,
                                              timeout=self.timeout_s, max_retries=0)
            self._semaphore = asyncio.Semaphore(self.max_concurrency)
        return self._client

    async def complete(self, messages: list, usage: WorkflowUsage | None = None, *, seed: int | None = None) -> dict:
        """One chat completion for one workflow:
        ``{"content": str, "usage": {"prompt_tokens", "completion_tokens"}, "cached": bool}``.

        ``usage`` is the workflow's meter; a cache hit reports zero tokens. Raises BudgetExceeded
        when the workflow's budget is spent, RequestRejected for a request refused for its content
        and LLMCallError when the LLM fails for good. ``seed`` goes with the request (sampled calls
        repeat where the server honours it); a temperature-0 call is cached whatever its seed.
        """
        usage = usage if usage is not None else WorkflowUsage()
        check_messages(messages)
        self._check_budget(usage)
        usage.calls += 1
        self._stats.calls += 1
        if self.temperature == 0 and self.cache_size > 0:
            reply, cached = await self._shared_call(messages, usage)
        else:
            reply, cached = await self._call(messages, usage, seed), False
        if cached:
            usage.cache_hits += 1
            self._stats.cache_hits += 1
            return {"content": reply.content, "usage": {"prompt_tokens": 0, "completion_tokens": 0}, "cached": True}
        usage.prompt_tokens += reply.prompt_tokens
        usage.completion_tokens += reply.completion_tokens
        usage.cost_usd += self.pricing.cost_usd(reply.prompt_tokens, reply.completion_tokens)
        if self.budget.max_tokens and usage.tokens > self.budget.max_tokens:
            self._stats.budget_exceeded += 1
            raise BudgetExceeded(f"workflow used {usage.tokens} tokens, over its budget of {self.budget.max_tokens}")
        return {"content": reply.content,
                "usage": {"prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens},
                "cached": False}

    def _check_budget(self, usage: WorkflowUsage) -> None:
        problem = ""
        if self.budget.max_calls and usage.calls >= self.budget.max_calls:
            problem = f"workflow made {usage.calls} LLM calls, its budget of max_calls={self.budget.max_calls}"
        elif self.budget.max_tokens and usage.tokens >= self.budget.max_tokens:
            problem = f"workflow used {usage.tokens} tokens, its budget of max_tokens={self.budget.max_tokens}"
        if problem:
            self._stats.budget_exceeded += 1
            raise BudgetExceeded(problem)

    async def _shared_call(self, messages: list, usage: WorkflowUsage) -> tuple[Reply, bool]:
        """A cached answer, a share of an identical call in flight, or a new call; True when no new call."""
        self._ensure_client()
        key = cache_key(self.model, messages, self.temperature, self.max_tokens)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key], True
        if key in self._inflight:
            # shield: one caller cancelled (its sandbox timed out) must not cancel the others' call
            return await asyncio.shield(self._inflight[key]), True
        task = asyncio.ensure_future(self._call(messages, usage))
        self._inflight[key] = task
        task.add_done_callback(partial(self._settle, key))
        return await asyncio.shield(task), False

    def _settle(self, key: str, task: asyncio.Task) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        # task.exception() also marks a failure as seen when every caller was cancelled
        if task.cancelled() or task.exception() is not None:
            return
        self._cache[key] = task.result()
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    async def _call(self, messages: list, usage: WorkflowUsage, seed: int | None = None) -> Reply:
        """One answer, retried on transient failures; the wait between attempts holds no concurrency slot."""
        attempts = 0
        while True:
            try:
                return await self._request(messages, usage, seed)
            except (openai.APIError, MalformedResponse) as exc:
                attempts += 1
                if is_rejection(exc):
                    self._stats.rejected += 1
                    raise RequestRejected(f"the executor LLM refused the request: {describe_error(exc)}") from exc
                if not is_retryable(exc) or attempts > self.max_retries:
                    self._stats.errors += 1
                    raise LLMCallError(f"executor LLM failed after {plural(attempts, 'attempt')}: "
                                       f"{describe_error(exc)}") from exc
                usage.retries += 1
                self._stats.retries += 1
                delay = retry_delay_s(exc, attempts - 1, self.retry_base_s, self.retry_cap_s)
                usage.queued_s += delay
                await asyncio.sleep(delay)

    async def _request(self, messages: list, usage: WorkflowUsage, seed: int | None = None) -> Reply:
        client = self._ensure_client()
        asked = time.monotonic()
        async with self._semaphore:
            usage.queued_s += time.monotonic() - asked
            self._stats.http_requests += 1
            if self.limiter is not None:
                return await self._limited(client, messages, usage, seed)
            text = await self._post(client, messages, seed)
        return parse_completion(text)

    async def _post(self, client: openai.AsyncOpenAI, messages: list, seed: int | None) -> str:
        extra = {} if seed is None else {"seed": seed}
        raw = await client.chat.completions.with_raw_response.create(
            model=self.model, messages=messages, temperature=self.temperature, max_tokens=self.max_tokens, **extra)
        return raw.text

    async def _limited(self, client: openai.AsyncOpenAI, messages: list, usage: WorkflowUsage,
                       seed: int | None) -> Reply:
        """One request inside a run-wide slot; the slot is given back whatever happens, with the tokens
        used (the estimate when unknown) and any 429 with its Retry-After, which pauses every broker."""
        estimate = estimate_tokens(messages, self.max_tokens)
        asked = time.monotonic()
        grant = await self.limiter.acquire(estimate)
        usage.queued_s += time.monotonic() - asked
        used, rate_limited, asked = estimate, False, None
        try:
            reply = parse_completion(await self._post(client, messages, seed))
            used = reply.prompt_tokens + reply.completion_tokens
            return reply
        except openai.APIStatusError as exc:
            used, rate_limited, asked = 0, exc.status_code == 429, retry_after_s(exc.response.headers)
            asked = min(asked, self.retry_cap_s) if asked is not None else None  # as the broker's own wait
            raise
        finally:
            # shield: a caller cancelled mid-request (its sandbox timed out) still gives its slot back
            await asyncio.shield(self.limiter.release(grant, used, rate_limited=rate_limited, retry_after_s=asked))
