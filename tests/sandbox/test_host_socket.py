"""A Docker sandbox's conversation with the host runs on a unix socket the host listens on, not on
the container's stdio (three relays: the docker CLI, dockerd, containerd's shim). The socket is the
supervisor's alone: the host takes one connection and removes it before any job runs."""
from __future__ import annotations

import asyncio
import glob
import json
import os
import tempfile

import pytest

from sandbox.supervised import HostSocket, Sandbox, SandboxBroken
from tests.sandbox.conftest import PoolRunner, body, leftovers, make_backend


def test_the_host_socket_takes_one_connection_and_leaves_nothing():
    async def scenario():
        door = await HostSocket.open()
        assert oct(door.directory.stat().st_mode & 0o777) == "0o711"  # passable, not listable
        sleeper = await asyncio.create_subprocess_exec("sleep", "30")
        first = await asyncio.open_unix_connection(str(door.path))
        second = await asyncio.open_unix_connection(str(door.path))  # someone else, in the same window
        reader, writer = await door.accept(sleeper, timeout_s=10)
        first[1].write(b"from the supervisor\n")
        line = await reader.readline()
        refused = await asyncio.wait_for(second[0].read(), 10)  # closed by the host: EOF
        gone = not door.path.exists() and not door.directory.exists()
        sleeper.kill()
        await sleeper.wait()
        for w in (writer, first[1], second[1]):
            w.close()
        return line, refused, gone

    line, refused, gone = asyncio.run(scenario())
    assert line == b"from the supervisor\n" and refused == b"" and gone


def test_a_process_that_ends_before_connecting_is_a_clear_error():
    async def scenario():
        door = await HostSocket.open()
        quitter = await asyncio.create_subprocess_exec("true")
        try:
            await door.accept(quitter, timeout_s=30)
        finally:
            assert not door.directory.exists()

    with pytest.raises(SandboxBroken, match="exited before the supervisor connected"):
        asyncio.run(scenario())


def test_a_temporary_directory_too_deep_for_a_socket_falls_back_to_stdio(tmp_path, monkeypatch):
    deep = tmp_path / ("d" * 90)
    deep.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(deep))
    assert asyncio.run(HostSocket.open()) is None
    assert list(deep.iterdir()) == []


@pytest.mark.docker
def test_a_docker_sandbox_talks_on_the_socket_and_its_jobs_find_nothing_of_it(need):
    backend = make_backend("docker", need, timeout_s=10)
    before = set(glob.glob(os.path.join(tempfile.gettempdir(), "flowpo-host-*")))
    runner = PoolRunner(backend, size=1)
    try:
        sandbox: Sandbox = next(iter(runner.pool._all))
        assert sandbox.writer is not sandbox.proc.stdin and sandbox.proc.stdin is None  # no stdio relay
        assert set(glob.glob(os.path.join(tempfile.gettempdir(), "flowpo-host-*"))) == before  # removed
        # Every socket the job holds, by its peer's address: the supervisor's connection would name
        # the host's socket; the job's own (its event loop's socketpair) are unnamed.
        look = body("import os, json, socket\n"
                    "try:\n"
                    "    seen = os.listdir('/flowpo-host')\n"
                    "except PermissionError:\n"
                    "    seen = 'not listable'\n"
                    "peers = []\n"
                    "for fd in sorted(int(fd) for fd in os.listdir('/proc/self/fd')):\n"
                    "    try:\n"
                    "        s = socket.socket(fileno=os.dup(fd))\n"
                    "    except OSError:\n"
                    "        continue\n"
                    "    peers.append(s.getpeername())\n"
                    "    s.close()\n"
                    "return json.dumps({'seen': seen, 'env': os.environ.get('FLOWPO_HOST_SOCKET'), 'peers': peers})")
        outcome = runner.workflow(look)
        assert outcome.failure == "", outcome.error
        found = json.loads(outcome.answer)
        assert found["seen"] in ([], "not listable") and found["env"] is None, found
        assert found["peers"] and all(peer == "" for peer in found["peers"]), found  # its own socketpair only
    finally:
        runner.close()
    assert leftovers("docker") == []


@pytest.mark.docker
def test_a_container_killed_while_the_host_answers_it_is_the_infrastructures(need):
    """The host writes an LLM reply to a sandbox whose container was just killed: its socket then
    fails (EPIPE) rather than ending cleanly, and the job is still retried on a fresh sandbox."""
    import subprocess

    runner = PoolRunner(make_backend("docker", need, timeout_s=20), size=1)
    killed = []

    async def kill_then_answer(messages, call=0):
        if not killed:
            (sandbox,) = [s for s in runner.pool._all if s.current_job is not None]
            # Blocking, on purpose: the event loop writes the reply before it reads the socket's end.
            subprocess.run(["docker", "kill", sandbox.name], check=True, capture_output=True)
            killed.append(sandbox.name)
        return {"content": "72"}

    try:
        asks = body("return (await Custom(self.llm)(input='q')).response")
        outcome = runner.workflow(asks, kill_then_answer)
        stats = runner.pool.stats
    finally:
        runner.close()
    assert killed and outcome.failure == "" and outcome.answer == "72", outcome.error
    assert stats.infra_retries == 1, stats
    assert leftovers("docker") == []
