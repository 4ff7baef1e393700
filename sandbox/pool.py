"""A warm pool of sandboxes: W long-lived supervisors, one job at a time each.

A job never pays a sandbox start: it goes to an idle sandbox, whose supervisor forks a fresh child
for it. A sandbox whose job broke a limit, that reports leftovers it could not clean, or that stops
answering is replaced in the background; optionally every sandbox is recycled after N jobs.

Failure classes (exactly one per run): ok, timeout, memory, output_limit, crash, invalid_workflow,
budget_exceeded, bad_llm_request (workflow-caused: may score low) and llm_error, sandbox_error
(infrastructure: never scored as a bad workflow). Only the host decides the last two, from what it
saw itself: the broker's record of a call that failed after its retries, a sandbox that died or
stopped answering. A request the API refused for its content is bad_llm_request.
"""
from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from sandbox.backend import SandboxBackend, SandboxExit
from sandbox.verdicts import AskLLM, LLMCalls, host_status

WORKFLOW_FAILURES = ("timeout", "memory", "output_limit", "crash", "invalid_workflow", "budget_exceeded",
                     "bad_llm_request")
INFRA_FAILURES = ("llm_error", "sandbox_error")
LIMIT_FAILURES = ("timeout", "memory", "output_limit")  # the sandbox is replaced after these

START_TIMEOUT_S = 120.0
SUPERVISOR_SLACK_S = 10.0  # the supervisor enforces the limit; the host waits this much longer
MAX_LINE = 1 << 25

log = logging.getLogger(__name__)

# One message from a running job -> the reply to send it (or None).
Handler = Callable[[dict], Awaitable["dict | None"]]


class SandboxBroken(Exception):
    """The sandbox itself failed (died, stopped answering, or spoke nonsense)."""


@dataclass(frozen=True)
class RunOutcome:
    failure: str  # "" for ok
    answer: str
    error: str
    output: str  # tail of the job's stdout+stderr
    seconds: float
    stray_processes: int = 0


@dataclass
class PoolStats:
    jobs: int = 0
    sandboxes_started: int = 0
    sandboxes_replaced: int = 0
    start_failures: int = 0
    infra_retries: int = 0
    stray_processes: int = 0
    failures: dict = field(default_factory=dict)


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


