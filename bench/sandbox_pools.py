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

A warm pool is measured under three loads:
  paced          one job at a time, each PACE_S after the last one ended: its sandbox has restored
                 and waits, so the figure is what a job pays on its own path
  one by one     one job at a time, back to back: the last job's restore (on another sandbox of the
                 pool) runs beside this one and takes CPU from it
  busy           concurrency = pool: every sandbox busy, the restore between jobs on the path too
With every sandbox busy, a job's latency is bound by the machine's CPU: about its CPU time (all
processes) × jobs at once / cores. The floor of that CPU time is printed too: a fork and exit of the
sandbox's Python with the runtime imported, which every job pays (a fresh process per job).
``--baseline REV`` measures the trivial job on the warm pools of an earlier revision and of this tree
in the same run, alternating, each in a fresh interpreter on the same harness.

    .venv/bin/python -m bench.sandbox_pools [--runs 40] [--pool 2] [--baseline REV ...] [--quick] [--out DIR]
"""
from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import common
from flowpo.prompts import EXAMPLE_WORKFLOW
from sandbox.backend import SandboxLimits, runtime_stage
from sandbox.docker_backend import DockerBackend
from sandbox.pool import SandboxPool
from sandbox.process_backend import ProcessBackend

TRIVIAL = ("class Workflow:\n    def __init__(self, llm):\n        pass\n\n"
           "    async def __call__(self, problem, entry_point):\n        return 'ok'\n")
PROBLEM = 'def add(a, b):\n    """Return a + b."""\n'
ANSWER = "```python\ndef add(a, b):\n    return a + b\n```"


PACE_S = 0.02  # well over a restore's CPU time here (about 3 ms), so the paced job finds it done
LOADS = {"paced": 1, "one by one": 1}  # jobs at once; "busy" is the pool's size


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


# Where a warm job's CPU goes, by process name: the sandboxes' supervisors and their job processes
# (the image's python3, and bubblewrap's), Docker's client, daemons and the container's shim (the
# relay of a container's stdio, when it speaks there; see sandbox/supervised.py) and this process,
# the host. A supervisor reaps its jobs, so their
# CPU is in its children's count.
SANDBOX_PROCESSES = {"python3"}
RELAY_PROCESSES = {"docker", "dockerd", "containerd", "containerd-shim", "bwrap"}


def cpu_seconds() -> dict[int, tuple[str, float]]:
    """pid -> (name, CPU seconds of the process and its reaped children), for every process."""
    found, tick = {}, os.sysconf("SC_CLK_TCK")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            raw = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2:].split()
        found[int(pid)] = (raw[raw.index("(") + 1:raw.rindex(")")], sum(map(int, fields[11:15])) / tick)
    return found


def cpu_per_job(before: dict, after: dict, host_s: float, runs: int) -> dict:
    """ms of CPU per job: the sandboxes', the relay's, the host's and their sum."""
    spent = {"sandbox": 0.0, "relay": 0.0}
    for pid, (name, seconds) in after.items():
        kind = "sandbox" if name in SANDBOX_PROCESSES else "relay" if name in RELAY_PROCESSES else None
        if kind and pid != os.getpid():
            spent[kind] += seconds - before.get(pid, (name, 0.0))[1]
    spent["host"] = host_s
    per_job = {k: 1000 * v / runs for k, v in spent.items()}
    return {**per_job, "total": sum(per_job.values())}


async def measure(runner, code: str, runs: int, concurrency: int, pace_s: float = 0.0) -> dict:
    start = {"code": code, "problem": PROBLEM, "entry_point": "add"}
    latencies: list[float] = []
    failures: set[str] = set()
    queue = list(range(runs))
    cpu_before, host_before = cpu_seconds(), sum(os.times()[:2])

    async def worker():
        while queue:
            queue.pop()
            await asyncio.sleep(pace_s)
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
    await asyncio.sleep(0.2)  # the last restore's CPU
    cpu = cpu_per_job(cpu_before, cpu_seconds(), sum(os.times()[:2]) - host_before, runs)
    latencies.sort()
    return {"median_ms": 1000 * statistics.median(latencies),
            "p90_ms": 1000 * latencies[int(0.9 * (len(latencies) - 1))], "per_s": runs / wall, "cpu_ms": cpu}


def loads(pool_size: int) -> dict[str, int]:
    """Each load's jobs at once."""
    return {**LOADS, "busy": pool_size}


async def measure_all(runs: int, pool_size: int) -> dict[tuple[str, str, str], dict]:
    """(mode, workload, load) -> figures."""
    limits = SandboxLimits(timeout_s=30)
    docker, process = DockerBackend("flowpo-sandbox:latest", limits), ProcessBackend(limits)
    docker.check()
    process.check()
    plain = ProcessBackend(limits, namespaces=False)
    results: dict[tuple[str, str, str], dict] = {}
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
            for load, at_once in ({"busy": pool_size} if cold else loads(pool_size)).items():
                pace = PACE_S if load == "paced" else 0.0
                results[(mode, workload, load)] = {"runs": n, "at_once": at_once,
                                                   **await measure(runner, code, n, at_once, pace)}
        if isinstance(runner, SandboxPool):
            await runner.close()
        print(f"{mode}: done", flush=True)
    return results


