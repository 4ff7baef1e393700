import json

import pytest

from flowpo.config import TaskConfig
from flowpo.errors import FlowPOError
from flowpo.prompts import (
    FEW_SHOT,
    MATH_FEW_SHOT,
    MAX_PROBLEM_CHARS,
    QA_FEW_SHOT,
    check_prompt_room,
    check_training_room,
    extract_workflow,
    workflow_messages,
)
from flowpo.records import Problem
from flowpo.tasks import load_problems
from flowpo.validate import validate_workflow


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
    with pytest.raises(FlowPOError, match=rf"{path}:1: missing field entry_point"):
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


MATH_PROBLEM = Problem(problem_id="MATH/1", prompt="How many ways can 6 books be arranged on a shelf?", task="math",
                       family="math", answers=("720",))
QA_PROBLEM = Problem(problem_id="DROP/1", prompt="Passage: The Raiders beat the Texans 27-16.\n\nQuestion: Who won?",
                     task="drop", family="qa", answers=("Raiders", "the Raiders"))


@pytest.mark.parametrize("problem, goal, operator", [
    (MATH_PROBLEM, "returns the final answer as a string, ideally as \\boxed{answer}", "AnswerGenerate"),
    (QA_PROBLEM, "returns a short answer as a string", "AnswerGenerate"),
])
def test_math_and_qa_templates_pick_their_goal_and_examples(problem, goal, operator):
    messages = workflow_messages(problem)
    assert goal in messages[0]["content"] and "solves a coding problem" not in messages[0]["content"]
    examples = [m["content"] for m in messages if m["role"] == "assistant"]
    assert len(examples) == 2 and operator in examples[0]
    assert "CustomCodeGenerate(llm)" not in "".join(examples)  # no code shapes for text answers
    assert messages[-1]["content"].startswith("Problem:\n" + problem.prompt)
    if problem.family == "math":  # (an extractive QA answer is in its passage by design)
        assert not any(problem.answers[0] in m["content"] for m in messages)


def test_every_few_shot_workflow_is_valid():
    for _, workflow in FEW_SHOT + MATH_FEW_SHOT + QA_FEW_SHOT:
        assert validate_workflow(workflow) == "", workflow


def test_the_code_template_is_unchanged_for_code_problems():
    problem = load_problems(TaskConfig(problem_ids=["HumanEval/23"]))[0]
    system = workflow_messages(problem)[0]["content"]
    assert ("async __call__(self, problem, entry_point) solves a coding problem with them and returns the final "
            "code as a string.") in system


def test_a_long_context_is_shortened_for_the_generator_but_keeps_the_question():
    context = "Context:\n" + "A sentence of a paragraph. " * 400
    problem = Problem(problem_id="H/1", prompt=context + "\n\nQuestion: Who?", task="hotpotqa", family="qa",
                      answers=("Ann",))
    asked = workflow_messages(problem)[-1]["content"]
    assert len(asked) < MAX_PROBLEM_CHARS + 300 and "Question: Who?" in asked and "characters left out" in asked


def test_prompts_with_no_room_in_the_context_are_refused_by_name():
    """max_model_len 2048, max_tokens 96: 3000 and 2048 tokens leave no room (longest first); the
    smallest length that holds 3000 + 96 is 3096."""
    lengths = {"a": 100, "b": 2048, "c": 3000, "d": 1990}
    with pytest.raises(FlowPOError) as refused:
        check_prompt_room(lengths, max_model_len=2048, max_tokens=96)
    message = str(refused.value)
    assert "generator prompt of 2 of 4 problems: c (3000 tokens), b (2048 tokens)." in message
    assert "at least 3096" in message and "generator.max_model_len = 2048" in message


def test_prompts_that_leave_less_than_max_tokens_are_a_warning():
    """1990 + 96 = 2086 > 2048: d's workflow may be cut short; 1952 + 96 = 2048 fits exactly."""
    warning = check_prompt_room({"a": 100, "d": 1990, "e": 1952}, max_model_len=2048, max_tokens=96)
    assert warning.startswith("1 of 3 problems leave less than generator.max_tokens = 96 tokens")
    assert "d (1990 tokens)" in warning and "e (" not in warning and "max_model_len = 2086" in warning
    assert check_prompt_room({"a": 100, "e": 1952}, max_model_len=2048, max_tokens=96) is None


def test_a_long_list_of_problems_is_cut_to_five_names():
    lengths = {f"p{i}": 5000 + i for i in range(8)}
    with pytest.raises(FlowPOError, match=r"p7 \(5007 tokens\), p6 .*p3 \(5003 tokens\) and 3 more\."):
        check_prompt_room(lengths, max_model_len=4096, max_tokens=10)


def test_prompts_that_leave_the_learner_no_room_for_a_whole_workflow_are_refused():
    """train.max_seq_len 2048, generator.max_tokens 1024: a workflow needs 1024 + 1 (EOS) tokens, so a
    prompt of 1024 tokens needs 2049 (refused) and one of 1023 needs exactly 2048 (fits)."""
    with pytest.raises(FlowPOError) as refused:
        check_training_room({"a": 1023, "b": 1024, "c": 1500}, max_seq_len=2048, max_tokens=1024)
    message = str(refused.value)
    assert "train.max_seq_len = 2048" in message and "for 2 of 3 problems: c (1500 tokens), b (1024 tokens)" in message
    assert "at least 2525" in message  # 1500 + 1024 + 1
    check_training_room({"a": 1023}, max_seq_len=2048, max_tokens=1024)


TEXT_PROBLEM = Problem(problem_id="spam/1", prompt="Subject: You won a prize! Click here.", task="spam", family="text",
                       answers=("spam",), scorer="exact", description="Label each e-mail spam or ham.")


def test_text_family_template_and_the_tasks_description():
    from flowpo.baselines import BASELINES
    from flowpo.prompts import TEXT_FEW_SHOT

    messages = workflow_messages(TEXT_PROBLEM)
    system = messages[0]["content"]
    assert "returns the final answer alone as a string" in system
    assert "\n\nThe task: Label each e-mail spam or ham.\n\nOperators" in system
    assert messages[-1]["content"].startswith("Problem:\nSubject: You won a prize!")
    assert "spam" not in messages[-1]["content"].replace("Subject", "")  # the gold answer is not shown
    for workflow in [w for _, w in TEXT_FEW_SHOT] + list(BASELINES["text"].values()):
        assert validate_workflow(workflow) == "", workflow


def test_no_description_leaves_the_benchmarks_prompts_as_they_were():
    problem = load_problems(TaskConfig(problem_ids=["HumanEval/23"]))[0]
    assert problem.description == "" and "The task:" not in workflow_messages(problem)[0]["content"]
