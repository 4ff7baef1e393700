"""Rows → Problems: one converter per benchmark for its public formats, and the column map of a task of
your own (``column_problem``), over shared field helpers. A bad row raises RowError naming the field or
column; the loader (flowpo.tasks) adds the file and line.
"""
from __future__ import annotations

import re
import string
from typing import TYPE_CHECKING

from flowpo.math_scorer import last_boxed
from flowpo.records import Problem
from flowpo.scorers import gsm8k_gold, last_number

if TYPE_CHECKING:
    from flowpo.config import TaskConfig


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
    # The prompt is also the test's prelude: it defines helpers (``poly``, ``encode_cyclic``) that
    # ``check`` uses; its stub of the entry point is replaced by the candidate's function.
    return Problem(problem_id=get(row, "task_id"), prompt=prompt, entry_point=get(row, "entry_point"),
                   test=get(row, "test"), task="humaneval", family="code", prelude=prompt, check="check",
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
    test = "\n".join([*imports, row.get("test_setup_code") or "", *tests])  # run top to bottom: check=""
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


# ---------------------------------------------------------------------------------------------
# A task of your own: the column map (task.columns) says where things are in a row. Only the problem
# text (the problem column, or task.template over columns) reaches the generator and the workflow;
# the answer, tests and the other columns stay hidden (the other columns go to a user's scorer).


def template_columns(template: str) -> list[str]:
    """The columns a ``str.format`` template names ("{a}", "{b[0]}" and "{c.d}" name a, b and c)."""
    names = (field for _, field, _, _ in string.Formatter().parse(template) if field)
    return list(dict.fromkeys(re.split(r"[.\[]", name, maxsplit=1)[0] for name in names))


def cell(row: dict, column: str, *, required: bool = True):
    """The row's value in ``column``; a column the row lacks is an error naming it and the row's columns,
    and so is an empty one (None, blank text) when ``required``."""
    if column not in row:
        raise RowError(f"missing column {column!r} (the row has: {', '.join(map(str, row)) or 'no columns'})")
    value = row[column]
    if required and (value is None or (isinstance(value, str) and not value.strip())):
        raise RowError(f"column {column!r} is empty")
    return value


def number_text(value: int | float) -> str:
    """A number as the text a gold answer compares with: 72 and 72.0 are "72"."""
    return str(int(value)) if isinstance(value, int) or value.is_integer() else repr(value)


def text_cell(row: dict, column: str, *, required: bool = True) -> str:
    value = cell(row, column, required=required)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise RowError(f"column {column!r} must be text, got {type(value).__name__} {str(value)[:60]!r}")
    return value


def golds_of(value, column: str, separator: str = "") -> tuple[str, ...]:
    """Gold answers from a cell: a string (split at ``separator`` when given), a number, or a list of
    them (alternatives); anything else, or nothing left, is an error naming the column."""
    items = value if isinstance(value, (list, tuple)) else [value]
    golds = []
    for item in items:
        if isinstance(item, str):
            golds += [g.strip() for g in (item.split(separator) if separator else [item])]
        elif isinstance(item, (int, float)) and not isinstance(item, bool) and item == item:  # NaN is no answer
            golds.append(number_text(item))
        else:
            shown = f"a list holding {type(item).__name__}" if items is value else type(item).__name__
            raise RowError(f"column {column!r}: a gold answer must be text, a number or a list of them, got {shown}")
    golds = [g for g in golds if g]
    if not golds:
        raise RowError(f"column {column!r} is empty")
    return tuple(dict.fromkeys(golds))


def row_problem_text(row: dict, task: "TaskConfig") -> str:
    if not task.template:
        return text_cell(row, task.columns.problem)
    for column in template_columns(task.template):
        if cell(row, column) is None:
            raise RowError(f"column {column!r} (in task.template) is empty")
    try:
        text = task.template.format_map(row)
    except (KeyError, IndexError, AttributeError, ValueError) as exc:
        raise RowError(f"task.template cannot be filled from this row ({type(exc).__name__}: {exc})") from None
    if not text.strip():
        raise RowError("task.template gives an empty problem text")
    return text


def column_problem(row: dict, index: int, task: "TaskConfig") -> Problem:
    """A row of a task of your own → Problem, by the column map of ``task`` (a TaskConfig)."""
    columns, family = task.columns, task.resolved_family
    if not any(v is not None and v != "" for v in row.values()):
        raise RowError("empty row")
    prompt = row_problem_text(row, task)
    if columns.id:
        value = cell(row, columns.id)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            raise RowError(f"column {columns.id!r}: an id must be text or an integer, got {type(value).__name__}")
        problem_id = str(value).strip()
    else:
        problem_id = f"{task.name}/{index}"
    answers: tuple[str, ...] = ()
    code = {}
    if family == "code":
        code = dict(test=text_cell(row, columns.test), entry_point=text_cell(row, columns.entry_point).strip(),
                    prelude=text_cell(row, columns.prelude, required=False) if columns.prelude else "",
                    check=task.test_function)
        solution = text_cell(row, columns.answer, required=False) if columns.answer else ""
        answers = (solution,) if solution.strip() else ()  # the reference solution, where a row has one
    elif columns.answer:  # (a task without one is scored by the judge: TaskConfig checks that)
        answers = golds_of(cell(row, columns.answer), columns.answer, task.answer_separator)
    roles = {columns.problem, columns.answer, columns.test, columns.entry_point, columns.prelude} - {""}
    extra = {k: v for k, v in row.items() if k not in roles}
    return Problem(problem_id=problem_id, prompt=prompt, task=task.name, family=family, answers=answers,
                   extra=extra, **code)
