"""ioGRPO group construction (SPOGW): variance-screened, sharpened groups with advantages."""
from __future__ import annotations

import itertools
import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from flowpo.maths.pairs import Candidate


@dataclass(frozen=True)
class Group:
    problem_id: str
    members: tuple[int, ...]  # indices into the problem's workflows, lowest scores first
    scores: tuple[float, ...]
    advantages: tuple[float, ...]


def advantages(scores: list[float], eps: float = 1e-6) -> list[float]:
    """A_i = (s_i − mean) / (std + eps), population std, within one group."""
    values = np.asarray(scores, dtype=np.float64)
    return list((values - values.mean()) / (values.std() + eps))


def sharpen(indices: tuple[int, ...], scores: list[float], t: int) -> tuple[int, ...]:
    """The t lowest- and t highest-scoring members (ties broken by index), lowest first."""
    ranked = sorted(indices, key=lambda i: (scores[i], i))
    return tuple(ranked[:t] + ranked[-t:])


def build_groups(problem_id: str, scores: list[float], *, m: int, n: int, t: int, top_n: int,
                 max_combinations: int, seed: int) -> list[Group]:
    """Groups for one problem from its first ``m`` workflows' scores.

    C(m, n) combinations (a seeded random ``max_combinations`` of them when there are more),
    zero-variance ones dropped, the ``top_n`` by variance kept, each sharpened to 2t members.
    """
    if not 2 * t < n:
        raise ValueError(f"sharpening needs 2t < n, got t={t}, n={n}")
    pool = list(range(min(m, len(scores))))
    if len(pool) < n:
        return []
    combos = _combinations(pool, n, max_combinations, seed)
    scored = [(float(np.var([scores[i] for i in c])), c) for c in combos]
    scored = [(v, c) for v, c in scored if v > 0]
    scored.sort(key=lambda vc: (-vc[0], vc[1]))
    groups = []
    for _, combo in scored[:top_n]:
        members = sharpen(combo, scores, t)
        member_scores = [scores[i] for i in members]
        groups.append(Group(problem_id, members, tuple(member_scores), tuple(advantages(member_scores))))
    return groups


@dataclass(frozen=True)
class PromptGroup:
    """A sharpened group as the learner consumes it: one prompt, its members' completions, lowest score first."""

    problem_id: str
    prompt: str
    completions: tuple[str, ...]
    scores: tuple[float, ...]
    advantages: tuple[float, ...]


def sample_groups(candidates: list[Candidate], *, m: int, n: int, t: int, top_n: int, max_combinations: int,
                  seed: int) -> list[PromptGroup]:
    """``build_groups`` over every problem's candidates (per-sample scores, in sampling order)."""
    by_problem: dict[str, list[Candidate]] = defaultdict(list)
    for c in candidates:
        by_problem[c.problem_id].append(c)
    out = []
    for offset, (problem_id, cands) in enumerate(by_problem.items()):
        # A seed per problem: capped combinations differ between problems but not between runs.
        for g in build_groups(problem_id, [c.score for c in cands], m=m, n=n, t=t, top_n=top_n,
                              max_combinations=max_combinations, seed=seed + offset):
            out.append(PromptGroup(problem_id, cands[0].prompt, tuple(cands[i].completion for i in g.members),
                                   g.scores, g.advantages))
    return out


def _combinations(pool: list[int], n: int, cap: int, seed: int) -> list[tuple[int, ...]]:
    if math.comb(len(pool), n) <= cap:
        return list(itertools.combinations(pool, n))
    rng = np.random.default_rng(seed)
    seen: set[tuple[int, ...]] = set()
    while len(seen) < cap:
        seen.add(tuple(sorted(rng.choice(pool, size=n, replace=False).tolist())))
    return sorted(seen)
