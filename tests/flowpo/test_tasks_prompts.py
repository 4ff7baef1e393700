import json

import pytest

from flowpo.config import TaskConfig
from flowpo.errors import FlowPOError
from flowpo.prompts import extract_workflow, workflow_messages
from flowpo.tasks import load_problems


def test_humaneval_loads_offline_from_the_package():
    problems = load_problems(TaskConfig())
    assert len(problems) == 164
    assert problems[0].problem_id == "HumanEval/0"
    assert problems[0].entry_point == "has_close_elements"
    assert "def check(candidate)" in problems[0].test


def test_problem_ids_select_in_order_and_unknown_ids_fail():
    problems = load_problems(TaskConfig(problem_ids=["HumanEval/35", "HumanEval/23"]))
    assert [p.problem_id for p in problems] == ["HumanEval/35", "HumanEval/23"]
    with pytest.raises(FlowPOError, match="HumanEval/999 not in"):
        load_problems(TaskConfig(problem_ids=["HumanEval/999"]))


def test_local_jsonl_bad_line_names_file_and_line(tmp_path):
    path = tmp_path / "he.jsonl"
    good = {"task_id": "X/0", "prompt": "def f():\n", "entry_point": "f", "test": "def check(c): pass"}
    path.write_text(json.dumps(good) + "\n{not json\n")
    with pytest.raises(FlowPOError, match=rf"{path}:2: not valid JSON"):
        load_problems(TaskConfig(path=str(path)))
    path.write_text(json.dumps({**good, "entry_point": None}) + "\n")
    with pytest.raises(FlowPOError, match=rf"{path}:1: missing or non-string field\(s\) entry_point"):
        load_problems(TaskConfig(path=str(path)))
    with pytest.raises(FlowPOError, match="dataset file .* not found"):
        load_problems(TaskConfig(path=str(tmp_path / "missing.jsonl")))


def test_prompt_holds_operators_problem_and_few_shot_turns():
    problem = load_problems(TaskConfig(problem_ids=["HumanEval/23"]))[0]
    messages = workflow_messages(problem)
    assert messages[0]["role"] == "system" and "CustomCodeGenerate" in messages[0]["content"]
    assert messages[-1]["role"] == "user" and "def strlen" in messages[-1]["content"]
    assert sum(m["role"] == "assistant" for m in messages) == 2
    assert problem.test not in "".join(m["content"] for m in messages)  # hidden test never shown


def test_extract_workflow_variants():
    body = "class Workflow:\n    pass"
    assert extract_workflow(f"text <graph>\n{body}\n</graph> more") == body
    assert extract_workflow(f"<graph>\n```python\n{body}\n```\n</graph>") == body
    assert extract_workflow(f"<graph>\n{body}") == body  # the stop string cut the closing tag
    assert extract_workflow("<graph>\nx = 1\n</graph><graph>\n" + body + "\n</graph>") == body
    assert extract_workflow("no tags here") == ""
