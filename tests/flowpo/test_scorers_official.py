"""One test per listed difference between FlowPO's scorers and the official evaluation scripts
(the module docstrings of flowpo/scorers.py, G1…D3, and flowpo/math_scorer.py, M1…M8).
Each asserts FlowPO's behaviour; the comment gives
what the official script returns on the same input (run against grade-school-math dataset.py,
hendrycks/math math_equivalence.py, allenai drop_eval.py and hotpot_evaluate_v1.py)."""
import pytest

from flowpo.benchmarks import BENCHMARKS
from flowpo.math_scorer import math_equal, math_prediction
from flowpo.records import Problem
from flowpo.scorers import drop_f1, gsm8k_score, token_f1
from flowpo.scoring import score_text as score_problem


def score_text(task: str, answer: str, golds: tuple[str, ...]) -> tuple[float, dict]:
    """A benchmark's answer scored as the evaluator scores it: by its preset's scorer (flowpo.scoring)."""
    preset = BENCHMARKS[task]
    return score_problem(Problem(problem_id="x", prompt="q", task=task, family=preset.family, answers=golds,
                                 scorer=preset.scorer), answer)


# ---------------------------------------------------------------------------------------------
# GSM8K (official: the number after the first "#### ", compared as a string)


def test_g1_the_last_number_not_the_hash_marks():
    # official: no "####" → "[invalid]" → wrong; FlowPO reads the last number
    assert gsm8k_score("16 - 3 - 4 = 9 eggs at $2 each: 18 dollars.", "18") == 1.0
    # official: "#### 72" → right; FlowPO: the last number, 73 → wrong
    assert gsm8k_score("#### 72\nCheck: 72 + 1 = 73", "72") == 0.0


def test_g2_numbers_compare_as_values():
    assert gsm8k_score("#### 72.00", "72") == 1.0  # official: "72.00" != "72" → wrong


def test_g3_unicode_minus():
    assert gsm8k_score("#### −8", "-8") == 1.0  # official: "−" is not "-" → "[invalid]" → wrong


# ---------------------------------------------------------------------------------------------
# MATH (official: the last \boxed{}, strip_string, string equality)


def test_m1_the_last_line_without_a_box():
    # official: last_boxed_only_string is None → wrong
    assert math_prediction("Tuesday, then.\nThe answer is $\\text{Tuesday}$.") == r"\text{Tuesday}"
    assert score_text("math", r"The answer is \(\frac{1}{2}\).", (r"\frac{1}{2}",))[0] == 1.0


@pytest.mark.parametrize("predicted, gold, equal", [
    (r"\frac{2}{4}", r"\frac{1}{2}", True),  # official: False
    ("-0", "0", True),  # official: False
    ("1000001", "1000000", False), (r"\frac{4036083}{4036081}", r"\frac{4036082}{4036081}", False),  # as official
])
def test_m2_numbers_compare_as_exact_rationals(predicted, gold, equal):
    assert math_equal(predicted, gold) is equal


def test_m3_a_decimal_for_the_fraction_it_rounds():
    assert math_equal("0.3333333", r"\frac13")  # official: False
    assert not math_equal("0.33", r"\frac13")  # as official


def test_m4_symbolic_equality():
    assert math_equal("x^2+2x+1", "(x+1)^2")  # official: False
    assert math_equal(r"(3, \frac{1}{2})", "(3,0.5)")  # official: False


@pytest.mark.parametrize("predicted, gold", [
    (r"5\text{inches}", "5"),  # official: only "\text{ " with a space is a unit → False
    ("12 inches", "12"),  # official: False
    ("50%", "50"),  # official: removes "\%" only → False
])
def test_m5_units_and_percent(predicted, gold):
    assert math_equal(predicted, gold)


def test_m6_a_word_in_text():
    assert math_equal(r"\text{Evelyn}", "Evelyn")  # official: False


def test_m7_thousands_separators():
    assert math_equal("1,000", "1000") and math_equal("1{,}000", "1000")  # official: False, False


def test_m8_empty_is_never_right():
    assert not math_equal("", "")  # official: True


# ---------------------------------------------------------------------------------------------
# DROP (official: drop_eval.py get_metrics' F1)


@pytest.mark.parametrize("predicted, gold, flowpo, official", [
    ("2.5.", "25", 0.0, 1.0),  # official: "2.5." is no float, loses both dots → 25
    ("2.5%", "25", 0.0, 1.0),
    ("$2.5", "2.5", 1.0, 0.0),
    ("1,234.5", "1234.5", 1.0, 0.0),  # official: "12345"
])
def test_d1_punctuation_around_a_number(predicted, gold, flowpo, official):
    assert drop_f1(predicted, [gold]) == flowpo != official


def test_d2_a_gold_string_is_one_bag():
    # flowpo.dataset_rows joins the spans of a multi-span answer: one bag {smith, jones} vs the prediction
    # {smith, and, jones}: P = 2/3, R = 1 → 0.8
    assert score_text("drop", "Smith and Jones", ("Smith Jones",))[0] == 0.8
    # as spans, as drop_eval.py gets them: 0.25 (see test_drop_f1_aligns_spans_one_to_one)
    assert drop_f1("Smith and Jones", [("Smith", "Jones")]) == 0.25


def test_no_difference_in_the_span_alignment_past_8_factorial_matchings():
    # (D3, greedy past 8! matchings, is gone: spans are matched by linear_sum_assignment, as drop_eval.py does.)
    # 9 × 9 spans: 7 identical pads, then predicted {x, z}, {x} vs gold {x, z}, {z}. The optimum pairs
    # {x,z}–{z} and {x}–{x,z} (2/3 each): (7 + 4/3) / 9 = 0.93 (official). Greedy took the perfect
    # {x,z}–{x,z} first and left {x}–{z} at 0: (7 + 1) / 9 = 0.89.
    pads = tuple(f"team{c}" for c in "abcdefg")
    assert drop_f1(pads + ("x z", "x"), [pads + ("x z", "z")]) == 0.93
    # one predicted string: 20 matchings, exact. {name7} matches 1 of 20 gold spans: 1/20 = 0.05
    assert drop_f1("name7", [tuple(f"name{i}" for i in range(20))]) == 0.05


# ---------------------------------------------------------------------------------------------
# HotpotQA: no difference; the official rules, checked on their corner cases


def test_hotpotqa_follows_hotpot_evaluate_v1():
    assert token_f1("yes, it is", "yes") == 0.0  # official: (0, 0, 0)
    assert token_f1("", "") == 0.0  # official: (0, 0, 0)
    assert token_f1("Denver Broncos", "Broncos") == pytest.approx(2 / 3)  # official: 0.666…
