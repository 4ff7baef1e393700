"""The generator's template prompt (ScoreFlow style) and extraction of the workflow code."""
from __future__ import annotations

import dataclasses
import inspect
import re

from flowpo.records import Problem
from sandbox.runtime.flowpo_operators import OPERATORS


def operator_reference() -> str:
    """One line per operator from its ``__call__`` signature, result fields and docstring, so the
    prompt cannot drift from the library the sandbox runs."""
    lines = ["Operators (each is async; call it with await and keyword arguments):"]
    for name, cls in OPERATORS.items():
        signature = inspect.signature(cls.__call__, eval_str=True)
        params = signature.replace(parameters=list(signature.parameters.values())[1:],
                                   return_annotation=inspect.Signature.empty)
        result = signature.return_annotation
        fields = ", ".join("." + f.name for f in dataclasses.fields(result))
        summary = " ".join(inspect.getdoc(cls).split())  # the docstring, on one line
        lines.append(f"- {name}(llm): await op{params} -> {result.__name__} with {fields}: {summary}")
    return "\n".join(lines)


OPERATOR_REFERENCE = operator_reference()

EXAMPLE_WORKFLOW = """\
class Workflow:
    def __init__(self, llm):
        self.code_generate = CustomCodeGenerate(llm)
        self.sc_ensemble = ScEnsemble(llm)

    async def __call__(self, problem, entry_point):
        solutions = []
        for _ in range(3):
            solution = await self.code_generate(problem=problem, entry_point=entry_point, instruction="Think step by step, then write the complete function.")
            solutions.append(solution.code)
        best = await self.sc_ensemble(solutions=solutions, problem=problem)
        return best.response"""

SYSTEM = """\
You design agent workflows in Python. A workflow is a class named Workflow: __init__(self, llm) builds operators, and async __call__(self, problem, entry_point) solves a coding problem with them and returns the final code as a string.

{operators}

Rules: use only these operators; at most 3 loop iterations; no text specific to the problem inside the workflow. Write the workflow between <graph> and </graph>."""

SIMPLE_WORKFLOW = """\
class Workflow:
    def __init__(self, llm):
        self.code_generate = CustomCodeGenerate(llm)

    async def __call__(self, problem, entry_point):
        solution = await self.code_generate(problem=problem, entry_point=entry_point, instruction="Write the complete function.")
        return solution.code"""

# Few-shot turns: small generators copy the shape of earlier answers far more reliably than
# they follow a description (SmolLM2-135M wrote 0/32 loadable workflows without them).
FEW_SHOT = [
    ('def add(a, b):\n    """Return a + b."""', SIMPLE_WORKFLOW),
    ('def is_even(n):\n    """Return True if n is even."""', EXAMPLE_WORKFLOW),
]


def _ask(problem_text: str) -> str:
    return f"Problem:\n{problem_text.strip()}\n\nWrite a workflow for this problem between <graph> and </graph>."


GRAPH_RE = re.compile(r"<graph>(.*?)(?:</graph>|$)", re.DOTALL)
FENCE_RE = re.compile(r"```(?:python|py)?\s*\n(.*?)```", re.DOTALL)


def workflow_messages(problem: Problem) -> list[dict]:
    """Chat messages asking the generator for a workflow for ``problem``."""
    messages = [{"role": "system", "content": SYSTEM.format(operators=OPERATOR_REFERENCE)}]
    for example_problem, example_workflow in FEW_SHOT:
        messages.append({"role": "user", "content": _ask(example_problem)})
        messages.append({"role": "assistant", "content": f"<graph>\n{example_workflow}\n</graph>"})
    messages.append({"role": "user", "content": _ask(problem.prompt)})
    return messages


def extract_workflow(completion: str) -> str:
    """The code between <graph> tags (an unclosed last tag counts), without a Markdown fence.

    Returns "" when the completion holds no <graph> tag: such a workflow is invalid.
    """
    matches = [m.group(1) for m in GRAPH_RE.finditer(completion)]
    candidates = [m for m in matches if "class Workflow" in m] or matches
    if not candidates:
        return ""
    code = candidates[0]
    fenced = FENCE_RE.search(code)
    if fenced:
        code = fenced.group(1)
    return code.strip("\n")
