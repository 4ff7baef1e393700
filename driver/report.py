"""Per-round report: ``<run_dir>/reports/round-<k>.md`` with PNG plots beside it.

Read from the run directory alone (samples.jsonl, metrics.jsonl, adapters/round-<k>/train_metrics.json),
so it can be written after any round, again after a resume, or by hand for an old run. This module writes
the markdown; the tables are pure functions of the records (driver/report_tables.py,
unit-tested) and matplotlib only draws them (driver/report_plots.py).
"""
from __future__ import annotations

import datetime
import math
from dataclasses import dataclass
from pathlib import Path

import yaml

from driver.report_cost import COST_NOTE, CostPoint, cost_points, display_unit, render_cost_table
from driver.report_plots import (
    plot_cache_rate,
    plot_failures,
    plot_loss,
    plot_mean_score,
    plot_scores,
    plot_tradeoff,
    plot_usage,
)
from driver.report_tables import (
    RoundRow,
    as_number,
    dedupe_samples,
    extremes,
    failure_counts,
    loss_points,
    round_rows,
    round_samples,
    scores,
)
from driver.rundir import RunDir, read_tolerant, read_train_metrics
from flowpo.gaming import suspected_gaming


def _fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def fenced(text: str, lang: str = "") -> str:
    """A fenced block that the text cannot close early (the fence outgrows its longest backtick run)."""
    longest, run = 0, 0
    for ch in text:
        run = run + 1 if ch == "`" else 0
        longest = max(longest, run)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{lang}\n{text.rstrip()}\n{fence}"


def _clip(text: str, limit: int = 1500) -> str:
    return text if len(text) <= limit else text[:limit] + f"\n… ({len(text) - limit} more characters)"


def _sample_section(title: str, picks: list[dict], empty: str) -> list[str]:
    lines = [f"## {title}", ""]
    if not picks:
        return lines + [empty, ""]
    for i, s in enumerate(picks, start=1):
        score, outcome = _fmt(as_number(s.get("score"))), s.get("failure") or "ok"
        lines += [f"### {i}. {s.get('problem_id', '?')} #{s.get('sample_index', '?')}: score {score} ({outcome})", ""]
        if s.get("error"):
            lines += ["Error:", "", fenced(_clip(str(s["error"]), 800), "text"), ""]
        lines += [fenced(str(s.get("workflow") or s.get("completion") or "(no code extracted)"), "python"), ""]
        if s.get("answer"):
            lines += ["Answer:", "", fenced(_clip(str(s["answer"])), "text"), ""]
    return lines


def _run_config(run_dir: Path) -> dict:
    try:
        config = yaml.safe_load(RunDir(run_dir).config.read_text())
        return config if isinstance(config, dict) else {}
    except (OSError, yaml.YAMLError):
        return {}


def _run_name(run_dir: Path) -> str:
    return str(_run_config(run_dir).get("name") or run_dir.name)


def run_cost_unit(run_dir: Path) -> str:
    """The unit the run's costs are shown in: its train.cost_unit (tokens where that is usd at no price)."""
    config = _run_config(run_dir)
    train, llm = config.get("train") or {}, config.get("executor_llm") or {}
    priced = bool(llm.get("prompt_usd_per_mtok") or llm.get("completion_usd_per_mtok"))
    return display_unit(str(train.get("cost_unit") or "usd"), priced)


def tradeoff_lines(out_dir: Path, points: list[CostPoint], *, title: str, name: str) -> list[str]:
    """Accuracy against cost as markdown (the table, how it is counted) and ``<out_dir>/<name>.png`` beside it."""
    png = plot_tradeoff(out_dir / f"{name}.png", points, title)
    return [render_cost_table(points), "", COST_NOTE, "", f"![{title}]({png.name})", ""]


def gaming_section(gaming: dict[str, list[str]]) -> list[str]:
    """Suspected reward gaming (flowpo/gaming.py): counts and sample ids, or a line saying none."""
    if not gaming:
        return ["Suspected reward gaming: none in this round.", ""]
    lines = ["## Suspected reward gaming", "", "| kind | samples | ids |", "| --- | ---: | --- |"]
    for kind, ids in gaming.items():
        shown = ", ".join(f"`{i}`" for i in ids[:10]) + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")
        lines.append(f"| {kind} | {len(ids)} | {shown} |")
    return lines + [""]


LEARNING_CURVE = "learning-curve"  # reports/learning-curve.md and .png, by flowpo evaluate --all-checkpoints
TRADEOFF = "tradeoff"  # reports/tradeoff.md and .png: held-out accuracy against cost, by the same


