"""Hidden tests per second on HumanEval's 164 canonical solutions: the trusted two-sandbox harness
against the single-program path it replaced, side by side in one run, on both backends.

  single   (baseline, the old path) solution + test + check() + a marker print in ONE sandbox;
           the verdict is the exit status and the marker in the output, so the candidate could
           forge it. Kept here only as the yardstick.
  paired   (FlowPO now) the solution in one sandbox, the test in another, the host relaying calls
           and plain-data replies; the harness decides.

Both get 2 × --tests sandboxes (paired: --tests candidates and --tests harnesses, roles fixed)
and the same limits. Prints tests/s per mode and the ratio paired/single.

    .venv/bin/python -m bench.hidden_tests [--tests 4] [--backends process,docker] [--repeat 2] [--quick] [--out DIR]
"""
from __future__ import annotations

import asyncio
import secrets
import sys
import time

from bench import common
from flowpo.config import TaskConfig
from flowpo.scoring import hidden_test
from flowpo.tasks import load_problems
from sandbox.backend import SandboxLimits
from sandbox.docker_backend import DockerBackend
from sandbox.hidden_tests import HiddenTests
from sandbox.pool import SandboxPool
from sandbox.process_backend import ProcessBackend


def single_program(problem, solution: str, marker: str) -> str:
    """The old path's program, as flowpo/tasks.py built it before the trusted harness."""
    return f"{solution}\n\n{problem.test}\n\ncheck({problem.entry_point})\n\nprint({marker!r}, flush=True)\n"


async def run_single(pool: SandboxPool, problem, semaphore) -> bool:
    async with semaphore:
        marker = f"flowpo-tests-passed-{secrets.token_hex(8)}"
        outcome = await pool.run_program(single_program(problem, problem.answers[0], marker))
        return outcome.failure == "" and marker in outcome.output


async def run_paired(pool: HiddenTests, problem, semaphore) -> bool:
    async with semaphore:
        return (await pool.run(problem.answers[0], hidden_test(problem))).passed


async def measure(backend, problems, tests: int, mode) -> tuple[float, int]:
    pool = HiddenTests(backend, tests) if mode is run_paired else SandboxPool(backend, 2 * tests)
    await pool.start()
    semaphore = asyncio.Semaphore(tests if mode is run_paired else 2 * tests)
    try:
        began = time.monotonic()
        passed = await asyncio.gather(*(mode(pool, p, semaphore) for p in problems))
        return len(problems) / (time.monotonic() - began), sum(passed)
    finally:
        await pool.close()


def make_backend(kind: str):
    limits = SandboxLimits(timeout_s=20, memory_mb=512)
    backend = DockerBackend("flowpo-sandbox:latest", limits) if kind == "docker" else ProcessBackend(limits)
    backend.check()
    return backend


async def measure_all(args, problems) -> list[dict]:
    rows = []
    for kind in args.backends.split(","):
        backend = make_backend(kind)
        results = {}
        for name, mode in (("single", run_single), ("paired", run_paired)):
            runs = [await measure(backend, problems, args.tests, mode) for _ in range(args.repeat)]
            results[name] = max(runs)
            print(f"{kind:8s} {name:7s} {results[name][0]:7.1f} tests/s   passed {results[name][1]}/{len(problems)}",
                  flush=True)
        ratio = results["paired"][0] / results["single"][0]
        print(f"{kind:8s} paired/single throughput ratio: {ratio:.2f}", flush=True)
        rows.append({"backend": kind, "single_per_s": results["single"][0], "single_passed": results["single"][1],
                     "paired_per_s": results["paired"][0], "paired_passed": results["paired"][1],
                     "paired_over_single": ratio})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = common.parser("hidden_tests", __doc__, quick="the first 40 problems, one pass per mode")
    parser.add_argument("--tests", type=int, default=4, help="hidden tests at once (paired: 2 sandboxes each)")
    parser.add_argument("--backends", default="process,docker")
    parser.add_argument("--repeat", type=int, default=2, help="passes over the problems per mode (best kept)")
    parser.add_argument("--problems", type=int, default=0, help="the first N HumanEval problems (0: all 164)")
    args = parser.parse_args(argv)
    if args.quick:
        args.problems, args.repeat = 40, 1
    problems = load_problems(TaskConfig(name="humaneval", split="all"))
    problems = problems[:args.problems] if args.problems else problems
    print(f"{len(problems)} HumanEval canonical solutions, {args.tests} tests at once, {2 * args.tests} sandboxes")
    rows = asyncio.run(measure_all(args, problems))
    n = len(problems)
    table = "\n".join([
        f"{n} HumanEval canonical solutions, {args.tests} tests at once, {2 * args.tests} sandboxes, best of "
        f"{args.repeat} pass(es) per mode.", "",
        "| backend | single tests/s | passed | paired tests/s | passed | paired / single |",
        "|---|---:|---:|---:|---:|---:|",
        *(f"| {r['backend']} | {r['single_per_s']:.1f} | {r['single_passed']}/{n} | {r['paired_per_s']:.1f} "
          f"| {r['paired_passed']}/{n} | {r['paired_over_single']:.2f} |" for r in rows)])
    common.write_results(args.out, "hidden_tests", {"problems": n, "tests": args.tests, "repeat": args.repeat,
                                                    "rows": rows}, table, common.command("hidden_tests", argv),
                         title="The two-sandbox hidden-test harness against the single-program path")
    return 0


if __name__ == "__main__":
    sys.exit(main())
