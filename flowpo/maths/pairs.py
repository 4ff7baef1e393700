"""Score-DPO pair construction (ScoreFlow): weighted sampling of within-problem pairs."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Candidate:
    problem_id: str
    prompt: str
    completion: str
    score: float
    cost: float = 0.0  # one run's executor cost in train.cost_unit (flowpo/maths/cost.py)
    answered: bool = True  # it ran to its end with a non-empty answer; False: crash, timeout, invalid, empty


@dataclass(frozen=True)
class PreferencePair:
    problem_id: str
    prompt: str
    chosen: str
    rejected: str
    score_chosen: float
    score_rejected: float


def candidate_pairs(candidates: list[Candidate]) -> list[tuple[Candidate, Candidate]]:
    """Every (winner, loser) pair of one problem's candidates with different scores."""
    by_problem: dict[str, list[Candidate]] = defaultdict(list)
    for c in candidates:
        by_problem[c.problem_id].append(c)
    pairs = []
    for group in by_problem.values():
        for i, a in enumerate(group):
            for b in group[i + 1:]:
                if a.score != b.score:
                    pairs.append((a, b) if a.score > b.score else (b, a))
    return pairs


def sample_score_dpo_pairs(candidates: list[Candidate], *, num_pairs: int, alpha: float,
                           seed: int) -> list[PreferencePair]:
    """``num_pairs`` pairs drawn with replacement, P ∝ (s_w − s_l)^alpha; [] if none exist."""
    pool = candidate_pairs(candidates)
    if not pool or num_pairs <= 0:
        return []
    weights = np.array([(winner.score - loser.score) ** alpha for winner, loser in pool], dtype=np.float64)
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(pool), size=num_pairs, replace=True, p=weights / weights.sum())
    return [PreferencePair(problem_id=pool[i][0].problem_id, prompt=pool[i][0].prompt,
                           chosen=pool[i][0].completion, rejected=pool[i][1].completion,
                           score_chosen=pool[i][0].score, score_rejected=pool[i][1].score) for i in picks]
