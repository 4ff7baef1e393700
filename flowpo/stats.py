"""Intervals for pass rates measured on problems × seeds, and for the paired difference of two
checkpoints on the same cells. Pure functions of numbers, no numpy or scipy.

The design: every checkpoint is scored on the same held-out problems in every seed's run, so a
cell (seed, problem) holds one score per checkpoint (the mean over its workflows and repeats). The
claim under test is that training helps on problems it never saw, so problems are the sampling
unit: a cell's values are averaged over seeds into one number per problem (seed-to-seed noise then
shows in the spread between problems), and a Student t-interval is taken over problems. The
difference of two checkpoints is taken cell by cell first (paired: same problem, same seed, same
executor-LLM seeds), which removes the problems' difficulty from its variance. A t-interval over
seeds (each seed's mean over problems) is reported beside it: it shows whether every training run
helps, and with 3 seeds it is wide (t = 4.30 on 2 degrees of freedom), as it should be.

Why t and not a bootstrap or Wilson: a bootstrap over 10-30 problems under-covers and cannot be
checked by hand; Wilson is for independent Bernoulli trials, and a problem's workflows are not
independent of each other. Intervals of rates are clipped to [0, 1], of differences to [-1, 1].
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Hashable, Iterable, Mapping, Sequence

Cell = tuple[Hashable, str]  # (seed, problem id)


@dataclass(frozen=True)
class Interval:
    mean: float  # nan when there is no unit
    low: float  # nan when there are fewer than 2 units (no spread to estimate)
    high: float
    n: int  # units the interval is over (problems, or seeds)

    def excludes_zero(self) -> bool:
        return not math.isnan(self.low) and (self.low > 0 or self.high < 0)


@dataclass(frozen=True)
class PairedDifference:
    """``after − before`` on the cells both scored."""
    over_problems: Interval  # the headline interval: per-problem mean differences
    over_seeds: Interval  # per-seed mean differences (one training run each)
    per_seed: dict  # seed -> mean difference over its problems
    cells: int  # cells scored by both
    unpaired: int  # cells scored by one side only (infrastructure failed on the other): left out


# ---------------------------------------------------------------------------------------------
# Student t quantile: the regularized incomplete beta function (continued fraction, Lentz's method).


def _beta_fraction(a: float, b: float, x: float) -> float:
    tiny, c, d = 1e-300, 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 300):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1 + numerator * d
            d = 1 / (d if abs(d) > tiny else tiny)
            c = 1 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= d * c
        if abs(d * c - 1) < 1e-15:
            break
    return result


def incomplete_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b), the regularized incomplete beta function."""
    if x <= 0 or x >= 1:
        return 0.0 if x <= 0 else 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1) / (a + b + 2):  # the fraction converges fast on this side; use symmetry on the other
        return front * _beta_fraction(a, b, x) / a
    return 1 - front * _beta_fraction(b, a, 1 - x) / b


def t_cdf(t: float, df: float) -> float:
    tail = 0.5 * incomplete_beta(df / 2, 0.5, df / (df + t * t))
    return 1 - tail if t > 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The p-quantile of Student's t with ``df`` degrees of freedom (bisection on the CDF)."""
    if not 0 < p < 1 or df <= 0:
        raise ValueError(f"t_quantile needs 0 < p < 1 and df > 0, got p={p}, df={df}")
    low, high = -1e7, 1e7
    for _ in range(200):
        mid = (low + high) / 2
        low, high = (mid, high) if t_cdf(mid, df) < p else (low, mid)
    return (low + high) / 2


# ---------------------------------------------------------------------------------------------
# Intervals


def mean_interval(values: Sequence[float], *, confidence: float = 0.95,
                  bounds: tuple[float, float] = (-math.inf, math.inf)) -> Interval:
    """Mean ± t_{(1+c)/2, n-1} · s / √n over ``values`` (sample standard deviation s), clipped to ``bounds``."""
    n = len(values)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = math.fsum(values) / n
    if n == 1:
        return Interval(mean, math.nan, math.nan, 1)
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = t_quantile((1 + confidence) / 2, n - 1) * sd / math.sqrt(n)
    return Interval(mean, max(bounds[0], mean - half), min(bounds[1], mean + half), n)


def cell_means(observations: Iterable[tuple[Hashable, str, float | None]]) -> dict[Cell, float]:
    """Mean score per (seed, problem) of (seed, problem, score) observations; a score of None (the
    infrastructure failed: not the workflow's score) is left out, and a cell with none is absent."""
    sums: dict[Cell, list[float]] = defaultdict(list)
    for seed, problem, score in observations:
        if score is not None:
            sums[(seed, problem)].append(float(score))
    return {cell: math.fsum(v) / len(v) for cell, v in sums.items()}


def natural(key: Hashable) -> tuple:
    """Sort key of seeds and problem ids: 2 before 10, HumanEval/2 before HumanEval/10."""
    text = str(key)
    return len(text), text


def _means_by(cells: Mapping[Cell, float], position: int) -> list[float]:
    groups: dict[Hashable, list[float]] = defaultdict(list)
    for cell, value in cells.items():
        groups[cell[position]].append(value)
    return [math.fsum(v) / len(v) for _, v in sorted(groups.items(), key=lambda kv: natural(kv[0]))]


def pass_rate(cells: Mapping[Cell, float], *, confidence: float = 0.95) -> Interval:
    """Mean pass rate over problems (each problem's mean over its seeds), with its t-interval."""
    return mean_interval(_means_by(cells, 1), confidence=confidence, bounds=(0.0, 1.0))


def paired_difference(before: Mapping[Cell, float], after: Mapping[Cell, float], *,
                      confidence: float = 0.95) -> PairedDifference:
    """``after − before`` per cell both scored; intervals over problems and over seeds."""
    shared = set(before) & set(after)
    diffs = {cell: after[cell] - before[cell] for cell in shared}
    seeds = {cell[0] for cell in shared}
    per_seed = {seed: math.fsum(d for c, d in diffs.items() if c[0] == seed) / sum(1 for c in diffs if c[0] == seed)
                for seed in sorted(seeds, key=natural)}
    return PairedDifference(
        over_problems=mean_interval(_means_by(diffs, 1), confidence=confidence, bounds=(-1.0, 1.0)),
        over_seeds=mean_interval(list(per_seed.values()), confidence=confidence, bounds=(-1.0, 1.0)),
        per_seed=per_seed, cells=len(shared), unpaired=len(set(before) ^ set(after)))
