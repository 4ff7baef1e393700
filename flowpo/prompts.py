"""The generator's template prompts (ScoreFlow style), one per task family (code, math, qa, text), with
the task's own description when it has one, the extraction of the workflow code, and whether a prompt fits the
generator's context. The LLM judge's prompt is flowpo/judge.py's."""
from __future__ import annotations

import dataclasses
import inspect
import re

from flowpo.errors import FlowPOError
from flowpo.operators import OPERATORS
from flowpo.records import Problem


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
        return best.response"""  # noqa: E501

SYSTEM = """\
You design agent workflows in Python. A workflow is a class named Workflow: __init__(self, llm) builds operators, and async __call__(self, problem, entry_point) {goal}{task}

{operators}

Rules: use only these operators; at most 3 loop iterations; no text specific to the problem inside the workflow. Write the workflow between <graph> and </graph>."""  # noqa: E501

# What __call__ does, per task family: the rest of the system prompt is shared.
GOALS = {
    "code": "solves a coding problem with them and returns the final code as a string.",
    "math": ("solves a math problem with them and returns the final answer as a string, ideally as "
             "\\boxed{answer}; entry_point is empty."),
    "qa": ("answers a question about the given passage or context with them and returns a short answer as a "
           "string (a few words: a name, a number or a date); entry_point is empty."),
    "text": ("solves the task's problem with them and returns the final answer alone as a string, in the form "
             "the task asks for; entry_point is empty."),
}
TASK_DESCRIPTION = "\n\nThe task: {description}"  # a task's own description (task.description), when given

SIMPLE_WORKFLOW = """\
class Workflow:
    def __init__(self, llm):
        self.code_generate = CustomCodeGenerate(llm)

    async def __call__(self, problem, entry_point):
        solution = await self.code_generate(problem=problem, entry_point=entry_point, instruction="Write the complete function.")
        return solution.code"""  # noqa: E501

MATH_SIMPLE_WORKFLOW = """\
class Workflow:
    def __init__(self, llm):
        self.answer_generate = AnswerGenerate(llm)

    async def __call__(self, problem, entry_point):
        solution = await self.answer_generate(input=problem)
        return solution.answer"""

MATH_EXAMPLE_WORKFLOW = r"""class Workflow:
    def __init__(self, llm):
        self.custom = Custom(llm)
        self.sc_ensemble = ScEnsemble(llm)

    async def __call__(self, problem, entry_point):
        solutions = []
        for _ in range(3):
            solution = await self.custom(input=problem, instruction="Solve step by step. Put the final answer in \\boxed{}.")
            solutions.append(solution.response)
        best = await self.sc_ensemble(solutions=solutions, problem=problem)
        return best.response"""  # noqa: E501

QA_SIMPLE_WORKFLOW = MATH_SIMPLE_WORKFLOW

QA_EXAMPLE_WORKFLOW = """\
class Workflow:
    def __init__(self, llm):
        self.answer_generate = AnswerGenerate(llm)
        self.sc_ensemble = ScEnsemble(llm)
        self.format = Format(llm)

    async def __call__(self, problem, entry_point):
        answers = []
        for _ in range(3):
            solution = await self.answer_generate(input=problem)
            answers.append(solution.answer)
        best = await self.sc_ensemble(solutions=answers, problem=problem)
        short = await self.format(problem=problem, solution=best.response)
        return short.response"""

# Few-shot turns: small generators copy the shape of earlier answers far more reliably than
# they follow a description (SmolLM2-135M wrote 0/32 loadable workflows without them). Each
# family's examples read like its problems and return what its scorer reads.
FEW_SHOT = [
    ('def add(a, b):\n    """Return a + b."""', SIMPLE_WORKFLOW),
    ('def is_even(n):\n    """Return True if n is even."""', EXAMPLE_WORKFLOW),
]
MATH_FEW_SHOT = [
    ("What is $15\\%$ of 80?", MATH_SIMPLE_WORKFLOW),
    ("How many positive divisors does 36 have?", MATH_EXAMPLE_WORKFLOW),
]
QA_FEW_SHOT = [
    ("Passage: The bridge opened in 1932 after six years of work.\n\nQuestion: In what year did the bridge open?",
     QA_SIMPLE_WORKFLOW),
    ("Context:\nAda Lovelace: Ada Lovelace was an English mathematician. She wrote the first published program.\n\n"
     "Question: What nationality was the author of the first published program?", QA_EXAMPLE_WORKFLOW),
]
TEXT_SIMPLE_WORKFLOW = """\
class Workflow:
    def __init__(self, llm):
        self.custom = Custom(llm)

    async def __call__(self, problem, entry_point):
        solution = await self.custom(input=problem, instruction="Give only the final answer, without explanation.")
        return solution.response"""

TEXT_EXAMPLE_WORKFLOW = """\
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
        return best.response"""

# The text family is everything else (classification, extraction, short generation): its examples
# are two such tasks, answered with the answer alone, which is what an exact or a user's scorer reads.
TEXT_FEW_SHOT = [
    ("Is the sentiment of this review positive or negative?\n\nReview: The soup was cold and nobody came to our "
     "table for twenty minutes.", TEXT_SIMPLE_WORKFLOW),
    ("Which word does not belong with the others: apple, pear, carrot, plum?", TEXT_EXAMPLE_WORKFLOW),
]
TEMPLATES = {"code": FEW_SHOT, "math": MATH_FEW_SHOT, "qa": QA_FEW_SHOT, "text": TEXT_FEW_SHOT}


def probe_problem(family: str) -> Problem:
    """A tiny problem of the family (its first few-shot one) for dry runs: does a workflow run?"""
    text = TEMPLATES[family][0][0]
    entry_point = re.search(r"def (\w+)\(", text).group(1) if family == "code" else ""
    return Problem(problem_id=f"probe/{family}", prompt=text, entry_point=entry_point, task="probe", family=family)


# A long passage (HotpotQA's ten paragraphs) would crowd the generator's context: it sees the
# start and the end, where the question is; the workflow itself gets the whole text.
MAX_PROBLEM_CHARS = 2400


def problem_for_generator(text: str) -> str:
    text = text.strip()
    if len(text) <= MAX_PROBLEM_CHARS:
        return text
    head, tail = text[:MAX_PROBLEM_CHARS // 2], text[-MAX_PROBLEM_CHARS // 2:]
    return f"{head}\n[... {len(text) - len(head) - len(tail)} characters left out ...]\n{tail}"


def _ask(problem_text: str) -> str:
    return (f"Problem:\n{problem_for_generator(problem_text)}\n\n"
            "Write a workflow for this problem between <graph> and </graph>.")


GRAPH_RE = re.compile(r"<graph>(.*?)(?:</graph>|$)", re.DOTALL)
FENCE_RE = re.compile(r"```(?:python|py)?\s*\n(.*?)```", re.DOTALL)


def workflow_messages(problem: Problem) -> list[dict]:
    """Chat messages asking the generator for a workflow for ``problem``, in its family's template."""
    if problem.family not in TEMPLATES:
        raise ValueError(f"{problem.problem_id}: unknown task family {problem.family!r} "
                         f"(known: {', '.join(TEMPLATES)})")
    task = TASK_DESCRIPTION.format(description=" ".join(problem.description.split())) if problem.description else ""
    system = SYSTEM.format(goal=GOALS[problem.family], task=task, operators=OPERATOR_REFERENCE)
    messages = [{"role": "system", "content": system}]
    for example_problem, example_workflow in TEMPLATES[problem.family]:
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
    # A fence that wraps the workflow is dropped; a fenced snippet inside one is part of it.
    if fenced and ("class Workflow" in fenced.group(1) or code.lstrip().startswith("```")):
        code = fenced.group(1)
    return code.strip("\n")


