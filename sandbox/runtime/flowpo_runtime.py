"""In-sandbox runtime: loads one workflow, runs it with the operator library, reports the result.

Standard library only: it runs inside the sandbox image's bare Python, in a child the supervisor
(``flowpo_supervisor.py``) forks per job. It speaks one JSON object per line with the supervisor:

  supervisor → child   {"type": "llm_response", "id": n, "content": ..., "usage": {...}}   (fd 0)
                       {"type": "llm_error", "id": n, "error": ...}
  child → supervisor   {"type": "llm_request", "id": n, "messages": [...]}                   (fd 3)
                       {"type": "result", "status": "ok" | "crash" | "invalid_workflow" | "timeout"
                                          | "memory" | "llm_error", "answer": ..., "error": ...}

The workflow's own prints go to fds 1 and 2, a separate capped pipe, so they cannot forge
protocol lines; the supervisor checks every protocol line before the host sees it.
"""
import asyncio
import json
import linecache
import os
import sys
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # -I leaves the script's folder out
from flowpo_operators import OPERATORS, RESULT_TYPES, as_answer  # noqa: E402


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
    if not asyncio.iscoroutinefunction(getattr(workflow_class, "__call__", None)):  # noqa: B004 - the method itself
        raise ValueError("Workflow.__call__ is not an async method")
    try:
        return workflow_class(llm)
    except Exception as exc:
        raise ValueError(f"Workflow(llm) raised {type(exc).__name__}: {exc}") from None


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
    except MemoryError:
        return {"status": "memory", "answer": "", "error": "MemoryError: over the sandbox's memory limit"}
    except Exception as exc:
        return {"status": "crash", "answer": "", "error": describe_crash(exc)}
    return {"status": "ok", "answer": as_answer(value), "error": ""}


async def serve(start, protocol):
    """Run the workflow while delivering the host's LLM replies from stdin; send the result."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 24)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    async def pump():
        while line := await reader.readline():
            protocol.deliver(json.loads(line))

    pump_task = asyncio.ensure_future(pump())
    result = await run(start, protocol)
    pump_task.cancel()
    protocol.send({"type": "result", **result})


def serve_child(start, protocol_fd, loop=None):
    """Entry point in the supervisor's forked child: fd 0 brings replies, ``protocol_fd`` takes
    requests and the result, fds 1 and 2 are the workflow's capped output. ``loop``: an event loop
    the child made before its job arrived (making one is a millisecond, off the job's path). The
    child exits when this returns, so nothing is left to cancel or close."""
    loop = loop or asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    loop.run_until_complete(serve(start, Protocol(protocol_fd)))
