"""Sandbox pools for the tests, parametrized over both backends (real Docker engine, real bwrap).

A pool lives on its own event-loop thread, as it does inside an executor actor, so one warm pool
serves a whole test module."""
from __future__ import annotations

import os
import socket
import subprocess
import time

import pytest

from tests.conftest import BackgroundLoop

SECRET = "sk-flowpo-test-secret-on-the-host"
ATTACK_LIMITS = dict(timeout_s=3, memory_mb=128, pids_limit=32, max_output_bytes=100_000, scratch_mb=16,
                     scratch_inodes=512, file_size_mb=4, open_files=64)


def body(statements: str) -> str:
    """A workflow whose ``__call__`` runs ``statements``; ``self.llm`` is the executor LLM."""
    lines = "\n".join("        " + line for line in statements.strip().splitlines())
    return ("class Workflow:\n    def __init__(self, llm):\n        self.llm = llm\n\n"
            f"    async def __call__(self, problem, entry_point):\n{lines}\n")


async def no_llm(messages, call=0):
    raise AssertionError("this workflow must not call the LLM")


class PoolRunner(BackgroundLoop):
    """A started SandboxPool on a private event loop thread; call it from synchronous tests."""

    def __init__(self, backend, size: int):
        from sandbox.pool import SandboxPool

        super().__init__()
        self.backend = backend
        self.pool = SandboxPool(backend, size)
        self.call(self.pool.start())

    def workflow(self, code: str, ask_llm=no_llm, problem: str = "p", entry_point: str = "f"):
        start = {"code": code, "problem": problem, "entry_point": entry_point}
        return self.call(self.pool.run_workflow(start, ask_llm))

    def program(self, source: str):
        return self.call(self.pool.run_program(source))

    def close(self) -> None:
        self.call(self.pool.close())
        self.stop()


def make_backend(kind: str, require, **limits):
    from flowpo.errors import FlowPOError
    from sandbox.backend import SandboxLimits
    from sandbox.docker_backend import DockerBackend
    from sandbox.process_backend import ProcessBackend

    sandbox_limits = SandboxLimits(**limits)
    if kind == "docker":
        backend = DockerBackend("flowpo-sandbox:latest", sandbox_limits)
        try:
            backend.check()
        except FlowPOError as exc:
            require(False, str(exc))
        return backend
    backend = ProcessBackend(sandbox_limits)
    backend.check()
    require(backend.namespaces, "bubblewrap cannot create user namespaces on this machine")
    return backend


def leftovers(kind: str) -> list[str]:
    """Sandboxes this test process started that are still alive (waits a little for removals)."""
    for _ in range(20):
        if kind == "docker":
            owner = f"label=flowpo.owner={socket.gethostname()}:{os.getpid()}"
            out = subprocess.run(["docker", "ps", "-a", "--filter", owner, "--format", "{{.Names}}"],
                                 capture_output=True, text=True, check=True).stdout
            alive = out.split()
        else:
            out = subprocess.run(["ps", "-eo", "ppid=,args="], capture_output=True, text=True, check=True).stdout
            alive = [line for line in out.splitlines()
                     if "flowpo_supervisor.py" in line and int(line.split()[0]) == os.getpid()]
        if not alive:
            return []
        time.sleep(0.25)
    return alive


@pytest.fixture(scope="module", params=["docker", "process"])
def backend_kind(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def attack_pool(backend_kind, need):
    """One sandbox, so every attack and the probe after it share the same warm sandbox."""
    os.environ["FLOWPO_TEST_SECRET"] = SECRET  # a secret in the host environment the sandbox starts from
    runner = PoolRunner(make_backend(backend_kind, need, **ATTACK_LIMITS), size=1)
    yield runner
    runner.close()
    del os.environ["FLOWPO_TEST_SECRET"]
    assert leftovers(backend_kind) == [], "sandboxes outlived their pool"
