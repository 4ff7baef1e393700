"""The run directory contract: config.yaml, samples.jsonl, metrics.jsonl, adapters/round-<k>/."""
from __future__ import annotations

import json
import time
from pathlib import Path

from flowpo.config import Config, to_yaml


class RunLog:
    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.samples_path = self.run_dir / "samples.jsonl"
        self.metrics_path = self.run_dir / "metrics.jsonl"

    def write_config(self, config: Config) -> None:
        (self.run_dir / "config.yaml").write_text(to_yaml(config))

    def adapter_dir(self, round_index: int) -> Path:
        return self.run_dir / "adapters" / f"round-{round_index}"

    def _append(self, path: Path, record: dict) -> None:
        # Append-only, one flushed line per record: a crash loses at most the line being written.
        with open(path, "a") as handle:
            handle.write(json.dumps(record) + "\n")

    def sample(self, record: dict) -> None:
        self._append(self.samples_path, record)

    def event(self, event: str, **fields) -> None:
        self._append(self.metrics_path, {"event": event, "time": round(time.time(), 3), **fields})