# The trivial job on a warm pool, through the pool's public API only (unchanged since the first warm
# pool), so that it runs on any revision's tree: argv = backend, jobs at once, runs, pool size, pause
# before each job in ms.
REVISION_PROBE = """
import asyncio, json, statistics, sys, time
from sandbox.backend import SandboxLimits
from sandbox.docker_backend import DockerBackend
from sandbox.pool import SandboxPool
from sandbox.process_backend import ProcessBackend

CODE = %r
START = {"code": CODE, "problem": "def add(a, b):\\n    return a + b\\n", "entry_point": "add"}

async def llm(messages, call=0):
    raise AssertionError("the trivial workflow calls no LLM")

async def main(kind, at_once, runs, size, pause_ms):
    limits = SandboxLimits(timeout_s=30)
    backend = DockerBackend("flowpo-sandbox:latest", limits) if kind == "docker" else ProcessBackend(limits)
    pool = SandboxPool(backend, size)
    await pool.start()
    for _ in range(4):
        await pool.run_workflow(START, llm)
    latencies, left = [], list(range(runs))
    async def worker():
        while left:
            left.pop()
            await asyncio.sleep(pause_ms / 1000)
            began = time.perf_counter()
            outcome = await pool.run_workflow(START, llm)
            latencies.append(time.perf_counter() - began)
            assert not outcome.failure, outcome
    await asyncio.gather(*(worker() for _ in range(at_once)))
    await pool.close()
    print(json.dumps({"median_ms": 1000 * statistics.median(latencies)}))

asyncio.run(main(sys.argv[1], *map(int, sys.argv[2:])))
""" % TRIVIAL


FORK_FLOOR = """
import os, sys, time
sys.path.insert(0, sys.argv[1])
import flowpo_supervisor  # noqa: F401  (the runtime, imported as a supervisor has it)
runs, parent, children = 300, time.process_time(), os.times()
for _ in range(runs):
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
after = os.times()
print((time.process_time() - parent) / runs, (after[2] + after[3] - children[2] - children[3]) / runs)
"""


def fork_floor_ms(python: str) -> dict:
    """ms of CPU a fork and exit of the sandbox's Python, with the runtime imported, costs."""
    done = subprocess.run([python, "-I", "-c", FORK_FLOOR, str(runtime_stage())], capture_output=True, text=True,
                          check=True)
    parent, child = (1000 * float(x) for x in done.stdout.split())
    return {"python": python, "parent": parent, "child": child, "total": parent + child}


def revision_tree(rev: str, into: Path) -> Path:
    """``rev``'s files (git archive), readable by the sandbox's uid, which mounts its runtime."""
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(common.REPO), "archive", rev], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    subprocess.run(["chmod", "-R", "a+rX", str(into)], check=True)
    into.parent.chmod(0o755)
    return into


def probe(tree: Path, kind: str, load: str, runs: int, pool_size: int) -> float:
    at_once, pause_ms = loads(pool_size)[load], round(1000 * PACE_S) if load == "paced" else 0
    argv = [kind, str(at_once), str(runs), str(pool_size), str(pause_ms)]
    done = subprocess.run([sys.executable, "-c", REVISION_PROBE, *argv],
                          cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)}, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the probe on {tree} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.splitlines()[-1])["median_ms"]


