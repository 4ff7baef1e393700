r"""Rule-based scorers (pure functions) and their registry, ``SCORERS``: the built-in scorers a task
names in ``Problem.scorer`` (flowpo/scoring.py dispatches to them, or to a user's function or the judge).

Every built-in has one signature, ``(answer, golds, timeout_s) -> (score in [0, 1], what it read)``:
the best over the gold alternatives. HumanEval, MBPP and users' code tasks are not scored here: the
evaluator runs their hidden tests in the sandbox.

  exact        the normalized answer equals a normalized gold (``normalize_exact``: Unicode NFKC,
               casefold, whitespace runs collapsed to one space, surrounding whitespace, punctuation
               and quotes stripped; inner punctuation kept: "U.S." = "u.s", "3,5" ≠ "35").
  numeric      the last number in the answer equals the last number in a gold within
               math.isclose(rel_tol=1e-4, abs_tol=1e-6) (``read_number``: thousands commas, a Unicode
               minus, decimals, exponents, simple fractions "3/4"; "50%" is 50).
  choice       the multiple-choice letter the answer picks (``chosen_letter``) equals a gold's letter.
  math         MATH: the last \boxed{} (or the answer) equal to the gold symbolically (flowpo/math_scorer.py).
  gsm8k        GSM8K (below, G1-G3).
  drop_f1      DROP's F1 (below, D1-D2).
  hotpotqa_f1  HotpotQA's answer F1 (below).

Each benchmark scorer follows its benchmark's official evaluation script; where FlowPO differs, the list
below says how and why, and tests/flowpo/test_scorers_official.py has a test per difference.

GSM8K (grade-school-math dataset.py: the number after the first "#### ", compared as a string;
FlowPO scores as ScoreFlow/AFlow do):
  G1. The prediction is the last number in the answer, not the one after "#### " (workflows return
      free text with no "####").
  G2. Numbers compare as values within 1e-6, not as strings: "72.00" = "72" (a correct answer
      written with decimals is right).
  G3. A Unicode minus ("−8") is a minus sign (models write it; the official regex misses it).
MATH: flowpo/math_scorer.py, with its own list (M1-M8).
DROP (allenai drop_eval.py get_metrics' F1, max over the gold answers):
  D1. A token's surrounding punctuation goes before the number test: "2.5." ending a sentence,
      "$2.5" and "2.5%" are the number 2.5; officially they lose every punctuation mark and become
      25, a different number. Thousands separators in a decimal go too: "1,234.5" = 1234.5.
  D2. Golds arrive as one string per alternative (flowpo.dataset_rows joins the spans of a multi-span
      answer with spaces), so each is one bag; officially each span is a bag, matched one to one.
      drop_f1 does that when given a tuple of spans; score_text gets strings.
  Spans are matched one to one by an optimal assignment (scipy's linear_sum_assignment), as drop_eval.py
  does, so the F1 never falls below the official metric's.
HotpotQA: hotpot_evaluate_v1.py's normalize_answer and f1_score (SQuAD-style token F1, 0 when
either side is yes/no/noanswer and they differ, 0 when either side normalizes to nothing), as is.
"""
from __future__ import annotations

import math
import re
import string
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence

from flowpo.math_scorer import math_equal, math_prediction

NUMBER_RE = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")


def score_gsm8k(answer: str, golds: tuple[str, ...], timeout_s: float) -> tuple[float, dict]:
    return gsm8k_score(answer, golds[0]), {"scorer": "gsm8k", "extracted": last_number(answer)}


def score_math(answer: str, golds: tuple[str, ...], timeout_s: float) -> tuple[float, dict]:
    predicted = math_prediction(answer)
    ok = predicted is not None and math_equal(predicted, golds[0], timeout_s=timeout_s)
    return float(ok), {"scorer": "math", "extracted": predicted}


def score_drop(answer: str, golds: tuple[str, ...], timeout_s: float) -> tuple[float, dict]:
    return drop_f1(answer, golds), {"scorer": "drop_f1"}


def score_hotpotqa(answer: str, golds: tuple[str, ...], timeout_s: float) -> tuple[float, dict]:
    return f1_score(answer, list(golds)), {"scorer": "f1"}


def score_exact(answer: str, golds: tuple[str, ...], timeout_s: float) -> tuple[float, dict]:
    read = normalize_exact(answer)
    return float(any(read == normalize_exact(gold) for gold in golds)), {"scorer": "exact", "extracted": read}


def score_numeric(answer: str, golds: tuple[str, ...], timeout_s: float) -> tuple[float, dict]:
    read = read_number(answer)
    ok = read is not None and any(numbers_equal(read, read_number(gold)) for gold in golds)
    return float(ok), {"scorer": "numeric", "extracted": read}


def score_choice(answer: str, golds: tuple[str, ...], timeout_s: float) -> tuple[float, dict]:
    read = chosen_letter(answer)
    return float(read is not None and read in {chosen_letter(gold) for gold in golds}), \
        {"scorer": "choice", "extracted": read}


# ---------------------------------------------------------------------------------------------
# Exact match


