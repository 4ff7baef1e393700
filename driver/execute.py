"""`flowpo execute`: run recorded workflows again (all of a run's, a round's, or a filtered set)
through the same executors and evaluators, with another executor LLM, other repeats or another
split, and set each replayed score beside the recorded one. ScoreFlow reports how optimized
workflows transfer to other executor models; this is how a user measures that.

The recorded ``samples.jsonl`` is only read, one line at a time, and the streaming engine gets a
bounded window of workflows, so a replay of 10,000+ workflows holds the window and the table's
running sums (driver/transfer.py), never every result. It writes
``<out>/samples.jsonl`` (the run's line format plus ``origin``), ``results.md``, ``results.json``
and ``config.yaml``.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from tqdm import tqdm

from actors.streaming import Stream, round_stages
from driver.rundir import RunDir
from driver.session import prepare, session
from driver.transfer import Transfer, render_report
from flowpo.config import Config, to_yaml
from flowpo.errors import FlowPOError
from flowpo.records import Problem, ScoredSample, Workflow
from flowpo.tasks import load_problems

REQUIRED = {"problem_id": str, "round": int, "sample_index": int, "workflow": str}  # what a replay needs


# ---------------------------------------------------------------------------------------------
# What to replay: the recorded file, the config, the selection


@dataclass(frozen=True)
class Source:
    samples: Path  # the recorded samples.jsonl (only read)
    config: Path  # the replay's config: --with, else the config.yaml beside the samples
    home: Path  # the run directory: replays/<timestamp>/ goes there by default


def resolve_source(recorded: str, with_config: str | None) -> Source:
    path = Path(recorded)
    samples = RunDir(path).samples if path.is_dir() else path
    if not samples.is_file():
        raise FlowPOError(f"{samples}: not found (pass a run directory or its samples.jsonl)")
    config = Path(with_config) if with_config else RunDir(samples.parent).config
    if not config.is_file():
        raise FlowPOError(f"--with {config}: config file not found" if with_config else
                          f"{samples.parent}: no config.yaml beside {samples.name}; pass --with CONFIG")
    return Source(samples, config, samples.parent)


@dataclass(frozen=True)
class Selection:
    """Which recorded workflows to replay: those every given filter keeps."""
    rounds: frozenset[int] = frozenset()  # empty: every round
    problems: frozenset[str] = frozenset()  # empty: every problem
    min_score: float | None = None  # bounds on the recorded score; an unscored line (null) fails either
    max_score: float | None = None
    only_valid: bool = False  # leave out workflows recorded as invalid_workflow (static check or load)

    def keeps(self, record: dict) -> bool:
        score = record.get("score")
        invalid = bool(record.get("invalid_reason")) or record.get("failure") == "invalid_workflow"
        return not ((self.rounds and record["round"] not in self.rounds)
                    or (self.problems and record["problem_id"] not in self.problems)
                    or (self.only_valid and invalid)
                    or (self.min_score is not None and (score is None or score < self.min_score))
                    or (self.max_score is not None and (score is None or score > self.max_score)))

    def describe(self) -> str:
        parts = [f"round {', '.join(map(str, sorted(self.rounds)))}" if self.rounds else "",
                 f"problem {', '.join(sorted(self.problems))}" if self.problems else "",
                 f"recorded score >= {self.min_score:g}" if self.min_score is not None else "",
                 f"recorded score <= {self.max_score:g}" if self.max_score is not None else "",
                 "valid only" if self.only_valid else ""]
        return "; ".join(p for p in parts if p) or "all"


def read_records(path: Path, max_lines: int = 0) -> Iterator[tuple[int, dict]]:
    """(line number, record) of each line of a samples.jsonl, checked. A last line without its
    newline that does not parse is a write cut short (a run still writing, or one that crashed):
    it is left out, as ``flowpo train --resume`` does."""
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if max_lines and number > max_lines:
                return
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except ValueError as exc:  # JSONDecodeError, or bytes that are not UTF-8
                if not raw.endswith(b"\n"):
                    return
                raise FlowPOError(f"{path}:{number}: not valid JSON ({getattr(exc, 'msg', exc)})") from None
            yield number, checked(record, path, number)


def checked(record, path: Path, number: int) -> dict:
    if not isinstance(record, dict):
        raise FlowPOError(f"{path}:{number}: expected a JSON object (a samples.jsonl line of a FlowPO run)")
    for name, kind in REQUIRED.items():
        if name not in record:
            raise FlowPOError(f"{path}:{number}: no {name!r} field (a samples.jsonl line of a FlowPO run "
                              f"records {', '.join(REQUIRED)})")
        if not isinstance(record[name], kind) or isinstance(record[name], bool):
            raise FlowPOError(f"{path}:{number}: field {name} must be {kind.__name__}, got {record[name]!r:.80}")
    score = record.get("score")
    if score is not None and (not isinstance(score, (int, float)) or isinstance(score, bool)):
        raise FlowPOError(f"{path}:{number}: field score must be a number or null, got {score!r:.80}")
    return record


@dataclass(frozen=True)
class Plan:
    lines: int  # the last line read: the replay reads no further, even if a running train appends
    selected: int  # workflows to replay
    missing: dict[str, int]  # problem id -> selected workflows left out (not in the task's split)


def plan_replay(path: Path, selection: Selection, known: set[str], where: str, *, skip_missing: bool) -> Plan:
    """One pass over the file before any actor starts: every line checked, the selection counted.
    A workflow whose problem is not in ``where`` fails the replay unless ``skip_missing``: left out
    silently, it would make the table cover other workflows than the ones asked for."""
    lines, selected, missing = 0, 0, Counter()
    for number, record in read_records(path):
        lines = number
        if selection.keeps(record):
            if record["problem_id"] in known:
                selected += 1
            else:
                missing[record["problem_id"]] += 1
    if missing and not skip_missing:
        ids = ", ".join(sorted(missing)[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise FlowPOError(f"{path}: {sum(missing.values())} selected workflow(s) are for problems not in {where}: "
                          f"{ids}. Set task.name, task.path and task.split to what the run used, or pass "
                          "--skip-missing to leave them out (counted in results.json)")
    if not selected:
        raise FlowPOError(f"{path}: no recorded workflow to replay among its {lines} line(s) "
                          f"(selection: {selection.describe()})")
    return Plan(lines, selected, dict(missing))


def origin_of(path: Path, number: int, record: dict) -> dict:
    """Where a replayed line came from, and what was recorded there (the table's "recorded" side)."""
    return {"file": str(path), "line": number, "round": record["round"], "problem_id": record["problem_id"],
            "sample_index": record["sample_index"], "score": record.get("score"),
            "failure": record.get("failure", "")}


def workflow_of(record: dict) -> Workflow:
    """The recorded workflow under its own coordinates, so its executor-LLM calls get the seeds
    they had (flowpo.seeds): the same executor and seed reproduce the recorded run."""
    return Workflow(problem_id=record["problem_id"], round=record["round"], sample_index=record["sample_index"],
                    adapter=record.get("adapter", ""), prompt=record.get("prompt", ""),
                    completion=record.get("completion", ""), code=record["workflow"], generate_s=0.0,
                    invalid_reason=record.get("invalid_reason", ""), attempts=record.get("attempts", 1))


# ---------------------------------------------------------------------------------------------
# Running: only the execute and evaluate stages of the streaming engine


def replay_stream(items: Iterator[tuple[dict, Workflow]], by_id: dict[str, Problem], actors, config: Config,
                  on_sample: Callable[[dict, ScoredSample], None], *, total: int) -> Counter:
    """Execute and score ``(origin, workflow)`` items, feeding the engine a window twice the
    executors' slots deep (one more per scored item); returns items re-sent after an actor died."""
    repeats = config.evaluator.repeats
    stages = [s for s in round_stages(
        actors, config, generate=None, dry_run=None,
        execute=lambda h, item: h.execute_repeats.remote(item[1], by_id[item[1].problem_id], repeats),
        evaluate=lambda h, item: h.evaluate_repeats.remote(item[1], by_id[item[1][0].workflow.problem_id]))
        if s.send is not None]
    stream = Stream(stages, key=lambda stage, item: f"{item[0]['file']}:{item[0]['line']}",
                    advice=", then replay again", actor_timeout_s=config.pipeline.actor_timeout_s)
    bar = tqdm(total=total, desc="replay", unit="wf", dynamic_ncols=True)

    def feed(count: int) -> None:
        for item in itertools.islice(items, count):
            stream.put("execute", item)

    def on_result(stage: str, item, result) -> None:
        if stage == "execute":
            stream.put("evaluate", (item[0], result))
        else:
            on_sample(item[0], result)
            bar.update(1)
            feed(1)

    feed(2 * len(stages[0].slots.handles) * stages[0].slots.limit)
    stream.run(on_result)
    bar.close()
    return stream.faults.by_stage


def output_dir(source: Source, out: str | None) -> Path:
    """``--out``, else ``<run_dir>/replays/<timestamp>``; never a directory that holds a samples.jsonl
    (so never the run's own)."""
    if out:
        out_dir = Path(out)
    else:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        names = (stamp if n == 1 else f"{stamp}-{n}" for n in itertools.count(1))
        out_dir = next(path for path in (RunDir(source.home).replays() / name for name in names) if not path.exists())
    if (out_dir / "samples.jsonl").exists():
        raise FlowPOError(f"--out {out_dir}: it already holds a samples.jsonl, which a replay never overwrites; "
                          "choose another directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


@dataclass(frozen=True)
class ReplayReport:
    out_dir: Path
    rows: list[dict]
    markdown: str


def replay(config: Config, source: Source, selection: Selection, *, out: str | None = None,
           skip_missing: bool = False) -> ReplayReport:
    """Everything ``flowpo execute`` does after reading its config. Problems are looked up in the
    whole of the config's task split (task.problem_ids and task.limit are the run's selection;
    the replay selects with ``selection``)."""
    task = dataclasses.replace(config.task, problem_ids=[], limit=0)
    by_id = {p.problem_id: p for p in load_problems(task)}
    plan = plan_replay(source.samples, selection, set(by_id), f"{task.name} ({task.split} split)",
                       skip_missing=skip_missing)
    # Only a hosted executor LLM needs the model: a replay against an API runs without it.
    model_path = prepare(config, generators=False)
    out_dir = output_dir(source, out)
    (out_dir / "config.yaml").write_text(to_yaml(config))
    items = ((origin_of(source.samples, n, r), workflow_of(r)) for n, r in read_records(source.samples, plan.lines)
             if selection.keeps(r) and r["problem_id"] in by_id)
    transfer, began = Transfer(), time.monotonic()
    with session(config, out_dir, model_path, generators=False) as actors:
        with open(out_dir / "samples.jsonl", "x") as handle:
            def on_sample(origin: dict, sample: ScoredSample) -> None:
                line = {**sample.to_log(), "origin": origin}
                handle.write(json.dumps(line) + "\n")
                handle.flush()  # one whole line at a time, as the run log
                transfer.add(origin, line)

            resent = replay_stream(items, by_id, actors, config, on_sample, total=plan.selected)
    llm = config.executor_llm
    meta = {"source": str(source.samples), "lines_read": plan.lines, "selection": selection.describe(),
            "selected": plan.selected, "skipped_missing": plan.missing, "task": task.name, "split": task.split,
            "repeats": config.evaluator.repeats, "executor_backend": llm.backend,
            "executor_model": llm.model or config.model.served_name, "executor_base_url": llm.base_url,
            "wall_s": round(time.monotonic() - began, 1), "resent_after_actor_death": dict(resent)}
    rows = transfer.rows()
    markdown = render_report(rows, meta)
    (out_dir / "results.md").write_text(markdown)
    (out_dir / "results.json").write_text(json.dumps({**meta, "groups": rows}, indent=2) + "\n")
    return ReplayReport(out_dir, rows, markdown)
