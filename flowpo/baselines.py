"""The fixed baseline workflows `flowpo evaluate` compares a checkpoint with: IO (one direct call),
CoT (one step-by-step call) and CoT-SC (several CoT samples, then self-consistency with ScEnsemble),
one program per task family, written in the same workflow language the generator writes.

They are plain texts, not code built from parts, so that what ran is exactly what a reader sees
here and in each sample's ``workflow`` field. CoT-SC samples 3 times, the loop bound the generator
is asked to keep and what the prompt's own ensemble example does; its ScEnsemble prompt must also
fit the small local executor's 2,048-token context.
"""
from __future__ import annotations

from flowpo.records import Workflow

CODE = {
    "io": """\
class Workflow:
    def __init__(self, llm):
        self.code_generate = CustomCodeGenerate(llm)

    async def __call__(self, problem, entry_point):
        solution = await self.code_generate(problem=problem, entry_point=entry_point)
        return solution.code""",
    "cot": """\
class Workflow:
    def __init__(self, llm):
        self.code_generate = CustomCodeGenerate(llm)

    async def __call__(self, problem, entry_point):
        solution = await self.code_generate(problem=problem, entry_point=entry_point, instruction="Think step by step: first explain how to solve the problem, then write the complete function.")
        return solution.code""",  # noqa: E501
    "cot_sc": """\
class Workflow:
    def __init__(self, llm):
        self.code_generate = CustomCodeGenerate(llm)
        self.sc_ensemble = ScEnsemble(llm)

    async def __call__(self, problem, entry_point):
        solutions = []
        for _ in range(3):
            solution = await self.code_generate(problem=problem, entry_point=entry_point, instruction="Think step by step: first explain how to solve the problem, then write the complete function.")
            solutions.append(solution.code)
        best = await self.sc_ensemble(solutions=solutions, problem=problem)
        return best.response""",  # noqa: E501
}

# Math answers are read from the last \boxed{} (the MATH scorer) or the last number (GSM8K).
MATH = {
    "io": r"""class Workflow:
    def __init__(self, llm):
        self.custom = Custom(llm)

    async def __call__(self, problem, entry_point):
        solution = await self.custom(input=problem, instruction="Give only the final answer, as \\boxed{answer}.")
        return solution.response""",
    "cot": r"""class Workflow:
    def __init__(self, llm):
        self.custom = Custom(llm)

    async def __call__(self, problem, entry_point):
        solution = await self.custom(input=problem, instruction="Solve step by step. Put the final answer in \\boxed{}.")
        return solution.response""",  # noqa: E501
    "cot_sc": r"""class Workflow:
    def __init__(self, llm):
        self.custom = Custom(llm)
        self.sc_ensemble = ScEnsemble(llm)

    async def __call__(self, problem, entry_point):
        solutions = []
        for _ in range(3):
            solution = await self.custom(input=problem, instruction="Solve step by step. Put the final answer in \\boxed{}.")
            solutions.append(solution.response)
        best = await self.sc_ensemble(solutions=solutions, problem=problem)
        return best.response""",  # noqa: E501
}

# QA is scored by token F1: every method must return the short answer alone, not its reasoning.
QA = {
    "io": """\
class Workflow:
    def __init__(self, llm):
        self.custom = Custom(llm)

    async def __call__(self, problem, entry_point):
        solution = await self.custom(input=problem, instruction="Answer the question with a few words only (a name, a number or a date), without explanation.")
        return solution.response""",  # noqa: E501
    "cot": """\
class Workflow:
    def __init__(self, llm):
        self.answer_generate = AnswerGenerate(llm)

    async def __call__(self, problem, entry_point):
        solution = await self.answer_generate(input=problem)
        return solution.answer""",
    "cot_sc": """\
class Workflow:
    def __init__(self, llm):
        self.answer_generate = AnswerGenerate(llm)
        self.sc_ensemble = ScEnsemble(llm)

    async def __call__(self, problem, entry_point):
        answers = []
        for _ in range(3):
            solution = await self.answer_generate(input=problem)
            answers.append(solution.answer)
        best = await self.sc_ensemble(solutions=answers, problem=problem)
        return best.response""",
}

# Any other task (the text family): the answer alone, in the form the task asks for.
TEXT = {**QA, "io": """\
class Workflow:
    def __init__(self, llm):
        self.custom = Custom(llm)

    async def __call__(self, problem, entry_point):
        solution = await self.custom(input=problem, instruction="Give only the final answer, without explanation.")
        return solution.response"""}

BASELINES = {"code": CODE, "math": MATH, "qa": QA, "text": TEXT}
LABELS = {"io": "IO", "cot": "CoT", "cot_sc": "CoT-SC"}  # in the order the table lists them
ADAPTER = "baseline"  # a baseline's samples record this as their adapter: no generator wrote them


def parse_baselines(text: str) -> list[str]:
    """``io,cot,cot_sc`` (any subset, any order; listed in the standard order), ``all`` or ``none``."""
    from flowpo.errors import FlowPOError

    names = [n.strip().lower().replace("-", "_") for n in text.split(",") if n.strip()]
    if names in (["all"], []):
        return list(LABELS)
    if names == ["none"]:
        return []
    unknown = [n for n in names if n not in LABELS]
    if unknown:
        raise FlowPOError(f"--baselines: unknown baseline {', '.join(unknown)} "
                          f"(known: {', '.join(LABELS)}, or all, or none)")
    return [n for n in LABELS if n in names]


def baseline_workflow(name: str, problem_id: str, family: str) -> Workflow:
    """The record of baseline ``name`` for one problem, as if a generator had written it."""
    from flowpo.validate import validate_workflow

    code = BASELINES[family][name]
    return Workflow(problem_id=problem_id, round=0, sample_index=0, adapter=ADAPTER, prompt="", completion="",
                    code=code, generate_s=0.0, invalid_reason=validate_workflow(code))