# Quotes and brackets of other scripts that NFKC leaves as they are.
QUOTES = "\u201c\u201d\u2018\u2019\u00ab\u00bb\u201e\u201a\u2039\u203a\u300c\u300d"
SURROUNDING = string.punctuation + QUOTES


def normalize_exact(text: str) -> str:
    """The exact scorer's normalization: Unicode NFKC (full-width and compatibility forms become plain
    ones), casefold, every run of whitespace one space, then surrounding whitespace, punctuation and
    quotes stripped from both ends. Inner punctuation stays: "U.S.A." = "u.s.a", "3,5" ≠ "35"."""
    text = " ".join(unicodedata.normalize("NFKC", text).casefold().split())
    return text.strip(SURROUNDING + " ")


# ---------------------------------------------------------------------------------------------
# Numeric

# A number as people write it: a fraction "3/4", or digits with thousands commas ("1,234" but not
# "1,2,3"), a decimal part and an exponent.
NUMERIC_RE = re.compile(r"(?<![\w.])-?(?:\d+/\d+|(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?|\.\d+)(?![\w/])")


def read_number(text: str) -> float | None:
    """The last number in ``text`` (NUMERIC_RE; a Unicode minus is a minus; "50%" is 50); None if none."""
    text = unicodedata.normalize("NFKC", text).replace("\u2212", "-")
    for found in reversed(NUMERIC_RE.findall(text)):
        try:
            if "/" in found:
                numerator, denominator = found.split("/")
                return float(numerator) / float(denominator) if float(denominator) else None
            value = float(found.replace(",", ""))
        except (ValueError, OverflowError):
            continue
        if math.isfinite(value):
            return value
    return None


def numbers_equal(predicted: float | None, gold: float | None) -> bool:
    """Equal within math.isclose(rel_tol=1e-4, abs_tol=1e-6): 3.1416 = 3.14159, 0.5 ≠ 0.501."""
    return predicted is not None and gold is not None and math.isclose(predicted, gold, rel_tol=1e-4, abs_tol=1e-6)


# ---------------------------------------------------------------------------------------------
# Multiple choice: the letter an answer picks

# In order; each rule takes its last match (a final answer follows the reasoning):
CHOICE_RULES = (
    # 1. The whole answer is one letter, decorated: "B", "(B)", "b)", "[C].", "**D**".
    re.compile(r"^\W*([A-Za-z])\W*$"),
    # 2. A label: "Answer: B", "the answer is (b)", "Correct option: C", "final choice - d)".
    # A lower-case letter must be framed ("(b)", "b)", "b." or the end): "the answer is a dog" picks nothing.
    re.compile(r"\b(?i:answer|option|choice)\s*(?:is|would be|=|:|-)?\s*(?i:option\s*|letter\s*)?"
               r"(?:[\(\[]?([A-Z])\b(?![\w'’])|[\(\[]([a-z])[\)\]]|([a-z])(?:[\).:]|\W*$))"),
    # 3. A letter in parentheses or brackets: "... so (C) is right".
    re.compile(r"[\(\[]([A-Za-z])[\)\]]"),
    # 4. A line that starts with a letter and ")", "." or ":": "B) Paris".
    re.compile(r"^\W*([A-Za-z])[\).:](?:\s|$)", re.MULTILINE),
    # 5. A capital letter alone at the very end: "... the answer: B" was rule 2; "... so it's B."
    re.compile(r"\b([A-Z])\W*$"),
)


def chosen_letter(text: str) -> str | None:
    """The multiple-choice letter ``text`` picks, upper case, by the first of CHOICE_RULES that
    matches (that rule's last match); None when none does. "b)" → B, "(B)" → B, "Answer: B" → B,
    "The answer is (c) because ..." → C. Lower-case letters count only where a rule frames them,
    so "a" in "a dog" is no choice."""
    text = unicodedata.normalize("NFKC", text).strip()
    for rule in CHOICE_RULES:
        found = rule.findall(text)
        if found:
            last = found[-1]
            return "".join(last).upper() if isinstance(last, tuple) else last.upper()
    return None


# ---------------------------------------------------------------------------------------------
# GSM8K


def last_number(text: str) -> float | None:
    matches = NUMBER_RE.findall(text.replace("−", "-"))
    if not matches:
        return None
    try:
        return float(matches[-1].replace(",", ""))
    except ValueError:
        return None


def gsm8k_gold(solution: str) -> str:
    """GSM8K's gold answer is the text after the final ``####``, thousands commas removed."""
    return solution.split("####")[-1].strip().replace(",", "")


def gsm8k_score(answer: str, gold: str) -> float:
    predicted, expected = last_number(answer), last_number(gold)
    if predicted is None or expected is None:
        return 0.0
    return 1.0 if abs(predicted - expected) <= 1e-6 else 0.0


# ---------------------------------------------------------------------------------------------
# DROP: drop_eval.py's F1 (allenai/allennlp-reading-comprehension), numbers compared as numbers.

ARTICLES_RE = re.compile(r"\b(a|an|the)\b")
THOUSANDS_RE = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?")


