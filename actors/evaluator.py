"""Evaluator: scores an execution by running the task's hidden test in the sandbox."""
from __future__ import annotations

import time

from flowpo.records import Execution, Problem, ScoredSample
from flowpo.tasks import humaneval_test_program
from sandbox.docker_backend import DockerBackend
from sandbox.session import INFRA_FAILURES, run_program


class Evaluator:
    """Plain class; ``actors.launch`` wraps it as an async Ray actor."""

    def __init__(self, backend: DockerBackend, timeout_s: float):
        self.backend = backend
        self.timeout_s = timeout_s

    def ready(self) -> bool:
        self.backend.check()
        return True

    async def evaluate(self, execution: Execution, problem: Problem) -> ScoredSample:
        """Score in [0, 1]; ``None`` when infrastructure failed (never scored as a bad workflow)."""
        began = time.monotonic()
        if execution.failure in INFRA_FAILURES:
            return ScoredSample(execution, score=None, evaluate_s=0.0, details={"unscored": execution.failure})
        if execution.failure or not execution.answer.strip():
            reason = execution.failure or "empty answer"
            return ScoredSample(execution, score=0.0, evaluate_s=0.0, details={"test": reason})
        program = humaneval_test_program(problem, execution.answer)
        outcome = await run_program(self.backend, program, self.timeout_s)
        if outcome.failure == "sandbox_error":
            return ScoredSample(execution, score=None, evaluate_s=time.monotonic() - began,
                                details={"unscored": "sandbox_error", "error": outcome.error[-500:]})
        passed = outcome.failure == ""
        details = {"test": "passed" if passed else outcome.failure, "test_output": outcome.stderr[-500:]}
        return ScoredSample(execution, score=1.0 if passed else 0.0, evaluate_s=time.monotonic() - began,
                            details=details)
