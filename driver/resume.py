"""What a run directory says is already done, so that ``flowpo train --resume`` redoes nothing.

``samples.jsonl`` is the source of truth for samples: a (round, problem, sample index) found there
is never generated, executed or scored again. ``metrics.jsonl`` says which rounds ended and which
trained an adapter. A line cut short by a crash is dropped (and cut from the file), so its sample
is redone rather than lost.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from driver.rundir import RunDir, adapter_name, read_repairing, round_of
from flowpo.errors import FlowPOError
from flowpo.records import BASE_ADAPTER


@dataclass
class RunState:
    samples: dict[int, list[dict]] = field(default_factory=dict)  # round -> sample records
    ended: set[int] = field(default_factory=set)  # rounds with a round_end event
    adapters: dict[int, str] = field(default_factory=dict)  # round -> adapter dir it trained
    train_events: dict[int, dict] = field(default_factory=dict)  # round -> its train/train_skipped event
    # round -> (kind, stage) -> count: the faults the streaming engine met before the driver died
    faults: dict[int, Counter] = field(default_factory=dict)
    starts: Counter = field(default_factory=Counter)  # round -> round_start events (more than one: a resume)

    def done_slots(self, round_index: int) -> set[tuple[str, int]]:
        return {(r["problem_id"], r["sample_index"]) for r in self.samples.get(round_index, [])}

    def adapter_before(self, round_index: int) -> tuple[str, str]:
        """(version, path) of the latest adapter trained before ``round_index``; (base, "") if none."""
        earlier = [r for r in self.adapters if r < round_index]
        if not earlier:
            return BASE_ADAPTER, ""
        last = max(earlier)
        return adapter_name(last), self.adapters[last]

    def data_adapter(self, round_index: int, overlap: bool) -> tuple[str, str]:
        """(version, path) of the adapter that writes ``round_index``'s workflows: the newest trained
        before it; with rounds that overlap, the newest before the round before it, which is still
        training while this one is generated."""
        return self.adapter_before(round_index - 1 if overlap else round_index)

    def staleness(self, round_index: int, data_version: str) -> int:
        """How many adapters were trained after ``data_version`` and before ``round_index``: how many
        versions the round's data lags the adapter its training starts from (0: sequential rounds)."""
        data_round = round_of(data_version) or 0
        return sum(1 for r in self.adapters if data_round < r < round_index)


def read_run_state(run_dir: Path) -> RunState:
    layout = RunDir(run_dir).require("--resume")
    state = RunState()
    seen: set[tuple] = set()
    for record in read_repairing(layout.samples):
        key = (record["round"], record["problem_id"], record["sample_index"])
        if key in seen:
            raise FlowPOError(f"{layout.samples}: sample {key} appears twice")
        seen.add(key)
        state.samples.setdefault(record["round"], []).append(record)
    for event in read_repairing(layout.metrics):
        kind, round_index = event.get("event"), event.get("round")
        if kind == "round_end":
            state.ended.add(round_index)
        elif kind == "round_start":
            state.starts[round_index] += 1
        elif kind == "fault":
            state.faults.setdefault(round_index, Counter())[(event.get("kind"), event.get("stage"))] += 1
        elif kind in ("train", "train_skipped"):
            state.train_events[round_index] = event
            adapter = Path(event.get("adapter", ""))
            if kind == "train" and (adapter / "adapter_config.json").is_file():
                state.adapters[round_index] = str(adapter)
    return state
