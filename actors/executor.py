"""Executor: runs generated workflows in a warm sandbox pool; their LLM calls go through the broker."""
from __future__ import annotations

import asyncio
import dataclasses

from flowpo.llm.broker import LLMBroker, WorkflowUsage
from flowpo.records import Execution, Problem, Workflow
from flowpo.seeds import call_seed
from sandbox.backend import SandboxBackend, release_node_files
from sandbox.pool import SandboxPool
from sandbox.verdicts import blame_queueing


class Executor:
    """Plain class; ``actors.launch`` wraps it as an async Ray actor. ``await ready()`` first."""

    def __init__(self, backend: SandboxBackend, broker: LLMBroker, *, sandboxes: int, recycle_after: int = 0,
                 seed: int = 0):
        self.backend = backend
        self.broker = broker
        self.seed = seed  # the run's: with the workflow's coordinates it seeds every LLM call
        self.pool = SandboxPool(backend, sandboxes, recycle_after=recycle_after)

    async def ready(self) -> bool:
        await asyncio.to_thread(self.backend.check)
        await self.pool.start()
        return True

    async def execute(self, workflow: Workflow, problem: Problem, repeat: int | str = 0) -> Execution:
        if workflow.invalid_reason:  # rejected statically: no sandbox needed
            return Execution(workflow=workflow, answer="", failure="invalid_workflow", error=workflow.invalid_reason,
                             llm_calls=0, prompt_tokens=0, completion_tokens=0, execute_s=0.0)
        usage = WorkflowUsage()

        async def ask_llm(messages: list, call: int) -> dict:
            seed = call_seed(self.seed, workflow.problem_id, workflow.round, workflow.sample_index, repeat, call)
            return await self.broker.complete(messages, usage, seed=seed)

        start = {"code": workflow.code, "problem": problem.prompt, "entry_point": problem.entry_point}
        outcome = await self.pool.run_workflow(start, ask_llm)
        self.broker.settle(usage)  # its queueing meters, up to the run's end (wall time)
        failure, error, suspect = blame_queueing(outcome.failure, outcome.error, usage.queued_s,
                                                 self.backend.limits.timeout_s, usage.self_queued_s)
        return Execution(workflow=workflow, answer=outcome.answer, failure=failure,
                         error=error[-2000:], execute_s=outcome.seconds, llm_calls=usage.calls,
                         prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
                         cache_hits=usage.cache_hits, cost_usd=usage.cost_usd, suspect=suspect or outcome.suspect)

    async def execute_repeats(self, workflow: Workflow, problem: Problem, repeats: int) -> list[Execution]:
        """``repeats`` executions of one workflow, run concurrently (the pool bounds how many at once).
        Operators sample, so one run is a noisy measure: ScoreFlow averages 3 (Evaluator.evaluate_repeats)."""
        if repeats < 1:
            raise ValueError(f"repeats must be at least 1, got {repeats}")
        return list(await asyncio.gather(*(self.execute(workflow, problem, i) for i in range(repeats))))

    async def dry_run(self, workflow: Workflow, family: str) -> str:
        """Run ``workflow`` on its family's probe problem; "" when it runs, else why not.

        ScoreFlow's check before the real run: a workflow that crashes or hangs on a trivial
        problem is regenerated instead of executed."""
        from flowpo.prompts import probe_problem

        outcome = await self.execute(workflow, probe_problem(family), "dry_run")
        if outcome.failure in ("", "llm_error", "sandbox_error"):  # infrastructure says nothing of the workflow
            return ""
        return f"dry_run: {outcome.failure}: {outcome.error[:300]}"

    def stats(self) -> dict:
        return {"pool": dataclasses.asdict(self.pool.stats), "broker": self.broker.stats()}

    async def close(self) -> None:
        await self.pool.close()
        await self.broker.close()
        release_if_actor()


def release_if_actor() -> None:
    """An actor's process owns the only pool it runs: remove what it staged on this node now, since
    Actors.shutdown kills it next and a killed process runs no atexit hook (tests that build a plain
    Executor keep theirs: other pools of the process may still use it)."""
    import ray

    if ray.is_initialized() and ray.get_runtime_context().get_actor_id() is not None:
        release_node_files()
