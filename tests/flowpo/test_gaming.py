"""Suspected reward gaming is counted from what the evaluator and the pool recorded."""
from driver.report import gaming_section
from flowpo.gaming import suspected_gaming


def record(problem_id, index, details=None, failure="", error=""):
    return {"problem_id": problem_id, "sample_index": index, "details": details or {}, "failure": failure,
            "error": error}


def test_each_kind_is_counted_with_its_sample_ids():
    records = [
        record("HumanEval/0", 0, {"test": "failed", "suspect": "not_plain"}),
        record("HumanEval/0", 1, {"test": "passed"}),
        record("HumanEval/2", 3, {"repeat_details": [{"suspect": "exited"}, {"test": "passed"}, None]}),
        record("HumanEval/2", 4, {"suspect": "exited"}),
        record("HumanEval/5", 0, failure="crash", error="the job wrote a malformed protocol line (ValueError): b'{'"),
        record("HumanEval/5", 1, failure="crash", error="the job reported an LLM error that the broker never saw"),
        record("HumanEval/5", 2, failure="crash", error="ZeroDivisionError: division by zero"),
    ]
    assert suspected_gaming(records) == {"exited": ["HumanEval/2#3", "HumanEval/2#4"],
                                         "forged_infra": ["HumanEval/5#1"],
                                         "forged_protocol": ["HumanEval/5#0"],
                                         "not_plain": ["HumanEval/0#0"]}


def test_an_honest_round_shows_none():
    assert suspected_gaming([record("p", 0, {"test": "passed"}), record("p", 1, failure="timeout")]) == {}
    assert gaming_section({}) == ["Suspected reward gaming: none in this round.", ""]


def test_the_report_lists_counts_and_ids():
    lines = gaming_section({"not_plain": [f"p#{i}" for i in range(12)]})
    assert "| not_plain | 12 | `p#0`, `p#1`" in "\n".join(lines) and "and 2 more" in "\n".join(lines)
