"""The learning curve (`flowpo evaluate --all-checkpoints`): pass rate of the base model and of
every round's checkpoint on held-out problems, beside the baselines, with 95% intervals and the
paired difference from the base model (flowpo/stats.py says how and why), as a markdown table, a
JSON object and a plot.

The numbers are pure functions of evaluation sample lines (``flowpo evaluate`` writes them, one
``samples.jsonl`` per method), grouped by seed: ``runs[seed][method]`` is that seed's list of
lines of that method. ``flowpo evaluate --all-checkpoints`` has one seed (the run's); bench/learning.py
one per training run.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Hashable, Mapping

from driver.evaluate import (
    Checkpoint,
    EvalReport,
    evaluate_methods,
    load_eval_problems,
    render_report,
    resolve_checkpoint,
    summarize_method,
    write_results,
)
from driver.report import LEARNING_CURVE, TRADEOFF, tradeoff_lines, write_round_report
from driver.report_cost import CostPoint, config_cost_unit, cost_json, cost_points
from driver.report_plots import plot_over_rounds
from driver.rundir import RunDir, round_of
from flowpo.baselines import LABELS
from flowpo.config import Config
from flowpo.errors import FlowPOError
from flowpo.records import BASE_ADAPTER
from flowpo.stats import Cell, Interval, PairedDifference, cell_means, natural, paired_difference, pass_rate

Runs = Mapping[Hashable, Mapping[str, list[dict]]]  # seed -> method -> evaluation sample lines
CURVE = LEARNING_CURVE  # <run_dir>/reports/learning-curve.md and .png (the round report links them)
ALL = "all-checkpoints"  # <run_dir>/eval/all-checkpoints/: every checkpoint's and baseline's samples


@dataclass(frozen=True)
class CurveRow:
    method: str  # "base", "round-<k>", or a baseline's key (io, cot, cot_sc)
    label: str
    baseline: bool
    rate: Interval  # pass rate over problems
    per_seed: dict  # seed -> mean pass rate over that seed's problems
    vs_base: PairedDifference | None  # None for the base model itself, or when base was not run
    workflows: int
    unscored: int  # the infrastructure failed every run of the workflow: no score, not a zero
    crashes: int
    invalid: int  # rejected statically (invalid_workflow), scored 0

    def share(self, count: int) -> float:
        return count / self.workflows if self.workflows else math.nan


def method_cells(runs: Runs, method: str) -> dict[Cell, float]:
    return cell_means((seed, r["problem_id"], r.get("score")) for seed, methods in runs.items()
                      for r in methods.get(method, []))


def _failures(runs: Runs, method: str, kind: str) -> int:
    return sum(1 for methods in runs.values() for r in methods.get(method, []) if r.get("failure") == kind)


def curve_rows(runs: Runs, methods: list[str], labels: Mapping[str, str], baselines: frozenset | set,
               base: str = BASE_ADAPTER) -> list[CurveRow]:
    """One row per method, in ``methods`` order; each compared with ``base`` cell by cell."""
    base_cells = method_cells(runs, base)
    rows = []
    for method in methods:
        cells = method_cells(runs, method)
        lines = [r for m in runs.values() for r in m.get(method, [])]
        per_seed = {seed: pass_rate({c: v for c, v in cells.items() if c[0] == seed}).mean
                    for seed in sorted({c[0] for c in cells}, key=natural)}
        rows.append(CurveRow(
            method=method, label=labels.get(method, method), baseline=method in baselines, rate=pass_rate(cells),
            per_seed=per_seed, vs_base=paired_difference(base_cells, cells) if method != base and base_cells else None,
            workflows=len(lines), unscored=sum(1 for r in lines if r.get("score") is None),
            crashes=_failures(runs, method, "crash"), invalid=_failures(runs, method, "invalid_workflow")))
    return rows


# ---------------------------------------------------------------------------------------------
# Markdown and JSON


def _pct(x: float) -> str:
    return "–" if math.isnan(x) else f"{100 * x:.1f}"


def interval_text(i: Interval, signed: bool = False) -> str:
    """``41.7 [−30.0, 100.0]`` in percent (points for a difference); the bracket only with 2+ units."""
    if math.isnan(i.mean):
        return "–"
    mean = f"{100 * i.mean:+.1f}" if signed else _pct(i.mean)
    return mean if math.isnan(i.low) else f"{mean} [{100 * i.low:.1f}, {100 * i.high:.1f}]"


def render_curve_table(rows: list[CurveRow]) -> str:
    lines = ["| method | pass rate % [95% CI] | Δ vs base, points [95% CI over problems] "
             "| Δ per seed | Δ [95% CI over seeds] | workflows | unscored | crash % | invalid % |",
             "|---|---:|---:|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        d = r.vs_base
        per_seed = ", ".join(f"{100 * v:+.1f}" for v in d.per_seed.values()) if d else "–"
        lines.append(f"| {r.label} | {interval_text(r.rate)} | {interval_text(d.over_problems, True) if d else '–'} "
                     f"| {per_seed} | {interval_text(d.over_seeds, True) if d else '–'} | {r.workflows} "
                     f"| {r.unscored} | {_pct(r.share(r.crashes))} | {_pct(r.share(r.invalid))} |")
    return "\n".join(lines)


METHOD_NOTE = (
    "Pass rate: mean over problems of each problem's mean score (over seeds, workflows and repeats), with a "
    "Student t 95% interval over problems. Δ vs base: the paired difference, cell by cell (same seed, same "
    "problem), averaged per problem, t-interval over problems; the interval over seeds uses each seed's mean "
    "difference (one training run each). Unscored workflows (infrastructure failures) are left out, not "
    "counted as 0; crash and invalid are shares of all workflows.")


def render_curve(rows: list[CurveRow], *, title: str, setting: str) -> str:
    return f"# {title}\n\n{setting}\n\n{render_curve_table(rows)}\n\n{METHOD_NOTE}\n"


def curve_json(rows: list[CurveRow]) -> list[dict]:
    """The rows as JSON-ready dicts (seeds as strings: JSON keys); nan becomes null."""
    def clean(value):
        if isinstance(value, float) and math.isnan(value):
            return None
        if isinstance(value, dict):
            return {str(k): clean(v) for k, v in value.items()}
        return [clean(v) for v in value] if isinstance(value, list) else value

    return [clean(dataclasses.asdict(r)) for r in rows]


# ---------------------------------------------------------------------------------------------
# Plot (thin: matplotlib's Figure API, no pyplot state)


def plot_curves(path: Path, series: Mapping[str, list[CurveRow]], title: str) -> Path:
    """Each series' checkpoints (base, round-1, ...) as a line with 95% error bars and a faint line
    per seed; each series' baselines as dashed levels."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.2, 4.0), layout="constrained")
    ax = fig.subplots()
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:red", "tab:brown", "tab:pink", "tab:gray"]
    names: list[str] = []
    for i, (name, rows) in enumerate(series.items()):
        color = colors[i % len(colors)]
        points = [r for r in rows if not r.baseline]
        names = names if len(names) >= len(points) else [r.method for r in points]
        x = [j + 0.04 * i for j in range(len(points))]  # series side by side, not on top of each other
        means = [r.rate.mean for r in points]
        err = [[0 if math.isnan(r.rate.low) else r.rate.mean - r.rate.low for r in points],
               [0 if math.isnan(r.rate.high) else r.rate.high - r.rate.mean for r in points]]
        ax.errorbar(x, means, yerr=err, marker="o", capsize=4, color=color, label=name)
        for seed in sorted({s for r in points for s in r.per_seed}, key=natural):
            ax.plot(x, [r.per_seed.get(seed, math.nan) for r in points], color=color, alpha=0.25, linewidth=1)
        for j, r in enumerate(r for r in rows if r.baseline):
            ax.axhline(r.rate.mean, color=color, linestyle=("--", ":", "-.")[j % 3], linewidth=1,
                       label=f"{r.label} ({name})" if len(series) > 1 else r.label)
    ax.set_xticks(range(len(names)), names)
    ax.set(xlabel="checkpoint", ylabel="pass rate (held-out problems)", title=title, ylim=(-0.02, 1.02))
    ax.legend(fontsize="small")
    fig.savefig(path, dpi=100)
    return path


