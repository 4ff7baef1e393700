import pytest

from flowpo.prompts import EXAMPLE_WORKFLOW, SIMPLE_WORKFLOW
from flowpo.validate import reason_kind, validate_workflow


def simple(replace_from: str, replace_to: str) -> str:
    assert replace_from in SIMPLE_WORKFLOW
    return SIMPLE_WORKFLOW.replace(replace_from, replace_to)


def test_the_prompt_examples_are_valid():
    assert validate_workflow(SIMPLE_WORKFLOW) == ""
    assert validate_workflow(EXAMPLE_WORKFLOW) == ""


@pytest.mark.parametrize("code, kind, detail", [
    ("", "empty", "no <graph>"),
    ("class Workflow(:\n", "syntax", "line 1"),
    ("import os\n" + SIMPLE_WORKFLOW, "import", "os is not allowed"),
    ("from subprocess import run\n" + SIMPLE_WORKFLOW, "import", "subprocess"),
    (simple("return solution.code", "return solution.__class__.__bases__"), "dunder", "__bases__"),
    ("class Flow:\n    pass\n", "interface", "no class Workflow"),
    (simple("async def __call__", "def __call__"), "interface", "async __call__"),
    (simple("def __init__(self, llm)", "def __init__(self)"), "interface", "__init__(self, llm)"),
    (simple("CustomCodeGenerate(llm)", "Planner(llm)"), "operator", "unknown operator Planner"),
    (simple("instruction=", "min_len=3, instruction="), "arguments", "CustomCodeGenerate takes no argument min_len"),
    (simple("CustomCodeGenerate(llm)", "CustomCodeGenerate(llm, timeout_s=1e9)"), "arguments",
     "constructed as CustomCodeGenerate(llm) only"),
])
def test_invalid_workflows_get_a_reason(code, kind, detail):
    reason = validate_workflow(code)
    assert reason_kind(reason) == kind, reason
    assert detail in reason


def test_allowed_imports_and_local_helpers_pass():
    code = "import re\nfrom collections import Counter\n\nclass Helper:\n    pass\n\n" + SIMPLE_WORKFLOW
    assert validate_workflow(code) == ""
