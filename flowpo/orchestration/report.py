"""Per-round report: ``<run_dir>/reports/round-<k>.md`` with PNG plots beside it.

Read from the run directory alone (samples.jsonl, metrics.jsonl, adapters/round-<k>/train_metrics.json),
so it can be written after any round, again after a resume, or by hand for an old run. The tables are
pure functions of the records (unit-tested); matplotlib only draws them.
"""
from __future__ import annotations

import datetime
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import yaml

from flowpo.gaming import suspected_gaming
from flowpo.orchestration.rundir import RunDir, read_tolerant, read_train_metrics
from flowpo.orchestration.runlog import global_train_steps

INFRASTRUCTURE = "unscored"  # failure class of a sample with score None and no failure recorded


@dataclass(frozen=True)
class RoundRow:
    """One round's numbers, from its samples (the source of truth) and its train event."""

    round: int
    workflows: int
    scored: int  # score is not None; the rest failed in the infrastructure and were not scored
    mean_score: float | None
    llm_calls: int
    prompt_tokens: int
    completion_tokens: int
    cache_hits: int | None  # None: the samples do not record it (runs from before the broker counted)
    cost_usd: float | None
    loss: float | None  # the learner's last logged loss of the round; None: no training
    training: str  # "12 pairs", "skipped: <reason>" or "" when no train event was logged

    @property
    def cache_hit_rate(self) -> float | None:
        return self.cache_hits / self.llm_calls if self.llm_calls and self.cache_hits is not None else None


@dataclass(frozen=True)
class LossPoint:
    round: int
    global_step: int
    loss: float


# ---------------------------------------------------------------------------------------------
# Tables (pure)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number(value, default=0.0) -> float:
    return float(value) if _is_number(value) else default


def _round_of(record: dict) -> int | None:
    value = record.get("round")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def dedupe_samples(samples: list[dict]) -> list[dict]:
    """One record per (round, problem, sample index), the last one written wins (a resumed round may
    have logged a sample twice); records without the key are kept as they are."""
    keyed: dict = {}
    for position, record in enumerate(samples):
        key = (record.get("round"), record.get("problem_id"), record.get("sample_index"))
        keyed[key if None not in key else ("unkeyed", position)] = record
    return list(keyed.values())


def round_samples(samples: list[dict], round_index: int) -> list[dict]:
    return [s for s in samples if _round_of(s) == round_index]


def scores(samples: list[dict]) -> list[float]:
    """The scores that exist (None means the infrastructure failed: not a score of the workflow)."""
    return [float(s["score"]) for s in samples if _is_number(s.get("score"))]


def failure_counts(samples: list[dict]) -> dict[str, int]:
    """Outcome classes, most frequent first: ok, the failure class, or "unscored" for a sample without
    a score (None: the infrastructure failed) and without a recorded failure."""
    counts: Counter = Counter()
    for s in samples:
        failure = s.get("failure") or ""
        if not failure:
            failure = "ok" if _is_number(s.get("score")) else INFRASTRUCTURE
        counts[failure] += 1
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def loss_points(histories: dict[int, list[dict]]) -> list[LossPoint]:
    """The learner's loss of every logged step, on a global step axis across rounds."""
    return [LossPoint(k, step, float(entry["loss"])) for k, step, entry in global_train_steps(histories)
            if _is_number(entry.get("loss"))]


def _total(usage: list[dict], key: str, kind: type = int):
    """Sum of one usage counter; None when no sample records it at all."""
    if not any(key in u for u in usage):
        return None
    return kind(sum(_number(u.get(key)) for u in usage))


def _training(events: list[dict], round_index: int) -> str:
    text = ""
    for e in events:
        if _round_of(e) != round_index:
            continue
        if e.get("event") == "train":
            counts = [f"{e[unit]} {unit}" for unit in ("pairs", "groups") if isinstance(e.get(unit), int)]
            text = ", ".join(counts) or "trained"
        elif e.get("event") == "train_skipped":
            text = f"skipped: {e.get('reason') or 'no reason logged'}"
    return text


