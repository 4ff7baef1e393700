"""Every executor-LLM call is seeded by (run seed, problem, round, sample index, repeat, call
number), the call number being the order in which the workflow made its calls: the same workflow
executed again, alone or among others, sends the same seeds."""
from __future__ import annotations

import asyncio

import pytest

from actors.executor import Executor
from flowpo.records import Problem, Workflow
from flowpo.seeds import call_seed
from tests.sandbox.conftest import body, make_backend

# Two calls at once, then one more: the runtime numbers them in the order the workflow made them.
THREE_CALLS = body("""
a, b = await asyncio.gather(self.llm('first'), self.llm('second'))
c = await self.llm('third')
return a + b + c
""").replace("class Workflow:", "import asyncio\n\nclass Workflow:")


class RecordingBroker:
    """Stands in for the broker (no HTTP here): records each call's prompt and seed."""

    def __init__(self):
        self.calls: list[tuple[str, int]] = []

    async def complete(self, messages, usage=None, *, seed=None):
        await asyncio.sleep(0.01 if messages[-1]["content"] == "first" else 0)  # finish out of order
        self.calls.append((messages[-1]["content"], seed))
        return {"content": "x", "usage": {"prompt_tokens": 1, "completion_tokens": 1}, "cached": False}

    def settle(self, usage):  # the broker's meters: nothing queues here
        pass

    def stats(self):
        return {}

    async def close(self):
        pass


def workflow(sample_index: int) -> Workflow:
    return Workflow(problem_id="HumanEval/0", round=2, sample_index=sample_index, adapter="base", prompt="",
                    completion="", code=THREE_CALLS, generate_s=0.0)


@pytest.mark.parametrize("kind", ["process", pytest.param("docker", marks=pytest.mark.docker)])
def test_the_same_workflow_sends_the_same_seeds(kind, need):
    problem = Problem(problem_id="HumanEval/0", prompt="p", entry_point="f", task="humaneval", family="code")

    async def scenario():
        broker = RecordingBroker()
        executor = Executor(make_backend(kind, need, timeout_s=10), broker, sandboxes=2, seed=7)
        await executor.ready()
        try:
            first = await executor.execute_repeats(workflow(3), problem, 2)
            alone = list(broker.calls)
            broker.calls.clear()
            await asyncio.gather(executor.execute(workflow(5), problem), executor.execute(workflow(3), problem, 1),
                                 executor.execute(workflow(3), problem, 0))
            return first, alone, list(broker.calls)
        finally:
            await executor.close()

    first, alone, mixed = asyncio.run(scenario())
    assert all(e.failure == "" for e in first), [e.error for e in first]
    expected = {(text, call_seed(7, "HumanEval/0", 2, 3, repeat, call))
                for repeat in (0, 1) for call, text in enumerate(("first", "second", "third"), start=1)}
    assert set(alone) == expected and len(alone) == 6
    assert expected <= set(mixed)  # the same calls, seeded alike, among another workflow's
