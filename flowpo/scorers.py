r"""Rule-based scorers for the math and question-answering benchmarks (pure functions).

Each scorer follows its benchmark's official evaluation script; where FlowPO differs, the list below
says how and why, and tests/flowpo/test_scorers_official.py has a test per difference. HumanEval and MBPP
are not scored here: the evaluator runs their hidden tests in the sandbox.

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
  D3. The span alignment tries every matching up to 8! of them (always, for one predicted string),
      and is greedy beyond, so it may score lower than the optimum (scipy is not a dependency).
HotpotQA: hotpot_evaluate_v1.py's normalize_answer and f1_score (SQuAD-style token F1, 0 when
either side is yes/no/noanswer and they differ, 0 when either side normalizes to nothing), as is.
Also the parser of the optional LLM judge's verdict.
"""
from __future__ import annotations

import itertools
import math
import re
import string
from collections import Counter
from collections.abc import Sequence

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
    spans. drop_eval.py solves it with scipy's linear_sum_assignment; answers have a few spans (one
    predicted string: as many matchings as gold spans), so trying every matching is exact and cheap.
    Past 8! matchings (D3), a greedy one: the best remaining pair first."""
    if not predicted or not gold:
        return 0.0
    scores = [[_bag_f1(p, g) if _numbers_match(g, p) else 0.0 for p in predicted] for g in gold]
    rows, columns = len(gold), len(predicted)
    if math.perm(max(rows, columns), min(rows, columns)) <= math.factorial(8):
        if rows <= columns:
            best = max(sum(scores[r][c] for r, c in enumerate(chosen))
                       for chosen in itertools.permutations(range(columns), rows))
        else:
            best = max(sum(scores[r][c] for c, r in enumerate(chosen))
                       for chosen in itertools.permutations(range(rows), columns))
    else:
        pairs = sorted(((scores[r][c], r, c) for r in range(rows) for c in range(columns)), reverse=True)
        used_rows, used_columns, best = set(), set(), 0.0
        for score, r, c in pairs:
            if r not in used_rows and c not in used_columns:
                used_rows.add(r)
                used_columns.add(c)
                best += score
    return round(best / max(rows, columns), 2)  # drop_eval.py reports F1 to two decimals


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
# LLM judge

VERDICT_RE = re.compile(r"verdict\W{0,6}(not correct|incorrect|correct|wrong|right|yes|no)\b", re.IGNORECASE)
JUDGEMENT_RE = re.compile(r"\b(not correct|incorrect|wrong|correct|right)\b", re.IGNORECASE)
NEGATIVE = {"not correct", "incorrect", "wrong", "no"}


def parse_verdict(text: str) -> float | None:
    """1.0 or 0.0 from a judge's reply: the last "Verdict: ..." label, else its judgement words
    if they all agree; None when the reply says neither or both (an unreadable verdict is no score)."""
    labelled = VERDICT_RE.findall(text)
    words = [labelled[-1]] if labelled else JUDGEMENT_RE.findall(text)
    verdicts = {word.lower() not in NEGATIVE for word in words}
    return float(verdicts.pop()) if len(verdicts) == 1 else None
