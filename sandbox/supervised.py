"""One sandbox: a long-lived supervisor process (in a container or a bubblewrap namespace) that
speaks JSON lines on its stdin and stdout and forks a fresh child for each job it is given. The pool
(sandbox/pool.py) keeps W of them warm.
"""
from __future__ import annotations

import asyncio
import itertools
import json
import time
from typing import Awaitable, Callable

from sandbox.backend import SandboxBackend, SandboxExit

START_TIMEOUT_S = 120.0
RESTORE_TIMEOUT_S = 60.0  # killing a job's leftovers and emptying its files: milliseconds, unless broken
MAX_LINE = 1 << 25

# One message from a running job -> the reply to send it (or None).
Handler = Callable[[dict], Awaitable["dict | None"]]


class SandboxBroken(Exception):
    """The sandbox itself failed (died, stopped answering, or spoke nonsense)."""


class Sandbox:
    """One warm sandbox: its supervisor process and the stdio conversation with it."""

    def __init__(self, backend: SandboxBackend, name: str, proc: asyncio.subprocess.Process):
        self.backend, self.name, self.proc = backend, name, proc
        self.jobs = 0
        self.pid1 = False  # the supervisor is its namespace's init (so it can sweep every process)
        self.stderr_tail = bytearray()
        self._job_ids = itertools.count(1)
        self.current_job: int | None = None
        self._stderr_task = asyncio.ensure_future(self._drain_stderr())

    @classmethod
    async def start(cls, backend: SandboxBackend) -> "Sandbox":
        name = backend.new_name()
        proc = await asyncio.create_subprocess_exec(
            *backend.argv(name), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, limit=MAX_LINE, **backend.spawn_kwargs(name))
        sandbox = cls(backend, name, proc)
        try:
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
            line = await self.proc.stdout.readline()
        except (ValueError, asyncio.LimitOverrunError) as exc:
            raise SandboxBroken(f"over-long line from the supervisor: {exc}") from None
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
        if self.proc.stdin is None or self.proc.stdin.is_closing():
            raise SandboxBroken("the sandbox's stdin is closed")
        self.proc.stdin.write((json.dumps(message) + "\n").encode())

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
        if self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.close()
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
