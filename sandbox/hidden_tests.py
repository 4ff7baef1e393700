"""The host's side of a hidden test: the candidate in one sandbox, the test harness in another,
and a relay between them that lets only calls and plain-data replies through.

The candidate's process never holds the test, its expected values or a token; the harness's
process never runs candidate code. The harness decides the verdict; the host decides only what
it saw itself: a sandbox that broke (``sandbox_error``, infrastructure) and a timeout of either
side (the candidate's failure: a test must finish within the limits). See
``sandbox/runtime/flowpo_tests.py`` for the in-sandbox halves and the message shapes.
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
import secrets
import time
from dataclasses import dataclass

from sandbox.pool import LIMIT_FAILURES, RunOutcome, SandboxPool
from sandbox.supervised import Sandbox
from sandbox.verdicts import host_status

REPLY_FIELDS = {"value": str, "raised": str, "error": str, "exit": bool, "not_plain": str}
CANDIDATE_GRACE_S = 5.0
MAX_FUNCTION_NAME = 200


@dataclass(frozen=True)
class TestVerdict:
    """What a hidden test found: ``failure`` is "" (the test ran), or timeout, memory,
    output_limit, crash (of the harness) or sandbox_error (infrastructure: not scored)."""
    passed: bool
    reason: str
    suspect: str = ""  # what looks like reward gaming: not_plain, exited, forged, ...
    failure: str = ""
    calls: int = 0
    seconds: float = 0.0
    output: str = ""  # the tail of the candidate's own stdout and stderr


class CandidateLink:
    """The relay's candidate end: forwards the harness's calls, matches the replies by ids the
    host chose, and answers ``gone`` once the candidate's job has ended."""

    def __init__(self, sandbox: Sandbox):
        self.sandbox = sandbox
        self.job_id: int | None = None
        self.started = asyncio.Event()  # set once the candidate's job id is known (or it never ran)
        self.pending: dict[int, asyncio.Future] = {}
        self.ended = ""  # why the candidate's job ended, once it has
        self.forged = 0  # replies for calls the host never made, or of the wrong shape

    async def receive(self, message: dict) -> None:
        """A message from the candidate's job (only replies get through its supervisor). A reply to
        a call never made is counted; a malformed reply to a real call answers it as not plain data,
        so the call never hangs."""
        future = self.pending.pop(message.get("id"), None) if isinstance(message.get("id"), int) else None
        if future is None or future.done():
            self.forged += 1
            return
        reply = {k: v for k, v in message.items() if k in REPLY_FIELDS and isinstance(v, REPLY_FIELDS[k])}
        if len(reply) != len(message) - 3:  # type, job, id: anything else is extra or mistyped
            self.forged += 1
            reply = {"not_plain": "a malformed reply (extra or mistyped fields)"}
        future.set_result(reply)

    async def call(self, message: dict) -> dict:
        """A harness call answered by the candidate, as the reply to send back to the harness."""
        reply = {"type": "reply", "id": message.get("id")}
        name, args, kwargs = message.get("function"), message.get("args"), message.get("kwargs")
        if not (isinstance(name, str) and len(name) <= MAX_FUNCTION_NAME and isinstance(args, str)
                and isinstance(kwargs, str)):
            return {**reply, "gone": "the harness sent a malformed call"}
        await self.started.wait()
        if self.ended or self.job_id is None:
            return {**reply, "gone": self.ended or "the candidate is not running"}
        # An id the candidate cannot guess: a reply it sends ahead for "call 1" never answers call 1,
        # and, sent before the call's own reply, it is counted before the harness has its answer.
        while (call_id := secrets.randbits(62)) in self.pending:
            pass
        future = self.pending[call_id] = asyncio.get_running_loop().create_future()
        self.sandbox.send_to_job(self.job_id, {"type": "call", "id": call_id, "function": name,
                                               "args": args, "kwargs": kwargs})
        return {**reply, **await future}

    def end(self, why: str) -> None:
        self.ended = why
        self.started.set()
        for future in self.pending.values():
            if not future.done():
                future.set_result({"gone": why})
        self.pending.clear()