def learning_curve_section(reports: Path) -> list[str]:
    """A link to the run's learning curve on held-out problems, once `flowpo evaluate --all-checkpoints`
    wrote it (driver/curve.py); nothing before that."""
    if not (reports / f"{LEARNING_CURVE}.md").is_file():
        return []
    lines = ["## Learning curve (held-out problems)", "",
             f"Base model and every round's checkpoint on held-out problems, with 95% intervals: "
             f"[{LEARNING_CURVE}.md]({LEARNING_CURVE}.md)", "", f"![Learning curve]({LEARNING_CURVE}.png)", ""]
    if (reports / f"{TRADEOFF}.md").is_file():
        lines += [f"Accuracy against executor cost on the held-out problems, each checkpoint and baseline with its "
                  f"Pareto front: [{TRADEOFF}.md]({TRADEOFF}.md)", "", f"![Accuracy against cost]({TRADEOFF}.png)", ""]
    return lines


def round_cost_section(records: "RoundRecords") -> list[str]:
    """Accuracy against cost of every round's training workflows so far, a point per round."""
    rounds = sorted({r.round for r in records.rows})
    if not rounds:
        return []
    runs = {0: {f"round-{k}": round_samples(records.all_samples, k) for k in rounds}}
    points = cost_points(runs, list(runs[0]), {}, set(), run_cost_unit(records.run_dir))
    return (["## Accuracy against cost (training workflows)", "",
             "Each round's workflows on the training problems: mean score and executor cost per problem.", ""]
            + tradeoff_lines(records.reports, points, title="Training rounds: score against executor cost",
                             name=f"{records.prefix}-tradeoff"))


def learner_time_line(events: list[dict], round_index: int) -> list[str]:
    """Where the learner's time went this round (round_end's stage_times), when it trained here."""
    end = next((e for e in reversed(events) if e.get("event") == "round_end" and e.get("round") == round_index), {})
    t = end.get("stage_times") or {}
    if "learner_overhead_pct" not in t:
        return []
    return [f"Learner: {t['generators_idle_training_s']:.1f} s (the generators idle), of which optimizer steps "
            f"{t.get('learner_steps_s', 0):.1f} s, round-start log-probs {t.get('learner_reference_s', 0):.1f} s "
            f"and overhead {t['learner_overhead_s']:.1f} s ({t['learner_overhead_pct']:.0f}%: start-up "
            f"{t.get('learner_startup_s', 0):.1f} s, adapter to the generators {t.get('adapter_ship_s', 0):.1f} s, "
            "loading, data and saving).", ""]


def overlap_line(events: list[dict], round_index: int) -> list[str]:
    """With pipeline.overlap_rounds: how old the round's data was, and how much of the learner's time
    the next round streamed through."""
    end = next((e for e in reversed(events) if e.get("event") == "round_end" and e.get("round") == round_index), {})
    t, staleness = end.get("stage_times") or {}, end.get("staleness", 0)
    if not staleness and not t.get("rounds_overlap_s"):
        return []
    return [f"Overlapped rounds: this round's workflows were written by `{end.get('adapter')}`, {staleness} adapter "
            f"version(s) older than the one its training started from; the next round streamed for "
            f"{t.get('rounds_overlap_s', 0):.1f} s of the learner's time.", ""]


@dataclass(frozen=True)
class RoundRecords:
    """What one round's report is written from, read once from the run directory."""

    run_dir: Path
    index: int
    reports: Path  # <run_dir>/reports: the markdown and its PNGs
    prefix: str  # "round-<k>": the markdown's stem, and the start of each PNG's name
    events: list[dict]  # metrics.jsonl
    histories: dict[int, list[dict]]  # train_metrics.json of the rounds up to this one that have one
    rows: list[RoundRow]  # rounds 1..k
    samples: list[dict]  # this round's, deduplicated
    all_samples: list[dict]  # every round's, deduplicated


def read_round(run_dir: Path, round_index: int) -> RoundRecords:
    layout = RunDir(run_dir)
    samples = dedupe_samples(read_tolerant(layout.samples))
    events = read_tolerant(layout.metrics)
    histories = {k: read_train_metrics(layout.adapter(k)) for k in range(1, round_index + 1)}
    histories = {k: h for k, h in histories.items() if h}
    return RoundRecords(run_dir=run_dir, index=round_index, reports=layout.reports,
                        prefix=layout.report(round_index).stem, events=events, histories=histories,
                        rows=round_rows(samples, events, histories, round_index),
                        samples=round_samples(samples, round_index),
                        all_samples=samples)


