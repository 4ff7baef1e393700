"""Which failures the host blames on the infrastructure (sandbox/verdicts.py), by hand."""
import pytest

from flowpo.errors import BudgetExceeded, LLMCallError, RequestRejected
from sandbox.verdicts import QUEUED_SHARE, LLMCalls, blame_queueing


def test_a_timeout_is_the_infrastructures_from_a_quarter_of_the_limit_held_back_by_others():
    assert QUEUED_SHARE == 0.25
    failure, error, suspect = blame_queueing("timeout", "killed at 60 s", queued_s=15.0, timeout_s=60)
    assert failure == "llm_error" and suspect == ""
    assert error.startswith("timed out after waiting 15.0 s of its 60 s limit for executor-LLM capacity held by "
                            "other workflows")
    assert error.endswith("killed at 60 s")
    assert blame_queueing("timeout", "killed", queued_s=14.9, timeout_s=60) == ("timeout", "killed", "")


def test_queueing_behind_its_own_calls_excuses_nothing_and_is_a_flood():
    # 14.9 s held back by others (under 15 s), 40 s behind its own calls: its own timeout, flagged
    failure, error, suspect = blame_queueing("timeout", "killed", queued_s=14.9, timeout_s=60, self_queued_s=40.0)
    assert (failure, suspect) == ("timeout", "flood")
    assert error.startswith("killed; its executor-LLM calls queued 40.0 s behind its own")
    # under a quarter of the limit behind itself: a plain timeout
    assert blame_queueing("timeout", "killed", queued_s=0.0, timeout_s=60, self_queued_s=14.9) == \
        ("timeout", "killed", "")
    # others' hold-up decides first: a workflow held back by others is excused whatever else it did
    assert blame_queueing("timeout", "k", queued_s=15.0, timeout_s=60, self_queued_s=40.0)[0] == "llm_error"


def test_only_timeouts_are_reconsidered():
    for failure in ("", "crash", "memory", "budget_exceeded"):
        assert blame_queueing(failure, "e", queued_s=100.0, timeout_s=60, self_queued_s=100.0) == (failure, "e", "")
    assert blame_queueing("timeout", "e", queued_s=5.0, timeout_s=0) == ("timeout", "e", "")  # no limit set


def handled(error: Exception) -> LLMCalls:
    async def ask(messages, call):
        raise error

    import asyncio
    calls = LLMCalls(ask)
    asyncio.run(calls.handle({"type": "llm_request", "id": 1, "messages": []}))
    return calls


def test_only_the_brokers_llm_call_error_is_infrastructure():
    """LLMCallError: the broker saw the executor LLM fail, a control request included. Anything else
    that a call raises came with the workflow's own request."""
    assert handled(LLMCallError("down; a control request failed too")).judge("llm_error", "x")[0] == "llm_error"
    assert handled(LLMCallError("down")).judge("ok", "")[0] == "llm_error"  # swallowed: still infrastructure
    for error in (RequestRejected("400 context length"), UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogate"),
                  RuntimeError("unexpected")):
        calls = handled(error)
        assert calls.failures == [] and len(calls.rejections) == 1, error
        assert calls.judge("llm_error", "x")[0] == "bad_llm_request"
        assert calls.judge("timeout", "over 3 s") == ("timeout", "over 3 s")
    kill = handled(BudgetExceeded("50 calls"))
    assert kill.budget_kill and kill.judge("budget_exceeded", "")[0] == "budget_exceeded"


@pytest.mark.parametrize("status", ["llm_error", "budget_exceeded"])
def test_a_job_cannot_claim_what_the_host_never_saw(status):
    assert LLMCalls(None).judge(status, "claimed")[0] == "crash"