class HiddenTests:
    """Two warm pools with fixed roles, ``tests_at_once`` sandboxes each: one for candidates, one
    for test harnesses. A sandbox never changes role: every job is a fork of its warm supervisor,
    whose freed memory still holds the lines of earlier jobs, so a sandbox that ever ran a test (its
    expected values) must never run a candidate. Create, ``await start()``, then ``run``."""

    def __init__(self, backend, tests_at_once: int, *, recycle_after: int = 0):
        self.candidates = SandboxPool(backend, tests_at_once, recycle_after=recycle_after)
        self.harnesses = SandboxPool(backend, tests_at_once, recycle_after=recycle_after)

    async def start(self) -> None:
        await asyncio.gather(self.candidates.start(), self.harnesses.start())

    async def close(self) -> None:
        await asyncio.gather(self.candidates.close(), self.harnesses.close(), return_exceptions=True)

    def stats(self) -> dict:
        return {"candidates": dataclasses.asdict(self.candidates.stats),
                "harnesses": dataclasses.asdict(self.harnesses.stats)}

    async def run(self, solution: str, harness: dict) -> TestVerdict:
        """Run ``harness`` (prelude, test, entry point, check) against ``solution``; a broken
        sandbox is retried once on fresh ones, like every other job."""
        for attempt in range(2):
            verdict = await self._run_once(solution, harness)
            if verdict.failure != "sandbox_error" or attempt == 1:
                break
            self.harnesses.stats.infra_retries += 1
        self.harnesses.count(RunOutcome(verdict.failure, "", verdict.reason, "", verdict.seconds))
        return verdict

    async def _run_once(self, solution: str, harness: dict) -> TestVerdict:
        began = time.monotonic()
        candidate_box = await self.candidates.take()  # always candidate first: no two tests deadlock
        if isinstance(candidate_box, RunOutcome):
            return TestVerdict(False, candidate_box.error, failure="sandbox_error")
        harness_box = await self.harnesses.take()
        if isinstance(harness_box, RunOutcome):
            self.candidates.put_back(candidate_box)
            return TestVerdict(False, harness_box.error, failure="sandbox_error")
        link = CandidateLink(candidate_box)
        candidate = asyncio.ensure_future(_candidate(self.candidates, candidate_box, solution, link))
        await asyncio.sleep(0)  # the candidate's job is sent first, so its id is known to the relay
        harness_end = await self.harnesses.converse(
            harness_box, {"type": "job", "kind": "harness", "start": harness}, link.call)
        if link.job_id is not None and not link.ended:
            candidate_box.send_to_job(link.job_id, {"type": "kill", "status": "ok", "error": "the test ended"})
        candidate_end = await candidate
        return judge(harness_end, candidate_end, link, time.monotonic() - began)


async def _candidate(pool: SandboxPool, sandbox: Sandbox, solution: str, link: CandidateLink):
    job = {"type": "job", "kind": "candidate", "start": {"source": solution}}
    # The harness's clock bounds the test; the candidate's runs longer, so that a candidate
    # waiting for a harness slow to start on a loaded machine is not timed out for it.
    task = asyncio.ensure_future(pool.converse(sandbox, job, link.receive, extra_s=CANDIDATE_GRACE_S))
    while sandbox.current_job is None and not task.done():
        await asyncio.sleep(0)
    link.job_id = sandbox.current_job
    link.started.set()
    end = await task
    if isinstance(end, RunOutcome):
        link.end(f"its sandbox failed ({end.failure})")
    else:
        link.end(f"{host_status(end)}: {str(end.get('error', ''))[:300]}")
    return end


def judge(harness_end, candidate_end, link: CandidateLink, seconds: float) -> TestVerdict:
    """The verdict from the harness's answer, unless a side broke or ran out of time."""
    for side, end in (("candidate", candidate_end), ("test harness", harness_end)):
        if isinstance(end, RunOutcome) and end.failure == "sandbox_error":
            return TestVerdict(False, f"the {side}'s sandbox failed: {end.error[:300]}", failure="sandbox_error",
                               seconds=seconds)
    output = "" if isinstance(candidate_end, RunOutcome) else str(candidate_end.get("output", ""))[-500:]
    candidate_status = candidate_end.failure if isinstance(candidate_end, RunOutcome) else host_status(candidate_end)
    if candidate_status in LIMIT_FAILURES:  # the candidate ran out of time, memory or output: its failure
        return TestVerdict(False, f"the candidate broke a limit ({candidate_status})", failure=candidate_status,
                           seconds=seconds, output=output)
    if isinstance(harness_end, RunOutcome) or host_status(harness_end) != "ok":
        failure = harness_end.failure if isinstance(harness_end, RunOutcome) else host_status(harness_end)
        error = harness_end.error if isinstance(harness_end, RunOutcome) else str(harness_end.get("error", ""))
        return TestVerdict(False, f"the test did not finish ({failure}): {error[:300]}", failure=failure,
                           seconds=seconds, output=output)
    try:
        found = json.loads(harness_end.get("answer", ""))
        passed, reason, suspect, calls = (bool(found["passed"]), str(found["reason"]), str(found["suspect"]),
                                          int(found["calls"]))
    except (ValueError, KeyError, TypeError):
        return TestVerdict(False, "the test harness gave no verdict", failure="crash", seconds=seconds)
    if link.forged:  # the host's own count: replies to calls never made, or malformed ones
        suspect = "forged"
        reason += f"; the candidate sent {link.forged} reply(s) for calls never made or malformed"
    return TestVerdict(passed and not link.forged, reason, suspect, calls=calls, seconds=seconds, output=output)
