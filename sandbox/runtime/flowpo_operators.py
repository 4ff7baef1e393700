"""The operator library workflows are written against (ScoreFlow/AFlow set, typed results).

Standard library only: it runs inside the sandbox. Each operator holds ``llm``, an async callable
``prompt -> str`` that the runtime routes to the host-side broker.
"""
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class CodeResult:
    code: str


@dataclass(frozen=True)
class TextResult:
    response: str


FENCE_RE = re.compile(r"```(?:python|py|Python)?[ \t]*\n(.*?)(?:```|$)", re.DOTALL)


def extract_code(text, entry_point=""):
    """The code block that defines ``entry_point`` (else the first block, else the text)."""
    blocks = FENCE_RE.findall(text) or [text]
    for block in blocks:
        if entry_point and re.search(rf"def\s+{re.escape(entry_point)}\s*\(", block):
            return block.strip("\n")
    return blocks[0].strip("\n")


def complete_function(problem, code, entry_point):
    """A body without its ``def`` line is continued from the problem's signature and docstring."""
    if re.search(rf"def\s+{re.escape(entry_point)}\s*\(", code):
        return code
    return problem.rstrip() + "\n" + code


class Custom:
    def __init__(self, llm):
        self.llm = llm

    async def __call__(self, input, instruction=""):
        return TextResult(await self.llm(f"{instruction}\n{input}".strip()))


class CustomCodeGenerate:
    def __init__(self, llm):
        self.llm = llm

    async def __call__(self, problem, entry_point, instruction=""):
        prompt = (f"{instruction}\n\nComplete this Python function `{entry_point}`. "
                  f"Answer with the whole function in one ```python block.\n\n{problem}").strip()
        text = await self.llm(prompt)
        return CodeResult(complete_function(problem, extract_code(text, entry_point), entry_point))


class ScEnsemble:
    """Self-consistency: the LLM picks the solution most others agree with."""

    def __init__(self, llm):
        self.llm = llm

    async def __call__(self, solutions, problem):
        solutions = [str(s) for s in solutions]
        if not solutions:
            return TextResult("")
        letters = [chr(ord("A") + i) for i in range(len(solutions))]
        listing = "\n\n".join(f"{letter}:\n{s}" for letter, s in zip(letters, solutions))
        text = await self.llm(f"Problem:\n{problem}\n\nSolutions:\n{listing}\n\n"
                              "Which solution is most consistent with the others? Answer with one letter.")
        for char in text:
            if char in letters:
                return TextResult(solutions[letters.index(char)])
        return TextResult(solutions[0])


OPERATORS = {"Custom": Custom, "CustomCodeGenerate": CustomCodeGenerate, "ScEnsemble": ScEnsemble}
RESULT_TYPES = {"CodeResult": CodeResult, "TextResult": TextResult}


def as_answer(value):
    """The final answer string a workflow's return value stands for."""
    if isinstance(value, CodeResult):
        return value.code
    if isinstance(value, TextResult):
        return value.response
    if isinstance(value, tuple) and value:
        return as_answer(value[0])
    return value if isinstance(value, str) else str(value)
