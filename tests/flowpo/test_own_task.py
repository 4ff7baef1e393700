"""A task of your own through the one loader: each source format (JSONL, JSON list and under a key,
CSV, TSV, Parquet, gzipped, a dataset directory through ``datasets``), the column map (hidden columns,
template, gold alternatives), column-named splits, code tasks' hidden tests, and each bad input as an
error naming the file, the row and the column (or, with task.allow_dropping, counted and listed)."""
from __future__ import annotations

import csv
import gzip
import json

import pytest

from flowpo.config import Config, TaskConfig
from flowpo.errors import ConfigError, FlowPOError
from flowpo.scoring import hidden_test
from flowpo.tasks import load_problems, load_task
from flowpo.typed_config import from_dict

ROWS = [{"qid": "q1", "question": "What is the capital of France?", "answer": "Paris", "source": "atlas"},
        {"qid": "q2", "question": "How many legs has a spider?", "answer": 8, "source": "zoo"},
        {"qid": "q3", "question": "Name a primary colour.", "answer": ["red", "blue", "yellow"], "source": "art"}]
COLUMNS = {"problem": "question", "answer": "answer", "id": "qid"}


def task(path, **settings) -> TaskConfig:
    return from_dict(TaskConfig, {"name": "quiz", "path": str(path), "columns": COLUMNS, **settings})


def write_csv(path, rows, sep=","):
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wt", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), delimiter=sep)
        writer.writeheader()
        writer.writerows(rows)
    return path


def flat(rows):  # a CSV cell holds one text: the alternatives joined with |
    return [{**r, "answer": "|".join(map(str, r["answer"])) if isinstance(r["answer"], list) else str(r["answer"])}
            for r in rows]


# ---------------------------------------------------------------------------------------------
# Source formats


def check_quiz(problems, golds3=("red", "blue", "yellow")):
    assert [p.problem_id for p in problems] == ["q1", "q2", "q3"]
    first = problems[0]
    assert (first.prompt, first.answers, first.task, first.family, first.scorer) == (
        "What is the capital of France?", ("Paris",), "quiz", "text", "exact")
    assert first.extra == {"qid": "q1", "source": "atlas"}  # the other columns, for a user's scorer
    assert problems[1].answers == ("8",) and problems[2].answers == golds3


def test_jsonl_and_gzipped_jsonl(tmp_path):
    path = tmp_path / "quiz.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    check_quiz(load_problems(task(path)))
    gz = tmp_path / "quiz.jsonl.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    check_quiz(load_problems(task(gz)))


def test_json_list_and_rows_under_a_dotted_key(tmp_path):
    listed = tmp_path / "quiz.json"
    listed.write_text(json.dumps(ROWS))
    check_quiz(load_problems(task(listed)))
    keyed = tmp_path / "keyed.json"
    keyed.write_text(json.dumps({"version": 2, "data": {"items": ROWS}}))
    check_quiz(load_problems(task(keyed, json_key="data.items")))
    with pytest.raises(FlowPOError, match=r"keyed.json: expected a JSON list of objects .*its keys: version, data; "
                                          r"set task.json_key"):
        load_problems(task(keyed))
    with pytest.raises(FlowPOError, match=r"task.json_key data.rows: no key 'rows' .*found: items"):
        load_problems(task(keyed, json_key="data.rows"))


def test_json_named_file_of_one_object_a_line_is_read_as_jsonl(tmp_path):
    path = tmp_path / "quiz.json"  # as many hub repositories name their JSONL files
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    check_quiz(load_problems(task(path)))


@pytest.mark.parametrize("name, sep", [("quiz.csv", ","), ("quiz.csv.gz", ","), ("quiz.tsv", "\t")])
def test_csv_tsv_and_gzipped_csv_keep_cells_as_text(tmp_path, name, sep):
    path = write_csv(tmp_path / name, flat(ROWS), sep)
    check_quiz(load_problems(task(path, answer_separator="|")))
    # A number's text is kept as written: "01.50" is not 1.5
    write_csv(path, [{"qid": "n", "question": "Price?", "answer": "01.50", "source": ""}], sep)
    (problem,) = load_problems(task(path))
    assert problem.answers == ("01.50",) and problem.extra == {"qid": "n", "source": ""}


def test_parquet_with_a_list_column(tmp_path):
    pandas = pytest.importorskip("pandas")
    path = tmp_path / "quiz.parquet"
    pandas.DataFrame([{**r, "answer": [str(a) for a in r["answer"]] if isinstance(r["answer"], list)
                       else [str(r["answer"])]} for r in ROWS]).to_parquet(path)
    check_quiz(load_problems(task(path)))


