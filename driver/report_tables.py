"""The per-round report's tables: pure functions of the run directory's records (samples.jsonl,
metrics.jsonl, each round's train_metrics.json), so that they are unit-tested without a plot or a file.
driver/report.py writes them as markdown, driver/report_plots.py draws them.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from driver.runlog import global_train_steps

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


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def as_number(value, default=0.0) -> float:
    """The value as a float, or the default where it is not a number (a bool is not)."""
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
    return kind(sum(as_number(u.get(key)) for u in usage))


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
            llm_calls=int(sum(as_number(u.get("llm_calls")) for u in usage)),
            prompt_tokens=int(sum(as_number(u.get("prompt_tokens")) for u in usage)),
            completion_tokens=int(sum(as_number(u.get("completion_tokens")) for u in usage)),
            cache_hits=_total(usage, "cache_hits"), cost_usd=_total(usage, "cost_usd", float),
            loss=losses[-1] if losses else None, training=_training(events, k)))
    return rows


def extremes(samples: list[dict], n: int = 3) -> tuple[list[dict], list[dict]]:
    """Up to n highest- and n lowest-scoring scored samples (ties: by problem, then sample index). No
    sample is both: with fewer than 2n scored, the better half is best and the rest worst."""
    def key(s: dict, sign: float) -> tuple:
        return sign * float(s["score"]), str(s.get("problem_id")), as_number(s.get("sample_index"))

    order = sorted((s for s in samples if _is_number(s.get("score"))), key=lambda s: key(s, -1.0))
    n_best = min(n, (len(order) + 1) // 2)
    return order[:n_best], sorted(order[n_best:], key=lambda s: key(s, 1.0))[:n]