def generator_prompt(tokenizer, problem: Problem, response_prefix: str) -> str:
    """The text the generator continues: the chat template's prompt and the answer's scaffold."""
    text = tokenizer.apply_chat_template(workflow_messages(problem), add_generation_prompt=True, tokenize=False)
    return text + response_prefix


def prompt_lengths(tokenizer, problems: list[Problem], response_prefix: str) -> dict[str, int]:
    """Each problem's generator prompt in tokens, as the generator sends it."""
    return {p.problem_id: len(tokenizer(generator_prompt(tokenizer, p, response_prefix),
                                        add_special_tokens=False).input_ids) for p in problems}


def check_prompt_room(lengths: dict[str, int], max_model_len: int, max_tokens: int) -> str | None:
    """Refuse problems whose generator prompt (``lengths``: tokens per problem id) leaves no room
    in ``generator.max_model_len``: vLLM would reject them mid-run. Returns a warning naming those
    that leave less than ``generator.max_tokens`` (their workflows may be cut short), or None."""
    def listed(ids: list[str]) -> str:
        return ", ".join(f"{i} ({lengths[i]} tokens)" for i in ids[:5]) + (f" and {len(ids) - 5} more"
                                                                            if len(ids) > 5 else "")

    by_length = sorted(lengths, key=lambda i: (-lengths[i], i))
    no_room = [i for i in by_length if lengths[i] >= max_model_len]
    if no_room:
        raise FlowPOError(
            f"generator.max_model_len = {max_model_len} tokens cannot hold the generator prompt of {len(no_room)} of "
            f"{len(lengths)} problems: {listed(no_room)}. Raise generator.max_model_len to at least "
            f"{lengths[no_room[0]] + max_tokens} (longest prompt + generator.max_tokens), or leave them out "
            f"(task.problem_ids, task.limit).")
    short = [i for i in by_length if lengths[i] + max_tokens > max_model_len]
    if not short:
        return None
    return (f"{len(short)} of {len(lengths)} problems leave less than generator.max_tokens = {max_tokens} tokens "
            f"for the workflow within generator.max_model_len = {max_model_len}: {listed(short)}; their workflows "
            f"may be cut short. generator.max_model_len = {lengths[short[0]] + max_tokens} gives every one room.")


def check_training_room(lengths: dict[str, int], max_seq_len: int, max_tokens: int) -> None:
    """Refuse problems whose generator prompt (``lengths``) plus a workflow of ``generator.max_tokens``
    (and its EOS) does not fit ``train.max_seq_len``: the learner would cut such a prompt from the left
    and train the long workflows of those problems on a context the generator never saw."""
    need = {i: n + max_tokens + 1 for i, n in lengths.items()}
    cut = sorted((i for i in need if need[i] > max_seq_len), key=lambda i: (-need[i], i))
    if not cut:
        return
    listed = ", ".join(f"{i} ({lengths[i]} tokens)" for i in cut[:5]) + (f" and {len(cut) - 5} more"
                                                                          if len(cut) > 5 else "")
    raise FlowPOError(
        f"train.max_seq_len = {max_seq_len} tokens cannot hold the generator prompt plus a workflow of "
        f"generator.max_tokens = {max_tokens} for {len(cut)} of {len(lengths)} problems: {listed}; the learner "
        f"would train their long workflows on a cut prompt. Raise train.max_seq_len to at least {need[cut[0]]} "
        f"(longest prompt + generator.max_tokens + 1), lower generator.max_tokens, or leave them out "
        f"(task.problem_ids, task.limit).")
