"""Accuracy against cost (issue 30): each method (a checkpoint, a training round's workflows, IO, CoT,
CoT-SC) as a point, its pass rate and its mean executor cost per problem each with a 95% interval over
problems, the cost per solved problem, the share of workflows that gave no answer, and the Pareto
front. Pure functions of sample lines grouped as ``runs[seed][method]`` (driver/curve.py's shape);
driver/report_plots.py draws them.

Cost is a workflow's executor cost of one run (flowpo/maths/cost.py: the same number training
compares), in a unit: usd, tokens or calls. Every workflow counts towards cost, a failure and an
infrastructure failure too (the calls were made and paid); only the pass rate leaves unscored
workflows out. A cell (seed, problem) holds the mean cost of its workflows; intervals are Student t
over problems, as for pass rates (flowpo/stats.py), and the paired difference is taken cell by cell.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Hashable, Mapping

from flowpo.maths.cost import line_answered, line_cost
from flowpo.stats import Cell, Interval, PairedDifference, cell_means, mean_interval, natural, pass_rate

Runs = Mapping[Hashable, Mapping[str, list[dict]]]  # seed -> method -> sample lines
UNIT_NAMES = {"usd": "USD", "tokens": "tokens", "calls": "LLM calls"}


def display_unit(unit: str, priced: bool) -> str:
    """The unit costs are shown in: the run's ``train.cost_unit``, but tokens where that is usd and the
    executor has no prices (every cost would read $0)."""
    return "tokens" if unit == "usd" and not priced else unit


def config_cost_unit(config) -> str:
    """``display_unit`` of a run's Config."""
    llm = config.executor_llm
    return display_unit(config.train.cost_unit, bool(llm.prompt_usd_per_mtok or llm.completion_usd_per_mtok))


def cost_cells(runs: Runs, method: str, unit: str) -> dict[Cell, float]:
    """Mean executor cost of one run of the method's workflows per (seed, problem), every workflow counted."""
    return cell_means((seed, str(r.get("problem_id")), line_cost(r, unit)) for seed, methods in runs.items()
                      for r in methods.get(method, []))


def _score(record: dict) -> float | None:
    """A line's score, None where it has none (unscored) or what it holds is not a number."""
    s = record.get("score")
    return float(s) if isinstance(s, (int, float)) and not isinstance(s, bool) else None


def _per_problem(cells: Mapping[Cell, float]) -> list[float]:
    groups: dict[Hashable, list[float]] = defaultdict(list)
    for (_, problem), value in cells.items():
        groups[problem].append(value)
    return [math.fsum(v) / len(v) for _, v in sorted(groups.items(), key=lambda kv: natural(kv[0]))]


def cost_interval(cells: Mapping[Cell, float]) -> Interval:
    """Mean cost per problem (each problem's mean over its seeds), with its t-interval over problems."""
    return mean_interval(_per_problem(cells), bounds=(0.0, math.inf))


def paired_cost_difference(before: Mapping[Cell, float], after: Mapping[Cell, float]) -> PairedDifference:
    """``after − before`` cost per cell both have, unbounded; intervals over problems and over seeds
    (flowpo.stats.paired_difference's, which clips to a rate difference's [-1, 1])."""
    shared = set(before) & set(after)
    diffs = {cell: after[cell] - before[cell] for cell in shared}
    by_seed: dict[Hashable, list[float]] = defaultdict(list)
    for (seed, _), d in diffs.items():
        by_seed[seed].append(d)
    per_seed = {s: math.fsum(v) / len(v) for s, v in sorted(by_seed.items(), key=lambda kv: natural(kv[0]))}
    return PairedDifference(over_problems=mean_interval(_per_problem(diffs)),
                            over_seeds=mean_interval(list(per_seed.values())), per_seed=per_seed,
                            cells=len(shared), unpaired=len(set(before) ^ set(after)))


@dataclass(frozen=True)
class CostPoint:
    method: str
    label: str
    baseline: bool
    rate: Interval  # pass rate over problems (unscored workflows left out)
    cost: Interval  # mean executor cost of one run per problem, in ``unit``
    unit: str
    workflows: int
    no_answer: int  # workflows that gave no answer: crash, timeout, invalid, empty (flowpo.maths.cost.answered)
    crashes: int  # of which failure "crash"
    answer_cost: float  # mean cost of one answered workflow (nan: none answered): cheaper answers, not more failures
    pareto: bool  # no other point has a pass rate as high and a cost as low, one of them strictly better

    @property
    def cost_per_solved(self) -> float:
        """Mean cost per problem over the pass rate: what one solved problem costs; inf when none is solved."""
        if math.isnan(self.cost.mean) or math.isnan(self.rate.mean):
            return math.nan
        return self.cost.mean / self.rate.mean if self.rate.mean > 0 else math.inf

    def share(self, count: int) -> float:
        return count / self.workflows if self.workflows else math.nan