def _is_number(text: str) -> bool:
    try:  # as drop_eval.py: whatever Python's float reads
        float(text)
        return True
    except ValueError:
        return False


def _drop_token(token: str) -> str:
    """drop_eval.py's per-token normalization: lower case, punctuation removed unless the token is a
    number, numbers as floats ("25" → "25.0", "2.50" → "2.5"), articles removed."""
    token = token.lower()
    # FlowPO (D1): surrounding punctuation is not part of a number ("2.5." ending a sentence, "$2.5",
    # "2.5%", "(2.5)"); removing it mark by mark, as drop_eval.py does, would make them 25.
    core = token.lstrip(string.punctuation.replace(".", "")).rstrip(string.punctuation)
    core = core.replace(",", "") if THOUSANDS_RE.fullmatch(core) else core
    if not _is_number(token):
        token = core if _is_number(core) else "".join(ch for ch in token if ch not in string.punctuation)
    if _is_number(token):
        token = str(float(token))
    return " ".join(ARTICLES_RE.sub(" ", token).split())


def drop_normalize(text: str) -> str:
    """drop_eval.py's ``_normalize_answer``: tokens split at spaces and hyphens, each normalized."""
    return " ".join(part for part in map(_drop_token, re.split(" |-", text)) if part.strip())


def _drop_bags(answer: str | Sequence[str]) -> list[set[str]]:
    """One set of tokens per span (DROP's bags are sets: a repeated token counts once)."""
    spans = [answer] if isinstance(answer, str) else list(answer)
    return [set(drop_normalize(span).split()) for span in spans]


def _bag_f1(predicted: set[str], gold: set[str]) -> float:
    intersection = len(predicted & gold)
    precision = intersection / len(predicted) if predicted else 1.0
    recall = intersection / len(gold) if gold else 1.0
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def _numbers_match(gold: set[str], predicted: set[str]) -> bool:
    """If the gold span has numbers, the predicted span must share one (else its F1 is 0)."""
    gold_numbers = {word for word in gold if _is_number(word)}
    return not gold_numbers or bool(gold_numbers & {word for word in predicted if _is_number(word)})


def _align_bags(predicted: list[set[str]], gold: list[set[str]]) -> float:
    """Mean F1 over max(#gold, #predicted) spans of the best one-to-one matching of predicted to gold
    spans, found as drop_eval.py does: scipy's linear_sum_assignment on the F1 matrix."""
    if not predicted or not gold:
        return 0.0
    import numpy as np
    from scipy.optimize import linear_sum_assignment  # imported here: scipy takes a while to load

    scores = np.array([[_bag_f1(p, g) if _numbers_match(g, p) else 0.0 for p in predicted] for g in gold])
    rows, columns = linear_sum_assignment(-scores)
    best = float(scores[rows, columns].sum())
    return round(best / max(len(gold), len(predicted)), 2)  # drop_eval.py reports F1 to two decimals


def drop_f1(predicted: str | Sequence[str], golds: Sequence[str | Sequence[str]]) -> float:
    """DROP's F1 of the predicted answer, the best over the gold answers. An answer is a string
    or a tuple of spans (a multi-span answer); blank gold answers are skipped, as drop_eval.py does."""
    predicted_bags = _drop_bags(predicted)
    scores = [_align_bags(predicted_bags, _drop_bags(gold)) for gold in golds
              if (gold if isinstance(gold, str) else "".join(gold)).strip()]
    return max(scores, default=0.0)


# ---------------------------------------------------------------------------------------------
# HotpotQA: hotpot_evaluate_v1.py's answer F1, kept as is (SQuAD's normalization and token F1, with
# its yes/no/noanswer rule). DROP does not use it: removing "." from "2.5" would make it 25.

YES_NO = {"yes", "no", "noanswer"}


def normalize_answer(text: str) -> str:
    """SQuAD's normalization: lower case, no punctuation, no articles, single spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def token_f1(predicted: str, gold: str) -> float:
    """hotpot_evaluate_v1.py's ``f1_score``: token F1, but 0 when either side is yes/no/noanswer and
    they differ ("yes, it is" is not "yes"), and 0 when no token is shared (an empty side included)."""
    pred_norm, gold_norm = normalize_answer(predicted), normalize_answer(gold)
    if (pred_norm in YES_NO or gold_norm in YES_NO) and pred_norm != gold_norm:
        return 0.0
    pred_tokens, gold_tokens = pred_norm.split(), gold_norm.split()
    overlap = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(pred_tokens), overlap / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def f1_score(predicted: str, golds: list[str]) -> float:
    """The best token F1 over the gold alternatives (HotpotQA has one)."""
    return max((token_f1(predicted, gold) for gold in golds), default=0.0)


# ---------------------------------------------------------------------------------------------
# The registry

Scorer = Callable[[str, tuple, float], tuple]  # (answer, gold answers, timeout_s) -> (score, what it read)

SCORERS: dict[str, Scorer] = {
    "exact": score_exact, "numeric": score_numeric, "choice": score_choice, "math": score_math,
    "gsm8k": score_gsm8k, "drop_f1": score_drop, "hotpotqa_f1": score_hotpotqa,
}
