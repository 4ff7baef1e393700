"""Which of a question's N workflows answers it (`flowpo solve --samples N`, `flowpo serve`), with no
gold answer and no scorer: the rule is stated in the output beside its evidence.

- ``single``: one workflow; its answer.
- ``tests``: a code question with the user's own tests: the first workflow (by sample index) whose
  answer passes them, as the evaluator's two-sandbox harness ran them. None passes: the first that
  ran without a failure, else sample 0 (its failure is the question's).
- ``majority``: the answer most workflows gave, compared in normal form (``normal_form``), among the
  workflows that ran without a failure and answered something. A tie goes to the answer given first
  (lowest sample index); the answer returned is that first workflow's own text. None answered:
  sample 0, with its failure.

Pure functions of the per-sample lines (``driver.solve.sample_line``), so a recorded vote can always
be recomputed from ``samples.jsonl``.
"""
from __future__ import annotations

from collections import Counter

from flowpo.math_scorer import math_prediction, normalize_math
from flowpo.scorers import normalize_exact

RULES = {
    "single": "one workflow per question: its answer",
    "tests": "the first workflow whose answer passes the question's tests",
    "majority": "majority vote of the answers in normal form (ties: the answer given first)",
}
NORMAL_FORMS = {
    "math": "the last \\boxed{} (else the last line), normalized as the math scorer does",
    "code": "the code with trailing spaces and blank lines removed",
    "text": "the exact scorer's normalization: NFKC, casefold, whitespace collapsed, surrounding "
            "punctuation and quotes stripped",
}


def normal_form(answer: str, family: str) -> str:
    """The form two answers are compared in for the vote (``NORMAL_FORMS``; qa and text: the text one)."""
    if family == "math":
        predicted = math_prediction(answer)
        return normalize_math(predicted) if predicted is not None else normalize_exact(answer)
    if family == "code":
        return "\n".join(line.rstrip() for line in answer.strip().splitlines() if line.strip())
    return normalize_exact(answer)


def rule_for(samples: int, has_tests: bool) -> str:
    if has_tests:
        return "tests"
    return "single" if samples == 1 else "majority"


def answered(line: dict) -> bool:
    """The workflow ran to its end without a failure and returned something."""
    return not line.get("failure") and bool(str(line.get("answer", "")).strip())


def pick(lines: list[dict], rule: str, family: str) -> dict:
    """The chosen sample's index, and the evidence: ``votes`` (majority: each normal form, its count
    and sample indices, most votes first) or ``passed`` (tests: the indices whose answer passed)."""
    ordered = sorted(lines, key=lambda line: line["sample_index"])
    if not ordered:
        raise ValueError("pick: no samples")
    fallback = next((line for line in ordered if answered(line)), ordered[0])
    if rule == "tests":
        passed = [line["sample_index"] for line in ordered if line.get("test") == "passed"]
        return {"chosen": passed[0] if passed else fallback["sample_index"], "passed": passed}
    if rule == "single" or not any(answered(line) for line in ordered):
        return {"chosen": fallback["sample_index"]}
    forms: dict[str, list[int]] = {}  # normal form -> sample indices, in order of first appearance
    for line in ordered:
        if answered(line):
            forms.setdefault(normal_form(line["answer"], family), []).append(line["sample_index"])
    counts = Counter({form: len(indices) for form, indices in forms.items()})
    # Counter.most_common keeps insertion order among equal counts: the answer given first wins a tie.
    votes = [{"answer": form, "count": count, "samples": forms[form]} for form, count in counts.most_common()]
    return {"chosen": votes[0]["samples"][0], "votes": votes}
