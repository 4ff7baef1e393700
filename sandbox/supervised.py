"""One sandbox: a long-lived supervisor process (in a container or a bubblewrap namespace) that
speaks JSON lines with the host and forks a fresh child for each job it is given. The pool
(sandbox/pool.py) keeps W of them warm.

The conversation runs on the supervisor's stdin and stdout where the host starts it directly
(bubblewrap). A container's stdio reaches the host through three relays (the docker CLI, dockerd,
containerd's shim), each a copy and a wake-up per message; a Docker sandbox instead connects to a
unix socket the host listens on, in a fresh directory mounted into the container (``HostSocket``).
The host takes the first connection, then removes the socket: nothing started later in the
sandbox (a job) can reach it.
"""
from __future__ import annotations

import asyncio
import itertools
import json
import os
import secrets
import shutil
import tempfile
import time
from pathlib import Path
from typing import Awaitable, Callable

from flowpo.node_tmp import sweep_dead
from sandbox.backend import SandboxBackend, SandboxExit

START_TIMEOUT_S = 120.0
RESTORE_TIMEOUT_S = 60.0  # killing a job's leftovers and emptying its files: milliseconds, unless broken
MAX_LINE = 1 << 25

# One message from a running job -> the reply to send it (or None).
Handler = Callable[[dict], Awaitable["dict | None"]]


class SandboxBroken(Exception):
    """The sandbox itself failed (died, stopped answering, or spoke nonsense)."""


class HostSocket:
    """The host's end of a container's conversation: a unix socket in a directory of its own, which
    the container mounts read-only. ``accept`` takes one connection (the supervisor's, which connects
    before it runs anything else) and removes the socket and its directory."""

    PREFIX = "flowpo-host-"  # <prefix><pid>-*: a killed process's directory goes with a later start
    MAX_PATH = 100  # bytes: a unix socket's path must fit sockaddr_un (108, with its NUL)

    def __init__(self) -> None:
        sweep_dead(self.PREFIX)
        self.directory = Path(tempfile.mkdtemp(prefix=f"{self.PREFIX}{os.getpid()}-"))
        self.directory.chmod(0o711)  # the sandbox's uid may pass, no one may list it
        self.path = self.directory / secrets.token_hex(8)
        self.server: asyncio.AbstractServer | None = None
        self._connected: asyncio.Future = asyncio.get_running_loop().create_future()

    @classmethod
    async def open(cls) -> "HostSocket | None":
        """A listening socket, or None where the temporary directory's path is too long for one
        (the sandbox then speaks on its stdio, through Docker's relay)."""
        door = cls()
        if len(os.fsencode(door.path)) > cls.MAX_PATH:
            door.remove()
            return None
        door.server = await asyncio.start_unix_server(door._connect, path=str(door.path), limit=MAX_LINE)
        door.path.chmod(0o666)  # the sandbox's uid is not the host's
        return door

    def _connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._connected.done():
            writer.close()  # only the first connection is the supervisor's
        else:
            self._connected.set_result((reader, writer))

    async def accept(self, proc: asyncio.subprocess.Process, timeout_s: float):
        """The supervisor's connection (reader, writer); SandboxBroken when its process ends or the
        time runs out first. The socket is removed either way."""
        exited = asyncio.ensure_future(proc.wait())
        try:
            done, _ = await asyncio.wait({self._connected, exited}, timeout=timeout_s,
                                         return_when=asyncio.FIRST_COMPLETED)
            if self._connected in done:
                return self._connected.result()
            raise SandboxBroken("its process exited before the supervisor connected" if exited in done
                                else f"the supervisor did not connect within {timeout_s:.0f} s")
        finally:
            exited.cancel()
            self.remove()

    def remove(self) -> None:
        if self.server is not None:
            self.server.close()
        shutil.rmtree(self.directory, ignore_errors=True)


