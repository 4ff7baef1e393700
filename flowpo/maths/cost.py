"""The cost-aware training signal (``train.cost_weight`` λ, ``train.cost_unit``): the score minus λ times
a normalized executor cost, without the crash trap. Pure functions of numbers, sample lines and candidates.

The rule, per problem and round:

- A workflow's cost is what one run of it cost the executor LLM, in the unit: ``usd``, ``tokens``
  (prompt + completion) or ``calls``; with repeats, their total over their count.
- It *answered* when it ran to its end (no failure class) and returned a non-empty answer.
- Normalized cost c̃ = c / (the costliest answered workflow's c) of the same problem in the same
  round, in [0, 1] (0 for all when that maximum is 0). A ratio, so λ means the same on a problem
  whose workflows spend 200 tokens and on one whose spend 20,000, and in any unit.
- A workflow that did not answer (crash, timeout, invalid, empty answer) is charged c̃ = 1, the
  costliest answer's: the least that keeps it from outranking an answered workflow of the same score.
  Costs are compared among answered workflows only, so crashing at once never reads as cheap.
- Signal u = s + λ·(1 − c̃), i.e. the score minus λ·c̃ shifted by the problem's constant λ, which no
  pair or group sees (pairs and groups are within one problem). Written so, a failure's signal is
  its score exactly and an answer's is its score plus a non-negative term, so in floating point too
  no failure outranks an answer of the same or a higher score, whatever λ.
- The learner gets u on the scores' own [0, 1]: v = u / (1 + λ) (scores in [0, 1]). Order and the
  ratios of gaps are u's, so Score-DPO's P ∝ gap^α and ioGRPO's advantages are too, and Score-DPO's
  f(s_w) and 1 − f(s_l) stay in their domain; a solve that cost nothing gets 1, a failure s / (1 + λ).
- Cost moves a signal by at most λ (before the rescaling): a score gap larger than λ is never
  reversed, so on pass/fail tasks λ ≤ 1 never prefers a wrong answer to a right one; a larger λ
  does where the right one cost more than the wrong one by over 1/λ of the costliest answer's.

Infrastructure failures (score None) are no candidates at all: they stay unscored. λ = 0 gives the
scores themselves (s + 0·x = s), and the registry then skips this module altogether.
"""
from __future__ import annotations

import dataclasses
from collections import defaultdict
from typing import Mapping, Sequence

from flowpo.maths.pairs import Candidate

UNITS = ("usd", "tokens", "calls")


def usage_cost(usage: Mapping, unit: str, runs: int = 1) -> float:
    """One run's cost in ``unit`` from a usage record (``llm_calls``, ``prompt_tokens``,
    ``completion_tokens``, ``cost_usd``) that totals ``runs`` runs."""
    if unit == "usd":
        total = float(usage.get("cost_usd") or 0.0)
    elif unit == "tokens":
        total = float((usage.get("prompt_tokens") or 0) + (usage.get("completion_tokens") or 0))
    elif unit == "calls":
        total = float(usage.get("llm_calls") or 0)
    else:
        raise ValueError(f"unknown cost unit {unit!r}; expected one of {', '.join(UNITS)}")
    return total / max(1, runs)


def line_cost(line: Mapping, unit: str) -> float:
    """One run's cost of a samples.jsonl line: its repeats' total (details.repeat_usage) over their count."""
    details = line.get("details") or {}
    usage = details.get("repeat_usage") or line.get("usage") or {}
    return usage_cost(usage, unit, runs=len(details.get("repeat_scores") or [None]))


def answered(failure: str | None, answer: str | None) -> bool:
    """Whether a run produced an answer: no failure class and a non-empty answer."""
    return not failure and bool((answer or "").strip())


def line_answered(line: Mapping) -> bool:
    return answered(line.get("failure"), line.get("answer"))


def normalized_costs(costs: Sequence[float], answers: Sequence[bool]) -> list[float]:
    """c̃_i = c_i / max(c_j over answered j) for answered i (0 when that max is 0), 1 for the others."""
    top = max((c for c, a in zip(costs, answers) if a), default=0.0)
    return [(c / top if top > 0 else 0.0) if a else 1.0 for c, a in zip(costs, answers)]


def cost_signal(scores: Sequence[float], costs: Sequence[float], answers: Sequence[bool], *,
                cost_weight: float) -> list[float]:
    """u_i = s_i + λ·(1 − c̃_i) for one problem's workflows (module doc: the score minus λ·c̃, shifted)."""
    return [s + cost_weight * (1.0 - n) for s, n in zip(scores, normalized_costs(costs, answers))]


def cost_adjusted(candidates: list[Candidate], cost_weight: float) -> list[Candidate]:
    """The candidates, in their order, each score replaced by its problem's ``cost_signal`` on [0, 1]
    (``unit_interval``): what the learner's pairs and groups are drawn from."""
    by_problem: dict[str, list[int]] = defaultdict(list)
    for i, c in enumerate(candidates):
        by_problem[c.problem_id].append(i)
    out = list(candidates)
    for indices in by_problem.values():
        mine = [candidates[i] for i in indices]
        signal = cost_signal([c.score for c in mine], [c.cost for c in mine], [c.answered for c in mine],
                             cost_weight=cost_weight)
        for i, u in zip(indices, signal):
            out[i] = dataclasses.replace(candidates[i], score=unit_interval(u, cost_weight))
    return out


def unit_interval(signal: float, cost_weight: float) -> float:
    """A signal u ∈ [0, 1 + λ] (scores in [0, 1]) on the scores' [0, 1]: u / (1 + λ). Order and ratios
    of gaps are kept; sums of squares no longer overflow at a huge λ."""
    return signal / (1.0 + cost_weight)