def test_a_dataset_directory_through_datasets_load_dataset(tmp_path):
    """A directory laid out as a hub dataset repository (data/<split>-*.parquet), read as
    `datasets.load_dataset(DIR, split=...)` reads a hub id; task.hub takes the same path."""
    pandas = pytest.importorskip("pandas")
    (tmp_path / "ds" / "data").mkdir(parents=True)
    frame = pandas.DataFrame(flat(ROWS))
    frame.to_parquet(tmp_path / "ds" / "data" / "test-00000-of-00001.parquet")
    frame.iloc[:1].to_parquet(tmp_path / "ds" / "data" / "train-00000-of-00001.parquet")
    check_quiz(load_problems(task(tmp_path / "ds", hub_split="test", answer_separator="|")))
    with pytest.raises(FlowPOError, match="has the splits .*choose one with task.hub_split"):
        load_problems(task(tmp_path / "ds"))
    hub = from_dict(TaskConfig, {"name": "quiz", "hub": str(tmp_path / "ds"), "hub_split": "train", "columns": COLUMNS})
    assert [p.problem_id for p in load_problems(hub)] == ["q1"]


def test_an_unknown_suffix_asks_for_task_format(tmp_path):
    path = tmp_path / "quiz.txt"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    with pytest.raises(FlowPOError, match=r"quiz.txt: cannot tell the format from the suffix .txt.*task.format"):
        load_problems(task(path))
    check_quiz(load_problems(task(path, format="jsonl")))


# ---------------------------------------------------------------------------------------------
# The column map


def test_template_shows_its_columns_and_hides_the_rest(tmp_path):
    path = tmp_path / "reading.jsonl"
    rows = [{"passage": "The bridge opened in 1932.", "question": "When did it open?", "answer": "1932",
             "rationale": "stated in the passage"}]
    path.write_text(json.dumps(rows[0]) + "\n")
    config = from_dict(TaskConfig, {"name": "reading", "path": str(path), "family": "qa",
                                    "template": "Passage: {passage}\n\nQuestion: {question}",
                                    "columns": {"answer": "answer"}, "description": "Short answers."})
    (problem,) = load_problems(config)
    assert problem.prompt == "Passage: The bridge opened in 1932.\n\nQuestion: When did it open?"
    assert problem.problem_id == "reading/0" and problem.scorer == "hotpotqa_f1" and problem.family == "qa"
    assert problem.description == "Short answers." and "rationale" not in problem.prompt
    assert problem.extra["rationale"] == "stated in the passage"


def test_judge_needs_no_gold_and_a_user_scorer_is_imported(tmp_path, monkeypatch):
    path = tmp_path / "essays.jsonl"
    path.write_text(json.dumps({"prompt": "Write a haiku about rain."}) + "\n")
    judged = from_dict(TaskConfig, {"name": "essays", "path": str(path), "scorer": "judge",
                                    "columns": {"problem": "prompt"}, "rubric": "5-7-5 syllables"})
    (problem,) = load_problems(judged)
    assert problem.answers == () and problem.scorer == "judge" and judged.rubric == "5-7-5 syllables"
    (tmp_path / "my_scorers.py").write_text("def haiku(answer, golds, row):\n    return 1.0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    mine = from_dict(TaskConfig, {"name": "essays", "path": str(path), "scorer": "my_scorers:haiku",
                                  "columns": {"problem": "prompt"}})
    assert load_problems(mine)[0].scorer == "my_scorers:haiku"


def test_code_task_with_assert_tests_and_a_check_function(tmp_path):
    rows = [{"id": "add", "text": "Write add(a, b).", "tests": "assert add(1, 2) == 3", "fn": "add",
             "solution": "def add(a, b):\n    return a + b\n"},
            {"id": "neg", "text": "Write neg(x).", "tests": "def check(f):\n    assert f(1) == -1\n", "fn": "neg",
             "solution": "def neg(x):\n    return -x\n"}]
    path = tmp_path / "code.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    columns = {"problem": "text", "id": "id", "test": "tests", "entry_point": "fn", "answer": "solution"}
    # Without task.test_function, the row whose test only defines check() would pass every candidate: refused.
    with pytest.raises(FlowPOError, match=r"code.jsonl:2: the test defines check\(\) but never calls it"):
        load_problems(from_dict(TaskConfig, {"name": "mine", "path": str(path), "columns": columns}))
    path.write_text(json.dumps(rows[0]) + "\n")
    (asserts,) = load_problems(from_dict(TaskConfig, {"name": "mine", "path": str(path), "columns": columns}))
    assert asserts.family == "code" and asserts.scorer == "" and asserts.answers == (rows[0]["solution"],)
    assert hidden_test(asserts) == {"prelude": "", "test": "assert add(1, 2) == 3", "entry_point": "add", "check": ""}
    path.write_text(json.dumps(rows[1]) + "\n")  # (task.test_function holds for every row of the task)
    (checked,) = load_problems(from_dict(TaskConfig, {"name": "mine", "path": str(path), "columns": columns,
                                                      "test_function": "check"}))
    assert hidden_test(checked)["check"] == "check" and "tests" not in checked.prompt and checked.extra == {"id": "neg"}


