"""One executor-LLM rate limit for the whole run, on real Ray actors against a real HTTP server.

Four executor-like actors (each with its own LLMBroker, built by actors.launch.build_broker) call
flowpo/llm/local_api.py, which allows N requests per window and answers 429 beyond. The window is
2 s instead of a minute (executor_llm.rate_window_s and the server's window_s), so the test takes
seconds. With the run's limiter (actors.launch.start_limiter) the server never refuses a request
and no window holds more than N; without it, the same calls meet 429s.
"""
from __future__ import annotations

import asyncio

import pytest
import ray

from actors.launch import Actors, build_broker, rate_limits, start_limiter
from driver.train import stage_stats
from flowpo.config import Config, ExecutorLLMConfig, load_config
from flowpo.errors import ConfigError, LLMCallError
from flowpo.llm.local_api import LocalAPI
from flowpo.typed_config import apply_override

pytestmark = pytest.mark.ray

N, WINDOW_S, ACTORS, CALLS_PER_ACTOR = 12, 2.0, 4, 9  # 36 calls: three windows' worth


@ray.remote(num_cpus=0)
class Caller:
    """What an executor does with its broker, without the sandboxes: many calls at once."""

    def __init__(self, broker=None):
        self.broker = broker

    def use(self, broker) -> None:
        """Another broker (the next test's), without the cost of new actors."""
        self.broker = broker

    async def call_many(self, n: int, tag: str) -> list:
        calls = [self.broker.complete([{"role": "user", "content": f"{tag} {i}"}]) for i in range(n)]
        return list(await asyncio.gather(*calls, return_exceptions=True))

    def stats(self) -> dict:
        return {"broker": self.broker.stats()}


def config_for(url: str, **llm) -> Config:
    settings = dict(backend="openai", base_url=url, rpm=N, tpm=0, rate_window_s=WINDOW_S, max_concurrency=8,
                    max_retries=8, retry_base_s=0.2, retry_cap_s=WINDOW_S + 1)
    return Config(name="limit-test", executor_llm=ExecutorLLMConfig(**{**settings, **llm}))


def run_callers(callers: list, config: Config, url: str, limiter) -> list:
    ray.get([c.use.remote(build_broker(config, url, "sk-local", limiter=limiter)) for c in callers])
    results = ray.get([c.call_many.remote(CALLS_PER_ACTOR, f"actor{i}") for i, c in enumerate(callers)], timeout=90)
    return [r for per_actor in results for r in per_actor]


@pytest.fixture(scope="module")
def callers(ray_local):
    actors = [Caller.remote() for _ in range(ACTORS)]
    yield actors
    for actor in actors:
        ray.kill(actor)


@pytest.fixture
def api():
    with LocalAPI(latency_s=(0.05, 0.3), rpm=N, window_s=WINDOW_S, seed=1) as server:
        yield server


def test_four_actors_sharing_the_limit_stay_under_it_and_finish(callers, api):
    config = config_for(api.url)
    limiter = start_limiter(config)
    try:
        replies = run_callers(callers, config, api.url, limiter)
        served = api.stats()
        # what train.py writes into round_end
        stats = stage_stats(Actors([], callers, [], None, limiter=limiter))["executor_llm_limiter"]
    finally:
        ray.kill(limiter)
    assert [r["content"] for r in replies] == [f"echo: actor{a} {i}" for a in range(ACTORS)
                                               for i in range(CALLS_PER_ACTOR)]
    assert served["rate_limited"] == 0 and served["served"] == ACTORS * CALLS_PER_ACTOR
    assert served["max_requests_in_window"] <= N
    assert stats["granted"] == stats["released"] == ACTORS * CALLS_PER_ACTOR
    assert stats["rate_limited"] == 0 and stats["waits"] > 0 and stats["rpm"] == N


def test_without_the_shared_limit_the_same_calls_meet_429s(callers, api):
    config = config_for(api.url, shared_limits="never")
    assert start_limiter(config) is None
    replies = run_callers(callers, config, api.url, None)
    assert api.stats()["rate_limited"] > 0  # each actor alone is within its max_concurrency, together over N
    assert all(isinstance(r, dict) for r in replies)  # the brokers' retries honour Retry-After


def test_the_hosted_vllm_backend_is_not_limited_unless_asked():
    assert start_limiter(Config()) is None  # backend vllm, shared_limits auto: no actor is started
    assert not rate_limits(apply_override(Config(), "executor_llm.shared_limits=auto")).active
    hosted = rate_limits(apply_override(Config(), "executor_llm.shared_limits=always"))
    assert (hosted.rpm, hosted.tpm, hosted.max_concurrent, hosted.window_s) == (500, 200_000, 0, 60.0)
    openai = apply_override(Config(), "executor_llm.backend=openai")
    assert rate_limits(openai).rpm == 500  # OpenAI tier 1, gpt-4o-mini
    assert not rate_limits(apply_override(openai, "executor_llm.shared_limits=never")).active


def test_negative_limits_are_refused_with_their_field(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("executor_llm:\n  backend: openai\n  tpm: -2\n")  # -1: OpenAI's tier 1 at its API
    with pytest.raises(ConfigError, match=r"run.yaml:3: executor_llm.tpm: must be >= 0 \(0 = unlimited\), or -1 "
                                          r"\(OpenAI's tier 1 at OpenAI's API\), got -2"):
        load_config(path)
    with pytest.raises(ConfigError, match="executor_llm.rate_window_s: must be > 0 seconds, got 0"):
        apply_override(Config(), "executor_llm.rate_window_s=0")


def test_a_limiter_that_dies_is_asked_again_once_restarted_and_fails_calls_clearly_when_gone(ray_local, api):
    config = config_for(api.url, rpm=1, rate_window_s=60.0, max_retries=0)
    limiter = start_limiter(config)
    caller = Caller.remote(build_broker(config, api.url, "sk-local", limiter=limiter))
    assert ray.get(caller.call_many.remote(1, "first"))[0]["content"] == "echo: first 0"
    waiting = caller.call_many.remote(1, "second")  # waits a minute for the window's one request
    with pytest.raises(ray.exceptions.GetTimeoutError):
        ray.get(waiting, timeout=1)
    ray.kill(limiter, no_restart=False)  # Ray restarts it, with an empty window
    assert ray.get(waiting, timeout=60)[0]["content"] == "echo: second 0"

    waiting = caller.call_many.remote(1, "third")  # the restarted limiter's window holds "second"
    with pytest.raises(ray.exceptions.GetTimeoutError):
        ray.get(waiting, timeout=1)
    ray.kill(limiter)  # gone for good
    (failed,) = ray.get(waiting, timeout=60)
    (later,) = ray.get(caller.call_many.remote(1, "fourth"), timeout=60)
    for error in (failed, later):
        assert isinstance(error, LLMCallError) and "rate limiter is unavailable" in str(error)
    assert api.stats()["served"] == 2