class SandboxPool:
    """W warm sandboxes of one backend. Create, ``await start()``, then run jobs concurrently."""

    def __init__(self, backend: SandboxBackend, size: int, *, recycle_after: int = 0):
        if size < 1:
            raise ValueError(f"a sandbox pool needs at least 1 sandbox, got {size}")
        self.backend = backend
        self.size = size
        self.recycle_after = recycle_after
        self.stats = PoolStats()
        self._idle: asyncio.Queue | None = None
        self._starting: asyncio.Future | None = None
        self._background: set[asyncio.Task] = set()
        self._all: set[Sandbox] = set()

    async def start(self) -> None:
        """Start the sandboxes. Optional: the first job starts them too (so an actor that Ray
        restarts, which runs only ``__init__``, serves again without being told)."""
        if self._starting is None:
            self._starting = asyncio.ensure_future(self._start())
        await asyncio.shield(self._starting)

    async def _start(self) -> None:
        idle: asyncio.Queue = asyncio.Queue()
        results = await asyncio.gather(*(self._new_sandbox() for _ in range(self.size)), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        for result in results:
            idle.put_nowait(result)
        self._idle = idle
        if len(errors) == self.size:
            self._starting = None  # a later call tries again
            await self.close()
            raise errors[0]

    async def _new_sandbox(self) -> Sandbox:
        try:
            sandbox = await Sandbox.start(self.backend)
        except (SandboxBroken, OSError) as exc:
            self.stats.start_failures += 1
            raise SandboxBroken(str(exc)) from None
        if not sandbox.pid1 and self.stats.sandboxes_started == 0:
            log.warning("the sandbox supervisor is not PID 1 of its own pid namespace, so processes that "
                        "leave a job's session may outlive the job")
        self.stats.sandboxes_started += 1
        self._all.add(sandbox)
        return sandbox

    async def run_workflow(self, start: dict, ask_llm: AskLLM) -> RunOutcome:
        """Run one workflow; ``start`` holds its code, problem and entry point."""
        return await self._run({"type": "job", "kind": "workflow", "start": start}, lambda: LLMCalls(ask_llm))

    async def run_program(self, source: str) -> RunOutcome:
        """Run a standalone program; ok means it exited with status 0."""
        return await self._run({"type": "job", "kind": "program", "source": source}, lambda: LLMCalls(None))

    async def _run(self, job: dict, conversation: Callable[[], LLMCalls]) -> RunOutcome:
        began = time.monotonic()
        for attempt in range(2):  # a broken sandbox is infrastructure: retry once on a fresh one
            outcome = await self._run_once(job, conversation(), began)
            if outcome.failure != "sandbox_error" or attempt == 1:
                break
            self.stats.infra_retries += 1
        self.count(outcome)
        return outcome

    def count(self, outcome: RunOutcome) -> None:
        self.stats.jobs += 1
        self.stats.failures[outcome.failure or "ok"] = self.stats.failures.get(outcome.failure or "ok", 0) + 1

    async def _run_once(self, job: dict, calls: LLMCalls, began: float) -> RunOutcome:
        sandbox = await self.take()
        if isinstance(sandbox, RunOutcome):
            return sandbox
        end = await self.converse(sandbox, job, calls.handle)
        if isinstance(end, RunOutcome):
            return end
        status, error = calls.judge(host_status(end), str(end.get("error", "")))
        return RunOutcome("" if status == "ok" else status, str(end.get("answer", "")), error,
                          str(end.get("output", "")), time.monotonic() - began, int(end.get("stray_processes", 0)))

    async def take(self) -> "Sandbox | RunOutcome":
        """An idle sandbox, or the sandbox_error outcome when none could start."""
        await self.start()
        sandbox = await self._idle.get()
        if isinstance(sandbox, BaseException):
            self._replace(None)
            return RunOutcome("sandbox_error", "", f"no sandbox could start: {sandbox}", "", 0.0)
        return sandbox

    def put_back(self, sandbox: Sandbox) -> None:
        """A sandbox taken but not used."""
        self._idle.put_nowait(sandbox)

    async def converse(self, sandbox: Sandbox, job: dict, handle: Handler | None,
                       extra_s: float = 0.0) -> "dict | RunOutcome":
        """Run ``job`` in ``sandbox`` (its wall-clock limit lengthened by ``extra_s``) and put the
        sandbox back (or replace it). The job's ``end`` message, or the outcome the host itself saw
        when the sandbox broke."""
        began = time.monotonic()
        limits = self.backend.job_limits()
        job = {**job, "limits": {**limits, "timeout_s": limits["timeout_s"] + extra_s}}
        wait_s = self.backend.limits.timeout_s + extra_s + SUPERVISOR_SLACK_S
        try:
            end = await sandbox.run(job, handle, wait_s)
        except SandboxBroken as exc:
            exit_info = await self._discard(sandbox)
            if exit_info.oom_killed:  # the memory limit took the whole sandbox down
                return RunOutcome("memory", "", "killed by the sandbox's memory limit", "",
                                  time.monotonic() - began)
            return RunOutcome("sandbox_error", "", f"{exc} ({exit_info.detail}); "
                              f"stderr: {sandbox.stderr_text()[-500:]}", "", time.monotonic() - began)
        self.stats.stray_processes += int(end.get("stray_processes", 0))
        if host_status(end) in LIMIT_FAILURES or end.get("clean") is not True or (
                self.recycle_after and sandbox.jobs >= self.recycle_after):
            await self._discard(sandbox)
        else:
            self._idle.put_nowait(sandbox)
        return end

    async def _discard(self, sandbox: Sandbox):
        """Tear ``sandbox`` down now and start its replacement in the background."""
        self._all.discard(sandbox)
        exit_info = await sandbox.close()
        self._replace(sandbox)
        return exit_info

    def _replace(self, old: Sandbox | None) -> None:
        self.stats.sandboxes_replaced += old is not None

        async def replace() -> None:
            try:
                fresh: Sandbox | BaseException = await self._new_sandbox()
            except SandboxBroken as exc:
                fresh = exc
            self._idle.put_nowait(fresh)

        task = asyncio.ensure_future(replace())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def close(self) -> None:
        # Replacements in progress finish first: cancelling one mid-start would orphan its sandbox.
        await asyncio.gather(*list(self._background), return_exceptions=True)
        await asyncio.gather(*(sandbox.close() for sandbox in list(self._all)), return_exceptions=True)
        self._all.clear()
