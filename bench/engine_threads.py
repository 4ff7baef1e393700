"""Two vLLM engines on one CPU machine: their threads as vLLM sets them, against FlowPO's.

vLLM's CPU backend runs an OpenMP thread on every core ("auto"); FlowPO hands each engine as many
threads as CPUs it reserves, unbound (actors.llm_server.engine_env). On a CPU node the generator and
the executor LLM serve at once. This bench starts two executor-LLM servers (actors.llm_server.LLMServer,
the embedded model), warms each with one call, then has both answer the same calls at the same time
(``--calls`` each, 4 at a time) and reports each server's wall time and its processes' CPU seconds,
for vLLM's setting and for FlowPO's; the ratio is the default's over FlowPO's.

    .venv/bin/python -m bench.engine_threads [--quick] [--calls 8]
"""
from __future__ import annotations

import concurrent.futures as cf
import json
import os
import subprocess
import sys

from bench.common import MODEL, REPO, command, parser, write_results

NAME = "engine_threads"
SETTINGS = {
    "vLLM's default (a thread on every core)": {"VLLM_CPU_OMP_THREADS_BIND": "auto"},
    "FlowPO's (a thread per reserved CPU: 1)": {},  # engine_env(1.0): nobind, OMP_NUM_THREADS=1
}

# One server in a fresh interpreter; it waits for GO on stdin so that both servers answer at once.
ONE_SERVER = """
import concurrent.futures as cf, json, os, sys, time
import openai, psutil
from actors.llm_server import LLMServer

server = LLMServer(os.path.expanduser(sys.argv[1]), "bench", host="127.0.0.1", max_model_len=2048,
                   kv_cache_gb=0.5, gpu_memory_utilization=0.9, enforce_eager=True,
                   log_path=f"/tmp/flowpo-bench-threads-{os.getpid()}.log")
client = openai.OpenAI(base_url=server.start(), api_key="none")
calls = int(sys.argv[2])

def call(i):
    return client.chat.completions.create(
        model="bench", temperature=0.0, max_tokens=64,
        messages=[{"role": "user", "content": f"Write a Python function strlen(s) that returns len(s). #{i}"}],
    ).usage.completion_tokens

def cpu():
    return sum(sum(p.cpu_times()[:2]) for p in psutil.Process().children(recursive=True))

try:
    call(-1)
    print("READY", flush=True)
    sys.stdin.readline()
    before, began = cpu(), time.perf_counter()
    with cf.ThreadPoolExecutor(4) as pool:
        tokens = sum(pool.map(call, range(calls)))
    print("RESULT " + json.dumps({"wall_s": time.perf_counter() - began, "cpu_s": cpu() - before, "tokens": tokens}))
finally:
    server.stop()
"""


def two_at_once(extra_env: dict, calls: int) -> list[dict]:
    """Start two servers with ``extra_env``, then let both answer ``calls`` calls at the same time."""
    env = {**os.environ, "PYTHONPATH": str(REPO), **extra_env}
    procs = [subprocess.Popen([sys.executable, "-c", ONE_SERVER, MODEL, str(calls)], cwd=REPO, env=env, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
             for _ in range(2)]
    for proc in procs:
        if proc.stdout.readline().strip() != "READY":
            raise RuntimeError(f"a server did not start ({extra_env}); its log: /tmp/flowpo-bench-threads-*.log")
    with cf.ThreadPoolExecutor(2) as pool:  # GO to both, then each one's result
        return list(pool.map(lambda p: result_of(p), procs))


def result_of(proc: subprocess.Popen) -> dict:
    out, _ = proc.communicate("GO\n", timeout=900)
    line = next((x for x in out.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"a server gave no result (exit {proc.returncode}): {out[-2000:]}")
    return json.loads(line.removeprefix("RESULT "))


def main(argv: list[str] | None = None) -> int:
    p = parser(NAME, __doc__, quick="4 calls per server")
    p.add_argument("--calls", type=int, default=8, help="calls each server answers, 4 at a time")
    args = p.parse_args(argv)
    calls = 4 if args.quick else args.calls
    runs = {}
    for label, extra_env in SETTINGS.items():
        runs[label] = two_at_once(extra_env, calls)
        print(f"{label}: " + "; ".join(f"{r['wall_s']:.1f} s, {r['cpu_s']:.1f} CPU-s" for r in runs[label]), flush=True)
    rows = ["| threads | server | wall s | CPU s | tokens |", "|---|---:|---:|---:|---:|"]
    rows += [f"| {label} | {i + 1} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {r['tokens']} |"
             for label, results in runs.items() for i, r in enumerate(results)]
    (default, default_runs), (_, flowpo_runs) = runs.items()
    wall = max(r["wall_s"] for r in default_runs) / max(r["wall_s"] for r in flowpo_runs)
    cpu = sum(r["cpu_s"] for r in default_runs) / sum(r["cpu_s"] for r in flowpo_runs)
    summary = f"two servers at once, {default} / FlowPO's: wall {wall:.1f}x, CPU seconds {cpu:.1f}x"
    print(summary)
    write_results(args.out, NAME, {"calls": calls, "runs": runs, "wall_ratio": wall, "cpu_ratio": cpu},
                  "\n".join(rows) + f"\n\n{summary}\n", command(NAME, argv),
                  title="Two vLLM engines on one CPU machine: vLLM's threads against FlowPO's")
    return 0


if __name__ == "__main__":
    sys.exit(main())