def write_curve(out_dir: Path, rows: list[CurveRow], *, title: str, setting: str, name: str = CURVE,
                points: list[CostPoint] | None = None) -> Path:
    """``<out_dir>/<name>.md`` (the table, with the plot) and ``<name>.png``; with cost ``points`` also
    ``<name>-cost.png`` (pass rate and cost over the rounds) and ``tradeoff.md`` / ``.png`` (accuracy
    against cost, the Pareto front). Returns the markdown's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    png = plot_curves(out_dir / f"{name}.png", {"checkpoints": rows}, title)
    text = render_curve(rows, title=title, setting=setting) + f"\n![{title}]({png.name})\n"
    if points:
        both = plot_over_rounds(out_dir / f"{name}-cost.png", {"checkpoints": points}, title)
        text += f"\n## Pass rate and executor cost over the rounds\n\n![{title}: cost]({both.name})\n"
        (out_dir / f"{TRADEOFF}.md").write_text("\n".join(
            [f"# Accuracy against cost: {title}", "", setting, ""]
            + tradeoff_lines(out_dir, points, title="Held-out pass rate against executor cost", name=TRADEOFF)))
        text += f"\nAccuracy against cost, with the Pareto front: [{TRADEOFF}.md]({TRADEOFF}.md)\n"
    path = out_dir / f"{name}.md"
    path.write_text(text)
    return path


# ---------------------------------------------------------------------------------------------
# flowpo evaluate --all-checkpoints


def run_checkpoints(run_dir: Path, *, max_lora_rank: int = 0) -> list[Checkpoint]:
    """base, then every round's checkpoint of ``run_dir`` (adapters/round-<k>), in round order."""
    rounds = RunDir(run_dir).trained_rounds()
    if not rounds:
        raise FlowPOError(f"--all-checkpoints {run_dir}: no round has a checkpoint there "
                          "(adapters/round-<k>/adapter_config.json); train the run first, or pass its run directory")
    return [Checkpoint(BASE_ADAPTER, ""),
            *(resolve_checkpoint(str(k), run_dir, max_lora_rank=max_lora_rank) for k in rounds)]


