"""What the host concludes from a job's end, from its own records rather than the sandbox's word.

A job's ``end`` message comes from inside the sandbox, so the host accepts only known statuses
(anything else is the job's crash) and decides the two that are nobody's fault but the
infrastructure's or its own: ``llm_error`` only when the broker itself found the executor LLM
failing (a call failed for good and so did its control request, flowpo/llm/broker.py),
``budget_exceeded`` only when the host stopped the job. ``sandbox_error`` is never read from a
message at all: the pool alone reports it, when a sandbox died or stopped answering and a control
job failed as well (sandbox/pool.py).

A meter that the workflow drives never excuses it: a timeout is excused only by the wall time during
which *other* workflows held its calls back (``queued_s``, flowpo/llm/capacity.py); the time it
queued behind its own calls (``self_queued_s``) is its own, and a timeout after much of it is
suspected gaming (``flood``).
"""
from __future__ import annotations

from typing import Awaitable, Callable

from flowpo.errors import BudgetExceeded, LLMCallError, RequestRejected

# (messages, call number) -> {"content": str, ...}; raising BudgetExceeded stops the workflow as
# budget_exceeded. The call number is the runtime's request id: the order in which the workflow
# made its calls, which seeds them (flowpo.seeds.call_seed).
AskLLM = Callable[[list, int], Awaitable[dict]]

# What a job's end may say; the host maps anything else to crash, and decides llm_error and
# budget_exceeded from its own records (LLMCalls.judge), never from the sandbox's word.
END_STATUSES = {"ok", "crash", "invalid_workflow", "timeout", "memory", "output_limit", "llm_error",
                "budget_exceeded"}
# A timeout is the infrastructure's when other workflows held the workflow's calls back for this
# share of its time limit (wall time); a timeout after queueing this long behind its own calls is a
# flood: its own failure, and suspected gaming.
QUEUED_SHARE = 0.25


def blame_queueing(failure: str, error: str, queued_s: float, timeout_s: float,
                   self_queued_s: float = 0.0) -> tuple[str, str, str]:
    """(failure, error, suspect) of a run. A timeout becomes llm_error (infrastructure: never scored)
    when others held the workflow's executor-LLM calls back for QUEUED_SHARE of its limit
    (``queued_s``: wall time, its fair share of its actor's slots and the run's limit taken into
    account). Otherwise it stays a timeout, and one that queued that long behind its own calls
    (``self_queued_s``) is suspected gaming, ``flood``."""
    if failure != "timeout" or timeout_s <= 0:
        return failure, error, ""
    if queued_s >= QUEUED_SHARE * timeout_s:
        return "llm_error", (f"timed out after waiting {queued_s:.1f} s of its {timeout_s:g} s limit for executor-LLM "
                             "capacity held by other workflows (the actor's concurrency beyond its fair share, the "
                             f"run's rate limit): not the workflow's doing; {error}")[:2000], ""
    if self_queued_s >= QUEUED_SHARE * timeout_s:
        return failure, (f"{error}; its executor-LLM calls queued {self_queued_s:.1f} s behind its own (more at once "
                         f"than its fair share of the actor's concurrency, or a run window it filled itself); "
                         f"others held them back {queued_s:.1f} s")[:2000], "flood"
    return failure, error, ""


def host_status(end: dict) -> str:
    status = end.get("status")
    return status if isinstance(status, str) and status in END_STATUSES else "crash"


class LLMCalls:
    """One job's executor-LLM calls, answered through ``ask_llm``, and the host's own record of how
    they went: the only ground for calling the job's failure llm_error (the broker raised
    LLMCallError: the LLM failed, a control request included) or budget_exceeded (the host stopped
    it), whatever the job reports. Any other error of a call is the workflow's request's."""

    def __init__(self, ask_llm: AskLLM | None):
        self.ask_llm = ask_llm
        self.failures: list[str] = []  # infrastructure: the broker found the executor LLM failing
        self.rejections: list[str] = []  # the workflow's own: malformed, refused or failing requests
        self.budget_kill = False

    async def handle(self, message: dict) -> dict | None:
        if message.get("type") != "llm_request":
            return None
        reply = {"id": message.get("id")}
        try:
            if self.ask_llm is None:
                raise RequestRejected("this job has no LLM")
            reply.update(type="llm_response", **await self.ask_llm(message.get("messages"), message.get("id")))
        except BudgetExceeded as exc:
            self.budget_kill = True
            return {"type": "kill", "status": "budget_exceeded", "error": str(exc)}
        except RequestRejected as exc:
            self.rejections.append(str(exc)[:500])
            reply.update(type="llm_error", error=self.rejections[-1])
        except LLMCallError as exc:  # the broker retried, and its control request failed too
            self.failures.append(f"{type(exc).__name__}: {exc}"[:500])
            reply.update(type="llm_error", error=self.failures[-1])
        except Exception as exc:  # noqa: BLE001 - nothing outside the request was seen failing
            self.rejections.append(f"the host could not make this request: {type(exc).__name__}: {exc}"[:500])
            reply.update(type="llm_error", error=self.rejections[-1])
        return reply

    def judge(self, status: str, error: str) -> tuple[str, str]:
        if self.failures and status != "budget_exceeded":
            return "llm_error", self.failures[-1]  # never the workflow's fault, whatever it made of it
        if status == "budget_exceeded" and not self.budget_kill:
            return "crash", "the job claimed a budget stop that the host never made"
        if status == "llm_error":
            if self.rejections:
                return "bad_llm_request", self.rejections[-1]
            return "crash", "the job reported an LLM error that the broker never saw"
        return status, error
