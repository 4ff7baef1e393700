"""A user's own scorer, ``package.module:function``: the good one scores; every way it can fail (raising,
a value out of [0, 1], NaN, not a number, too slow) is a ScorerError naming the problem and the function,
never a 0; a spec that cannot be imported or called is refused at load time (check_scorer)."""
from __future__ import annotations

import itertools
import re
import textwrap
import threading
import time

import pytest

from flowpo.errors import FlowPOError
from flowpo.records import Problem
from flowpo.scoring import ScorerError, check_scorer, score_text

SCORERS_SOURCE = '''
import math, time

def overlap(answer, golds, row):
    """The share of the gold's words the answer has, halved unless it keeps to the row's word limit."""
    words, gold = set(answer.lower().split()), set(golds[0].lower().split())
    share = len(words & gold) / len(gold)
    return share if len(answer.split()) <= row["max_words"] else share / 2

def raises(answer, golds, row):
    return float(answer)

def too_high(answer, golds, row):
    return 1.5

def negative(answer, golds, row):
    return -0.1

def nan(answer, golds, row):
    return math.nan

def text(answer, golds, row):
    return "1.0"

def nothing(answer, golds, row):
    pass

def slow(answer, golds, row):
    time.sleep(30)
    return 1.0

def boolean(answer, golds, row):
    return answer == golds[0]

def changes_its_row(answer, golds, row):
    row.clear()
    golds.append("x")
    return 1

class Holder:
    def method(answer, golds, row):
        return 0.25

def two_arguments(answer, golds):
    return 1.0

NOT_A_FUNCTION = 3
'''

MODULE_NAMES = (f"flowpo_test_scorers_{i}" for i in itertools.count())


@pytest.fixture
def module(tmp_path, monkeypatch) -> str:
    """A fresh module of user scorers on the path (a new name each test: resolve caches by spec)."""
    name = next(MODULE_NAMES) + f"_{id(tmp_path)}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(SCORERS_SOURCE))
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def problem(spec: str, **extra) -> Problem:
    return Problem(problem_id="mytask/7", prompt="Summarize.", task="mytask", family="text",
                   answers=("the cat sat on the mat",), scorer=spec, extra={"max_words": 6, **extra})


def test_a_good_scorer_gets_the_answer_the_golds_and_the_row(module):
    spec = f"{module}:overlap"
    check_scorer(spec)
    # 3 of the gold's 5 distinct words ("the", "cat", "sat"); 4 words, within the row's limit of 6
    assert score_text(problem(spec), "the cat sat down") == (0.6, {"scorer": spec})
    # 8 words, over the limit: halved
    assert score_text(problem(spec), "the cat sat on the mat all day") == (0.5, {"scorer": spec})


def test_bools_ints_and_numpy_floats_are_numbers_and_the_row_is_a_copy(module):
    import numpy as np

    assert score_text(problem(f"{module}:boolean"), "the cat sat on the mat")[0] == 1.0
    row = problem(f"{module}:changes_its_row")
    assert score_text(row, "x")[0] == 1.0 and row.extra == {"max_words": 6} and len(row.answers) == 1
    assert score_text(problem(f"{module}:Holder.method"), "x")[0] == 0.25
    import sys
    sys.modules[module].numpy_score = lambda answer, golds, row: np.float32(0.5)
    assert score_text(problem(f"{module}:numpy_score"), "x")[0] == 0.5


@pytest.mark.parametrize("function, said", [
    ("raises", r"raised ValueError: could not convert string to float: 'not a number'"),
    ("too_high", r"returned 1\.5, outside \[0, 1\]"),
    ("negative", r"returned -0\.1, outside \[0, 1\]"),
    ("nan", r"returned nan, outside \[0, 1\]"),
    ("text", r"returned str '1\.0', not a number in \[0, 1\]"),
    ("nothing", r"returned NoneType 'None', not a number in \[0, 1\]"),
])
def test_a_failing_scorer_is_a_clear_error_naming_the_problem_and_the_function(module, function, said):
    spec = f"{module}:{function}"
    with pytest.raises(ScorerError) as raised:
        score_text(problem(spec), "not a number")
    message = str(raised.value)
    assert f"the scorer {spec} on problem mytask/7 (answer 'not a number')" in message, message
    assert re.search(said, message), message
    assert "resume" in message and isinstance(raised.value, FlowPOError)  # the CLI prints it without a traceback


def test_a_slow_scorer_is_abandoned_at_its_limit(module):
    spec = f"{module}:slow"
    began = time.monotonic()
    with pytest.raises(ScorerError, match=rf"the scorer {spec} on problem mytask/7 .* did not return within "
                                          r"0\.5 s \(evaluator\.scorer_timeout_s\)"):
        score_text(problem(spec), "x", timeout_s=0.5)
    assert time.monotonic() - began < 2
    # abandoned, not joined: a daemon thread, which does not keep the process alive
    assert any(t.name == f"scorer {spec}" and t.daemon for t in threading.enumerate())


@pytest.mark.parametrize("spec, said", [
    ("no_such_module_anywhere:f", r"cannot import no_such_module_anywhere: ModuleNotFoundError"),
    ("{module}:missing", r"has no missing"),
    ("{module}:NOT_A_FUNCTION", r"NOT_A_FUNCTION is a int, not a function"),
    ("{module}:two_arguments", r"must take \(answer: str, golds: list\[str\], row: dict\)"),
    ("{module}:", r"a user's scorer is named 'package\.module:function'"),
    ("my-module:f", r"a user's scorer is named"),
    ("exactly", r"scorer 'exactly' is unknown: a built-in \(exact, numeric, choice, math, gsm8k, drop_f1, "
                r"hotpotqa_f1\), 'judge'"),
])
def test_check_scorer_refuses_what_cannot_score(module, spec, said):
    spec = spec.format(module=module)
    with pytest.raises(FlowPOError, match=said) as raised:
        check_scorer(spec)
    assert repr(spec) in str(raised.value)


def test_check_scorer_accepts_the_built_ins_and_the_judge():
    for spec in ("exact", "numeric", "choice", "math", "gsm8k", "drop_f1", "hotpotqa_f1", "judge"):
        check_scorer(spec)


def test_a_module_in_the_current_directory_is_found_as_rays_workers_find_it(tmp_path, monkeypatch):
    """A console script's sys.path lacks the current directory (python -m and Ray's workers have it)."""
    import sys

    name = f"flowpo_cwd_scorer_{id(tmp_path)}"
    (tmp_path / f"{name}.py").write_text("def half(answer, golds, row):\n    return 0.5\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".", str(tmp_path))])
    assert score_text(problem(f"{name}:half"), "x")[0] == 0.5