def evaluate_all(config: Config, baselines: list[str], *, split_forced: bool = True, samples: int = 1,
                 checkpoints: list[Checkpoint] | None = None) -> EvalReport:
    """``flowpo evaluate --all-checkpoints``: base and every round's checkpoint of the run (or the
    ``checkpoints`` given) on one actor start, the baselines once; the solve rates in
    ``eval/all-checkpoints/``, the learning curve (table, plot) in ``reports/learning-curve.*``,
    linked from the latest round's report."""
    run_dir = config.resolved_run_dir
    checkpoints = checkpoints or run_checkpoints(run_dir, max_lora_rank=config.generator.max_lora_rank)
    problems = load_eval_problems(config, split_forced)
    out_dir = RunDir(run_dir).evaluation(ALL)
    records, meta = evaluate_methods(config, checkpoints, baselines, problems, out_dir, samples=samples)
    labels = {**{c.name: c.name for c in checkpoints}, **LABELS}
    results = [summarize_method(m, labels[m], lines) for m, lines in records.items()]
    markdown = render_report(results, checkpoint=Checkpoint(ALL, ""), task=config.task.name,
                             split=config.task.split, repeats=config.evaluator.repeats, samples=samples)
    rows = curve_rows({config.seed: records}, list(records), labels, set(baselines))
    points = cost_points({config.seed: records}, list(records), labels, set(baselines), config_cost_unit(config))
    setting = (f"Run `{run_dir}`: {len(problems)} {config.task.name} problems ({config.task.split} split), "
               f"{samples} workflow(s) per problem and method, each run {config.evaluator.repeats} time(s); "
               f"seed {config.seed}.")
    curve = write_curve(RunDir(run_dir).reports, rows, title=f"Learning curve of {config.name}", setting=setting,
                        points=points)
    markdown += f"\n## Learning curve\n\n{render_curve_table(rows)}\n\nTable and plot: {curve}\n"
    markdown += ("\n## Accuracy against cost\n\n" + "\n".join(tradeoff_lines(
        out_dir, points, title="Pass rate against executor cost", name=TRADEOFF)))
    write_results(out_dir, results, markdown, {"checkpoints": [dataclasses.asdict(c) for c in checkpoints],
                                               **meta, "curve": curve_json(rows), "cost": cost_json(points)})
    link_curve(run_dir)
    return EvalReport(out_dir, results, markdown)


def link_curve(run_dir: Path) -> None:
    """Rewrite the latest round's report, whose learning-curve section now finds the curve."""
    rounds = sorted(k for p in RunDir(run_dir).reports.glob("*.md") if (k := round_of(p.stem)) is not None)
    if rounds:
        write_round_report(run_dir, rounds[-1])
