"""The run directory, in one place: its layout, the names of its adapters, and the three ways its
JSON-lines files are read.

    config.yaml          the run's config, as resolved
    dropped_rows.jsonl   the task's rows left out under task.allow_dropping, each {where, reason}
    samples.jsonl        one line per scored sample (flowpo.records.ScoredSample.to_log): the source of truth
    metrics.jsonl        one line per event (run_start, round_start, train, round_end, …)
    adapters/round-<k>/  round k's checkpoint (peft adapter, optimizer state, train_metrics.json)
    reports/             round-<k>.md with its PNGs, the learning curve
    eval/<name>/         `flowpo evaluate` results
    replays/<name>/      `flowpo execute` results
    ray_train/           Ray Train's own run records (node-local; nothing is read back from it)

Readers: ``read_strict`` (every line must be a JSON object: a bad one is an error naming the file and
line), ``read_repairing`` (a torn last line, the mark of a crash mid-write, is cut from the file and
its record redone; damage anywhere else is an error: what ``--resume`` reads) and ``read_tolerant``
(a missing file is empty and a bad line is skipped: what reports and sinks read while a run writes).
"""
from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

from flowpo.errors import FlowPOError
from flowpo.records import BASE_ADAPTER

ROUND_PREFIX = "round-"
# Written by the learner into each adapter directory (trainer.learner.METRICS_FILE): a list of
# per-step dicts ({"step", "loss", ...}). Named here so that the driver never imports the trainer.
TRAIN_METRICS_FILE = "train_metrics.json"


def adapter_name(round_index: int) -> str:
    """The version name of round ``round_index``'s adapter (what the generators serve it as)."""
    return f"{ROUND_PREFIX}{round_index}"


def round_of(name: str) -> int | None:
    """The round of an adapter name ("round-3" -> 3); None for the base model or anything else."""
    found = re.fullmatch(rf"{ROUND_PREFIX}(\d+)", name)
    return int(found.group(1)) if found else None


@dataclass(frozen=True)
class RunDir:
    path: Path

    def __post_init__(self):
        object.__setattr__(self, "path", Path(self.path))

    @property
    def config(self) -> Path:
        return self.path / "config.yaml"

    @property
    def dropped_rows(self) -> Path:
        return self.path / "dropped_rows.jsonl"

    @property
    def samples(self) -> Path:
        return self.path / "samples.jsonl"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def reports(self) -> Path:
        return self.path / "reports"

    @property
    def ray_train(self) -> Path:
        return self.path / "ray_train"

    def adapter(self, round_index: int) -> Path:
        return self.path / "adapters" / adapter_name(round_index)

    def report(self, round_index: int) -> Path:
        return self.reports / f"{ROUND_PREFIX}{round_index}.md"

    def evaluation(self, name: str) -> Path:
        return self.path / "eval" / name

    def replays(self) -> Path:
        return self.path / "replays"

    def trained_rounds(self) -> list[int]:
        """Rounds whose adapter is complete on disk, in order (round-2 before round-10)."""
        found = (round_of(p.parent.name) for p in (self.path / "adapters").glob("*/adapter_config.json"))
        return sorted(k for k in found if k is not None)

    def require(self, what: str) -> "RunDir":
        """This directory, if it is a run directory; else an error saying what needed one."""
        if not self.config.is_file():
            raise FlowPOError(f"{what} {self.path}: no config.yaml there; is it a FlowPO run directory?")
        return self


def base_or_round(name: str) -> str:
    """``name`` checked to be the base model or a round's adapter name."""
    if name != BASE_ADAPTER and round_of(name) is None:
        raise FlowPOError(f"adapter version {name!r}: expected {BASE_ADAPTER!r} or {ROUND_PREFIX}<k>")
    return name


# ---------------------------------------------------------------------------------------------
# Readers


def _record(line: bytes | str, where: str) -> dict:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise FlowPOError(f"{where}: not valid JSON ({exc.msg})") from None
    if not isinstance(record, dict):
        raise FlowPOError(f"{where}: expected a JSON object, got {type(record).__name__}")
    return record


def read_strict(path: Path) -> list[dict]:
    """Every line a JSON object; a missing file or a bad line is an error naming it."""
    path = Path(path)
    if not path.is_file():
        raise FlowPOError(f"{path}: no such file")
    with open(path, "rb") as handle:
        return [_record(line, f"{path}:{number}") for number, line in enumerate(handle, start=1) if line.strip()]


def read_repairing(path: Path) -> list[dict]:
    """Records of an append-only file. Every record is written with its newline in one write, so a
    tail without a newline is a torn write: it is cut off (its record is redone). A bad complete line
    is damage, not a crash: an error naming it. A missing file is empty."""
    path = Path(path)
    if not path.is_file():
        return []
    data = path.read_bytes()
    complete = data.rfind(b"\n") + 1
    if complete < len(data):
        with open(path, "r+b") as handle:
            handle.truncate(complete)
    lines = data[:complete].split(b"\n")[:-1]
    try:
        return [_record(line, f"{path}:{number}") for number, line in enumerate(lines, start=1) if line.strip()]
    except FlowPOError as exc:
        raise FlowPOError(f"{exc}; the run directory is damaged there and cannot be resumed") from None


def read_tolerant(path: Path) -> list[dict]:
    """The records of a file another process may be writing: missing is empty, a torn or foreign
    line is skipped."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                records.append(_record(line, f"{path}:{number}"))
            except FlowPOError:
                continue  # the line a crash cut short, or one that is not ours
    return records


def read_train_metrics(adapter_dir: Path) -> list[dict]:
    """The learner's per-step metrics of one round; [] when the round did not train or the file is bad."""
    path = Path(adapter_dir) / TRAIN_METRICS_FILE
    if not path.is_file():
        return []
    try:
        history = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        warnings.warn(f"{path}: unreadable train metrics ({exc}); left out", stacklevel=2)
        return []
    return [entry for entry in history if isinstance(entry, dict)] if isinstance(history, list) else []
