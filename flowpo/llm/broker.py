"""Host-side LLM broker: the only holder of the executor LLM's client and API key.

Sandboxed operators send chat messages; the broker makes the call with ``openai.AsyncOpenAI`` over
HTTP and owns everything around it: retries with backoff (done here, not by the client, so they are
counted), a response cache for deterministic calls, per-workflow budgets, token cost and stats.
With a shared ``limiter`` (flowpo/llm/limiter.py) every HTTP request, retries included, takes a
run-wide slot first and reports its tokens and any 429 after, so all brokers back off together.

What the broker's records may excuse, since a workflow's failure is scored 0 unless something
outside it failed (DESIGN.md, "Trust model of the score"):

- Waiting for capacity: the actor's slots are shared fairly among its workflows and each workflow's
  ``queued_s`` is the wall time during which *others* held it back (flowpo/llm/capacity.py); time
  queued behind its own calls is ``self_queued_s``, which excuses nothing.
- A call that fails for good (retries spent, a non-retryable error, or anything the request itself
  raised) is the infrastructure's only when a control request, which the workflow did not shape,
  fails as well when sent at once: LLMCallError. When the control is answered, the endpoint serves
  plain requests, so the failure came with this request (its size, its content, the load it made):
  RequestRejected, the workflow's own.
"""
from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import asdict, dataclass
from functools import partial

import openai

from flowpo.errors import BudgetExceeded, LLMCallError, RequestRejected
from flowpo.llm.capacity import FairCapacity
from flowpo.llm.limiter import Limiter, RateLimits, estimate_tokens
from flowpo.llm.protocol import (
    MalformedResponse,
    Reply,
    cache_key,
    check_messages,
    describe_error,
    is_rejection,
    is_retryable,
    parse_completion,
    plural,
    retry_after_s,
    retry_delay_s,
)


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
    # Wall time, never a sum over concurrent calls (flowpo/llm/capacity.py):
    queued_s: float = 0.0  # held back by other workflows' calls (the actor's slots, the run's limit)
    self_queued_s: float = 0.0  # queued behind its own calls, or a run window it filled itself

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class BrokerStats:
    calls: int = 0  # complete() calls the budget let through, cache hits included
    http_requests: int = 0
    retries: int = 0
    cache_hits: int = 0
    errors: int = 0  # calls that failed for good while a control request failed too (LLMCallError)
    rejected: int = 0  # requests the API refused for their content (RequestRejected)
    request_faults: int = 0  # calls that failed for good while a control request was answered (RequestRejected)
    control_requests: int = 0
    budget_exceeded: int = 0


# What a control request asks: nothing the workflow chose, the shortest answer.
CONTROL_MESSAGES = [{"role": "user", "content": "Reply with OK."}]


# ---------------------------------------------------------------------------------------------
# The broker


