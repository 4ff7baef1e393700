"""How an answer is scored, read from the Problem alone: one path for the six benchmarks and a user's task.

- Code (``family == "code"``): the hidden test, run out of the candidate's reach by the evaluator
  (sandbox/hidden_tests.py: the candidate in one sandbox, the test in another). ``hidden_test`` builds
  its harness from the problem: ``prelude`` (trusted code the test leans on), ``test``, the
  ``entry_point`` and ``check``, the function the test defines and calls with the candidate (HumanEval's
  ``check(candidate)``; "" : the test's asserts run top to bottom, as MBPP's). A user's tests from a
  column take the same path, so the trust model of the score holds for them too.
- Anything else, by ``Problem.scorer`` (``score_text``):
  - a built-in's name (flowpo/scorers.py, ``SCORERS``: exact, numeric, choice, math, gsm8k, drop_f1,
    hotpotqa_f1), run on the host;
  - a user's ``"package.module:function"`` (flowpo/user_scorer.py: its signature, time limit and
    failure rule: a ScorerError that stops the run, never a silent 0);
  - ``"judge"``: the LLM judge with the task's rubric (flowpo/judge.py), which needs an LLM and so is
    asked by the evaluator, not here.
"""
from __future__ import annotations

import re

from flowpo.errors import FlowPOError
from flowpo.records import Problem
from flowpo.scorers import SCORERS
from flowpo.user_scorer import ScorerError, call_user_scorer, is_user_scorer, resolve

__all__ = ["JUDGE", "ScorerError", "check_hidden_test", "check_scorer", "hidden_test", "is_user_scorer",
           "score_text"]

JUDGE = "judge"


def check_scorer(spec: str) -> None:
    """FlowPOError naming ``spec`` unless it is a built-in's name, "judge", or a user's function
    that can be imported, is callable and takes (answer, golds, row)."""
    if spec in SCORERS or spec == JUDGE:
        return
    if is_user_scorer(spec):
        resolve(spec)
        return
    raise FlowPOError(f"scorer {spec!r} is unknown: a built-in ({', '.join(SCORERS)}), {JUDGE!r} (the LLM judge "
                      "with the task's rubric), or a function of yours as 'package.module:function'")


def score_text(problem: Problem, answer: str, *, timeout_s: float = 5.0) -> tuple[float, dict]:
    """Score in [0, 1] of a non-code answer by its problem's scorer, and what the scorer read.
    ``timeout_s`` limits the scorer on this answer: a MATH answer's symbolic check, a user's function
    (whose failures raise ScorerError, which must stop the run). The judge is the evaluator's to ask."""
    spec = problem.scorer
    if problem.family == "code":
        raise ValueError(f"{problem.problem_id}: a code answer is scored by its hidden test, not by a scorer")
    if spec == JUDGE:
        raise ValueError(f"{problem.problem_id}: scorer 'judge' is the evaluator's LLM judge (actors/evaluator.py)")
    if is_user_scorer(spec):
        score = call_user_scorer(spec, answer, list(problem.answers), problem.extra, timeout_s=timeout_s,
                                 problem_id=problem.problem_id)
        return score, {"scorer": spec}
    if spec not in SCORERS:
        raise ValueError(f"{problem.problem_id}: no scorer {spec!r} (task {problem.task!r}); check_scorer tells")
    if not problem.answers:
        raise ValueError(f"{problem.problem_id}: the {spec} scorer needs a gold answer, and the problem has none")
    return SCORERS[spec](answer, problem.answers, timeout_s)


def hidden_test(problem: Problem) -> dict:
    """The harness of a code problem's hidden test: {prelude, test, entry_point, check} (see above)."""
    if problem.family != "code":
        raise ValueError(f"{problem.problem_id}: a {problem.family} problem has no hidden test (scorer "
                         f"{problem.scorer!r})")
    return {"prelude": problem.prelude, "test": problem.test, "entry_point": problem.entry_point,
            "check": problem.check}


def check_hidden_test(problem: Problem) -> None:
    """FlowPOError naming the problem when its hidden test cannot judge a candidate: no test or entry
    point, a test or prelude that is not valid Python, or a ``check`` the test does not define (the
    harness would fail every candidate, a silent 0). For loaders, at load time."""
    where = f"problem {problem.problem_id}"
    if not problem.test.strip():
        raise FlowPOError(f"{where}: a code problem needs a test (asserts, or a check(candidate) function)")
    if not problem.entry_point.isidentifier():
        raise FlowPOError(f"{where}: entry point {problem.entry_point!r} is not a function name")
    harness = hidden_test(problem)
    for part in ("prelude", "test"):
        try:
            compile(harness[part], f"<{part}>", "exec")
        except SyntaxError as exc:
            raise FlowPOError(f"{where}: its {part} is not valid Python: line {exc.lineno}: {exc.msg}") from None
    check = harness["check"]
    defines_check = re.search(r"^def\s+check\s*\(", harness["test"], re.MULTILINE)
    if not check and defines_check and not re.search(r"^(?:assert\s+)?check\s*\(", harness["test"], re.MULTILINE):
        raise FlowPOError(f"{where}: the test defines check() but never calls it, and no function is named to call "
                          "with the candidate (task.test_function: check), so every candidate would pass")
    if check and not (check.isidentifier() and re.search(rf"^\s*def\s+{re.escape(check)}\s*\(", harness["test"],
                                                          re.MULTILINE)):
        raise FlowPOError(f"{where}: the test must define the function {check!r} that is called with the "
                          "candidate (or leave check empty: the test's asserts then run top to bottom)")
