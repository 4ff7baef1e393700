"""Execute → evaluate at dataset scale, without the generator: recorded workflows replayed through
``driver.execute.replay`` (what ``flowpo execute`` runs) against a local
OpenAI-compatible server (``python -m flowpo.llm.local_api``, in its own process) with a random
latency per call and a rate limit that answers 429 with Retry-After.

Per setup (executor actors × sandboxes each, items, optional limit): executions/s against the ideal
for that latency (every sandbox always waiting on the API), the driver's own CPU per item
(``time.process_time``: every thread of this process, Ray's included), its resident memory
(/proc/self/statm, sampled), the 429s the server sent and the brokers met, the workflows lost to
them, and the CPU of every process of the bench per execution, by kind (process sandboxes only:
Docker's run outside the bench's process tree); then the driver's cost per window of items, to show
whether it grows as items are done. docs/performance.md, "Scale", has the figures.

    .venv/bin/python -m bench.scale            # 10,000 workflows; 8, 32, 128 sandboxes (~30 min here)
    .venv/bin/python -m bench.scale --quick    # 300 workflows, 8 and 32 sandboxes, 0.1–0.3 s calls
    .venv/bin/python -m bench.scale --setups 8x16:2500 8x16:10000 --latency 0.5 3

A setup is ``EXECUTORSxSANDBOXES:ITEMS``, optionally ``:rpmN`` (the server's and the run's limit,
N requests per --window seconds) and ``:unshared`` (executor_llm.shared_limits=never: the brokers
meet the server's 429s instead of waiting on the run's shared limiter). Each executor's
executor_llm.max_concurrency is set to its sandboxes: at the default 8, an executor of 16 sandboxes
would keep half of them waiting on its broker.
"""
from __future__ import annotations

import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import ray
import yaml

from actors.launch import actor_name
from bench import common
from bench.scale_measure import Meter, Setup, flatness, ideal_rate, parse_setup, render_table, steady, windows
from driver.execute import Selection, replay, resolve_source
from flowpo.config import load_config
from flowpo.records import Execution, ScoredSample, Workflow

CACHE = Path("~/.cache/flowpo/bench-scale").expanduser()
PROBLEMS = 500  # synthetic GSM8K problems the workflows are spread over
FULL = ["1x8:1000", "4x8:2000", "8x16:2500", "8x16:10000", "8x16:2000:rpm300", "8x16:2000:rpm300:unshared"]
QUICK = ["1x8:300", "4x8:300"]


# ---------------------------------------------------------------------------------------------
# The recorded workflows (made once, cached)


def workflow_code(calls: int, variant: int) -> str:
    """A workflow of ``calls`` sequential Custom calls, each on the previous answer."""
    steps = "".join(f"        text = (await self.custom(input=text, instruction=\"Step {c + 1} of {calls}, "
                    f"way {variant}: solve it.\")).response\n" for c in range(calls))
    return ("class Workflow:\n    def __init__(self, llm):\n        self.custom = Custom(llm)\n\n"
            "    async def __call__(self, problem, entry_point):\n        text = problem\n"
            + steps + "        return text\n")


def recorded_samples(cache: Path, items: int, calls: int, round_size: int) -> tuple[Path, Path]:
    """(gsm8k.jsonl, samples.jsonl): synthetic GSM8K problems in the public format, and ``items``
    recorded workflows over them, ``round_size`` per round (a replay selects the first rounds)."""
    cache.mkdir(parents=True, exist_ok=True)
    problems = cache / "gsm8k.jsonl"
    if not problems.is_file():
        rows = [{"question": f"A shop sells {i + 3} pens on Monday and {2 * i + 5} on Tuesday. How many pens in all?",
                 "answer": f"{i + 3} + {2 * i + 5} = {3 * i + 8}\n#### {3 * i + 8}"} for i in range(PROBLEMS)]
        problems.write_text("".join(json.dumps(r) + "\n" for r in rows))
    samples = cache / f"samples-{items}-calls{calls}-rounds-of-{round_size}.jsonl"
    if not samples.is_file():
        with open(samples.with_suffix(".tmp"), "w") as handle:
            for n in range(items):
                wf = Workflow(problem_id=f"GSM8K/{n % PROBLEMS}", round=n // round_size + 1,
                              sample_index=n % round_size // PROBLEMS, adapter="", prompt="", completion="",
                              code=workflow_code(calls, n % 7), generate_s=0.0)
                ex = Execution(workflow=wf, answer="", failure="", error="", llm_calls=calls, prompt_tokens=0,
                               completion_tokens=0, execute_s=0.0)
                handle.write(json.dumps(ScoredSample(ex, score=0.0, evaluate_s=0.0).to_log()) + "\n")
        samples.with_suffix(".tmp").rename(samples)
    return problems, samples


