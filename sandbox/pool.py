"""A warm pool of sandboxes: W long-lived supervisors, one job at a time each.

A job never pays a sandbox start: it goes to an idle sandbox, whose supervisor has a fresh child
forked and waiting for it. After the job's end the supervisor restores the sandbox (sandbox/runtime/
flowpo_supervisor.py); the pool takes it back as idle only once it says ``restored``, clean. A
sandbox whose job broke a limit, that reports leftovers it could not clean, or that stops answering
is replaced in the background; optionally every sandbox is recycled after N jobs.

Failure classes (exactly one per run): ok, timeout, memory, output_limit, crash, invalid_workflow,
budget_exceeded, bad_llm_request (workflow-caused: may score low) and llm_error, sandbox_error
(infrastructure: never scored as a bad workflow). Only the host decides the last two, from what it
saw itself: the broker's record of a call that failed after its retries, a sandbox that died or
stopped answering. A request the API refused for its content is bad_llm_request.

A sandbox that breaks during a job is retried once on a fresh one. When that one breaks during the
job too, a control job (a program that does nothing) runs on a third: if it runs, sandboxes work
and the job broke them itself (a crash, suspect ``broke_sandbox``); if it fails too, sandbox_error.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Callable

from sandbox.backend import SandboxBackend
from sandbox.supervised import RESTORE_TIMEOUT_S, Handler, Sandbox, SandboxBroken
from sandbox.verdicts import AskLLM, LLMCalls, host_status

WORKFLOW_FAILURES = ("timeout", "memory", "output_limit", "crash", "invalid_workflow", "budget_exceeded",
                     "bad_llm_request")
INFRA_FAILURES = ("llm_error", "sandbox_error")
LIMIT_FAILURES = ("timeout", "memory", "output_limit")  # the sandbox is replaced after these

SUPERVISOR_SLACK_S = 10.0  # the supervisor enforces the limit; the host waits this much longer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunOutcome:
    failure: str  # "" for ok
    answer: str
    error: str
    output: str  # tail of the job's stdout+stderr
    seconds: float
    suspect: str = ""  # what looks like gaming: broke_sandbox


@dataclass
class PoolStats:
    jobs: int = 0
    sandboxes_started: int = 0
    sandboxes_replaced: int = 0
    start_failures: int = 0
    infra_retries: int = 0
    control_jobs: int = 0  # run after a job broke two sandboxes, to tell whose doing it was
    stray_processes: int = 0
    failures: dict = field(default_factory=dict)


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
        broke = []  # what each sandbox that broke during this job said
        for attempt in range(2):  # a broken sandbox may be the infrastructure's: retry once on a fresh one
            outcome, during_job = await self._run_once(job, conversation(), began)
            if during_job:
                broke.append(outcome.error)
            if outcome.failure != "sandbox_error" or attempt == 1:
                break
            self.stats.infra_retries += 1
        if len(broke) == 2 and await self._control_runs():
            outcome = RunOutcome("crash", "", f"the job broke two sandboxes in turn, while a control job ran on a "
                                 f"fresh one: its own doing (first: {broke[0][:300]}; then: {broke[1][:300]})", "",
                                 time.monotonic() - began, suspect="broke_sandbox")
        self.count(outcome)
        return outcome

    async def _control_runs(self) -> bool:
        """Whether a job that does nothing runs on a fresh sandbox (it is not counted as a job)."""
        self.stats.control_jobs += 1
        outcome, _ = await self._run_once({"type": "job", "kind": "program", "source": "pass\n"}, LLMCalls(None),
                                          time.monotonic())
        return outcome.failure == ""

    def count(self, outcome: RunOutcome) -> None:
        self.stats.jobs += 1
        self.stats.failures[outcome.failure or "ok"] = self.stats.failures.get(outcome.failure or "ok", 0) + 1

    async def _run_once(self, job: dict, calls: LLMCalls, began: float) -> tuple[RunOutcome, bool]:
        """The outcome, and whether the sandbox broke while it ran the job (not before)."""
        sandbox = await self.take()
        if isinstance(sandbox, RunOutcome):
            return sandbox, False
        end = await self.converse(sandbox, job, calls.handle)
        if isinstance(end, RunOutcome):
            return end, end.failure == "sandbox_error"
        status, error = calls.judge(host_status(end), str(end.get("error", "")))
        return RunOutcome("" if status == "ok" else status, str(end.get("answer", "")), error,
                          str(end.get("output", "")), time.monotonic() - began), False

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
        self._in_background(self._after_job(sandbox, replace=host_status(end) in LIMIT_FAILURES or bool(
            self.recycle_after and sandbox.jobs >= self.recycle_after)))
        return end

    async def _after_job(self, sandbox: Sandbox, replace: bool) -> None:
        """Off the job's path: wait for the supervisor's restore, then put the sandbox back as idle,
        or replace it (its job broke a limit, it is due for recycling, or it is not clean)."""
        try:
            restored = await sandbox.restored(RESTORE_TIMEOUT_S)
        except SandboxBroken as exc:
            log.warning("sandbox %s was not restored after its job, so it is replaced: %s", sandbox.name, exc)
            restored = {}
        self.stats.stray_processes += int(restored.get("stray_processes", 0))
        if replace or restored.get("clean") is not True:
            await self._discard(sandbox)
        else:
            self._idle.put_nowait(sandbox)

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

        self._in_background(replace())

    def _in_background(self, work) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def close(self) -> None:
        # Work in progress finishes first: cancelling a replacement mid-start would orphan its
        # sandbox, and a restore that ends in a replacement starts one more.
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)
        await asyncio.gather(*(sandbox.close() for sandbox in list(self._all)), return_exceptions=True)
        self._all.clear()
