"""Evaluator: scores an execution by running the task's hidden test in a warm sandbox pool."""
from __future__ import annotations

import asyncio
import dataclasses
import time

from flowpo.records import Execution, Problem, ScoredSample
from flowpo.tasks import humaneval_test_program
from sandbox.backend import SandboxBackend
from sandbox.pool import INFRA_FAILURES, SandboxPool


class Evaluator:
    """Plain class; ``actors.launch`` wraps it as an async Ray actor. ``await ready()`` first."""

    def __init__(self, backend: SandboxBackend, *, sandboxes: int):
        self.backend = backend
        self.pool = SandboxPool(backend, sandboxes)

    async def ready(self) -> bool:
        await asyncio.to_thread(self.backend.check)
        await self.pool.start()
        return True

    async def evaluate(self, execution: Execution, problem: Problem) -> ScoredSample:
        """Score in [0, 1]; ``None`` when infrastructure failed (never scored as a bad workflow)."""
        began = time.monotonic()
        if execution.failure in INFRA_FAILURES:
            return ScoredSample(execution, score=None, evaluate_s=0.0, details={"unscored": execution.failure})
        if execution.failure or not execution.answer.strip():
            reason = execution.failure or "empty answer"
            return ScoredSample(execution, score=0.0, evaluate_s=0.0, details={"test": reason})
        outcome = await self.pool.run_program(humaneval_test_program(problem, execution.answer))
        if outcome.failure == "sandbox_error":
            return ScoredSample(execution, score=None, evaluate_s=time.monotonic() - began,
                                details={"unscored": "sandbox_error", "error": outcome.error[-500:]})
        passed = outcome.failure == ""
        details = {"test": "passed" if passed else outcome.failure, "test_output": outcome.output[-500:]}
        return ScoredSample(execution, score=1.0 if passed else 0.0, evaluate_s=time.monotonic() - began,
                            details=details)

    def stats(self) -> dict:
        return {"pool": dataclasses.asdict(self.pool.stats)}

    async def close(self) -> None:
        await self.pool.close()
