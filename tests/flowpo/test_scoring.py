"""flowpo.scoring: one path from a Problem to its score. Built-ins by name, the hidden test's harness from
the problem's own fields (identical to what the benchmarks built for HumanEval and MBPP), and the load-time
checks. Users' scorers: tests/flowpo/test_user_scorer.py; users' tests through the sandboxes:
tests/actors/test_evaluator.py."""
from __future__ import annotations

import dataclasses

import pytest

from flowpo.config import TaskConfig
from flowpo.errors import FlowPOError
from flowpo.records import Problem
from flowpo.scoring import check_hidden_test, hidden_test, score_text
from flowpo.tasks import load_problems
from tests.flowpo.test_task_loaders import MBPP_FULL_ROW, MBPP_SANITIZED_ROW, load


def text_problem(scorer: str, *answers: str, family: str = "text") -> Problem:
    return Problem(problem_id="t/0", prompt="q", task="mine", family=family, answers=answers, scorer=scorer)


@pytest.mark.parametrize("scorer, answer, golds, score", [
    ("exact", "  Canberra. ", ("canberra",), 1.0),
    ("numeric", "about 1,500 m", ("1500",), 1.0),
    ("choice", "Answer: (c)", ("C",), 1.0),
    ("choice", "Answer: (c)", ("B",), 0.0),
    ("gsm8k", "so 72", ("72",), 1.0),
    ("math", r"\boxed{\frac{3}{6}}", ("0.5",), 1.0),
    ("drop_f1", "Chaz Schilens", ("Schilens", "Chaz Schilens"), 1.0),
    ("hotpotqa_f1", "Denver Broncos", ("Broncos",), pytest.approx(2 / 3)),
])
def test_score_text_dispatches_on_the_problems_scorer(scorer, answer, golds, score):
    value, details = score_text(text_problem(scorer, *golds), answer, timeout_s=5.0)
    assert value == score and details["scorer"] in (scorer, "f1")


@pytest.mark.parametrize("task, answer, golds, score", [  # what flowpo.benchmarks.score_text gave them
    ("gsm8k", "so 72", ("72",), 1.0), ("math", r"The answer is $\text{Tuesday}$.", (r"\text{Tuesday}",), 1.0),
    ("drop", "The answer is 2.5.", ("2.5",), 0.5), ("hotpotqa", "yes, it is", ("yes",), 0.0),
    ("drop", "2.5", ("25",), 0.0),
])
def test_the_benchmarks_problems_score_as_they_did(task, answer, golds, score, tmp_path):
    """Through the loaders, which name each benchmark's scorer in its problems."""
    from flowpo.benchmarks import BENCHMARKS

    scorer = BENCHMARKS[task].scorer
    assert scorer == {"gsm8k": "gsm8k", "math": "math", "drop": "drop_f1", "hotpotqa": "hotpotqa_f1"}[task]
    problem = Problem(problem_id="x", prompt="q", task=task, family="qa", answers=golds, scorer=scorer)
    assert score_text(problem, answer)[0] == score


def test_what_score_text_refuses():
    with pytest.raises(ValueError, match="t/0: scorer 'judge' is the evaluator's LLM judge"):
        score_text(text_problem("judge"), "x")
    with pytest.raises(ValueError, match="t/0: a code answer is scored by its hidden test"):
        score_text(text_problem("exact", "x", family="code"), "x")
    with pytest.raises(ValueError, match="t/0: the exact scorer needs a gold answer"):
        score_text(text_problem("exact"), "x")
    with pytest.raises(ValueError, match="t/0: no scorer 'nope'"):
        score_text(text_problem("nope", "x"), "x")
    with pytest.raises(ValueError, match="t/0: no scorer ''"):  # a problem must name its scorer
        score_text(text_problem("", "x"), "x")


# ---------------------------------------------------------------------------------------------
# The hidden test's harness


HUMANEVAL = load_problems(TaskConfig())


def test_humaneval_harnesses_are_the_benchmarks_for_all_164():
    """From the problem's own fields, as the loader fills them: the harness the benchmark registry built."""
    assert len(HUMANEVAL) == 164
    for problem in HUMANEVAL:
        # what flowpo.benchmarks built: the prompt as the prelude, then check(candidate)
        expected = {"prelude": problem.prompt, "test": problem.test, "entry_point": problem.entry_point,
                    "check": "check"}
        assert hidden_test(problem) == expected
        check_hidden_test(problem)
    # Without its check named, HumanEval's test would only define check(): refused, never a vacuous pass.
    with pytest.raises(FlowPOError, match="the test defines check\\(\\) but never calls it"):
        check_hidden_test(dataclasses.replace(HUMANEVAL[0], check=""))


def test_mbpp_harnesses_are_the_benchmarks(tmp_path):
    for problem in load(tmp_path, "mbpp", [MBPP_FULL_ROW, MBPP_SANITIZED_ROW]):
        # what flowpo.benchmarks built: the asserts (setup code included) run top to bottom
        assert hidden_test(problem) == {"prelude": "", "test": problem.test, "entry_point": problem.entry_point,
                                        "check": ""}
        check_hidden_test(problem)


def code_problem(**fields) -> Problem:
    settings = dict(problem_id="mine/3", prompt="Write add(a, b).", task="mine", family="code", entry_point="add",
                    test="assert add(1, 2) == 3\n")
    return Problem(**{**settings, **fields})


def test_a_users_tests_make_the_same_harness():
    asserts = code_problem()
    assert hidden_test(asserts) == {"prelude": "", "test": "assert add(1, 2) == 3\n", "entry_point": "add",
                                    "check": ""}
    checked = code_problem(test="def check(candidate):\n    assert candidate(1, 2) == 3\n", check="check",
                           prelude="import math\n")
    assert hidden_test(checked) == {"prelude": "import math\n", "test": checked.test, "entry_point": "add",
                                    "check": "check"}
    for problem in (asserts, checked):
        check_hidden_test(problem)
    with pytest.raises(ValueError, match="t/0: a text problem has no hidden test"):
        hidden_test(text_problem("exact", "x"))


@pytest.mark.parametrize("fields, said", [
    (dict(test="  \n"), "a code problem needs a test"),
    (dict(entry_point=""), "entry point '' is not a function name"),
    (dict(test="assert add(1, 2) == 3 +\n"), "its test is not valid Python: line 1"),
    (dict(prelude="def helper(:\n"), "its prelude is not valid Python"),
    (dict(check="check"), "the test must define the function 'check'"),
    (dict(check="check(x)"), "the test must define the function 'check\\(x\\)'"),
])
def test_a_test_that_cannot_judge_is_refused_at_load_time(fields, said):
    with pytest.raises(FlowPOError, match=f"problem mine/3: {said}"):
        check_hidden_test(code_problem(**fields))
