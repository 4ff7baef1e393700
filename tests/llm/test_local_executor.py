"""A server of your own as the executor LLM (vLLM's or llama.cpp's OpenAI-compatible server): its URL and
model name are all the config needs. No key is asked for or sent (the openai client must send one: a
placeholder goes), and no rate limit applies unless you set one; OpenAI's API still needs its key and
gets its tier-1 limits by default. Against real local servers speaking the OpenAI chat protocol over
HTTP (tests/llm/test_broker.py's ChatServer, which records each request's headers, and
flowpo/llm/local_api.py), through the same builders a run uses (actors/launch.py)."""
from __future__ import annotations

import asyncio

import pytest

from actors.executor import Executor
from actors.launch import NO_KEY, build_broker, rate_limits, start_limiter, start_llm_server
from flowpo.config import Config, ExecutorLLMConfig, load_config
from flowpo.errors import ConfigError, FlowPOError
from flowpo.llm.local_api import LocalAPI
from flowpo.records import Problem, Workflow
from tests.llm.test_broker import ChatServer
from tests.sandbox.conftest import body, make_backend

SECRET = "sk-openai-key-that-must-not-leave"


@pytest.fixture
def server():
    chat = ChatServer()
    chat.start()
    yield chat
    chat.stop()


@pytest.fixture
def no_openai_key(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


def own_server(url: str, **llm) -> Config:
    return Config(executor_llm=ExecutorLLMConfig(backend="openai", base_url=url, model="my-model", **llm))


def ask(config: Config, url: str, key: str, text: str = "hello") -> dict:
    broker = build_broker(config, url, key)

    async def once():
        try:
            return await broker.complete([{"role": "user", "content": text}])
        finally:
            await broker.close()

    return asyncio.run(once())


def test_a_server_of_your_own_needs_only_its_url_and_model(server, no_openai_key, tmp_path):
    path = tmp_path / "run.yaml"  # what a user writes: the URL and the model, nothing else
    path.write_text(f"executor_llm:\n  backend: openai\n  base_url: {server.url}\n  model: my-model\n")
    config = load_config(path)
    actor, url, key = start_llm_server(config, "unused: nothing is hosted")
    assert (actor, url, key) == (None, server.url, NO_KEY)
    assert not rate_limits(config).active and start_limiter(config) is None  # no limit, no limiter actor
    assert ask(config, url, key)["content"] == "echo: hello"
    (request,) = server.requests
    assert request["body"]["model"] == "my-model" and request["headers"]["authorization"] == f"Bearer {NO_KEY}"


def test_an_openai_key_in_the_environment_never_goes_to_another_server(server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    config = own_server(server.url)
    _, url, key = start_llm_server(config, "unused")
    assert key == NO_KEY and config.executor_llm.key_env == ""  # nothing to withhold from the workers either
    ask(config, url, key)
    assert SECRET not in str(server.requests[0]["headers"])


def test_a_server_of_your_own_with_a_key_and_limits_you_name(server, monkeypatch):
    config = own_server(server.url, api_key_env="MY_SERVER_KEY", rpm=100, tpm=0, max_concurrent_requests=4)
    monkeypatch.delenv("MY_SERVER_KEY", raising=False)
    with pytest.raises(FlowPOError, match=r"^executor_llm.api_key_env: environment variable MY_SERVER_KEY is not set$"):
        start_llm_server(config, "unused")
    monkeypatch.setenv("MY_SERVER_KEY", "sk-mine")
    _, url, key = start_llm_server(config, "unused")
    ask(config, url, key)
    assert server.requests[0]["headers"]["authorization"] == "Bearer sk-mine"
    limits = rate_limits(config)
    assert limits.active and (limits.rpm, limits.tpm, limits.max_concurrent) == (100, 0, 4)  # yours, as you set them


def test_openais_api_still_needs_its_key_and_gets_tier_1_limits(no_openai_key, monkeypatch):
    config = Config(executor_llm=ExecutorLLMConfig(backend="openai", base_url="https://api.openai.com/v1",
                                                   model="gpt-4o-mini"))
    with pytest.raises(FlowPOError, match=r"environment variable OPENAI_API_KEY is not set \(OpenAI's API needs a "
                                          r"key; a server of your own needs only executor_llm.base_url"):
        start_llm_server(config, "unused")
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    assert start_llm_server(config, "unused") == (None, "https://api.openai.com/v1", SECRET)
    assert config.executor_llm.key_env == "OPENAI_API_KEY"  # withheld from the job's workers
    limits = rate_limits(config)
    assert (limits.rpm, limits.tpm) == (500, 200_000)
    own = own_server("http://10.0.0.5:8000/v1")
    assert own.executor_llm.run_limits == (0, 0) and not rate_limits(own).active


def test_the_limits_refuse_what_means_nothing(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("executor_llm:\n  backend: openai\n  tpm: -2\n")
    with pytest.raises(ConfigError, match=r"run.yaml:3: executor_llm.tpm: must be >= 0 \(0 = unlimited\), or -1"):
        load_config(path)


def test_a_workflow_calls_a_server_of_your_own(need, no_openai_key):
    """The whole way: a workflow in a sandbox, its operator's call through the broker a run builds, to a
    rate-limit-free local OpenAI-protocol server that wants no key."""
    problem = Problem(problem_id="own/0", prompt="Say hi.", task="own", family="text", answers=("hi",),
                      scorer="exact")
    code = body('reply = await self.llm("hi there")\nreturn reply.split(": ", 1)[1]')
    workflow = Workflow(problem_id="own/0", round=1, sample_index=0, adapter="base", prompt="p", completion="c",
                        code=code, generate_s=0.0)
    with LocalAPI(latency_s=(0.01, 0.05)) as api:
        config = own_server(api.url)
        _, url, key = start_llm_server(config, "unused")

        async def run():
            executor = Executor(make_backend("process", need, timeout_s=20), build_broker(config, url, key),
                                sandboxes=1)
            await executor.ready()
            try:
                return await executor.execute(workflow, problem)
            finally:
                await executor.close()

        done = asyncio.run(run())
        served = api.stats()
    assert done.failure == "" and done.answer == "hi there" and done.llm_calls == 1, done.error
    assert served["served"] == 1 and served["rate_limited"] == 0