def round_rows(samples: list[dict], events: list[dict], histories: dict[int, list[dict]],
               up_to: int) -> list[RoundRow]:
    """Rows for rounds 1..up_to that have samples or events."""
    seen = {_round_of(r) for r in samples} | {_round_of(e) for e in events} | set(histories)
    rows = []
    for k in sorted(r for r in seen if r is not None and 1 <= r <= up_to):
        these = round_samples(samples, k)
        got = scores(these)
        usage = [s.get("usage") if isinstance(s.get("usage"), dict) else {} for s in these]
        losses = [p.loss for p in loss_points({k: histories.get(k, [])})]
        if not losses:  # no per-step history on disk: the train event's final loss
            losses = [float(e["loss"]) for e in events
                      if e.get("event") == "train" and _round_of(e) == k and _is_number(e.get("loss"))]
        rows.append(RoundRow(
            round=k, workflows=len(these), scored=len(got), mean_score=sum(got) / len(got) if got else None,
            llm_calls=int(sum(_number(u.get("llm_calls")) for u in usage)),
            prompt_tokens=int(sum(_number(u.get("prompt_tokens")) for u in usage)),
            completion_tokens=int(sum(_number(u.get("completion_tokens")) for u in usage)),
            cache_hits=_total(usage, "cache_hits"), cost_usd=_total(usage, "cost_usd", float),
            loss=losses[-1] if losses else None, training=_training(events, k)))
    return rows