# ---------------------------------------------------------------------------------------------
# Measuring one replay


def start_server(latency: tuple[float, float], rpm: int, window_s: float) -> tuple[subprocess.Popen, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "flowpo.llm.local_api", "--port", str(port), "--latency",
                               str(latency[0]), str(latency[1]), "--rpm", str(rpm), "--window", str(window_s)],
                              stdout=subprocess.PIPE, text=True)
    if not server.stdout.readline().startswith("serving"):
        server.kill()
        raise SystemExit("the local API server did not start (python -m flowpo.llm.local_api)")
    return server, f"http://127.0.0.1:{port}"


def broker_429s(config, final: bool) -> dict:
    """What the brokers met, asked of the live actors: their HTTP requests and retries, and the 429s
    they reported to the shared limiter (None without one); {} when they do not answer in time."""
    try:
        executors = [ray.get_actor(actor_name(config, "executor", i)) for i in range(config.sandbox.num_executors)]
        stats = ray.get([h.stats.remote() for h in executors], timeout=5)
        out = {"http_requests": sum(s["broker"]["http_requests"] for s in stats),
               "retries": sum(s["broker"]["retries"] for s in stats), "limiter_429": None}
        if config.executor_llm.shared_limits != "never":
            limiter = ray.get_actor(actor_name(config, "llm-rate-limiter", 0))
            out["limiter_429"] = ray.get(limiter.stats.remote(), timeout=5)["rate_limited"]
        return out
    except (ray.exceptions.RayError, ValueError) as exc:  # ValueError: no actor of that name (shut down)
        if final:  # the table then shows the last periodic reading
            print(f"warning: the brokers' counters could not be read at the last item: {exc}")
        return {}


