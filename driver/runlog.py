"""The run directory contract: config.yaml, samples.jsonl, metrics.jsonl, adapters/round-<k>/, and
the views made from them: tensorboard/ (every event's numbers as scalars, optionally W&B too) and
reports/ (driver.report). metrics.jsonl stays the source of truth; the sinks only mirror it."""
from __future__ import annotations

import dataclasses
import json
import threading
import time
from pathlib import Path
from typing import Literal, Protocol, Sequence

from driver.rundir import RunDir, read_train_metrics
from flowpo.config import Config, LoggingConfig, to_yaml
from flowpo.errors import FlowPOError

# Two x-axes: most events happen once per round; the learner's per-step metrics run on a global
# optimizer step counted across rounds.
Axis = Literal["round", "train_step"]
_NOT_SCALARS = ("round", "time")  # the step itself, and wall time (TensorBoard keeps its own)


class ScalarSink(Protocol):
    """Somewhere besides metrics.jsonl that numeric metrics go (TensorBoard, W&B)."""

    def write(self, scalars: dict[str, float], *, step: int, axis: Axis) -> None: ...

    def close(self) -> None: ...


class RunLog:
    def __init__(self, run_dir: Path, *, sinks: Sequence[ScalarSink] = ()):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.layout = RunDir(self.run_dir)
        self.samples_path, self.metrics_path = self.layout.samples, self.layout.metrics
        self.sinks = list(sinks)
        self._round = 0  # step of events that carry no round (run_start: 0, run_end: the last round)
        # Overlapped rounds log from two threads (the next round's stream, this round's training): a
        # record is one whole line, and the sinks see one event at a time.
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, config: Config) -> RunLog:
        """The run log of ``config``'s run directory with the sinks ``config.logging`` asks for."""
        run_dir = config.resolved_run_dir
        return cls(run_dir, sinks=build_sinks(config.logging, run_dir, name=config.name,
                                              config=dataclasses.asdict(config)))

    def write_config(self, config: Config) -> None:
        self.layout.config.write_text(to_yaml(config))

    def write_dropped_rows(self, records: list[dict]) -> None:
        """The task's rows left out under task.allow_dropping, each {where, reason} (rewritten on resume)."""
        self.layout.dropped_rows.write_text("".join(json.dumps(record) + "\n" for record in records))

    def adapter_dir(self, round_index: int) -> Path:
        return self.layout.adapter(round_index)

    def _append(self, path: Path, record: dict) -> None:
        # Append-only, one flushed line per record: a crash loses at most the line being written.
        with open(path, "a") as handle:
            handle.write(json.dumps(record) + "\n")

    def sample(self, record: dict) -> None:
        with self._lock:
            self._append(self.samples_path, record)

    def event(self, event: str, **fields) -> None:
        with self._lock:
            self._append(self.metrics_path, {"event": event, "time": round(time.time(), 3), **fields})
            if self.sinks:
                self._mirror(event, fields)

    def _mirror(self, event: str, fields: dict) -> None:
        round_index = fields.get("round")
        if isinstance(round_index, int) and not isinstance(round_index, bool):
            self._round = round_index
        scalars = flatten_scalars({k: v for k, v in fields.items() if k not in _NOT_SCALARS}, event)
        if scalars:
            for sink in self.sinks:
                sink.write(scalars, step=self._round, axis="round")
        if event == "train" and isinstance(round_index, int):
            # The learner has finished the round: its per-step history is complete on disk.
            histories = {k: read_train_metrics(self.adapter_dir(k)) for k in range(1, round_index + 1)}
            for k, step, entry in global_train_steps(histories):
                if k == round_index:
                    step_scalars = flatten_scalars({n: v for n, v in entry.items() if n not in ("step", "round")},
                                                   "train_step")
                    for sink in self.sinks:
                        sink.write(step_scalars, step=step, axis="train_step")

    def close(self) -> None:
        """Flush and close the sinks (the JSON lines need nothing: every line is flushed)."""
        for sink in self.sinks:
            sink.close()
        self.sinks = []

    def __enter__(self) -> RunLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------
