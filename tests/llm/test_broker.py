"""LLMBroker against a real HTTP server.

The OpenAI cloud cannot be reached here, so each test runs the real ``openai.AsyncOpenAI`` client
over HTTP against a local server speaking the chat-completions protocol: a stdlib
``http.server.ThreadingHTTPServer`` on 127.0.0.1 (port 0) in a background thread. Each test scripts
its answers (status, body, headers, delay) and reads back every request the server received.

A call that fails for good is judged by a control request that the broker sends at once
(``CONTROL_MESSAGES``): a test whose failure is the infrastructure's scripts the control's failure
too, as a server that is really down would answer it.
"""
from __future__ import annotations

import asyncio
import json
import pickle
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from flowpo.errors import BudgetExceeded, LLMCallError, RequestRejected
from flowpo.llm.broker import CONTROL_MESSAGES, Budget, LLMBroker, Pricing, WorkflowUsage
from flowpo.llm.capacity import FairCapacity
from flowpo.llm.limiter import RateLimits, SharedRateLimiter

API_KEY = "sk-test-4f9c2e-secret"


def completion(content: str = "hello", prompt_tokens: int = 10, completion_tokens: int = 5) -> str:
    return json.dumps({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens}})


@dataclass
class Scripted:
    status: int = 200
    body: str = ""  # empty: a completion that echoes the last message
    headers: dict = field(default_factory=dict)
    delay_s: float = 0.0
    content_type: str = "application/json"


def error(status: int, message: str = "scripted error", **headers) -> Scripted:
    return Scripted(status, json.dumps({"error": {"message": message, "type": "x"}}), headers)