class Sandbox:
    """One warm sandbox: its supervisor process and the conversation with it (on a host socket, or
    on the process's stdio)."""

    def __init__(self, backend: SandboxBackend, name: str, proc: asyncio.subprocess.Process):
        self.backend, self.name, self.proc = backend, name, proc
        self.reader, self.writer = proc.stdout, proc.stdin  # or the host socket's, once connected
        self.jobs = 0
        self.pid1 = False  # the supervisor is its namespace's init (so it can sweep every process)
        self.stderr_tail = bytearray()
        self._job_ids = itertools.count(1)
        self.current_job: int | None = None
        self._stderr_task = asyncio.ensure_future(self._drain_stderr())

    @classmethod
    async def start(cls, backend: SandboxBackend) -> "Sandbox":
        name = backend.new_name()
        door = await HostSocket.open() if backend.host_socket else None
        try:
            proc = await asyncio.create_subprocess_exec(
                *(backend.argv(name, door.path) if door else backend.argv(name)),
                stdin=asyncio.subprocess.DEVNULL if door else asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, limit=MAX_LINE,
                **backend.spawn_kwargs(name))
        except BaseException:
            if door:
                door.remove()
            raise
        sandbox = cls(backend, name, proc)
        try:
            if door:
                sandbox.reader, sandbox.writer = await door.accept(proc, START_TIMEOUT_S)
            ready = await asyncio.wait_for(sandbox._read(), START_TIMEOUT_S)
            if ready.get("type") != "ready":
                raise SandboxBroken(f"expected the supervisor's ready line, got {str(ready)[:200]}")
            sandbox.pid1 = bool(ready.get("pid1"))
        except (SandboxBroken, asyncio.TimeoutError) as exc:
            await sandbox.close()
            raise SandboxBroken(f"sandbox {name} did not start: {exc or 'timeout'}; "
                                f"its stderr: {sandbox.stderr_text()[-800:]}") from None
        return sandbox

    async def _drain_stderr(self) -> None:
        while chunk := await self.proc.stderr.read(65536):
            self.stderr_tail += chunk
            del self.stderr_tail[:-8000]

    def stderr_text(self) -> str:
        return self.stderr_tail.decode(errors="replace")

    async def _read(self) -> dict:
        try:
            line = await self.reader.readline()
        except (ValueError, asyncio.LimitOverrunError) as exc:
            raise SandboxBroken(f"over-long line from the supervisor: {exc}") from None
        except ConnectionError as exc:  # a socket whose peer died after the host wrote to it
            raise SandboxBroken(f"the sandbox exited ({type(exc).__name__})") from None
        if not line:
            raise SandboxBroken("the sandbox exited")
        try:
            message = json.loads(line)
        except ValueError:
            raise SandboxBroken(f"malformed line from the supervisor: {line[:120]!r}") from None
        if not isinstance(message, dict):
            raise SandboxBroken(f"malformed line from the supervisor: {line[:120]!r}")
        return message

    def _send(self, message: dict) -> None:
        if self.writer is None or self.writer.is_closing():
            raise SandboxBroken("the sandbox's channel is closed")
        self.writer.write((json.dumps(message) + "\n").encode())

    async def run(self, job: dict, handle: Handler | None, wait_s: float) -> dict:
        """Send one job and converse until its ``end`` message, which is returned. Each other
        message of the job goes to ``handle``, concurrently; what it returns is sent back."""
        job_id = next(self._job_ids)
        self.jobs += 1
        self.current_job = job_id
        tasks: set[asyncio.Task] = set()

        async def answer(message: dict) -> None:
            reply = await handle(message)
            if reply is not None:
                self.send_to_job(job_id, reply)

        self._send({**job, "job": job_id})
        deadline = time.monotonic() + wait_s  # for the whole job: a flood of messages must not extend it
        try:
            while True:
                message = await asyncio.wait_for(self._read(), max(0.0, deadline - time.monotonic()))
                if message.get("job") != job_id:
                    continue
                if message.get("type") == "end":
                    return message
                if handle is not None:
                    task = asyncio.ensure_future(answer(message))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
        except asyncio.TimeoutError:
            raise SandboxBroken(f"the supervisor did not end the job within {wait_s:.0f} s") from None
        finally:
            self.current_job = None
            for task in tasks:
                task.cancel()

    async def restored(self, wait_s: float) -> dict:
        """The supervisor's ``restored`` line after the last job's end: whether the sandbox is back to
        its state before the first job (``clean``) and how many processes the job left behind."""
        deadline = time.monotonic() + wait_s
        try:
            while True:
                message = await asyncio.wait_for(self._read(), max(0.0, deadline - time.monotonic()))
                if message.get("type") == "restored":
                    return message
        except asyncio.TimeoutError:
            raise SandboxBroken(f"the supervisor did not restore the sandbox within {wait_s:.0f} s") from None

    def send_to_job(self, job_id: int, message: dict) -> None:
        """A message for a running job; quietly dropped when the sandbox is going away (the job's
        end is being handled by its reader)."""
        try:
            self._send({**message, "job": job_id})
        except SandboxBroken:
            pass

    async def close(self) -> SandboxExit:
        if self.writer is not None and not self.writer.is_closing():
            self.writer.close()  # the supervisor reads its end and exits
        try:
            await asyncio.wait_for(self.proc.wait(), 2)
        except asyncio.TimeoutError:
            self.proc.kill()
        exit_info = await self.backend.remove(self.name)
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()
        self._stderr_task.cancel()
        return exit_info