# The learner's steps across rounds


def global_train_steps(histories: dict[int, list[dict]]) -> list[tuple[int, int, dict]]:
    """(round, global step, entry) for every per-step entry, rounds in order; a round's steps continue
    where the previous round's last step ended, so loss curves of successive rounds join up."""
    points, offset = [], 0
    for round_index in sorted(histories):
        last = 0
        for position, entry in enumerate(histories[round_index], start=1):
            step = entry.get("step")
            local = step if isinstance(step, int) and not isinstance(step, bool) else position
            points.append((round_index, offset + local, entry))
            last = max(last, local)
        offset += last
    return points


def flatten_scalars(fields: dict, prefix: str) -> dict[str, float]:
    """Numbers of a (nested) event as ``prefix/key/subkey`` tags; strings, lists, bools and None are
    left out (they are not curves)."""
    scalars = {}
    for key, value in fields.items():
        tag = f"{prefix}/{key}"
        if isinstance(value, dict):
            scalars.update(flatten_scalars(value, tag))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            scalars[tag] = float(value)
    return scalars


# ---------------------------------------------------------------------------------------------
# Sinks


class TensorBoardSink:
    """Scalars into TensorBoard event files (``tensorboard --logdir RUN_DIR/tensorboard``)."""

    def __init__(self, log_dir: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise FlowPOError(f"logging.tensorboard needs the tensorboard package ({exc}): pip install tensorboard "
                              "(make setup installs it), or set logging.tensorboard: false") from None
        # A resumed run adds a new event file beside the old ones; TensorBoard reads them together.
        self._writer = SummaryWriter(log_dir=str(log_dir))

    def write(self, scalars: dict[str, float], *, step: int, axis: Axis) -> None:
        for tag, value in scalars.items():
            self._writer.add_scalar(tag, value, global_step=step)
        self._writer.flush()  # a few events per round: flushing each keeps the files current

    def close(self) -> None:
        self._writer.close()


class WandbSink:
    """Scalars into a Weights & Biases run; the round and the global train step are its x-axes."""

    def __init__(self, *, project: str, entity: str, name: str, run_dir: Path, config: dict | None = None):
        try:
            import wandb
        except ImportError:
            raise FlowPOError("logging.wandb is true but the wandb package is not installed: pip install wandb "
                              "and run `wandb login` (or set WANDB_API_KEY), or set logging.wandb: false") from None
        self._run = wandb.init(project=project, entity=entity or None, name=name, dir=str(run_dir), config=config)
        self._run.define_metric("round")
        self._run.define_metric("train_step/global_step")
        self._run.define_metric("train_step/*", step_metric="train_step/global_step")
        self._prefixes: set[str] = set()

    def write(self, scalars: dict[str, float], *, step: int, axis: Axis) -> None:
        if axis == "train_step":
            self._run.log({**scalars, "train_step/global_step": step})
            return
        for prefix in {tag.split("/", 1)[0] for tag in scalars} - self._prefixes:
            self._run.define_metric(f"{prefix}/*", step_metric="round")
            self._prefixes.add(prefix)
        self._run.log({**scalars, "round": step})

    def close(self) -> None:
        self._run.finish()


def build_sinks(logging: LoggingConfig, run_dir: Path, *, name: str, config: dict | None = None) -> list[ScalarSink]:
    sinks: list[ScalarSink] = []
    # W&B first: a missing wandb package fails before anything was opened.
    if logging.wandb:
        sinks.append(WandbSink(project=logging.wandb_project, entity=logging.wandb_entity, name=name,
                               run_dir=Path(run_dir), config=config))
    if logging.tensorboard:
        sinks.append(TensorBoardSink(Path(run_dir) / "tensorboard"))
    return sinks