def run_setup(setup: Setup, args, problems: Path, samples: Path) -> dict:
    rpm = setup.rpm or args.rpm
    server, url = start_server(args.latency, rpm, args.window)
    try:
        config_path = CACHE / "replay.yaml"
        config_path.write_text(yaml.safe_dump({
            "name": "bench-scale", "task": {"name": "gsm8k", "path": str(problems), "split": "all"},
            "executor_llm": {"backend": "openai", "base_url": f"{url}/v1", "api_key_env": "FLOWPO_BENCH_KEY",
                             "model": "local", "rpm": rpm, "tpm": 0, "rate_window_s": args.window,
                             "max_concurrency": setup.per_executor,  # one call in flight per sandbox
                             "shared_limits": "auto" if setup.shared else "never"},
            "sandbox": {"backend": args.backend, "num_executors": setup.executors,
                        "sandboxes_per_executor": setup.per_executor, "executor_num_cpus": 0.1, "timeout_s": 120},
            "evaluator": {"num_evaluators": max(1, setup.sandboxes // 64), "num_cpus": 0.1, "repeats": 1},
            "logging": {"tensorboard": False, "reports": False}}))
        config = load_config(config_path)
        out = CACHE / "replays" / f"{setup.label.replace(' ', '-')}-{setup.items}-{time.strftime('%H%M%S')}"
        brokers: dict = {}
        meter = Meter(out / "samples.jsonl", setup.items,
                      lambda final: brokers.update(broker_429s(config, final)),
                      {os.getpid(): "driver", server.pid: "local API"})
        load_before, cpu_before, began = os.getloadavg()[0], time.process_time(), time.monotonic()
        meter.start()
        report = replay(config, resolve_source(str(samples), str(config_path)),
                        Selection(rounds=frozenset(range(1, -(-setup.items // args.round_size) + 1))), out=str(out))
        meter.stop()
        with urllib.request.urlopen(f"{url}/stats", timeout=30) as answer:
            served = json.load(answer)
    finally:
        server.terminate()
        server.wait(30)
    return summarize(setup, args, rpm, meter, report, served, brokers,
                     dict(load=(load_before + os.getloadavg()[0]) / 2, cpu_s=time.process_time() - cpu_before,
                          wall_s=time.monotonic() - began, began=began))


def summarize(setup: Setup, args, rpm: int, meter: Meter, report, served: dict, brokers: dict, whole: dict) -> dict:
    rate, ms_per_item, peak = steady(meter.readings)
    by_kind = meter.cpu_by_kind()
    lines = [json.loads(line) for line in (report.out_dir / "samples.jsonl").read_text().splitlines()]
    if not args.keep:
        shutil.rmtree(report.out_dir)
    total = next(r for r in report.rows if r["group"] == "all")
    limiter = brokers.get("limiter_429")
    return {"config": setup.label, "sandboxes": setup.sandboxes, "items": len(lines), "exec_per_s": rate,
            "ideal": ideal_rate(setup.sandboxes, args.calls, args.latency, rpm, args.window),
            "driver_ms_per_item": ms_per_item, "driver_peak_mb": peak, "server_429": served["rate_limited"],
            "broker_429": "?" if not brokers else (limiter if limiter is not None else brokers["retries"]),
            "broker_retries": brokers.get("retries"), "http_requests": served["requests"],
            "max_in_flight": served["max_in_flight"], "infra_failures": total["infra_failures"],
            "mean_execute_s": sum(line["timings"]["execute_s"] for line in lines) / max(1, len(lines)),
            "load": whole["load"], "whole_cpu_s": whole["cpu_s"], "whole_wall_s": whole["wall_s"],
            "start_s": next((r[0] for r in meter.readings if r[3]), whole["began"]) - whole["began"],
            "all_cpu_ms_per_item": sum(by_kind.values()), "cpu_ms_by_kind": by_kind, "window_items": args.window_items,
            "windows": windows(meter.readings, args.window_items)}


def main(argv: list[str] | None = None) -> int:
    parser = common.parser("scale", __doc__, quick=f"{' '.join(QUICK)}, 0.1–0.3 s calls, windows of 100")
    parser.add_argument("--setups", nargs="+", help=f"default: {' '.join(FULL)}")
    parser.add_argument("--items", type=int, default=10_000, help="recorded workflows made (and cached)")
    parser.add_argument("--calls", type=int, default=2, help="LLM calls per workflow")
    parser.add_argument("--latency", type=float, nargs=2, default=(0.5, 3.0), metavar=("LOW_S", "HIGH_S"))
    parser.add_argument("--rpm", type=int, default=1000, help="server's and run's limit per --window")
    parser.add_argument("--window", type=float, default=10.0, help="the rate limit's window, in seconds")
    parser.add_argument("--backend", choices=("process", "docker"), default="process")
    parser.add_argument("--round-size", type=int, default=500, help="recorded workflows per round")
    parser.add_argument("--window-items", type=int, default=1000, help="items per flatness window")
    parser.add_argument("--keep", action="store_true", help="keep each replay's output under the cache")
    args = parser.parse_args(argv)
    if args.quick:
        args.items, args.latency, args.round_size, args.window_items = 300, (0.1, 0.3), 100, 100
        args.rpm = max(args.rpm, 2000)  # the quick setups are bound by their sandboxes, not the limit
    setups = [parse_setup(s) for s in (args.setups or (QUICK if args.quick else FULL))]
    items = max(args.items, max(s.items for s in setups))
    problems, samples = recorded_samples(CACHE, items, args.calls, args.round_size)
    print(f"recorded workflows: {samples} ({items}, {args.calls} calls each); cache: {CACHE}")
    os.environ["FLOWPO_BENCH_KEY"] = "local"  # the local API takes any key
    ray.init(include_dashboard=False, log_to_driver=False)
    rows = []
    try:
        for setup in setups:
            rows.append(run_setup(setup, args, problems, samples))
            print(render_table(rows[-1:]).splitlines()[-1], flush=True)
    finally:
        ray.shutdown()
    lines = [f"Latency {args.latency[0]}–{args.latency[1]} s per call, {args.calls} calls per workflow, "
             f"{args.backend} sandboxes, limit {args.rpm} requests per {args.window:g} s unless the config says; "
             f"load = 1-min load average, {os.cpu_count()} CPUs; driver peak RSS over the whole bench "
             f"(ru_maxrss) {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB.", "", render_table(rows),
             "", common.bar_plot(args.out / "throughput.png", "executions/s against the ideal", "executions/s",
                                 {r["config"] + f" ({r['items']})": {"measured": r["exec_per_s"], "ideal": r["ideal"]}
                                  for r in rows}), ""]
    for r in rows:  # all of the bench's processes share these CPUs: they allow at most CPUs / CPU per execution
        if r["all_cpu_ms_per_item"]:
            lines.append(f"- {r['config']}: {r['all_cpu_ms_per_item']:.0f} CPU ms per execution in all; "
                         f"{os.cpu_count()} CPUs to ourselves would run at most "
                         f"{os.cpu_count() * 1000 / r['all_cpu_ms_per_item']:.1f} exec/s; "
                         + ", ".join(f"{kind} {ms:.1f}" for kind, ms in list(r["cpu_ms_by_kind"].items())[:8]))
    lines += [f"- {line}" for line in flatness(rows)]
    table = "\n".join(lines)
    print("\n" + table)
    common.write_results(args.out, "scale", {"args": {k: v for k, v in vars(args).items() if k != "out"},
                                             "rows": rows}, table, common.command("scale", argv),
                         title="Execute → evaluate at dataset scale")
    return 0


if __name__ == "__main__":
    sys.exit(main())