class LLMBroker:
    def __init__(self, base_url: str, api_key: str, model: str, *, temperature: float, max_tokens: int,
                 max_concurrency: int, timeout_s: float, max_retries: int, retry_base_s: float = 0.5,
                 retry_cap_s: float = 20.0, cache_size: int = 1024, budget: Budget = Budget(),
                 pricing: Pricing = Pricing(), limiter: Limiter | None = None,
                 rate_limits: RateLimits | None = None):
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
        # The limiter's limits, when known: a workflow that fills the run's window itself waits for
        # its own use (flowpo/llm/capacity.py).
        self.rate_limits = rate_limits
        self._stats = BrokerStats()
        self._cache: OrderedDict[str, Reply] = OrderedDict()
        self._reset_loop_state()

    def _reset_loop_state(self) -> None:
        # Client, capacity and in-flight tasks belong to one event loop: built lazily in the loop that
        # uses them, which also keeps the broker picklable (Ray ships it into the executor actor).
        self._loop = None
        self._client = None
        self._capacity: FairCapacity | None = None
        self._inflight: dict[str, asyncio.Task] = {}
        self._control: asyncio.Task | None = None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.update(_loop=None, _client=None, _capacity=None, _inflight={}, _control=None)
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
            self._capacity = FairCapacity(self.max_concurrency, self.rate_limits)
        return self._client

    def settle(self, usage: WorkflowUsage) -> None:
        """The workflow's run ended: bring its ``queued_s`` and ``self_queued_s`` up to now, and stop them."""
        if self._capacity is not None and self._loop is asyncio.get_running_loop():
            self._capacity.settle(usage)

    async def complete(self, messages: list, usage: WorkflowUsage | None = None, *, seed: int | None = None) -> dict:
        """One chat completion for one workflow:
        ``{"content": str, "usage": {"prompt_tokens", "completion_tokens"}, "cached": bool}``.

        ``usage`` is the workflow's meter; a cache hit reports zero tokens. Raises BudgetExceeded
        when the workflow's budget is spent, RequestRejected for a request refused for its content
        or one that failed while a control request was answered, and LLMCallError when the LLM
        fails for good, control request included. ``seed`` goes with the request (sampled calls
        repeat where the server honours it); a temperature-0 call is cached whatever its seed.
        """
        usage = usage if usage is not None else WorkflowUsage()
        check_messages(messages)
        check_encodable(messages)
        self._check_budget(usage)
        usage.calls += 1
        self._stats.calls += 1
        try:
            if self.temperature == 0 and self.cache_size > 0:
                reply, cached = await self._shared_call(messages, usage)
            else:
                reply, cached = await self._call(messages, usage, seed), False
        except (RequestRejected, BudgetExceeded):
            raise
        except Exception as exc:  # noqa: BLE001 - whatever failed, a control request says whose doing it was
            raise await self._blame(exc) from exc
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
                    raise LLMCallError(f"executor LLM failed after {plural(attempts, 'attempt')}: "
                                       f"{describe_error(exc)}") from exc
                usage.retries += 1
                self._stats.retries += 1
                # Backoff is not queueing: the error may be the workflow's own request's doing.
                await asyncio.sleep(retry_delay_s(exc, attempts - 1, self.retry_base_s, self.retry_cap_s))

    async def _request(self, messages: list, usage: WorkflowUsage, seed: int | None = None) -> Reply:
        client, capacity = self._ensure_client(), self._capacity
        async with capacity.slot(usage):  # the workflow's fair share of the actor's concurrency
            self._stats.http_requests += 1
            return await self._send(client, capacity, messages, usage, seed, self.max_tokens)

    async def _post(self, client: openai.AsyncOpenAI, messages: list, seed: int | None, max_tokens: int) -> str:
        extra = {} if seed is None else {"seed": seed}
        raw = await client.chat.completions.with_raw_response.create(
            model=self.model, messages=messages, temperature=self.temperature, max_tokens=max_tokens, **extra)
        return raw.text

    async def _send(self, client: openai.AsyncOpenAI, capacity: FairCapacity, messages: list, usage: WorkflowUsage,
                    seed: int | None, max_tokens: int) -> Reply:
        """One HTTP request, inside a run-wide slot when there is a shared limiter; the slot is given
        back whatever happens, with the tokens used (the estimate when unknown) and any 429 with its
        Retry-After, which pauses every broker. ``capacity`` meters the workflow's waits."""
        if self.limiter is None:
            with capacity.on_wire(usage):
                text = await self._post(client, messages, seed, max_tokens)
            return parse_completion(text)
        estimate = estimate_tokens(messages, max_tokens)
        with capacity.awaiting_grant(usage):
            grant = await self.limiter.acquire(estimate)
        used, rate_limited, asked = estimate, False, None
        with capacity.on_wire(usage, estimate) as request:
            try:
                reply = parse_completion(await self._post(client, messages, seed, max_tokens))
                used = reply.prompt_tokens + reply.completion_tokens
                return reply
            except openai.APIStatusError as exc:
                used, rate_limited, asked = 0, exc.status_code == 429, retry_after_s(exc.response.headers)
                asked = min(asked, self.retry_cap_s) if asked is not None else None  # as the broker's own wait
                raise
            finally:
                request.tokens = used
                # shield: a caller cancelled mid-request (its sandbox timed out) still gives its slot back
                await asyncio.shield(self.limiter.release(grant, used, rate_limited=rate_limited,
                                                          retry_after_s=asked))

    # -- whose failure: the control request ------------------------------------------------------

    async def _blame(self, exc: Exception) -> Exception:
        """The error for a call that failed for good: LLMCallError (infrastructure) when a control
        request fails too, else RequestRejected (the failure came with the workflow's request)."""
        what = str(exc) if isinstance(exc, LLMCallError) else f"{type(exc).__name__}: {exc}"
        control = await self._control_request()
        if control:
            self._stats.errors += 1
            return LLMCallError(f"{what}; a control request failed too: {control}")
        self._stats.request_faults += 1
        return RequestRejected(f"the executor LLM failed on this request ({what[:300]}) but answered a control "
                               "request sent at once: the request itself is at fault")

    async def _control_request(self) -> str:
        """An empty string when the endpoint answers a request the workflow did not shape, else what
        failed. One attempt, outside the actor's slots (a flood holding them must not decide it) but
        inside the run's limit; calls failing together share one."""
        if self._control is None:
            self._control = asyncio.ensure_future(self._control_once())
            self._control.add_done_callback(self._control_done)
        return await asyncio.shield(self._control)

    def _control_done(self, task: asyncio.Task) -> None:
        if self._control is task:
            self._control = None

    async def _control_once(self) -> str:
        self._stats.control_requests += 1
        try:
            client = self._ensure_client()
            await self._send(client, self._capacity, CONTROL_MESSAGES, WorkflowUsage(), None, 1)
            return ""
        except Exception as exc:  # noqa: BLE001 - any failure of the control is the infrastructure's
            return describe_error(exc)


def check_encodable(messages: list) -> None:
    """RequestRejected for text that cannot be sent (JSON strings may hold lone surrogates, which no
    UTF-8 request body can carry)."""
    for message in messages:
        try:
            message["content"].encode("utf-8")
        except UnicodeEncodeError:
            raise RequestRejected("malformed chat messages: a content that is not valid Unicode text "
                                  "(a lone surrogate)") from None
