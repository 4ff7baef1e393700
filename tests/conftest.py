"""Shared fixtures. A missing component skips locally with how to get it; in CI (CI=true) it fails,
since only GPU tests may skip there.

`make test` runs the suite on two pytest-xdist workers (``--dist loadgroup``): the longest tests,
that start a stack of their own (engines, Ray, a driver: marked ``stack``), and the tests of the
session's executor-LLM server are one group, run one after the other by one worker, from the start;
the other worker takes the rest a module at a time, so that a module's fixtures start once. Which
tests are ``stack`` balances the two: in a fresh-clone run whose suite took 1855 s (2026-12-07), the
stack group's tests took 1769 s and the others' (those of 3 s or more) 1702 s; the serve tests
(118 s) left the stack group when the server's tests joined it. Each worker has a Ray temporary
directory of its own: a bare ``ray.init()`` never joins the other worker's cluster
(``ray.cluster_utils`` announces its cluster in the temporary directory's ``ray_current_cluster``)."""
from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from pathlib import Path

import pytest

from flowpo.config import DEFAULT_MODEL_DIR

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
if WORKER:
    os.environ.setdefault("RAY_TMPDIR", f"/tmp/ray-{WORKER}")  # short: Ray's socket paths live under it
STACK = "stack"


def pytest_itemcollected(item):
    """Under xdist: the stack tests in one group, every other test in its module's group (marked as each
    item is collected: xdist reads the marks in its own pytest_collection_modifyitems). A test that
    uses the session's executor-LLM server (``executor_llm_url``) is in the stack group too: the
    server is a session fixture, so on one worker it starts once a session, not once a worker."""
    if WORKER:
        stack = item.get_closest_marker(STACK) is not None or "executor_llm_url" in item.fixturenames
        item.add_marker(pytest.mark.xdist_group(STACK if stack else item.nodeid.split("::")[0]))


def pytest_collection_modifyitems(config, items):
    """Under xdist: the stack group first in the queue (it is the longest chain of the run)."""
    if WORKER:
        items.sort(key=lambda item: item.get_closest_marker("xdist_group").args[0] != STACK)  # stable


class BackgroundLoop:
    """An event loop on its own thread, as inside an async Ray actor: objects bound to one loop
    (a vLLM AsyncLLM, a sandbox pool) live across synchronous test calls."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def call(self, coro, timeout: float = 300):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def require(ok: bool, what: str) -> None:
    if not ok:
        (pytest.fail if IN_CI else pytest.skip)(f"{what} (run `make setup`)")


@pytest.fixture(scope="session")
def need():
    """``require`` for fixtures in nested conftest files."""
    return require


@pytest.fixture(scope="session")
def model_dir() -> str:
    from flowpo.model import is_model_dir

    path = Path(DEFAULT_MODEL_DIR).expanduser()
    require(is_model_dir(path), f"the embedded model is not converted at {path}")
    return str(path)


@pytest.fixture(scope="session")
def docker_backend():
    from flowpo.errors import FlowPOError
    from sandbox.docker_backend import DockerBackend, SandboxLimits

    backend = DockerBackend("flowpo-sandbox:latest", SandboxLimits(timeout_s=20, memory_mb=256, pids_limit=64))
    try:
        backend.check()
    except FlowPOError as exc:
        require(False, str(exc))
    return backend


@pytest.fixture(scope="session")
def vllm_available() -> None:
    try:
        import vllm  # noqa: F401
    except ImportError:
        require(False, "vLLM is not installed")


@pytest.fixture(scope="session")
def executor_llm_url(model_dir, vllm_available, tmp_path_factory):
    """A real vLLM OpenAI-compatible server on loopback, serving the embedded model."""
    from actors.llm_server import LLMServer

    log = tmp_path_factory.mktemp("llm") / "server.log"
    server = LLMServer(model_dir, "flowpo-executor", host="127.0.0.1", max_model_len=2048, kv_cache_gb=0.5,
                       gpu_memory_utilization=0.9, enforce_eager=True, log_path=str(log))
    url = server.start()
    yield url
    server.stop()


@pytest.fixture(scope="session")
def tiny_model_dir(model_dir, tmp_path_factory) -> str:
    """A tiny random-weight Llama with the real SmolLM2 tokenizer: fast learner tests."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    out = tmp_path_factory.mktemp("tiny-model")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id)
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return str(out)


def start_session_ray() -> None:
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=True)


@pytest.fixture(scope="session")
def ray_local():
    """The session's Ray instance on the 2 CPUs. A test that starts one of its own shuts it down
    (``ray_of_its_own``); it starts again when a test next asks for it (``pytest_runtest_setup``),
    not before: a worker whose next tests start their own would start one for nobody."""
    import ray

    start_session_ray()
    yield
    ray.shutdown()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """The session's Ray again for a test that asks for it (before its fixtures, which may be of a
    module's scope), once a test with a Ray of its own, or one that shut Ray down, ran before it."""
    if "ray_local" in item.fixturenames:
        start_session_ray()


@pytest.fixture
def fresh_ray():
    """A Ray instance of this test's own (a driver that starts actors by name, a custom cluster);
    the session's comes back when a test next asks for it."""
    with ray_of_its_own() as ray:
        yield ray


@contextlib.contextmanager
def ray_of_its_own():
    """Ray, shut down for the caller to start its own (``fresh_ray``, or a fixture of a wider scope),
    and shut down after it; the session's comes back when a test next asks for it (``ray_local``)."""
    import ray

    ray.shutdown()
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.fixture
def local_ray(fresh_ray):
    """A Ray instance of this test's own on the 2 CPUs, as `flowpo train` starts one."""
    fresh_ray.init(num_cpus=2, include_dashboard=False)
    return fresh_ray


@pytest.fixture(scope="session")
def random_adapter(model_dir, tmp_path_factory):
    """A LoRA adapter with non-zero random weights: it must change the model's log-probs."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    peft_model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"],
                                                  init_lora_weights=False, task_type="CAUSAL_LM"))
    out = tmp_path_factory.mktemp("adapter")
    peft_model.save_pretrained(out)
    return str(out)
