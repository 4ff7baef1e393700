"""Host side of one sandbox run: feed it, answer its LLM requests, collect its result, classify.

Failure classes (exactly one per run): ok, timeout, memory, output_limit, crash, invalid_workflow,
llm_error, sandbox_error. Only the workflow-caused ones may become a low score.
"""
from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Awaitable, Callable

from sandbox.docker_backend import DockerBackend

WORKFLOW_FAILURES = ("timeout", "memory", "output_limit", "crash", "invalid_workflow")
INFRA_FAILURES = ("llm_error", "sandbox_error")

AskLLM = Callable[[list], Awaitable[dict]]  # messages -> {"content": str, "usage": {...}}

# Container start and teardown are not the workflow's time.
START_SLACK_S = 5.0


@dataclass(frozen=True)
class RunOutcome:
    failure: str  # "" for ok
    answer: str
    error: str
    stderr: str
    seconds: float
    exit_code: int | None = None


class _CappedBuffer:
    def __init__(self, limit: int):
        self.limit, self.data, self.overflow = limit, bytearray(), False

    def add(self, chunk: bytes) -> None:
        room = self.limit - len(self.data)
        if len(chunk) > room:
            self.overflow = True
        self.data += chunk[:max(room, 0)]


async def _drain(stream: asyncio.StreamReader, buffer: _CappedBuffer) -> None:
    while chunk := await stream.read(65536):
        buffer.add(chunk)


async def run_workflow(backend: DockerBackend, start: dict, ask_llm: AskLLM) -> RunOutcome:
    """Run one workflow in a fresh container; ``start`` is the runtime's start message."""
    limits = backend.limits
    name = backend.new_name()
    began = time.monotonic()
    try:
        proc = await asyncio.create_subprocess_exec(
            *backend.command(name, backend.runtime_argv()), stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, limit=1 << 24)
    except OSError as exc:
        return RunOutcome("sandbox_error", "", f"cannot start docker: {exc}", "", 0.0)
    stderr = _CappedBuffer(limits.max_output_bytes)
    stdout_bytes = _CappedBuffer(limits.max_output_bytes)
    state = {"result": None, "llm_error": ""}
    tasks: set[asyncio.Task] = set()

    async def answer(message: dict) -> None:
        try:
            reply = await ask_llm(message["messages"])
            out = {"type": "llm_response", "id": message["id"], **reply}
        except Exception as exc:  # the broker already retried: report it to the workflow
            state["llm_error"] = f"{type(exc).__name__}: {exc}"[:500]
            out = {"type": "llm_error", "id": message["id"], "error": state["llm_error"]}
        if proc.stdin and not proc.stdin.is_closing():
            proc.stdin.write((json.dumps(out) + "\n").encode())
            await proc.stdin.drain()

    async def converse() -> None:
        proc.stdin.write((json.dumps({"type": "start", **start}) + "\n").encode())
        await proc.stdin.drain()
        while line := await proc.stdout.readline():
            stdout_bytes.add(line)
            if stdout_bytes.overflow:
                return
            message = json.loads(line)
            if not isinstance(message, dict):
                raise ValueError(f"protocol line is not an object: {line[:80]!r}")
            if message.get("type") == "llm_request":
                task = asyncio.ensure_future(answer(message))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            elif message.get("type") == "result":
                state["result"] = message
                return

    drain = asyncio.ensure_future(_drain(proc.stderr, stderr))
    timed_out = False
    try:
        await asyncio.wait_for(converse(), limits.timeout_s + START_SLACK_S)
    except asyncio.TimeoutError:
        timed_out = True
    except (ValueError, ConnectionError, BrokenPipeError) as exc:  # ValueError covers bad JSON
        state["protocol_error"] = f"{type(exc).__name__}: {exc}"
    finally:
        for task in list(tasks):
            task.cancel()
        exit_info = await backend.finish(name)
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except asyncio.TimeoutError:
            proc.kill()
        drain.cancel()
    seconds = time.monotonic() - began
    err_text = stderr.data.decode(errors="replace")
    result = state["result"]
    if exit_info.oom_killed:
        return RunOutcome("memory", "", "killed by the memory limit", err_text, seconds, exit_info.exit_code)
    if timed_out:
        return RunOutcome("timeout", "", f"over {limits.timeout_s} s", err_text, seconds, exit_info.exit_code)
    if stdout_bytes.overflow or stderr.overflow:
        return RunOutcome("output_limit", "", f"output over {limits.max_output_bytes} bytes", err_text,
                          seconds, exit_info.exit_code)
    if result is None:
        reason = state.get("protocol_error") or f"runtime exited with {exit_info.exit_code} without a result"
        # The workflow can kill its own process (os._exit, signals): that is the workflow's fault
        # when the container started; a container that never ran the runtime is ours.
        failure = "crash" if exit_info.exit_code not in (None, 125, 126, 127) else "sandbox_error"
        return RunOutcome(failure, "", reason + "\n" + err_text[-1000:], err_text, seconds, exit_info.exit_code)
    status = result.get("status", "crash")
    failure = "" if status == "ok" else status
    return RunOutcome(failure, str(result.get("answer", "")), str(result.get("error", "")), err_text,
                      seconds, exit_info.exit_code)


async def run_program(backend: DockerBackend, source: str, timeout_s: float) -> RunOutcome:
    """Run a standalone Python program in a fresh container; ok means exit status 0."""
    name = backend.new_name()
    began = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *backend.command(name, ["python3", "-I", "-"]), stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    output = _CappedBuffer(backend.limits.max_output_bytes)
    timed_out = False
    try:
        proc.stdin.write(source.encode())
        proc.stdin.close()
        await asyncio.wait_for(asyncio.gather(_drain(proc.stdout, output), _drain(proc.stderr, output),
                                              proc.wait()), timeout_s + START_SLACK_S)
    except asyncio.TimeoutError:
        timed_out = True
    finally:
        exit_info = await backend.finish(name)
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = output.data.decode(errors="replace")
    seconds = time.monotonic() - began
    if exit_info.oom_killed:
        return RunOutcome("memory", "", "killed by the memory limit", text, seconds, exit_info.exit_code)
    if timed_out:
        return RunOutcome("timeout", "", f"over {timeout_s} s", text, seconds, exit_info.exit_code)
    code = proc.returncode if exit_info.exit_code is None else exit_info.exit_code
    if code in (125, 126, 127):
        return RunOutcome("sandbox_error", "", f"docker run failed ({code}): {text[-500:]}", text, seconds, code)
    failure = "" if code == 0 else "crash"
    return RunOutcome(failure, "", text[-2000:] if failure else "", text, seconds, code)
