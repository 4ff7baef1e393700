"""The local stand-in for a rate-limited OpenAI-compatible API, over real HTTP: the openai client
(through the broker) and plain httpx requests."""
from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from flowpo.errors import LLMCallError
from flowpo.llm.broker import LLMBroker
from flowpo.llm.local_api import LocalAPI, max_in_window


def broker(api: LocalAPI, **overrides) -> LLMBroker:
    settings = dict(temperature=0.8, max_tokens=64, max_concurrency=8, timeout_s=10.0, max_retries=0)
    return LLMBroker(api.url, "sk-local", "local-model", **{**settings, **overrides})


def post(api: LocalAPI, text: str, max_tokens: int = 64) -> httpx.Response:
    return httpx.post(api.url + "/chat/completions", json={
        "model": "m", "max_tokens": max_tokens, "messages": [{"role": "user", "content": text}]})


def test_max_in_window_counts_the_busiest_window():
    # [1, 11) holds 1, 2, 10 and 10.5; [0, 10) only 0, 1, 2
    assert max_in_window([0, 1, 2, 10, 10.5], 10) == 4
    assert max_in_window([0, 10, 20], 10) == 1 and max_in_window([], 10) == 0


def test_answers_a_chat_completion_with_real_looking_usage():
    with LocalAPI(latency_s=(0.2, 0.3)) as api:
        began = time.monotonic()
        reply = asyncio.run(broker(api).complete([{"role": "user", "content": "what is 2+2?"}]))
        took = time.monotonic() - began
        stats = api.stats()
    # "echo: what is 2+2?" is 18 characters: ceil(18 / 4) = 5 completion tokens; the prompt's 12
    # characters are ceil(12 / 4) = 3 tokens + 4 for the message = 7
    assert reply["content"] == "echo: what is 2+2?"
    assert reply["usage"] == {"prompt_tokens": 7, "completion_tokens": 5}
    assert 0.2 <= took < 2.0
    assert (stats["served"], stats["prompt_tokens"], stats["completion_tokens"]) == (1, 7, 5)


def test_over_its_rpm_it_answers_429_with_retry_after():
    with LocalAPI(latency_s=(0, 0), rpm=2, window_s=5) as api:
        assert [post(api, str(i)).status_code for i in range(3)] == [200, 200, 429]
        refused = post(api, "again")
        stats = api.stats()
    assert refused.status_code == 429 and refused.json()["error"]["type"] == "rate_limit_exceeded"
    assert 1 <= int(refused.headers["retry-after"]) <= 5 and 0 < int(refused.headers["retry-after-ms"]) <= 5000
    assert (stats["served"], stats["rate_limited"], stats["max_requests_in_window"]) == (2, 2, 2)


def test_the_broker_reads_the_429_as_a_rate_limit():
    with LocalAPI(latency_s=(0, 0), rpm=1, window_s=30) as api:
        client = broker(api)

        async def two():
            await client.complete([{"role": "user", "content": "a"}])
            await client.complete([{"role": "user", "content": "b"}])

        with pytest.raises(LLMCallError, match="429"):
            asyncio.run(two())


def test_over_its_tpm_it_answers_429():
    with LocalAPI(latency_s=(0, 0), tpm=30, window_s=5) as api:
        # each: "x" * 40 -> 10 + 4 prompt tokens, "echo: " + 40 x -> 12 completion tokens = 26
        assert [post(api, "x" * 40).status_code for _ in range(2)] == [200, 429]


def test_a_bad_request_is_a_400():
    with LocalAPI(latency_s=(0, 0)) as api:
        response = httpx.post(api.url + "/chat/completions", json={"model": "m"})
        stats = httpx.get(api.url.removesuffix("/v1") + "/stats").json()
    assert response.status_code == 400 and "messages" in response.json()["error"]["message"]
    assert stats["bad_requests"] == 1 and stats["served"] == 0


def test_many_concurrent_requests_cost_no_thread_each():
    with LocalAPI(latency_s=(0.5, 1.0), seed=3) as api:
        client = broker(api, max_concurrency=200)

        async def many():
            return await asyncio.gather(*[client.complete([{"role": "user", "content": str(i)}]) for i in range(200)])

        began = time.monotonic()
        replies = asyncio.run(many())
        took = time.monotonic() - began
        stats = api.stats()
    assert [r["content"] for r in replies] == [f"echo: {i}" for i in range(200)]
    assert stats["max_in_flight"] >= 150 and took < 60  # one at a time would take 200 * 0.75 s = 150 s


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="latency_s=\\(2, 1\\)"):
        LocalAPI(latency_s=(2, 1))