def extremes(samples: list[dict], n: int = 3) -> tuple[list[dict], list[dict]]:
    """Up to n highest- and n lowest-scoring scored samples (ties: by problem, then sample index). No
    sample is both: with fewer than 2n scored, the better half is best and the rest worst."""
    def key(s: dict, sign: float) -> tuple:
        return sign * float(s["score"]), str(s.get("problem_id")), _number(s.get("sample_index"))

    order = sorted((s for s in samples if _is_number(s.get("score"))), key=lambda s: key(s, -1.0))
    n_best = min(n, (len(order) + 1) // 2)
    return order[:n_best], sorted(order[n_best:], key=lambda s: key(s, 1.0))[:n]


# ---------------------------------------------------------------------------------------------
# Plots (thin: one figure per table, Agg through the Figure API, no pyplot global state)


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


# ---------------------------------------------------------------------------------------------
# Markdown


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
        score, outcome = _fmt(_number(s.get("score"))), s.get("failure") or "ok"
        lines += [f"### {i}. {s.get('problem_id', '?')} #{s.get('sample_index', '?')}: score {score} ({outcome})", ""]
        if s.get("error"):
            lines += ["Error:", "", fenced(_clip(str(s["error"]), 800), "text"), ""]
        lines += [fenced(str(s.get("workflow") or s.get("completion") or "(no code extracted)"), "python"), ""]
        if s.get("answer"):
            lines += ["Answer:", "", fenced(_clip(str(s["answer"])), "text"), ""]
    return lines


def _run_name(run_dir: Path) -> str:
    try:
        config = yaml.safe_load(RunDir(run_dir).config.read_text())
        return str(config.get("name") or run_dir.name)
    except (OSError, yaml.YAMLError, AttributeError):
        return run_dir.name


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


def learning_curve_section(reports: Path) -> list[str]:
    """A link to the run's learning curve on held-out problems, once `flowpo evaluate --all-checkpoints`
    wrote it (flowpo/orchestration/curve.py); nothing before that."""
    if not (reports / f"{LEARNING_CURVE}.md").is_file():
        return []
    return ["## Learning curve (held-out problems)", "",
            f"Base model and every round's checkpoint on held-out problems, with 95% intervals: "
            f"[{LEARNING_CURVE}.md]({LEARNING_CURVE}.md)", "", f"![Learning curve]({LEARNING_CURVE}.png)", ""]


def learner_time_line(events: list[dict], round_index: int) -> list[str]:
    """Where the learner's time went this round (round_end's stage_times), when it trained here."""
    end = next((e for e in reversed(events) if e.get("event") == "round_end" and e.get("round") == round_index), {})
    t = end.get("stage_times") or {}
    if "learner_overhead_pct" not in t:
        return []
    return [f"Learner: {t['generators_idle_training_s']:.1f} s (the generators idle), of which optimizer steps "
            f"{t.get('learner_steps_s', 0):.1f} s and everything else {t['learner_overhead_s']:.1f} s "
            f"({t['learner_overhead_pct']:.0f}%: start-up {t.get('learner_startup_s', 0):.1f} s, round-start "
            f"log-probs {t.get('learner_reference_s', 0):.1f} s, adapter to the generators "
            f"{t.get('adapter_ship_s', 0):.1f} s).", ""]


def write_round_report(run_dir: Path, round_index: int, *, examples: int = 3) -> Path:
    """Write ``<run_dir>/reports/round-<k>.md`` and its PNGs; return the markdown file's path."""
    run_dir = Path(run_dir)
    layout = RunDir(run_dir)
    out = layout.reports
    out.mkdir(parents=True, exist_ok=True)
    samples = dedupe_samples(read_tolerant(layout.samples))
    events = read_tolerant(layout.metrics)
    histories = {k: read_train_metrics(layout.adapter(k)) for k in range(1, round_index + 1)}
    histories = {k: h for k, h in histories.items() if h}
    rows = round_rows(samples, events, histories, round_index)
    this = round_samples(samples, round_index)
    got = scores(this)
    row = next((r for r in rows if r.round == round_index), None)
    prefix = layout.report(round_index).stem

    lines = [f"# {_run_name(run_dir)}: round {round_index}", "",
             f"Run directory `{run_dir}`, written {datetime.datetime.now().isoformat(timespec='seconds')}.", "",
             "| round | workflows | scored | mean score | training | last loss | LLM calls | prompt tokens "
             "| completion tokens | cost (USD) | cache hit rate |",
             "| ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r.round} | {r.workflows} | {r.scored} | {_fmt(r.mean_score)} | {r.training or '–'} "
                     f"| {_fmt(r.loss)} | {r.llm_calls} | {r.prompt_tokens} | {r.completion_tokens} "
                     f"| {_fmt(r.cost_usd, 4)} | {_fmt(r.cache_hit_rate, 2)} |")
    lines += ["", f"## Round {round_index}", ""]
    if row is None or not this:
        lines += ["No samples were logged for this round.", ""]
    else:
        lines += [f"{row.workflows} workflows, {row.scored} scored ({row.workflows - row.scored} unscored: "
                  f"infrastructure failures), mean score {_fmt(row.mean_score)}; "
                  f"training: {row.training or '–'}.", ""]
        lines += learner_time_line(events, round_index)

    plots: list[tuple[str, str]] = []  # (caption, file name)
    if got:
        plots.append(("Score distribution", plot_scores(out / f"{prefix}-scores.png", got, round_index,
                                                        len(this) - len(got)).name))
    if any(r.mean_score is not None for r in rows):
        plots.append(("Mean score per round", plot_mean_score(out / f"{prefix}-mean-score.png", rows).name))
    points = loss_points(histories)
    if points:
        plots.append(("Learner loss", plot_loss(out / f"{prefix}-loss.png", points).name))
    counts = failure_counts(this)
    if counts:
        plots.append(("Outcomes", plot_failures(out / f"{prefix}-failures.png", counts, round_index).name))
    if rows:
        plots.append(("Executor tokens and cost", plot_usage(out / f"{prefix}-usage.png", rows).name))
    if any(r.cache_hit_rate is not None for r in rows):
        plots.append(("Cache hit rate", plot_cache_rate(out / f"{prefix}-cache.png", rows).name))
    for caption, name in plots:
        lines += [f"![{caption}]({name})", ""]
    if not points:
        lines += ["No learner metrics yet (no round up to this one trained).", ""]
    if rows and all(r.cache_hit_rate is None for r in rows):
        lines += ["No cache hit rate: the samples record no executor-LLM calls or no cache hits.", ""]

    if counts:
        lines += ["| outcome | workflows |", "| --- | ---: |"] + [f"| {k} | {v} |" for k, v in counts.items()] + [""]
    lines += gaming_section(suspected_gaming(this))
    lines += learning_curve_section(out)
    best, worst = extremes(this, examples)
    lines += _sample_section("Best workflows", best, "No scored workflows in this round.")
    lines += _sample_section("Worst workflows", worst, "No other scored workflows in this round." if best
                             else "No scored workflows in this round.")
    path = out / f"{prefix}.md"
    path.write_text("\n".join(lines).rstrip() + "\n")
    return path