def rounds_table(rows: list[RoundRow]) -> list[str]:
    """Every round up to this one, a row each (the report of the last round shows the whole run)."""
    lines = ["| round | workflows | scored | mean score | training | last loss | LLM calls | prompt tokens "
             "| completion tokens | cost (USD) | cache hit rate |",
             "| ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r.round} | {r.workflows} | {r.scored} | {_fmt(r.mean_score)} | {r.training or '–'} "
                     f"| {_fmt(r.loss)} | {r.llm_calls} | {r.prompt_tokens} | {r.completion_tokens} "
                     f"| {_fmt(r.cost_usd, 4)} | {_fmt(r.cache_hit_rate, 2)} |")
    return lines


def header_section(records: RoundRecords) -> list[str]:
    """The run's name and directory, when this was written, and the table of all rounds so far."""
    written = datetime.datetime.now().isoformat(timespec="seconds")
    return [f"# {_run_name(records.run_dir)}: round {records.index}", "",
            f"Run directory `{records.run_dir}`, written {written}.", ""] + rounds_table(records.rows)


def round_paragraph(records: RoundRecords) -> list[str]:
    """This round in one sentence (and where the learner's time went), or a line saying it logged nothing."""
    lines = ["", f"## Round {records.index}", ""]
    row = next((r for r in records.rows if r.round == records.index), None)
    if row is None or not records.samples:
        return lines + ["No samples were logged for this round.", ""]
    lines += [f"{row.workflows} workflows, {row.scored} scored ({row.workflows - row.scored} unscored: "
              f"infrastructure failures), mean score {_fmt(row.mean_score)}; "
              f"training: {row.training or '–'}.", ""]
    return lines + learner_time_line(records.events, records.index) + overlap_line(records.events, records.index)


def draw_plots(records: RoundRecords) -> list[tuple[str, str]]:
    """Draw the PNGs that have data beside the markdown; (caption, file name) of each, in report order."""
    rows, got, points = records.rows, scores(records.samples), loss_points(records.histories)
    counts, unscored = failure_counts(records.samples), len(records.samples) - len(got)
    plots = [  # (caption, name after the prefix, whether there is anything to draw, how to draw it)
        ("Score distribution", "scores", bool(got), lambda path: plot_scores(path, got, records.index, unscored)),
        ("Mean score per round", "mean-score", any(r.mean_score is not None for r in rows),
         lambda path: plot_mean_score(path, rows)),
        ("Learner loss", "loss", bool(points), lambda path: plot_loss(path, points)),
        ("Outcomes", "failures", bool(counts), lambda path: plot_failures(path, counts, records.index)),
        ("Executor tokens and cost", "usage", bool(rows), lambda path: plot_usage(path, rows)),
        ("Cache hit rate", "cache", any(r.cache_hit_rate is not None for r in rows),
         lambda path: plot_cache_rate(path, rows)),
    ]
    return [(caption, draw(records.reports / f"{records.prefix}-{name}.png").name)
            for caption, name, wanted, draw in plots if wanted]


def plots_section(records: RoundRecords) -> list[str]:
    """The plots, then a line for each missing plot whose absence needs a reason (no training yet, or
    samples that record no cache hits)."""
    lines = [line for caption, name in draw_plots(records) for line in (f"![{caption}]({name})", "")]
    if not loss_points(records.histories):
        lines += ["No learner metrics yet (no round up to this one trained).", ""]
    if records.rows and all(r.cache_hit_rate is None for r in records.rows):
        lines += ["No cache hit rate: the samples record no executor-LLM calls or no cache hits.", ""]
    return lines


def outcomes_table(samples: list[dict]) -> list[str]:
    counts = failure_counts(samples)
    if not counts:
        return []
    return ["| outcome | workflows |", "| --- | ---: |"] + [f"| {k} | {v} |" for k, v in counts.items()] + [""]


def samples_sections(samples: list[dict], examples: int) -> list[str]:
    """The best and the worst workflows of the round, their code in full and their errors and answers clipped."""
    best, worst = extremes(samples, examples)
    return (_sample_section("Best workflows", best, "No scored workflows in this round.")
            + _sample_section("Worst workflows", worst, "No other scored workflows in this round." if best
                              else "No scored workflows in this round."))


def write_round_report(run_dir: Path, round_index: int, *, examples: int = 3) -> Path:
    """Write ``<run_dir>/reports/round-<k>.md`` and its PNGs; return the markdown file's path."""
    records = read_round(Path(run_dir), round_index)
    records.reports.mkdir(parents=True, exist_ok=True)
    lines = (header_section(records) + round_paragraph(records) + plots_section(records)
             + outcomes_table(records.samples) + gaming_section(suspected_gaming(records.samples))
             + round_cost_section(records) + learning_curve_section(records.reports)
             + samples_sections(records.samples, examples))
    path = records.reports / f"{records.prefix}.md"
    path.write_text("\n".join(lines).rstrip() + "\n")
    return path
