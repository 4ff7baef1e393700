"""Load on `flowpo serve` over loopback: requests per second and latency percentiles (p50, p95, p99)
at a few concurrency levels, with the real `openai` client against the real server (Ray Serve, the
vLLM generator, Docker sandboxes).

The server is started once (`python -m driver.cli serve ...`, on 127.0.0.1 and a free port) and
takes one warm-up request; then, per concurrency level C, C client threads send ``--requests``
chat completions in all (each thread the next as soon as its last is answered): rps = answered
requests / the level's wall time. The server's own limit is the largest level (nothing gets 429).
The executor LLM is ``stub`` (flowpo/llm/local_api.py on loopback, answering after 50-200 ms: what
FlowPO itself adds) or ``config`` (the config's own: the embedded model on a hosted vLLM server).
Bounded: a fixed number of requests per level, each with a timeout, loopback only.

    .venv/bin/python -m bench.serve_load [--levels 1,4,8] [--requests 24] [--executor stub|config] [--quick]
"""
from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench import common

QUESTIONS = [
    'def add(a, b):\n    """Return the sum of a and b."""\n',
    'def is_even(n):\n    """Return True if n is even."""\n',
    'def reverse(s):\n    """Return the string s reversed."""\n',
    'def largest(xs):\n    """Return the largest number of the list xs."""\n',
]


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), linearly interpolated between the closest ranks."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(args, port: int, log: Path, stub_url: str) -> subprocess.Popen:
    overrides = list(args.overrides)
    if stub_url:
        overrides += ["executor_llm.backend=openai", f"executor_llm.base_url={stub_url}",
                      "executor_llm.api_key_env=FLOWPO_BENCH_STUB_KEY", "executor_llm.model=stub"]
    command = [sys.executable, "-m", "driver.cli", "serve", args.checkpoint, "--config", args.config,
               "--port", str(port), "--model-name", "bench", "--max-concurrency", str(max(args.levels)),
               "--max-queue", str(max(args.levels)), "--log-dir", str(log.parent), *overrides]
    print("server:", " ".join(command), flush=True)
    return subprocess.Popen(command, stdout=open(log, "w"), stderr=subprocess.STDOUT, cwd=common.REPO,
                            env={**os.environ, "FLOWPO_BENCH_STUB_KEY": "stub"}, start_new_session=True)


def wait_ready(process: subprocess.Popen, url: str, log: Path, timeout_s: float) -> float:
    import httpx

    began = time.monotonic()
    while time.monotonic() - began < timeout_s:
        if process.poll() is not None:
            raise SystemExit(f"flowpo serve exited ({process.returncode}):\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/v1/models", timeout=5).status_code == 200:
                return time.monotonic() - began
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise SystemExit(f"flowpo serve did not answer in {timeout_s:.0f} s:\n{log.read_text()[-3000:]}")


