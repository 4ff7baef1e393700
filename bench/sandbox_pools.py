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

    .venv/bin/python -m bench.sandbox_pools [--runs 40] [--pool 2] [--quick] [--out DIR]
"""
from __future__ import annotations

import asyncio
import statistics
import sys
import time

from bench import common
from flowpo.prompts import EXAMPLE_WORKFLOW
from sandbox.backend import SandboxLimits
from sandbox.docker_backend import DockerBackend
from sandbox.pool import SandboxPool
from sandbox.process_backend import ProcessBackend

TRIVIAL = ("class Workflow:\n    def __init__(self, llm):\n        pass\n\n"
           "    async def __call__(self, problem, entry_point):\n        return 'ok'\n")
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
    return {"median_ms": 1000 * statistics.median(latencies),
            "p90_ms": 1000 * latencies[int(0.9 * (len(latencies) - 1))], "per_s": runs / wall}


async def measure_all(runs: int, pool_size: int) -> dict[tuple[str, str], dict]:
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
            results[(mode, workload)] = {"runs": n, **await measure(runner, code, n, pool_size)}
        if isinstance(runner, SandboxPool):
            await runner.close()
        print(f"{mode}: done", flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = common.parser("sandbox_pools", __doc__, quick="8 runs per warm mode (cold modes: 8)")
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--pool", type=int, default=2, help="sandboxes in a warm pool (and jobs at once)")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs = 8
    results = asyncio.run(measure_all(args.runs, args.pool))
    lines = [f"{args.runs} runs per warm mode, concurrency {args.pool}, LLM answered in-process with no latency "
             "(sandbox cost only).", "", "| mode | workload | runs | median ms | p90 ms | runs/s |",
             "|---|---|---:|---:|---:|---:|"]
    for (mode, workload), r in results.items():
        lines.append(f"| {mode} | {workload} | {r['runs']} | {r['median_ms']:.1f} | {r['p90_ms']:.1f} "
                     f"| {r['per_s']:.1f} |")
    lines.append("")
    ratios = {}
    for workload in ("trivial", "realistic"):
        warm, per_run = results[("warm-docker", workload)], results[("docker-per-run", workload)]
        ratios[workload] = {"warm_docker_vs_docker_per_run": warm["per_s"] / per_run["per_s"],
                            "warm_docker_vs_plain_process":
                                warm["per_s"] / results[("plain-process", workload)]["per_s"],
                            "warm_process_vs_docker_per_run":
                                results[("warm-process", workload)]["per_s"] / per_run["per_s"]}
        r = ratios[workload]
        lines.append(f"- {workload}: warm Docker pool median overhead {warm['median_ms']:.1f} ms; runs/s vs "
                     f"docker-per-run {r['warm_docker_vs_docker_per_run']:.1f}×, vs plain-process "
                     f"{r['warm_docker_vs_plain_process']:.1f}×; warm-process vs docker-per-run "
                     f"{r['warm_process_vs_docker_per_run']:.1f}×")
    table = "\n".join(lines)
    print(table)
    common.write_results(args.out, "sandbox_pools", {
        "runs": args.runs, "pool": args.pool, "ratios": ratios,
        "rows": [{"mode": m, "workload": w, **r} for (m, w), r in results.items()]},
        table, common.command("sandbox_pools", argv), title="Warm sandbox pools against a sandbox per execution")
    return 0


if __name__ == "__main__":
    sys.exit(main())