class ChatServer:
    """Answers POST /v1/chat/completions from a script; unscripted requests get ``respond(request)``
    when that is set and returns an answer, else an echo completion."""

    def __init__(self, respond=None):
        self.respond = respond  # request -> Scripted | None: answers that depend on the request
        self.script: deque[Scripted] = deque()
        self.requests: list[dict] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._http.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}/v1"

    def answer(self, *responses: Scripted) -> None:
        self.script.extend(responses)

    def _next(self, request: dict) -> Scripted:
        with self._lock:
            self.requests.append(request)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            if self.script:
                return self.script.popleft()
        answer = self.respond(request) if self.respond is not None else None
        return answer or Scripted(body=completion("echo: " + request["body"]["messages"][-1]["content"]))

    def _done(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                scripted = server._next({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                                         "body": body})
                try:
                    time.sleep(scripted.delay_s)
                    payload = scripted.body.encode()
                    self.send_response(scripted.status)
                    self.send_header("Content-Type", scripted.content_type)
                    self.send_header("Content-Length", str(len(payload)))
                    for name, value in scripted.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up on a slow answer
                finally:
                    server._done()

            def log_message(self, *args):
                pass

        return Handler

    def start(self) -> None:
        threading.Thread(target=self._http.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()


@pytest.fixture
def server():
    chat = ChatServer()
    chat.start()
    yield chat
    chat.stop()


def broker_for(server: ChatServer, **overrides) -> LLMBroker:
    settings = dict(temperature=0.8, max_tokens=64, max_concurrency=4, timeout_s=5.0, max_retries=3,
                    retry_base_s=0.01, retry_cap_s=0.05)
    return LLMBroker(server.url, API_KEY, "test-model", **{**settings, **overrides})


def ask(text: str) -> list:
    return [{"role": "user", "content": text}]


def run(coro):
    return asyncio.run(coro)


def run_all(*coros) -> list:
    async def gather():
        return await asyncio.gather(*coros)

    return asyncio.run(gather())


# ---------------------------------------------------------------------------------------------
# Retries


def test_rate_limit_is_retried_and_counted(server):
    server.answer(error(429, "slow down", **{"Retry-After": "0"}), Scripted(body=completion("fine")))
    broker, usage = broker_for(server), WorkflowUsage()
    reply = run(broker.complete(ask("q"), usage))
    assert reply["content"] == "fine"
    assert len(server.requests) == 2
    assert usage.retries == 1 and usage.calls == 1
    assert broker.stats()["retries"] == 1 and broker.stats()["http_requests"] == 2


def test_retry_after_is_honoured_and_capped(server):
    server.answer(error(429, **{"Retry-After": "0.4"}))
    began = time.monotonic()
    run(broker_for(server, retry_cap_s=1.0).complete(ask("q")))
    assert time.monotonic() - began >= 0.4

    server.answer(error(429, **{"Retry-After": "3600"}))
    capped = broker_for(server, retry_cap_s=0.05).complete(ask("q"))
    run(asyncio.wait_for(capped, 2.0))  # an uncapped wait would time out here


def test_server_errors_are_retried_until_they_pass(server):
    server.answer(error(500), error(500), Scripted(body=completion("third time")))
    usage = WorkflowUsage()
    assert run(broker_for(server).complete(ask("q"), usage))["content"] == "third time"
    assert len(server.requests) == 3 and usage.retries == 2


def is_control(request: dict) -> bool:
    return request["body"]["messages"] == CONTROL_MESSAGES


def test_giving_up_names_the_failure_and_the_attempts(server):
    server.answer(error(500), error(500), error(500), Scripted(body=completion("too late")))
    broker = broker_for(server, max_retries=1)
    with pytest.raises(LLMCallError, match=r"after 2 attempts: 500 Internal Server Error.*; a control request "
                                           r"failed too: 500 Internal Server Error"):
        run(broker.complete(ask("q")))
    assert len(server.requests) == 3 and [is_control(r) for r in server.requests] == [False, False, True]
    assert server.requests[2]["body"]["max_tokens"] == 1
    assert broker.stats()["errors"] == 1 and broker.stats()["control_requests"] == 1


@pytest.mark.parametrize("bad", [
    Scripted(body="<html>upstream hiccup</html>", content_type="text/html"),
    Scripted(body="{not json", content_type="application/json"),
    Scripted(body=json.dumps({"id": "x", "choices": []})),
    Scripted(body=json.dumps({"object": "error", "detail": "not a completion"})),
    Scripted(body=json.dumps({"choices": [{"message": {"role": "assistant", "content": None}}]})),
], ids=["html", "broken-json", "no-choices", "wrong-shape", "null-content"])
def test_malformed_answers_are_retried(server, bad):
    server.answer(bad, Scripted(body=completion("good")))
    usage = WorkflowUsage()
    assert run(broker_for(server).complete(ask("q"), usage))["content"] == "good"
    assert len(server.requests) == 2 and usage.retries == 1


def test_malformed_answers_give_up_with_the_reason(server):
    server.answer(*[Scripted(body=json.dumps({"choices": []}))] * 3)
    with pytest.raises(LLMCallError, match="after 2 attempts: malformed response: no choices"):
        run(broker_for(server, max_retries=1).complete(ask("q")))


def test_timeout_is_retried(server):
    server.answer(Scripted(body=completion("late"), delay_s=1.0), Scripted(body=completion("on time")))
    usage = WorkflowUsage()
    began = time.monotonic()
    assert run(broker_for(server, timeout_s=0.3).complete(ask("q"), usage))["content"] == "on time"
    assert usage.retries == 1 and len(server.requests) == 2
    assert time.monotonic() - began < 1.0  # it did not wait for the slow answer


def test_timeouts_give_up_with_the_reason(server):
    server.answer(*[Scripted(body=completion(), delay_s=0.5)] * 3)
    with pytest.raises(LLMCallError, match="after 2 attempts: request timed out"):
        run(broker_for(server, timeout_s=0.2, max_retries=1).complete(ask("q")))


def test_connection_refused_is_retried_then_reported(server):
    url = server.url
    server.stop()  # nothing listens on its port now (stopping twice is harmless)
    broker = LLMBroker(url, API_KEY, "m", temperature=0.0, max_tokens=8, max_concurrency=1, timeout_s=1.0,
                       max_retries=2, retry_base_s=0.01, retry_cap_s=0.02)
    with pytest.raises(LLMCallError, match="after 3 attempts: connection error.*a control request failed too: "
                                           "connection error"):
        run(broker.complete(ask("q")))
    assert broker.stats()["retries"] == 2


@pytest.mark.parametrize("status", [401, 403, 404])
def test_configuration_errors_fail_at_once_as_infrastructure(server, status):
    """Key, permission, model name: nothing the workflow's request could change, and the control
    request meets them too."""
    server.answer(error(status, "bad request body"), error(status, "bad request body"))
    broker = broker_for(server)
    with pytest.raises(LLMCallError, match=rf"after 1 attempt: {status} .*bad request body"):
        run(broker.complete(ask("q")))
    assert len(server.requests) == 2 and is_control(server.requests[1]) and broker.stats()["retries"] == 0


@pytest.mark.parametrize("status", [400, 413, 422])
def test_requests_refused_for_their_content_are_rejections_not_infrastructure(server, status):
    """Invalid messages, context length exceeded: the workflow's request is at fault."""
    server.answer(error(status, "maximum context length exceeded"))
    broker = broker_for(server)
    with pytest.raises(RequestRejected, match=rf"{status} .*maximum context length"):
        run(broker.complete(ask("q")))
    assert len(server.requests) == 1 and broker.stats()["rejected"] == 1 and broker.stats()["errors"] == 0


@pytest.mark.parametrize("messages", [[], "hello", [{"role": "user"}], [{"role": "hacker", "content": "x"}],
                                      [{"role": "user", "content": ["x"]}]])
def test_malformed_messages_are_rejected_before_any_request(server, messages):
    broker = broker_for(server)
    with pytest.raises(RequestRejected, match="malformed chat messages"):
        run(broker.complete(messages))
    assert server.requests == []


# ---------------------------------------------------------------------------------------------
# Cache


def test_deterministic_calls_are_cached(server):
    broker, usage = broker_for(server, temperature=0.0), WorkflowUsage()

    async def twice():
        return await broker.complete(ask("same"), usage), await broker.complete(ask("same"), usage)

    first, second = run(twice())
    assert len(server.requests) == 1
    assert first["cached"] is False and second["cached"] is True
    assert second["content"] == first["content"] == "echo: same"
    assert second["usage"] == {"prompt_tokens": 0, "completion_tokens": 0}
    assert usage.calls == 2 and usage.cache_hits == 1
    assert (usage.prompt_tokens, usage.completion_tokens) == (10, 5)  # counted once
    assert broker.stats()["cache_hits"] == 1 and broker.stats()["calls"] == 2


def test_cache_key_covers_the_messages(server):
    broker = broker_for(server, temperature=0.0)

    async def both():
        return await broker.complete(ask("one")), await broker.complete(ask("two"))

    first, second = run(both())
    assert len(server.requests) == 2
    assert (first["content"], second["content"]) == ("echo: one", "echo: two")


def test_sampled_calls_are_never_cached(server):
    broker = broker_for(server, temperature=0.8)

    async def twice():
        return [await broker.complete(ask("same")) for _ in range(2)]

    assert [r["cached"] for r in run(twice())] == [False, False]
    assert len(server.requests) == 2
    assert server.requests[0]["body"]["temperature"] == 0.8


def test_cache_size_zero_disables_the_cache(server):
    broker = broker_for(server, temperature=0.0, cache_size=0)
    run_all(broker.complete(ask("same")), broker.complete(ask("same")))
    assert len(server.requests) == 2


def test_cache_evicts_the_least_recently_used(server):
    broker = broker_for(server, temperature=0.0, cache_size=1)

    async def calls():
        for text in ["a", "b", "b", "a"]:
            await broker.complete(ask(text))

    run(calls())
    assert [r["body"]["messages"][0]["content"] for r in server.requests] == ["a", "b", "a"]


def test_concurrent_identical_calls_share_one_request(server):
    server.answer(Scripted(body=completion("shared"), delay_s=0.2))
    broker, usage = broker_for(server, temperature=0.0), WorkflowUsage()
    replies = run_all(*[broker.complete(ask("same"), usage) for _ in range(5)])
    assert len(server.requests) == 1
    assert {r["content"] for r in replies} == {"shared"}
    assert sorted(r["cached"] for r in replies) == [False, True, True, True, True]
    assert usage.calls == 5 and usage.cache_hits == 4 and usage.prompt_tokens == 10


def test_concurrent_identical_calls_share_the_failure(server):
    server.answer(error(404, "nope"), error(404, "nope"))
    broker = broker_for(server, temperature=0.0)

    async def five():
        return await asyncio.gather(*[broker.complete(ask("same")) for _ in range(5)], return_exceptions=True)

    results = run(five())
    assert len(server.requests) == 2 and is_control(server.requests[1])  # one request, one shared control
    assert all(isinstance(r, LLMCallError) for r in results)


def test_http_requests_are_limited_to_max_concurrency(server):
    server.answer(*[Scripted(body=completion(), delay_s=0.1)] * 6)
    broker = broker_for(server, max_concurrency=2)
    run_all(*[broker.complete(ask(str(i))) for i in range(6)])
    assert len(server.requests) == 6 and server.max_in_flight == 2


# ---------------------------------------------------------------------------------------------
# Budgets and cost


def test_call_budget_refuses_without_a_request(server):
    broker, usage = broker_for(server, budget=Budget(max_calls=2)), WorkflowUsage()

    async def three():
        await broker.complete(ask("1"), usage)
        await broker.complete(ask("2"), usage)
        await broker.complete(ask("3"), usage)

    with pytest.raises(BudgetExceeded, match="calls"):
        run(three())
    assert len(server.requests) == 2 and usage.calls == 2
    run(broker.complete(ask("4"), WorkflowUsage()))  # the budget is per workflow
    assert len(server.requests) == 3


def test_token_budget_drops_the_answer_that_crosses_it(server):
    # each echo answer costs 10 + 5 = 15 tokens: the second call ends at 30 > 25
    broker, usage = broker_for(server, budget=Budget(max_tokens=25)), WorkflowUsage()

    async def calls():
        await broker.complete(ask("1"), usage)
        await broker.complete(ask("2"), usage)

    with pytest.raises(BudgetExceeded, match="tokens"):
        run(calls())
    assert len(server.requests) == 2 and usage.prompt_tokens + usage.completion_tokens == 30
    with pytest.raises(BudgetExceeded):
        run(broker.complete(ask("3"), usage))
    assert len(server.requests) == 2


def test_cost_accumulates_per_workflow(server):
    server.answer(*[Scripted(body=completion(prompt_tokens=1000, completion_tokens=500))] * 2)
    broker = broker_for(server, pricing=Pricing(prompt_usd_per_mtok=1.0, completion_usd_per_mtok=2.0))
    usage = WorkflowUsage()
    run(broker.complete(ask("q"), usage))
    # 1000 tokens * $1.0/1e6 + 500 tokens * $2.0/1e6 = $0.001 + $0.001 = $0.002
    assert usage.cost_usd == pytest.approx(0.002)
    run(broker.complete(ask("q"), usage))
    assert usage.cost_usd == pytest.approx(0.004)


def test_cache_hits_cost_nothing(server):
    broker = broker_for(server, temperature=0.0, pricing=Pricing(1.0, 2.0), budget=Budget(max_tokens=20))
    usage = WorkflowUsage()

    async def thrice():
        for _ in range(3):
            await broker.complete(ask("same"), usage)

    run(thrice())  # 15 tokens once; two more uncached would cross 20
    assert usage.prompt_tokens == 10 and usage.cost_usd == pytest.approx((10 * 1.0 + 5 * 2.0) / 1e6)


# ---------------------------------------------------------------------------------------------
# The key and the request


def test_request_carries_key_model_and_settings(server):
    run(broker_for(server, temperature=0.0, max_tokens=33).complete(ask("hi")))
    request = server.requests[0]
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["authorization"] == f"Bearer {API_KEY}"
    assert request["body"]["model"] == "test-model"
    assert request["body"]["messages"] == ask("hi")
    assert (request["body"]["temperature"], request["body"]["max_tokens"]) == (0.0, 33)


def test_key_is_not_in_repr_or_str(server):
    broker = broker_for(server)
    run(broker.complete(ask("q")))
    assert API_KEY not in repr(broker) and API_KEY not in str(broker)
    assert "test-model" in repr(broker)


def test_broker_survives_pickling_before_and_after_use(server):
    broker = pickle.loads(pickle.dumps(broker_for(server, temperature=0.0)))  # as Ray ships it
    assert run(broker.complete(ask("q")))["content"] == "echo: q"
    again = pickle.loads(pickle.dumps(broker))
    assert run(again.complete(ask("q")))["cached"] is True  # the cache travels; the client does not
    assert len(server.requests) == 1


def test_broker_works_again_after_close(server):
    broker = broker_for(server)

    async def use_close_use():
        await broker.complete(ask("a"))
        await broker.close()
        return await broker.complete(ask("b"))

    assert run(use_close_use())["content"] == "echo: b"
    assert len(server.requests) == 2


def test_usage_is_optional(server):
    assert run(broker_for(server).complete(ask("q")))["content"] == "echo: q"


def test_a_seed_goes_with_the_request_and_only_when_given(server):
    broker = broker_for(server)
    run(broker.complete(ask("seeded"), seed=1234))
    run(broker.complete(ask("unseeded")))
    assert server.requests[0]["body"]["seed"] == 1234 and "seed" not in server.requests[1]["body"]


# ---------------------------------------------------------------------------------------------
# A shared rate limiter (flowpo/llm/limiter.py)


def limited_pair(server: ChatServer, limits: RateLimits, **overrides) -> tuple[SharedRateLimiter, LLMBroker, LLMBroker]:
    limiter = SharedRateLimiter(limits)
    return limiter, broker_for(server, limiter=limiter, **overrides), broker_for(server, limiter=limiter, **overrides)


def test_every_request_takes_a_shared_slot_and_reports_its_tokens(server):
    server.answer(error(500), Scripted(body=completion(prompt_tokens=7, completion_tokens=3)))
    limiter, broker, _ = limited_pair(server, RateLimits(rpm=100))

    async def call():
        await broker.complete(ask("q"))
        return await limiter.stats()

    stats = run(call())
    assert stats["granted"] == stats["released"] == 2  # the retry took a slot of its own
    assert stats["tokens_in_window"] == 10 and stats["in_flight"] == 0  # 0 for the 500, 7 + 3 used


def test_a_429_met_by_one_broker_holds_back_the_others(server):
    server.answer(error(429, **{"Retry-After": "0.5"}))
    limiter, first, second = limited_pair(server, RateLimits(rpm=100), retry_cap_s=2.0)

    async def scenario():
        retrying = asyncio.ensure_future(first.complete(ask("a")))
        while (await limiter.stats())["rate_limited"] == 0:  # until the first broker has reported its 429
            await asyncio.sleep(0.01)
        began = time.monotonic()
        await second.complete(ask("b"))  # alone it would be answered in milliseconds
        waited = time.monotonic() - began
        await retrying
        return waited, await limiter.stats()

    waited, stats = run(scenario())
    assert 0.3 <= waited < 10  # until 0.5 s after the 429
    assert stats["rate_limited"] == 1 and stats["shared_backoffs"] == 1 and len(server.requests) == 3


def test_a_cancelled_call_gives_its_shared_slot_back(server):
    server.answer(Scripted(body=completion(), delay_s=1.0))
    limiter, broker, other = limited_pair(server, RateLimits(max_concurrent=1))

    async def scenario():
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(broker.complete(ask("slow")), 0.2)  # its sandbox timed out
        freed = (await limiter.stats())["in_flight"] == 0
        await asyncio.wait_for(other.complete(ask("next")), 60)  # a slot kept would block it for 600 s
        return freed, await limiter.stats()

    freed, stats = run(scenario())
    assert freed and stats["in_flight"] == 0 and stats["released"] == 2


# ---------------------------------------------------------------------------------------------
# Whose failure: a call that fails for good is judged by a control request sent at once


def test_a_failure_that_only_the_workflows_request_meets_is_its_own(server):
    """500s for this request, and the control request answered: the request is at fault (its
    content provoked the server), so the workflow's own bad_llm_request, never llm_error."""
    server.answer(error(500), error(500))  # the unscripted control gets an answer
    broker = broker_for(server, max_retries=1)
    with pytest.raises(RequestRejected, match=r"failed on this request \(executor LLM failed after 2 attempts: 500 "
                                              r".*answered a control request"):
        run(broker.complete(ask("q")))
    assert is_control(server.requests[-1]) and len(server.requests) == 3
    stats = broker.stats()
    assert (stats["request_faults"], stats["errors"], stats["control_requests"]) == (1, 0, 1)


def test_a_huge_request_that_times_out_is_the_workflows(server):
    """A request that makes the server slow (as a long prompt makes an LLM) times out on every
    attempt; a plain request is answered at once: the workflow's request is at fault."""
    server.respond = lambda r: Scripted(body=completion("late"), delay_s=3.0) if len(
        r["body"]["messages"][-1]["content"]) > 10_000 else None
    broker = broker_for(server, timeout_s=1.0, max_retries=1)
    usage = WorkflowUsage()
    with pytest.raises(RequestRejected, match="request timed out.*answered a control request"):
        run(broker.complete(ask("x" * 20_000), usage))
    assert usage.retries == 1 and usage.queued_s == 0.0  # its backoff excuses nothing
    assert run(broker.complete(ask("plain")))["content"] == "echo: plain"  # the endpoint works


def test_a_text_that_cannot_be_sent_is_rejected_before_any_request(server):
    """JSON lets a sandbox send a lone surrogate; no UTF-8 body can carry it. Before, the client's
    UnicodeEncodeError reached the pool as a broker failure: llm_error."""
    broker = broker_for(server)
    with pytest.raises(RequestRejected, match="not valid Unicode"):
        run(broker.complete(ask("hi \ud800 there")))
    assert server.requests == []


def test_calls_that_fail_together_share_one_control_request(server):
    server.respond = lambda r: None if is_control(r) else error(503, "overloaded")
    broker = broker_for(server, max_retries=0)

    async def many():
        return await asyncio.gather(*[broker.complete(ask(str(i))) for i in range(4)], return_exceptions=True)

    results = run(many())
    assert all(isinstance(r, RequestRejected) for r in results), results
    assert sum(is_control(r) for r in server.requests) == 1


# ---------------------------------------------------------------------------------------------
# Waiting for capacity: fair shares of the actor's slots, metered in wall time (flowpo/llm/capacity.py)


def test_a_flood_queues_behind_itself_and_is_never_excused(server):
    """Twelve calls at once into two slots, 0.2 s each: about 1 s of waiting, all of it behind its
    own calls. Before, queued_s summed the waits of every call (≈ 6 s, more than the wall time)."""
    server.respond = lambda r: Scripted(body=completion("ok"), delay_s=0.2)
    broker, usage = broker_for(server, max_concurrency=2), WorkflowUsage()

    async def flood():
        began = time.monotonic()
        await asyncio.gather(*[broker.complete(ask(str(i)), usage) for i in range(12)])
        broker.settle(usage)
        return time.monotonic() - began

    wall = run(flood())
    assert usage.queued_s == 0.0
    assert 0.7 < usage.self_queued_s <= wall  # wall time, never a sum over the calls
    assert server.max_in_flight == 2


def test_a_workflow_behind_anothers_flood_gets_the_next_slot_and_is_metered(server):
    """F sends twelve calls into two slots (its second a long one); H sends one a little later.
    When F's first call ends, the free slot goes to H (F holds more than H), not to F's ten older
    waiters: H waits about one call (0.2 s), and that wait is others' doing."""
    server.respond = lambda r: Scripted(body=completion("ok"), delay_s=1.5 if r["body"]["messages"][-1][
        "content"] == "f1" else 0.3)
    broker = broker_for(server, max_concurrency=2)
    flood, honest = WorkflowUsage(), WorkflowUsage()

    async def scenario():
        flooding = asyncio.gather(*[broker.complete(ask(f"f{i}"), flood) for i in range(12)])
        await asyncio.sleep(0.1)
        await broker.complete(ask("h"), honest)
        broker.settle(honest)
        await flooding
        broker.settle(flood)

    run(scenario())
    order = [r["body"]["messages"][-1]["content"] for r in server.requests]
    assert order.index("h") == 2, order  # served right after F's first two, not after its twelve
    assert 0.05 < honest.queued_s < 1.0 and honest.self_queued_s == 0.0
    assert flood.queued_s < 0.05 < flood.self_queued_s  # F holds its share whenever it waits


def test_calls_within_the_fair_share_wait_for_others_only(server):
    """Four slots. The first workflow takes three (one of them long); the second sends four calls at
    0.05 s: one takes the last slot, and while it holds fewer than its share (two of four), its
    waiting is the first's doing. At 0.3 s two of the first's calls end: two more of the second's go
    in, and its fourth, now beyond its share, waits behind its own until 0.65 s."""
    delays = {"a0": 0.3, "a1": 0.3, "a2": 1.0}
    server.respond = lambda r: Scripted(body=completion("ok"), delay_s=delays.get(
        r["body"]["messages"][-1]["content"], 0.6))
    broker = broker_for(server, max_concurrency=4)
    first, second = WorkflowUsage(), WorkflowUsage()

    async def scenario():
        began = time.monotonic()
        a = asyncio.gather(*[broker.complete(ask(f"a{i}"), first) for i in range(3)])
        await asyncio.sleep(0.05)
        await asyncio.gather(*[broker.complete(ask(f"b{i}"), second) for i in range(4)])
        broker.settle(second)
        wall = time.monotonic() - began
        await a
        broker.settle(first)
        return wall

    wall = run(scenario())
    assert first.queued_s == 0.0 and first.self_queued_s == 0.0  # it never waited
    assert 0.1 < second.queued_s < 1.0, second  # about 0.25 s: 0.05 to 0.3
    assert 0.1 < second.self_queued_s < 1.2, second  # about 0.35 s: 0.3 to 0.65
    assert second.queued_s + second.self_queued_s <= wall


def test_retry_backoff_is_not_queueing(server):
    server.answer(error(429, **{"Retry-After": "0.3"}))
    broker, usage = broker_for(server, retry_cap_s=1.0), WorkflowUsage()
    run(broker.complete(ask("q"), usage))
    assert usage.retries == 1 and usage.queued_s == 0.0 and usage.self_queued_s == 0.0


def test_waiting_for_the_run_wide_limit_held_by_another_broker_is_metered(server):
    """The shared limiter lets one request through at a time; another actor's request holds it for
    0.5 s. The workflow's only call waits with nothing of its own on the wire: others' doing."""
    server.respond = lambda r: Scripted(body=completion("ok"), delay_s=0.5 if "other" in str(r["body"]) else 0.0)
    limits = RateLimits(max_concurrent=1)
    limiter, other, mine = limited_pair(server, limits, rate_limits=limits)
    usage = WorkflowUsage()

    async def scenario():
        holding = asyncio.ensure_future(other.complete(ask("other")))
        await asyncio.sleep(0.1)
        await mine.complete(ask("mine"), usage)
        mine.settle(usage)
        await holding

    run(scenario())
    assert 0.25 < usage.queued_s < 0.6 and usage.self_queued_s == 0.0


def test_a_run_window_the_workflow_filled_itself_is_its_own_wait(server):
    """A limit of 400 tokens per 0.5 s window; each answer reports 300 tokens used. After its first
    call the workflow's own requests hold more than half of the window, so the wait of its next two
    calls (estimated at 155 tokens each) until that request leaves the window, about 0.5 s, is its
    own doing. Only the moments the limiter takes to answer count as others'."""
    server.respond = lambda r: Scripted(body=completion("ok", prompt_tokens=250, completion_tokens=50))
    limits = RateLimits(tpm=400, window_s=0.5)
    limiter, broker, _ = limited_pair(server, limits, rate_limits=limits, max_tokens=150)
    usage = WorkflowUsage()

    async def scenario():
        await broker.complete(ask("x"), usage)
        await asyncio.gather(broker.complete(ask("y"), usage), broker.complete(ask("z"), usage))
        broker.settle(usage)

    run(scenario())
    assert usage.queued_s < 0.05 and 0.35 < usage.self_queued_s < 3, usage


def test_the_meters_by_hand():
    """flowpo/llm/capacity.py on a clock of its own. Two slots. F asks four at t=0: it holds two,
    two wait behind its own. H asks one at t=1: shares are now 1 each; H holds 0 < 1, held back by
    F. At t=2 one of F's calls ends: the slot goes to H (it holds fewer), not to F's older waiters.
    At t=3 everything ends. F: 3 s behind itself, 0 held back; H: 1 s held back."""
    now = [0.0]
    capacity = FairCapacity(2, clock=lambda: now[0])
    flood, honest = WorkflowUsage(), WorkflowUsage()
    order = []

    async def call(meter, name, done: asyncio.Event):
        async with capacity.slot(meter):
            order.append(name)
            await done.wait()

    async def scenario():
        ends = {name: asyncio.Event() for name in ("f0", "f1", "f2", "f3", "h")}
        tasks = [asyncio.ensure_future(call(flood, f"f{i}", ends[f"f{i}"])) for i in range(4)]
        await asyncio.sleep(0)
        assert order == ["f0", "f1"] and not capacity.held_back(flood)
        now[0] = 1.0
        tasks.append(asyncio.ensure_future(call(honest, "h", ends["h"])))
        await asyncio.sleep(0)
        assert capacity.held_back(honest) and not capacity.held_back(flood)
        now[0] = 2.0
        ends["f0"].set()
        for _ in range(3):
            await asyncio.sleep(0)
        assert order == ["f0", "f1", "h"]
        now[0] = 3.0
        for end in ends.values():
            end.set()
        await asyncio.gather(*tasks)
        capacity.settle(flood)
        capacity.settle(honest)

    asyncio.run(scenario())
    assert order == ["f0", "f1", "h", "f2", "f3"]
    assert (flood.queued_s, flood.self_queued_s) == (0.0, 3.0)
    assert (honest.queued_s, honest.self_queued_s) == (1.0, 0.0)
