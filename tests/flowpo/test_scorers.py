import pytest

from flowpo.scorers import (f1_score, gsm8k_gold, gsm8k_score, last_boxed, math_equal, math_score,
                            normalize_answer, token_f1)


@pytest.mark.parametrize("answer, gold, score", [
    ("so the total is 1,234 apples", "#### 1234", 1.0),
    ("The answer is 72.", "72", 1.0),
    ("3 + 4 = 7, then 7 * 2 = 14", "14", 1.0),
    ("it is -5", "-5", 1.0),
    ("it is 5", "-5", 0.0),
    ("0.5", "0.50", 1.0),
    ("no number here", "3", 0.0),
])
def test_gsm8k(answer, gold, score):
    assert gsm8k_score(answer, gsm8k_gold(gold)) == score


def test_last_boxed_balances_braces():
    assert last_boxed(r"first \boxed{1} then \boxed{\frac{1}{2}} done") == r"\frac{1}{2}"
    assert last_boxed("no box") is None


@pytest.mark.parametrize("predicted, gold", [
    (r"\frac12", "0.5"),
    (r"\dfrac{1}{2}", r"\frac{1}{2}"),
    (r"50\%", "50"),
    (r"\$1,000", "1000"),
    (r"5 \text{ cm}", "5"),
    ("−3", "-3"),
    ("x=5", "5"),
    ("5.00", "5"),
    (r"90^\circ", "90"),
    ("(1, 2]", "(1,2]"),
    (r"\left( 1, 2 \right)", "(1,2)"),
    ("x^2+2x+1", "(x+1)^2"),
    (r"2\sqrt{2}", r"\sqrt{8}"),
])
def test_math_equivalent(predicted, gold):
    assert math_equal(predicted, gold)


@pytest.mark.parametrize("predicted, gold", [
    ("0.5", r"\frac{1}{3}"),
    ("-3", "3"),
    ("(1, 2]", "[1,2]"),
    ("x^2", "x^3"),
    ("1,000", "100"),
])
def test_math_not_equivalent(predicted, gold):
    assert not math_equal(predicted, gold)


def test_math_score_uses_last_boxed_of_both():
    assert math_score(r"... so \boxed{\frac{3}{4}}", r"thus $\boxed{0.75}$") == 1.0
    assert math_score("no box: 0.75", r"\boxed{0.75}") == 0.0


def test_squad_normalization_and_f1_by_hand():
    assert normalize_answer("The  Cat, sat!") == "cat sat"
    # pred: "cat sat on mat" (4), gold: "cat on the mat" → "cat on mat" (3); overlap 3
    # P = 3/4, R = 3/3 → F1 = 2·0.75·1/1.75 = 0.857142…
    assert token_f1("The cat sat on a mat", "cat on the mat") == pytest.approx(6 / 7)
    assert token_f1("", "") == 1.0 and token_f1("a", "") == 1.0  # both empty after normalization
    assert token_f1("dog", "cat") == 0.0
    # max over gold alternatives: "Denver Broncos" vs ["Broncos", "Denver Broncos"] → 1.0
    assert f1_score("Denver Broncos", ["Broncos", "Denver Broncos"]) == 1.0
    # "Broncos" vs "Denver Broncos": P = 1, R = 1/2 → 2/3
    assert f1_score("Broncos", ["Denver Broncos"]) == pytest.approx(2 / 3)