def _mean(values: list[float]) -> float:
    return math.fsum(values) / len(values) if values else math.nan


def pareto_front(points: list[tuple[float, float]]) -> list[bool]:
    """For (rate, cost) points, whether each is on the front: no other point with rate ≥ and cost ≤,
    one of them strictly. A point with an undefined (nan) coordinate is never on it."""
    def defined(p):
        return not (math.isnan(p[0]) or math.isnan(p[1]))

    def dominates(q, p):
        return q[0] >= p[0] and q[1] <= p[1] and (q[0] > p[0] or q[1] < p[1])

    return [defined(p) and not any(defined(q) and dominates(q, p) for q in points) for p in points]


def cost_points(runs: Runs, methods: list[str], labels: Mapping[str, str], baselines: frozenset | set,
                unit: str) -> list[CostPoint]:
    """One point per method, in ``methods`` order."""
    raw = []
    for method in methods:
        lines = [r for m in runs.values() for r in m.get(method, [])]
        scores = cell_means((seed, str(r.get("problem_id")), _score(r)) for seed, m in runs.items()
                            for r in m.get(method, []))
        raw.append(dict(method=method, label=labels.get(method, method), baseline=method in baselines,
                        rate=pass_rate(scores), cost=cost_interval(cost_cells(runs, method, unit)), unit=unit,
                        workflows=len(lines), no_answer=sum(1 for r in lines if not line_answered(r)),
                        crashes=sum(1 for r in lines if r.get("failure") == "crash"),
                        answer_cost=_mean([line_cost(r, unit) for r in lines if line_answered(r)])))
    front = pareto_front([(p["rate"].mean, p["cost"].mean) for p in raw])
    return [CostPoint(**p, pareto=on) for p, on in zip(raw, front)]


# ---------------------------------------------------------------------------------------------
# Markdown


def cost_text(x: float, unit: str) -> str:
    if math.isnan(x):
        return "–"
    if math.isinf(x):
        return "∞"
    return f"{x:.5f}" if unit == "usd" else f"{x:.1f}"


def interval_cost_text(i: Interval, unit: str, signed: bool = False) -> str:
    """``812.5 [640.1, 984.9]``; a difference signed; the bracket only with 2+ units."""
    if math.isnan(i.mean):
        return "–"
    mean = ("+" if signed and i.mean >= 0 else "") + cost_text(i.mean, unit)
    return mean if math.isnan(i.low) else f"{mean} [{cost_text(i.low, unit)}, {cost_text(i.high, unit)}]"


def _pct(x: float) -> str:
    return "–" if math.isnan(x) else f"{100 * x:.1f}"


def _rate_text(i: Interval) -> str:
    if math.isnan(i.mean):
        return "–"
    return f"{100 * i.mean:.1f}" if math.isnan(i.low) else f"{100 * i.mean:.1f} [{100 * i.low:.1f}, {100 * i.high:.1f}]"


def render_cost_table(points: list[CostPoint]) -> str:
    unit = UNIT_NAMES.get(points[0].unit, points[0].unit) if points else ""
    lines = [f"| method | pass rate % [95% CI] | executor cost / problem, {unit} [95% CI] | cost / solved problem "
             "| cost / answer | no answer % | crash % | Pareto |", "|---|---:|---:|---:|---:|---:|---:|:---:|"]
    for p in points:
        lines.append(f"| {p.label} | {_rate_text(p.rate)} | {interval_cost_text(p.cost, p.unit)} "
                     f"| {cost_text(p.cost_per_solved, p.unit)} | {cost_text(p.answer_cost, p.unit)} "
                     f"| {_pct(p.share(p.no_answer))} | {_pct(p.share(p.crashes))} | {'●' if p.pareto else ''} |")
    return "\n".join(lines)


COST_NOTE = (
    "Executor cost is one run of a workflow (its repeats' total over their count), every workflow counted, "
    "failures too; a cell (seed, problem) is the mean over its workflows and the interval a Student t 95% "
    "interval over problems, as for the pass rate. Cost per solved problem: cost per problem over the pass "
    "rate. Cost / answer: the mean cost of one answered workflow, which a cut by failing cheaply leaves as it was. "
    "No answer: crash, timeout, invalid or empty answer. Pareto (●): no other method has a pass rate as "
    "high and a cost as low, one of them strictly better.")


def cost_json(points: list[CostPoint]) -> list[dict]:
    def clean(x):
        return None if isinstance(x, float) and (math.isnan(x) or math.isinf(x)) else x

    return [{"method": p.method, "label": p.label, "baseline": p.baseline, "unit": p.unit,
             "rate": {k: clean(v) for k, v in vars(p.rate).items()},
             "cost": {k: clean(v) for k, v in vars(p.cost).items()}, "cost_per_solved": clean(p.cost_per_solved),
             "answer_cost": clean(p.answer_cost), "workflows": p.workflows, "no_answer": p.no_answer,
             "crashes": p.crashes, "pareto": p.pareto}
            for p in points]
