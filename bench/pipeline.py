"""One round, streaming vs barrier, on the same work: wall time, and each stage's utilization.

The generator is the real SmolLM2-135M on vLLM, the sandboxes are real (Docker), the hidden tests
are real. The executor LLM is NOT a model here: it is a local OpenAI-compatible HTTP server that
answers every chat call after a fixed latency (--llm-latency, default 1.5 s) with a fixed
solution, standing in for a remote API such as GPT-4o-mini. On this machine every stage shares two
cores, so a local executor model would mostly measure CPU contention, not the pipeline.

Both modes run the same problems with the same per-request seeds, so they generate the same
workflows. "Own time" of a stage is its span when it runs alone (barrier mode).

    .venv/bin/python bench/pipeline.py [--problems 4] [--k 8] [--llm-latency 1.5] [--sandboxes 8]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

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


def main(args) -> None:
    import ray

    from actors.launch import start_actors
    from flowpo.config import load_config
    from driver.runlog import RunLog
    from flowpo.tasks import load_problems

    server = latency_server(args.llm_latency)
    os.environ["FLOWPO_BENCH_KEY"] = "local"
    run_dir = Path(args.run_dir)
    config = load_config("examples/local.yaml", [
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
                f"{k} {v:.1f}" for k, v in times.items() if k != "wall_s"))
    finally:
        actors.shutdown()
        ray.shutdown()
        server.shutdown()
    barrier, streaming = results["barrier"], results["streaming"]
    own = {stage: barrier.get(f"{stage}_span_s", 0.0) for stage in ("generate", "execute", "evaluate")}
    slowest = max(own, key=own.get)
    print(f"executor LLM: a local OpenAI-compatible server answering after {args.llm_latency} s "
          "(a stand-in for a remote API, not a model)")
    print(f"streaming vs barrier: {barrier['wall_s'] / streaming['wall_s']:.2f}x faster "
          f"({streaming['wall_s']:.1f} s vs {barrier['wall_s']:.1f} s)")
    print(f"slowest stage alone: {slowest} {own[slowest]:.1f} s; streaming wall / that = "
          f"{streaming['wall_s'] / own[slowest]:.2f}")
    for stage in own:
        print(f"  {stage:>8}: busy {streaming.get(f'{stage}_busy_s', 0):.1f} s of {streaming['wall_s']:.1f} s "
              f"streaming ({streaming.get(f'{stage}_busy_s', 0) / streaming['wall_s']:.0%}), "
              f"{barrier.get(f'{stage}_busy_s', 0) / barrier['wall_s']:.0%} in barrier")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problems", type=int, default=4)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--llm-latency", type=float, default=1.5)
    parser.add_argument("--sandboxes", type=int, default=8,
                        help="sandboxes of the one executor: workflows wait on the API, not the CPU")
    parser.add_argument("--run-dir", default="runs/bench-pipeline")
    main(parser.parse_args())
