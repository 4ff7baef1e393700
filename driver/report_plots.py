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