def run_level(client, concurrency: int, requests: int) -> dict:
    """``requests`` chat completions from ``concurrency`` threads; latencies of the answered ones."""
    import openai

    latencies, failures, errors = [], Counter(), Counter()
    lock = threading.Lock()
    counter = iter(range(requests))

    def worker() -> None:
        for i in iter(lambda: next(counter, None), None):
            began = time.monotonic()
            try:
                response = client.chat.completions.create(
                    model="bench", messages=[{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}])
                failure = response.model_extra["flowpo"]["failure"]
                with lock:
                    latencies.append(time.monotonic() - began)
                    failures[failure or "ok"] += 1
            except openai.APIError as exc:
                with lock:
                    errors[type(exc).__name__] += 1

    began = time.monotonic()
    with ThreadPoolExecutor(concurrency) as pool:
        for _ in range(concurrency):
            pool.submit(worker)
    wall = time.monotonic() - began
    row = {"concurrency": concurrency, "requests": requests, "answered": len(latencies), "http_errors": dict(errors),
           "workflow_outcomes": dict(failures), "wall_s": round(wall, 2), "rps": round(len(latencies) / wall, 3)}
    for q in (50, 95, 99):
        row[f"p{q}_s"] = round(percentile(latencies, q), 2)
    row["mean_s"] = round(statistics.fmean(latencies), 2) if latencies else None
    print(f"concurrency {concurrency:3d}: {row['rps']:.2f} req/s, p50 {row['p50_s']} s, p95 {row['p95_s']} s, "
          f"p99 {row['p99_s']} s, answered {row['answered']}/{requests}, outcomes {row['workflow_outcomes']}, "
          f"errors {row['http_errors']}", flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = common.parser("serve_load", __doc__, quick="levels 1,4 with 8 requests each")
    parser.add_argument("--levels", default="1,4,8", help="concurrency levels, comma-separated (default 1,4,8)")
    parser.add_argument("--requests", type=int, default=24, help="requests per level (default 24)")
    parser.add_argument("--executor", choices=["stub", "config"], default="stub",
                        help="stub: a loopback stand-in API (50-200 ms); config: the config's executor LLM")
    parser.add_argument("--checkpoint", default="base", help="what to serve (default base, with --config)")
    parser.add_argument("--config", default="examples/local.yaml")
    parser.add_argument("--start-timeout", type=float, default=1200, help="seconds the server may take to start")
    parser.add_argument("overrides", nargs="*", help="dotted overrides for the server's config")
    args = parser.parse_args(argv)
    args.levels = [1, 4] if args.quick else [int(x) for x in args.levels.split(",")]
    args.requests = 8 if args.quick else args.requests
    from openai import OpenAI

    from flowpo.llm.local_api import LocalAPI

    stub = LocalAPI(latency_s=(0.05, 0.2), answer=lambda messages: "```python\ndef f():\n    return 1\n```").start() \
        if args.executor == "stub" else None
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = Path(tempfile.mkdtemp(prefix="flowpo-serve-load-")) / "serve.log"
    process = start_server(args, port, log, stub.url if stub else "")
    rows = []
    try:
        startup = wait_ready(process, url, log, args.start_timeout)
        print(f"server ready in {startup:.0f} s (log: {log})", flush=True)
        client = OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=600)
        warm = time.monotonic()
        client.chat.completions.create(model="bench", messages=[{"role": "user", "content": QUESTIONS[0]}])
        print(f"warm-up request: {time.monotonic() - warm:.1f} s", flush=True)
        for level in args.levels:
            rows.append(run_level(client, level, args.requests))
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(180)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        if stub:
            stub.stop()
    executor = "loopback stub API (50-200 ms per call)" if stub else "the config's executor LLM"
    table = "\n".join([
        f"`flowpo serve {args.checkpoint} --config {args.config}` on 127.0.0.1, the real `openai` client, "
        f"{args.requests} requests per level from as many client threads as the level; executor: {executor}. "
        f"Server start {startup:.0f} s. Percentiles interpolate between the answered requests' latencies (with "
        f"{args.requests} requests, p99 is close to the slowest).", "",
        "| concurrency | answered | req/s | p50 s | p95 s | p99 s | mean s | workflow outcomes | HTTP errors |",
        "|---:|---:|---:|---:|---:|---:|---:|---|---|",
        *(f"| {r['concurrency']} | {r['answered']}/{r['requests']} | {r['rps']:.2f} | {r['p50_s']} | {r['p95_s']} "
          f"| {r['p99_s']} | {r['mean_s']} | {r['workflow_outcomes']} | {r['http_errors'] or '-'} |" for r in rows)])
    common.write_results(args.out, "serve_load", {"checkpoint": args.checkpoint, "config": args.config,
                                                  "executor": args.executor, "overrides": args.overrides,
                                                  "startup_s": round(startup, 1), "levels": rows}, table,
                         common.command("serve_load", argv), title="flowpo serve under load (loopback)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