# ---------------------------------------------------------------------------------------------
# Splits


def test_splits_from_a_column_with_mapped_values(tmp_path):
    rows = [{**r, "part": part} for r, part in zip(ROWS, ["dev", "test", "dev"])]
    path = tmp_path / "quiz.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    mapped = {"columns": {**COLUMNS, "split": "part"}, "split_values": {"dev": "validation", "test": "test"}}
    assert [p.problem_id for p in load_problems(task(path, split="validation", **mapped))] == ["q1", "q3"]
    assert [p.problem_id for p in load_problems(task(path, split="test", **mapped))] == ["q2"]
    assert len(load_problems(task(path, split="all", **mapped))) == 3
    with pytest.raises(FlowPOError, match=rf"{path}:1: column 'part': value 'dev' is not one of validation, test"):
        load_problems(task(path, split="test", columns={**COLUMNS, "split": "part"}))


def test_without_a_split_column_the_seeded_1_to_4_split(tmp_path):
    path = tmp_path / "many.jsonl"
    path.write_text("".join(json.dumps({"q": f"question {i}", "a": str(i)}) + "\n" for i in range(50)))
    base = {"name": "many", "path": str(path), "columns": {"problem": "q", "answer": "a"}}
    validation = load_problems(from_dict(TaskConfig, {**base, "split": "validation"}))
    test = load_problems(from_dict(TaskConfig, {**base, "split": "test"}))
    assert (len(validation), len(test)) == (10, 40)
    assert not {p.problem_id for p in validation} & {p.problem_id for p in test}


# ---------------------------------------------------------------------------------------------
# Bad input: an error naming the file, the row and the column (or the config field)


def write_jsonl(tmp_path, rows, name="quiz.jsonl"):
    path = tmp_path / name
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("bad, message", [
    ({"qid": "q9", "answer": "x"}, r"missing column 'question' \(the row has: qid, answer\)"),
    ({"qid": "q9", "question": "  ", "answer": "x"}, "column 'question' is empty"),
    ({}, "empty row"),
    ("{not json", r"not valid JSON"),
    ("[1, 2]", "expected a JSON object"),
    ({**ROWS[0]}, r"problem id q1 already used at .*quiz.jsonl:1"),
    ({"qid": "q9", "question": "q?", "answer": {"text": "x"}},
     "column 'answer': a gold answer must be text, a number or a list of them, got dict"),
    ({"qid": "q9", "question": "q?", "answer": ["x", None]}, "got a list holding NoneType"),
    ({"qid": "q9", "question": "q?", "answer": []}, "column 'answer' is empty"),
    ({"qid": "q9", "question": "q?", "answer": True}, "got bool"),
    ({"qid": ["q9"], "question": "q?", "answer": "x"}, "column 'qid': an id must be text or an integer, got list"),
    ({"qid": "q9", "question": 12, "answer": "x"}, "column 'question' must be text, got int"),
])
def test_a_bad_row_names_file_row_and_column(tmp_path, bad, message):
    path = write_jsonl(tmp_path, [ROWS[0], ROWS[1], bad])
    with pytest.raises(FlowPOError, match=rf"{path}:3: .*{message}"):
        load_problems(task(path))


def test_a_bad_csv_row_names_the_row(tmp_path):
    path = write_csv(tmp_path / "quiz.csv", [{"qid": "q1", "question": "Q?", "answer": "A"},
                                             {"qid": "q2", "question": "", "answer": "B"}])
    with pytest.raises(FlowPOError, match=rf"{path} row 1: column 'question' is empty"):
        load_problems(task(path))
    write_csv(path, [{"qid": "q1", "prompt": "Q?", "answer": "A"}])
    with pytest.raises(FlowPOError, match=rf"{path} row 0: missing column 'question' \(the row has: qid, prompt"):
        load_problems(task(path))


