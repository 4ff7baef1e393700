"""Sandbox throughput and per-execution overhead, side by side in one run on the same workflows.

Modes:
  warm-docker     the executor's pool: warm containers, a forked child per workflow
  warm-process    the same pool on the bubblewrap backend
  docker-per-run  a fresh container per workflow (start, run, remove), same supervisor and limits
  plain-process   a plain subprocess per workflow, no isolation at all (the floor of a cold start)

Workloads:
  trivial    returns a constant: its latency is the sandbox's whole overhead
  realistic  three CustomCodeGenerate calls and a ScEnsemble vote (four LLM round trips through the
             sandbox's stdio); the LLM is an in-process answerer with no latency, so the figures
             are the sandbox's cost, not a model's

    .venv/bin/python bench/sandbox.py [--runs 40] [--pool 2]
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flowpo.prompts import EXAMPLE_WORKFLOW  # noqa: E402
from sandbox.backend import SandboxLimits  # noqa: E402
from sandbox.docker_backend import DockerBackend  # noqa: E402
from sandbox.pool import SandboxPool  # noqa: E402
from sandbox.supervised import Sandbox  # noqa: E402
from sandbox.process_backend import ProcessBackend  # noqa: E402

TRIVIAL = "class Workflow:\n    def __init__(self, llm):\n        pass\n\n    async def __call__(self, problem, entry_point):\n        return 'ok'\n"
PROBLEM = 'def add(a, b):\n    """Return a + b."""\n'
ANSWER = "```python\ndef add(a, b):\n    return a + b\n```"


async def instant_llm(messages: list, call=0) -> dict:
    return {"content": "A" if "Which solution" in messages[-1]["content"] else ANSWER}


class ColdPool:
    """A sandbox per execution: start, run one job, tear down."""

    def __init__(self, backend):
        self.backend = backend

    async def run_workflow(self, start: dict, ask_llm):
        pool = SandboxPool(self.backend, 1)
        await pool.start()
        try:
            return await pool.run_workflow(start, ask_llm)
        finally:
            await pool.close()


async def measure(runner, code: str, runs: int, concurrency: int) -> dict:
    start = {"code": code, "problem": PROBLEM, "entry_point": "add"}
    latencies: list[float] = []
    failures: set[str] = set()
    queue = list(range(runs))

    async def worker():
        while queue:
            queue.pop()
            began = time.perf_counter()
            outcome = await runner.run_workflow(start, instant_llm)
            latencies.append(time.perf_counter() - began)
            if outcome.failure:
                failures.add(f"{outcome.failure}: {outcome.error[:200]}")

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - began
    if failures:
        raise SystemExit(f"benchmark workflow failed: {sorted(failures)}")
    latencies.sort()
    return {"median_ms": 1000 * statistics.median(latencies), "p90_ms": 1000 * latencies[int(0.9 * (len(latencies) - 1))],
            "per_s": runs / wall}


async def main(runs: int, pool_size: int) -> None:
    limits = SandboxLimits(timeout_s=30)
    docker, process = DockerBackend("flowpo-sandbox:latest", limits), ProcessBackend(limits)
    docker.check()
    process.check()
    plain = ProcessBackend(limits, namespaces=False)
    results: dict[tuple[str, str], dict] = {}
    for mode, make in [("warm-docker", lambda: SandboxPool(docker, pool_size)),
                       ("warm-process", lambda: SandboxPool(process, pool_size)),
                       ("docker-per-run", lambda: ColdPool(docker)),
                       ("plain-process", lambda: ColdPool(plain))]:
        runner = make()
        if isinstance(runner, SandboxPool):
            await runner.start()
        cold = isinstance(runner, ColdPool)
        for workload, code in [("trivial", TRIVIAL), ("realistic", EXAMPLE_WORKFLOW)]:
            n = max(runs // 4, 8) if cold else runs  # cold starts are slow; fewer runs say enough
            await measure(runner, code, 2, 1)  # warm-up: page cache, image layers, imports
            results[(mode, workload)] = await measure(runner, code, n, pool_size)
        if isinstance(runner, SandboxPool):
            await runner.close()
    print(f"sandbox benchmark: {runs} runs per warm mode, concurrency {pool_size}, "
          "LLM answered in-process with no latency (sandbox cost only)")
    print(f"{'mode':<16}{'workload':<11}{'median ms':>10}{'p90 ms':>9}{'runs/s':>9}")
    for (mode, workload), r in results.items():
        print(f"{mode:<16}{workload:<11}{r['median_ms']:>10.1f}{r['p90_ms']:>9.1f}{r['per_s']:>9.1f}")
    for workload in ("trivial", "realistic"):
        warm = results[("warm-docker", workload)]
        print(f"{workload}: warm Docker pool median overhead {warm['median_ms']:.1f} ms; "
              f"runs/s vs docker-per-run {warm['per_s'] / results[('docker-per-run', workload)]['per_s']:.1f}x, "
              f"vs plain-process {warm['per_s'] / results[('plain-process', workload)]['per_s']:.1f}x; "
              f"warm-process vs docker-per-run "
              f"{results[('warm-process', workload)]['per_s'] / results[('docker-per-run', workload)]['per_s']:.1f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--pool", type=int, default=2, help="sandboxes in a warm pool (and jobs at once)")
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.pool))
