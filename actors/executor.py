"""Executor: runs generated workflows in sandboxes; their LLM calls go through the broker."""
from __future__ import annotations

from flowpo.records import Execution, Problem, Workflow
from sandbox.broker import LLMBroker
from sandbox.docker_backend import DockerBackend
from sandbox.session import run_workflow


class Executor:
    """Plain class; ``actors.launch`` wraps it as an async Ray actor."""

    def __init__(self, backend: DockerBackend, broker: LLMBroker):
        self.backend = backend
        self.broker = broker

    def ready(self) -> bool:
        self.backend.check()
        return True

    async def execute(self, workflow: Workflow, problem: Problem) -> Execution:
        if workflow.invalid_reason:  # rejected statically: no sandbox needed
            return Execution(workflow=workflow, answer="", failure="invalid_workflow", error=workflow.invalid_reason,
                             llm_calls=0, prompt_tokens=0, completion_tokens=0, execute_s=0.0)
        usage = {"llm_calls": 0, "prompt_tokens": 0, "completion_tokens": 0}

        async def ask_llm(messages: list) -> dict:
            reply = await self.broker.complete(messages)
            usage["llm_calls"] += 1
            usage["prompt_tokens"] += reply["usage"]["prompt_tokens"]
            usage["completion_tokens"] += reply["usage"]["completion_tokens"]
            return reply

        start = {"code": workflow.code, "problem": problem.prompt, "entry_point": problem.entry_point,
                 "timeout_s": self.backend.limits.timeout_s}
        outcome = await run_workflow(self.backend, start, ask_llm)
        return Execution(workflow=workflow, answer=outcome.answer, failure=outcome.failure,
                         error=outcome.error[-2000:], execute_s=outcome.seconds, **usage)