@pytest.mark.parametrize("settings, field, message", [
    ({"columns": {**COLUMNS, "test": "tests"}, "family": "qa"}, "task.columns.test",
     "only code tasks run tests, and task.family is qa"),
    ({"columns": {"answer": "answer"}}, "task.columns.problem", "name the column that holds the problem text"),
    ({"columns": {"problem": "question"}}, "task.columns.answer", "the exact scorer compares with gold answers"),
    ({"family": "code"}, "task.columns.test", "a code task is scored by its hidden tests"),
    ({"columns": {**COLUMNS, "test": "t", "entry_point": "f"}, "scorer": "exact"}, "task.scorer",
     "code tasks are scored by their hidden tests"),
    ({"split_values": {"dev": "train"}, "columns": {**COLUMNS, "split": "part"}}, "task.split_values",
     "each value must be validation or test"),
    ({"template": "{question"}, "task.template", "not a format string"),
])
def test_settings_that_cannot_work_name_the_field(tmp_path, settings, field, message):
    with pytest.raises(ConfigError, match=rf"{field}: {message}"):
        from_dict(Config, {"task": {"name": "quiz", "path": "quiz.jsonl", "columns": COLUMNS, **settings}})


def test_a_preset_keeps_its_own_columns():
    with pytest.raises(ConfigError, match="task.columns.problem: the gsm8k preset reads its own columns"):
        from_dict(Config, {"task": {"name": "gsm8k", "columns": {"problem": "q"}}})


def test_a_scorer_that_cannot_be_imported_is_an_error_before_reading(tmp_path):
    path = write_jsonl(tmp_path, ROWS)
    with pytest.raises(FlowPOError, match=r"task.scorer.*no_such_module_xyz:score"):
        load_problems(task(path, scorer="no_such_module_xyz:score"))


def test_missing_file_and_unreadable_csv(tmp_path):
    with pytest.raises(FlowPOError, match=rf"dataset file {tmp_path}/none.csv not found"):
        load_problems(task(tmp_path / "none.csv"))
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(FlowPOError, match="empty.csv: empty file"):
        load_problems(task(empty))


def test_allow_dropping_counts_and_lists_every_row_left_out(tmp_path, capsys):
    path = write_jsonl(tmp_path, [ROWS[0], "{not json", {"qid": "q5", "answer": "x"}, ROWS[1], {**ROWS[0]}, ROWS[2]])
    loaded = load_task(task(path, allow_dropping=True))
    assert [p.problem_id for p in loaded.problems] == ["q1", "q2", "q3"]
    assert (loaded.rows, loaded.converted) == (6, 3)
    assert [where for where, _ in loaded.dropped] == [f"{path}:2", f"{path}:3", f"{path}:5"]
    assert "missing column 'question'" in loaded.dropped[1][1] and "already used" in loaded.dropped[2][1]
    assert loaded.dropped_note().startswith(f"3 of 6 rows of {path} left out (task.allow_dropping): "
                                            f"{path}:2: not valid")
    load_problems(task(path, allow_dropping=True))
    assert "warning: 3 of 6 rows" in capsys.readouterr().err


@pytest.mark.parametrize("tests, settings, message", [
    ("assert add(1, 2) == 3 +", {}, "its test is not valid Python: line 1"),
    ("assert add(1, 2) == 3", {"test_function": "check"}, "the test must define the function 'check'"),
])
def test_a_code_rows_test_that_could_not_judge_is_refused_at_load_time(tmp_path, tests, settings, message):
    """A broken test would fail every candidate: a silent 0 for the whole problem (flowpo.scoring.check_hidden_test)."""
    path = write_jsonl(tmp_path, [{"text": "Write add(a, b).", "tests": tests, "fn": "add"}], name="code.jsonl")
    config = from_dict(TaskConfig, {"name": "mine", "path": str(path), **settings,
                                    "columns": {"problem": "text", "test": "tests", "entry_point": "fn"}})
    with pytest.raises(FlowPOError, match=rf"{path}:1: {message}"):
        load_problems(config)


def test_rows_left_out_are_written_to_the_run_directory(tmp_path):
    """What `flowpo train` writes beside config.yaml when task.allow_dropping left rows out."""
    from driver.rundir import read_strict
    from driver.runlog import RunLog

    path = write_jsonl(tmp_path, [ROWS[0], {"qid": "q5", "answer": "x"}, ROWS[1]])
    loaded = load_task(task(path, allow_dropping=True))
    log = RunLog(tmp_path / "run")
    log.write_dropped_rows(loaded.dropped_records())
    assert read_strict(log.layout.dropped_rows) == [
        {"where": f"{path}:2", "reason": "missing column 'question' (the row has: qid, answer)"}]
