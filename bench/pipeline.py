"""One round, streaming vs barrier, on the same work: wall time, and each stage's utilization.

The generator is the real SmolLM2-135M on vLLM, the sandboxes are real (Docker), the hidden tests
are real. The executor LLM is NOT a model here: it is a local OpenAI-compatible HTTP server that
answers every chat call after a fixed latency (--llm-latency, default 1.5 s) with a fixed
solution, standing in for a remote API such as GPT-4o-mini. On this machine every stage shares two
cores, so a local executor model would mostly measure CPU contention, not the pipeline.

Both modes run the same problems with the same per-request seeds, so they generate the same
workflows. "Own time" of a stage is its span when it runs alone (barrier mode).

    .venv/bin/python -m bench.pipeline [--problems 4] [--k 8] [--llm-latency 1.5] [--sandboxes 8] [--quick] [--out DIR]
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from bench import common

SOLUTION = "```python\ndef solution(*args):\n    return None\n```"
PROBLEM_IDS = ["HumanEval/23", "HumanEval/35", "HumanEval/53", "HumanEval/42", "HumanEval/52", "HumanEval/29"]


def latency_server(latency_s: float) -> ThreadingHTTPServer:
    """An OpenAI-compatible chat-completions endpoint that answers after ``latency_s``."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            length = int(self.headers.get("Content-Length", 0))
            request = json.loads(self.rfile.read(length) or b"{}")
            time.sleep(latency_s)
            body = json.dumps({
                "id": "bench", "object": "chat.completion", "created": int(time.time()),
                "model": request.get("model", "bench"),
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": SOLUTION}}],
                "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def run_mode(mode: str, config, problems, actors, log):
    from actors.streaming import Faults, StageClock
    from driver.train import stream_round
    from flowpo.records import BASE_ADAPTER

    config.pipeline.mode = mode
    clock = StageClock()
    samples = stream_round(1, [(p, None) for p in problems], actors, config, log, (BASE_ADAPTER, ""), Faults(), clock)
    return samples, clock.summary()


def main(argv: list[str] | None = None) -> int:
    parser = common.parser("pipeline", __doc__, quick="2 problems × k 4")
    parser.add_argument("--problems", type=int, default=4)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--llm-latency", type=float, default=1.5)
    parser.add_argument("--sandboxes", type=int, default=8,
                        help="sandboxes of the one executor: workflows wait on the API, not the CPU")
    parser.add_argument("--run-dir", default="", help="the round's run directory (default: a temporary one)")
    args = parser.parse_args(argv)
    if args.quick:
        args.problems, args.k = 2, 4
    with tempfile.TemporaryDirectory(prefix="flowpo-bench-pipeline-") as tmp:
        results = measure(args, Path(args.run_dir or tmp))
    barrier, streaming = results["barrier"], results["streaming"]
    own = {stage: barrier.get(f"{stage}_span_s", 0.0) for stage in ("generate", "execute", "evaluate")}
    slowest = max(own, key=own.get)
    lines = [f"{args.problems} problems × k = {args.k}, one executor of {args.sandboxes} sandboxes; executor LLM: a "
             f"local OpenAI-compatible server answering after {args.llm_latency} s (a stand-in for a remote API, "
             "not a model).", "",
             f"Streaming against barrier: {barrier['wall_s'] / streaming['wall_s']:.2f}× faster "
             f"({streaming['wall_s']:.1f} s against {barrier['wall_s']:.1f} s); the slowest stage alone: {slowest} "
             f"{own[slowest]:.1f} s, streaming wall / that = {streaming['wall_s'] / own[slowest]:.2f}.", "",
             "| stage | busy s streaming | of wall, streaming | of wall, barrier | span alone (barrier) s |",
             "|---|---:|---:|---:|---:|"]
    for stage in own:
        busy = streaming.get(f"{stage}_busy_s", 0)
        lines.append(f"| {stage} | {busy:.1f} | {busy / streaming['wall_s']:.0%} "
                     f"| {barrier.get(f'{stage}_busy_s', 0) / barrier['wall_s']:.0%} | {own[stage]:.1f} |")
    table = "\n".join(lines)
    print(table)
    common.write_results(args.out, "pipeline", {
        "problems": args.problems, "k": args.k, "llm_latency_s": args.llm_latency, "sandboxes": args.sandboxes,
        "streaming_speedup": barrier["wall_s"] / streaming["wall_s"], "modes": results},
        table, common.command("pipeline", argv), title="One round streaming against stage by stage")
    return 0


def measure(args, run_dir: Path) -> dict:
    """Each mode's stage times (``StageClock.summary``), after a warm-up round of one problem."""
    import ray

    from actors.launch import start_actors
    from driver.runlog import RunLog
    from flowpo.config import load_config
    from flowpo.tasks import load_problems

    server = latency_server(args.llm_latency)
    os.environ["FLOWPO_BENCH_KEY"] = "local"
    config = load_config(common.REPO / "examples" / "local.yaml", [
        f"run_dir={run_dir}", f"task.problem_ids={json.dumps(PROBLEM_IDS[:args.problems])}", f"generator.k={args.k}",
        "executor_llm.backend=openai", f"executor_llm.base_url=http://127.0.0.1:{server.server_port}/v1",
        "executor_llm.api_key_env=FLOWPO_BENCH_KEY", "executor_llm.temperature=0.8",  # no cache hits
        "generator.max_inflight_problems=2", f"sandbox.sandboxes_per_executor={args.sandboxes}"])
    problems = load_problems(config.task)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    log = RunLog(run_dir)
    actors = start_actors(config, str(Path(config.model.path).expanduser()), run_dir)
    results = {}
    try:
        run_mode("streaming", config, problems[:1], actors, log)  # warm-up: engine, sandboxes, caches
        for mode in ("barrier", "streaming"):
            samples, times = run_mode(mode, config, problems, actors, log)
            results[mode] = times
            print(f"{mode}: {len(samples)} workflows in {times['wall_s']:.1f} s; " + ", ".join(
                f"{k} {v:.1f}" for k, v in times.items() if k != "wall_s"), flush=True)
    finally:
        actors.shutdown()
        ray.shutdown()
        server.shutdown()
    return results


if __name__ == "__main__":
    sys.exit(main())
