"""The per-round report's plots: one PNG per table of driver/report_tables.py.

Thin on purpose (the numbers are tested in the tables, not in the pictures): Agg through the Figure API,
no pyplot global state, so that a report can be drawn from any thread or process without a display.
"""
from __future__ import annotations

import math
from pathlib import Path

from driver.report_tables import LossPoint, RoundRow


def _figure():
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 3.6), layout="constrained")
    return fig, fig.subplots()


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=100)
    return path


def plot_scores(path: Path, values: list[float], round_index: int, unscored: int) -> Path:
    fig, ax = _figure()
    bounded = all(0.0 <= v <= 1.0 for v in values)
    ax.hist(values, bins=[i / 10 for i in range(11)] if bounded else 20, color="tab:blue", edgecolor="white")
    ax.set(xlabel="score", ylabel="workflows",
           title=f"Round {round_index}: score distribution ({len(values)} scored, {unscored} unscored)")
    return _save(fig, path)


def plot_mean_score(path: Path, rows: list[RoundRow]) -> Path:
    fig, ax = _figure()
    points = [(r.round, r.mean_score) for r in rows if r.mean_score is not None]
    ax.plot([p[0] for p in points], [p[1] for p in points], marker="o")
    ax.set(xlabel="round", ylabel="mean score", title="Mean score per round")
    if all(p[1] >= 0 for p in points):
        ax.set_ylim(bottom=0)
    ax.set_xticks([r.round for r in rows])
    return _save(fig, path)


def plot_loss(path: Path, points: list[LossPoint]) -> Path:
    from matplotlib.ticker import MaxNLocator

    fig, ax = _figure()
    for k in sorted({p.round for p in points}):
        mine = [p for p in points if p.round == k]
        ax.plot([p.global_step for p in mine], [p.loss for p in mine], marker=".", label=f"round {k}")
    ax.set(xlabel="optimizer step (all rounds)", ylabel="loss", title="Learner loss")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend()
    return _save(fig, path)


def plot_failures(path: Path, counts: dict[str, int], round_index: int) -> Path:
    from matplotlib.ticker import MaxNLocator

    fig, ax = _figure()
    ax.bar(list(counts), list(counts.values()), color="tab:orange")
    ax.set(ylabel="workflows", title=f"Round {round_index}: outcomes")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.tick_params(axis="x", labelrotation=30)
    return _save(fig, path)


def plot_usage(path: Path, rows: list[RoundRow]) -> Path:
    fig, ax = _figure()
    rounds = [r.round for r in rows]
    ax.bar(rounds, [r.prompt_tokens for r in rows], label="prompt tokens", color="tab:blue")
    ax.bar(rounds, [r.completion_tokens for r in rows], bottom=[r.prompt_tokens for r in rows],
           label="completion tokens", color="tab:cyan")
    ax.set(xlabel="round", ylabel="executor tokens", title="Executor LLM tokens and cost per round")
    ax.set_xticks(rounds)
    ax.margins(y=0.3)  # room for the legend above the bars
    handles = ax.get_legend_handles_labels()[0]
    if any(r.cost_usd is not None for r in rows):
        cost = ax.twinx()
        cost.plot(rounds, [r.cost_usd if r.cost_usd is not None else math.nan for r in rows], color="tab:red",
                  marker="o", label="cost (USD)")
        cost.set_ylabel("USD")
        cost.set_ylim(bottom=0)
        handles += cost.get_legend_handles_labels()[0]
    ax.legend(handles=handles, loc="upper left")
    return _save(fig, path)


def plot_cache_rate(path: Path, rows: list[RoundRow]) -> Path:
    fig, ax = _figure()
    rounds = [r.round for r in rows]
    ax.plot(rounds, [r.cache_hit_rate if r.cache_hit_rate is not None else math.nan for r in rows], marker="o")
    ax.set(xlabel="round", ylabel="hits / LLM calls", title="Broker cache hit rate per round", ylim=(0, 1))
    ax.set_xticks(rounds)
    return _save(fig, path)


def _errors(intervals) -> list[list[float]]:
    """matplotlib's [below, above] error bars of Intervals; 0 where an interval has no spread."""
    return [[0 if math.isnan(i.low) else i.mean - i.low for i in intervals],
            [0 if math.isnan(i.high) else i.high - i.mean for i in intervals]]


def plot_tradeoff(path: Path, points: list, title: str) -> Path:
    """Pass rate against executor cost per problem (driver/report_cost.CostPoint), a point per method with
    95% intervals on both axes, and the Pareto front through the points on it."""
    from driver.report_cost import UNIT_NAMES

    fig, ax = _figure()
    shown = [p for p in points if not (math.isnan(p.cost.mean) or math.isnan(p.rate.mean))]
    for i, p in enumerate(shown):
        ax.errorbar([p.cost.mean], [p.rate.mean], xerr=_errors([p.cost]), yerr=_errors([p.rate]),
                    marker="s" if p.baseline else "o", capsize=3, linestyle="none", color=f"C{i % 10}", label=p.label)
    front = sorted((p for p in shown if p.pareto), key=lambda p: p.cost.mean)
    if front:
        ax.step([p.cost.mean for p in front], [p.rate.mean for p in front], where="post", color="black",
                linewidth=1, alpha=0.6, linestyle="--", label="Pareto front")
    unit = UNIT_NAMES.get(points[0].unit, points[0].unit) if points else ""
    ax.set(xlabel=f"executor cost per problem ({unit})", ylabel="pass rate", title=title, ylim=(-0.02, 1.02))
    ax.set_xlim(left=0)
    if shown:
        ax.legend(fontsize="small")
    return _save(fig, path)


def plot_over_rounds(path: Path, series: dict, title: str) -> Path:
    """Pass rate and executor cost per problem over the checkpoints (base, round-1, ...), one line per
    series of CostPoints with 95% error bars, each series' baselines as dashed levels."""
    from matplotlib.figure import Figure

    from driver.report_cost import UNIT_NAMES

    fig = Figure(figsize=(10.0, 3.8), layout="constrained")
    rate_ax, cost_ax = fig.subplots(1, 2)
    names: list[str] = []
    unit = ""
    for i, (name, points) in enumerate(series.items()):
        color, checkpoints = f"C{i % 10}", [p for p in points if not p.baseline]
        names = names if len(names) >= len(checkpoints) else [p.method for p in checkpoints]
        x = [j + 0.04 * i for j in range(len(checkpoints))]
        for ax, get in ((rate_ax, lambda p: p.rate), (cost_ax, lambda p: p.cost)):
            ax.errorbar(x, [get(p).mean for p in checkpoints], yerr=_errors([get(p) for p in checkpoints]),
                        marker="o", capsize=4, color=color, label=name)
            for j, b in enumerate(p for p in points if p.baseline):
                ax.axhline(get(b).mean, color=color, linestyle=("--", ":", "-.")[j % 3], linewidth=1,
                           label=f"{b.label} ({name})" if len(series) > 1 else b.label)
        unit = unit or (points[0].unit if points else "")
    for ax in (rate_ax, cost_ax):
        ax.set_xticks(range(len(names)), names)
        ax.set_xlabel("checkpoint")
    rate_ax.set(ylabel="pass rate (95% CI)", ylim=(-0.02, 1.02), title="Pass rate")
    cost_ax.set(ylabel=f"executor cost per problem, {UNIT_NAMES.get(unit, unit)} (95% CI)",
                title="Executor cost per problem")
    cost_ax.set_ylim(bottom=0)
    cost_ax.legend(fontsize="small")
    fig.suptitle(title)
    return _save(fig, path)
