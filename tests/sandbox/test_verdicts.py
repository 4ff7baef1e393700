"""Which failures the host blames on the infrastructure (sandbox/verdicts.py), by hand."""
from sandbox.verdicts import QUEUED_SHARE, blame_queueing


def test_a_timeout_is_the_infrastructures_from_a_quarter_of_the_limit_spent_queued():
    assert QUEUED_SHARE == 0.25
    failure, error = blame_queueing("timeout", "killed at 60 s", queued_s=15.0, timeout_s=60)
    assert failure == "llm_error"
    assert error.startswith("timed out after waiting 15.0 s of its 60 s limit for executor-LLM capacity")
    assert error.endswith("killed at 60 s")
    assert blame_queueing("timeout", "killed", queued_s=14.9, timeout_s=60) == ("timeout", "killed")


def test_only_timeouts_are_reconsidered():
    for failure in ("", "crash", "memory", "budget_exceeded"):
        assert blame_queueing(failure, "e", queued_s=100.0, timeout_s=60) == (failure, "e")
    assert blame_queueing("timeout", "e", queued_s=5.0, timeout_s=0) == ("timeout", "e")  # no limit set
