"""In-sandbox runtime: loads one workflow, runs it with the operator library, reports the result.

Standard library only: it runs inside the sandbox image's bare Python. It talks to the host over
stdio with one JSON object per line:

  host → sandbox   {"type": "start", "code": ..., "problem": ..., "entry_point": ..., "timeout_s": ...}
                   {"type": "llm_response", "id": n, "content": ..., "usage": {...}}
                   {"type": "llm_error", "id": n, "error": ...}
  sandbox → host   {"type": "llm_request", "id": n, "messages": [...]}
                   {"type": "result", "status": "ok" | "crash" | "invalid_workflow" | "timeout"
                                      | "llm_error", "answer": ..., "error": ...}

The workflow's own prints go to stderr so they cannot forge protocol lines.
"""
import asyncio
import json
import linecache
import os
import re
import sys
import traceback
from dataclasses import dataclass


class LLMError(Exception):
    """The executor LLM failed after the broker's retries."""


class Protocol:
    def __init__(self, out_fd):
        self._out = os.fdopen(out_fd, "w", buffering=1)
        self._pending = {}
        self._next_id = 0

    def send(self, message):
        self._out.write(json.dumps(message) + "\n")
        self._out.flush()

    async def ask_llm(self, messages):
        self._next_id += 1
        request_id = self._next_id
        future = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        self.send({"type": "llm_request", "id": request_id, "messages": messages})
        return await future

    def deliver(self, message):
        future = self._pending.pop(message.get("id"), None)
        if future is None or future.done():
            return
        if message["type"] == "llm_response":
            future.set_result(message["content"])
        else:
            future.set_exception(LLMError(message.get("error", "llm error")))


class LLM:
    """What operators hold: one chat call to the executor LLM, through the host broker."""

    def __init__(self, protocol):
        self._protocol = protocol

    async def __call__(self, prompt):
        return await self._protocol.ask_llm([{"role": "user", "content": prompt}])


# ---------------------------------------------------------------------------------------------
# Operators (ScoreFlow/AFlow set, typed results)


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


# ---------------------------------------------------------------------------------------------
# Running one workflow


def load_workflow(code, llm):
    """Instantiate the workflow; raises ValueError for a workflow that does not load."""
    if not code.strip():
        raise ValueError("no workflow code (no <graph> block in the generator's answer)")
    namespace = {**OPERATORS, **RESULT_TYPES}
    # So that tracebacks can quote the workflow's own lines.
    linecache.cache["<workflow>"] = (len(code), None, code.splitlines(True), "<workflow>")
    try:
        exec(compile(code, "<workflow>", "exec"), namespace)  # noqa: S102 - sandboxed by design
    except SyntaxError as exc:
        raise ValueError(f"syntax error: {exc.msg} (line {exc.lineno})") from None
    except Exception as exc:
        raise ValueError(f"loading the workflow raised {type(exc).__name__}: {exc}") from None
    workflow_class = namespace.get("Workflow")
    if not isinstance(workflow_class, type):
        raise ValueError("the code defines no class Workflow")
    if not asyncio.iscoroutinefunction(getattr(workflow_class, "__call__", None)):
        raise ValueError("Workflow.__call__ is not an async method")
    try:
        return workflow_class(llm)
    except Exception as exc:
        raise ValueError(f"Workflow(llm) raised {type(exc).__name__}: {exc}") from None


def as_answer(value):
    if isinstance(value, CodeResult):
        return value.code
    if isinstance(value, TextResult):
        return value.response
    if isinstance(value, tuple) and value:
        return as_answer(value[0])
    return value if isinstance(value, str) else str(value)


def describe_crash(exc):
    """The exception and the workflow lines it passed through (not the runtime's frames)."""
    frames = [f"line {f.lineno}: {f.line or ''}".strip()
              for f in traceback.extract_tb(exc.__traceback__) if f.filename == "<workflow>"]
    where = f" (workflow {'; '.join(frames[-2:])})" if frames else ""
    return ("".join(traceback.format_exception_only(type(exc), exc)).strip() + where)[-2000:]


async def run(start, protocol):
    try:
        workflow = load_workflow(start["code"], LLM(protocol))
    except ValueError as exc:
        return {"status": "invalid_workflow", "answer": "", "error": str(exc)}
    try:
        value = await asyncio.wait_for(workflow(start["problem"], start["entry_point"]),
                                       start["timeout_s"])
    except asyncio.TimeoutError:
        return {"status": "timeout", "answer": "", "error": f"over {start['timeout_s']} s"}
    except LLMError as exc:
        return {"status": "llm_error", "answer": "", "error": str(exc)}
    except Exception as exc:
        return {"status": "crash", "answer": "", "error": describe_crash(exc)}
    return {"status": "ok", "answer": as_answer(value), "error": ""}


async def main():
    protocol = Protocol(os.dup(1))
    os.dup2(2, 1)  # the workflow's prints land on stderr
    sys.stdout = sys.stderr
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 24)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    start = json.loads(await reader.readline())
    task = asyncio.ensure_future(run(start, protocol))

    async def pump():
        while True:
            line = await reader.readline()
            if not line:
                return
            protocol.deliver(json.loads(line))

    pump_task = asyncio.ensure_future(pump())
    result = await task
    pump_task.cancel()
    protocol.send({"type": "result", **result})


if __name__ == "__main__":
    asyncio.run(main())
    # Threads a workflow left behind must not keep the sandbox alive.
    os._exit(0)