def compare_revisions(revs: list[str], runs: int, pool_size: int, rounds: int = 2) -> list[dict]:
    """The trivial job's median on each revision and on this tree, per backend and load;
    the trees take turns, ``rounds`` times, and each figure is the median of its turns."""
    with tempfile.TemporaryDirectory(prefix="flowpo-bench-revs-") as tmp:
        trees = {rev: revision_tree(rev, Path(tmp) / rev) for rev in revs}
        trees["this tree"] = common.REPO
        rows = []
        for kind in ("docker", "process"):
            for load in loads(pool_size):
                turns: dict[str, list[float]] = {name: [] for name in trees}
                for _ in range(rounds):
                    for name, tree in trees.items():
                        turns[name].append(probe(tree, kind, load, runs, pool_size))
                rows.append({"backend": kind, "load": load,
                             **{name: statistics.median(ms) for name, ms in turns.items()}})
                print(f"revisions, {kind}, {load}: done", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = common.parser("sandbox_pools", __doc__, quick="8 runs per warm mode (cold modes: 8)")
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--pool", type=int, default=2, help="sandboxes in a warm pool (and jobs at once)")
    parser.add_argument("--baseline", nargs="*", default=[], metavar="REV",
                        help="earlier revisions whose warm pools run the trivial job in the same run")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs = 8
    results = asyncio.run(measure_all(args.runs, args.pool))
    floor = fork_floor_ms(ProcessBackend(SandboxLimits()).python)
    revisions = compare_revisions(args.baseline, args.runs, args.pool) if args.baseline else []
    table, ratios = report(results, revisions, floor, args)
    print(table)
    common.write_results(args.out, "sandbox_pools", {
        "runs": args.runs, "pool": args.pool, "ratios": ratios,
        "rows": [{"mode": m, "workload": w, "load": load, **r} for (m, w, load), r in results.items()],
        "revisions": revisions, "fork_floor_cpu_ms": floor},
        table, common.command("sandbox_pools", argv), title="Warm sandbox pools against a sandbox per execution")
    return 0


def report(results: dict, revisions: list[dict], floor: dict, args) -> tuple[str, dict]:
    busy = "busy"
    lines = [f"{args.runs} runs per warm mode, a pool of {args.pool}, {os.cpu_count()} cores, LLM answered "
             "in-process with no latency (sandbox cost only). Loads: paced, one job at a time, each "
             f"{1000 * PACE_S:.0f} ms after the last (its sandbox restored and waiting: a job's own path); one by "
             "one, back to back (the last job's restore runs beside it); busy, every sandbox busy.", "",
             "| mode | workload | load | runs | median ms | p90 ms | runs/s | CPU ms a job |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for (mode, workload, load), r in results.items():
        # a cold sandbox's processes are reaped by processes that end with them: their CPU is not seen
        cpu = f"{r['cpu_ms']['total']:.1f}" if mode.startswith("warm") else "–"
        lines.append(f"| {mode} | {workload} | {load} | {r['runs']} | {r['median_ms']:.1f} | {r['p90_ms']:.1f} "
                     f"| {r['per_s']:.1f} | {cpu} |")
    lines.append("")
    for mode in ("warm-docker", "warm-process"):
        c = results[(mode, "trivial", busy)]["cpu_ms"]
        lines.append(f"- CPU of a trivial job on {mode}, every sandbox busy: {c['total']:.1f} ms: the sandbox's "
                     f"supervisor and job processes {c['sandbox']:.1f}, Docker's client, daemons and shim "
                     f"{c['relay']:.1f}, the host {c['host']:.1f}; busy, a job waits about this × {args.pool} "
                     f"jobs at once / {os.cpu_count()} cores")
    lines.append(f"- The floor of that CPU: a fork and exit of the sandbox's Python ({floor['python']}) with the "
                 f"runtime imported, {floor['total']:.1f} ms ({floor['parent']:.1f} in the parent, "
                 f"{floor['child']:.1f} in the child), which every job pays: it runs in a fresh process")
    ratios = {}
    for workload in ("trivial", "realistic"):
        warm, per_run = results[("warm-docker", workload, busy)], results[("docker-per-run", workload, busy)]
        ratios[workload] = {"warm_docker_vs_docker_per_run": warm["per_s"] / per_run["per_s"],
                            "warm_docker_vs_plain_process":
                                warm["per_s"] / results[("plain-process", workload, busy)]["per_s"],
                            "warm_process_vs_docker_per_run":
                                results[("warm-process", workload, busy)]["per_s"] / per_run["per_s"]}
        r = ratios[workload]
        own_path = {m: results[(m, workload, "paced")]["median_ms"] for m in ("warm-docker", "warm-process")}
        lines.append(f"- {workload}: warm pool median overhead on a job's own path {own_path['warm-docker']:.1f} ms "
                     f"(Docker), {own_path['warm-process']:.1f} ms (bubblewrap); runs/s with every sandbox busy vs "
                     f"docker-per-run {r['warm_docker_vs_docker_per_run']:.1f}×, vs plain-process "
                     f"{r['warm_docker_vs_plain_process']:.1f}×; warm-process vs docker-per-run "
                     f"{r['warm_process_vs_docker_per_run']:.1f}×")
    if revisions:
        names = [k for k in revisions[0] if k not in ("backend", "load")]
        lines += ["", "The trivial job's median ms on earlier revisions' warm pools and on this tree, in this run "
                  "(the trees took turns; each figure is the median of its turns):", "",
                  "| backend | load | " + " | ".join(names) + " | this tree vs " + names[0] + " |",
                  "|---|---|" + "---:|" * (len(names) + 1)]
        for row in revisions:
            lines.append(f"| {row['backend']} | {row['load']} | " + " | ".join(f"{row[n]:.1f}" for n in names)
                         + f" | {row[names[0]] / row['this tree']:.2f}× faster |")
    return "\n".join(lines), ratios


if __name__ == "__main__":
    sys.exit(main())
