"""Hidden tests per second on HumanEval's 164 canonical solutions: the trusted two-sandbox harness
against the single-program path it replaced, side by side in one run, on both backends.

  single   (baseline, the old path) solution + test + check() + a marker print in ONE sandbox;
           the verdict is the exit status and the marker in the output, so the candidate could
           forge it. Kept here only as the yardstick.
  paired   (FlowPO now) the solution in one sandbox, the test in another, the host relaying calls
           and plain-data replies; the harness decides.

Both get 2 × --tests sandboxes (paired: --tests candidates and --tests harnesses, roles fixed)
and the same limits. Prints tests/s per mode and the ratio paired/single.

    .venv/bin/python bench/hidden_tests.py [--tests 4] [--backends process,docker] [--repeat 2]
"""
from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flowpo.config import TaskConfig  # noqa: E402
from flowpo.benchmarks import hidden_test  # noqa: E402
from flowpo.tasks import load_problems  # noqa: E402
from sandbox.backend import SandboxLimits  # noqa: E402
from sandbox.docker_backend import DockerBackend  # noqa: E402
from sandbox.hidden_tests import HiddenTests  # noqa: E402
from sandbox.pool import SandboxPool  # noqa: E402
from sandbox.process_backend import ProcessBackend  # noqa: E402


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


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=int, default=4, help="hidden tests at once (paired: 2 sandboxes each)")
    parser.add_argument("--backends", default="process,docker")
    parser.add_argument("--repeat", type=int, default=2, help="passes over the 164 problems per mode (best kept)")
    args = parser.parse_args()
    problems = load_problems(TaskConfig(name="humaneval", split="all"))
    print(f"{len(problems)} HumanEval canonical solutions, {args.tests} tests at once, {2 * args.tests} sandboxes")
    for kind in args.backends.split(","):
        backend = make_backend(kind)
        results = {}
        for name, mode in (("single", run_single), ("paired", run_paired)):
            runs = [await measure(backend, problems, args.tests, mode) for _ in range(args.repeat)]
            results[name] = max(runs)
            print(f"{kind:8s} {name:7s} {results[name][0]:7.1f} tests/s   passed {results[name][1]}/{len(problems)}")
        print(f"{kind:8s} paired/single throughput ratio: {results['paired'][0] / results['single'][0]:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
