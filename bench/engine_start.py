"""Does a vLLM engine start faster with its model in the engine-core process?

FlowPO hands every one-device engine ``VLLM_ENABLE_V1_MULTIPROCESSING=0`` (actors/llm_server.py,
``engine_env``): vLLM's "uni" executor runs the model in the engine-core process. With "1", vLLM's
CPU platform forces its multiprocess executor, which spawns a worker process that imports vLLM and
torch once more. This bench starts a generator (actors.generator.Generator, as a replica does) in a
fresh Python process, alternating the two settings, and reports the start time, one generation's
time and the engine's processes, and compares the seeded completions within and across the two.

    .venv/bin/python -m bench.engine_start [--starts 3] [--quick]
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

from bench.common import MODEL, REPO, command, parser, write_results

NAME = "engine_start"
SETTINGS = {"in the engine process (FlowPO's default)": "0", "a worker process of its own (vLLM's CPU default)": "1"}

# One start in a fresh interpreter: nothing imported before, as in a new Ray worker.
ONE_START = """
import asyncio, json, os, sys, time
import psutil
from actors.generator import Generator, SamplingSettings, engine_kwargs
from flowpo.config import TaskConfig
from flowpo.tasks import load_problems

def main():
    began = time.perf_counter()
    sampling = SamplingSettings(k=3, temperature=0.8, top_p=0.95, max_tokens=48, stop=("</graph>",),
                                response_prefix="<graph>\\nclass Workflow:\\n", max_attempts=1)
    kwargs = engine_kwargs(os.path.expanduser(sys.argv[1]), seed=0, dtype="auto", max_model_len=2048,
                           enforce_eager=True, max_lora_rank=8, kv_cache_gb=0.5, gpu_memory_utilization=0.9,
                           tensor_parallel_size=1)
    generator = Generator(kwargs, sampling, {"VLLM_ENABLE_V1_MULTIPROCESSING": sys.argv[2]})
    started = time.perf_counter()
    processes = [" ".join(p.cmdline())[:40] for p in psutil.Process().children(recursive=True)]
    memory = sum(p.memory_info().rss for p in [psutil.Process(), *psutil.Process().children(recursive=True)])
    problems = load_problems(TaskConfig(problem_ids=["HumanEval/23", "HumanEval/35"]))
    workflows = asyncio.run(generator.generate(problems, round_index=1))
    done = time.perf_counter()
    generator.shutdown()
    print("RESULT " + json.dumps({"start_s": started - began, "generate_s": done - started,
                                  "processes": processes, "rss_gib": memory / 2**30,
                                  "completions": [w.completion for w in workflows]}))

if __name__ == "__main__":
    main()
"""


def one_start(value: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", ONE_START, MODEL, value], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=900)
    line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"the engine did not start (VLLM_ENABLE_V1_MULTIPROCESSING={value}): {out.stderr[-2000:]}")
    return json.loads(line.removeprefix("RESULT "))


def main(argv: list[str] | None = None) -> int:
    p = parser(NAME, __doc__, quick="one start of each")
    p.add_argument("--starts", type=int, default=3, help="starts of each setting, alternating")
    args = p.parse_args(argv)
    starts = 1 if args.quick else args.starts
    runs: dict[str, list[dict]] = {label: [] for label in SETTINGS}
    for _ in range(starts):
        for label, value in SETTINGS.items():
            runs[label].append(one_start(value))
            print(f"{label}: start {runs[label][-1]['start_s']:.1f} s", flush=True)
    rows, medians = [], {}
    for label, values in runs.items():
        medians[label] = statistics.median(r["start_s"] for r in values)
        rows.append(f"| {label} | {starts} | {medians[label]:.1f} | "
                    f"{statistics.median(r['generate_s'] for r in values):.1f} | "
                    f"{statistics.median(r['rss_gib'] for r in values):.2f} | "
                    f"{len(values[0]['processes'])} |")
    ours, theirs = medians.values()
    pairs = [(x, y) for a, b in zip(*runs.values()) for x, y in zip(a["completions"], b["completions"])]
    same = sum(x == y for x, y in pairs)
    repeats = all(r["completions"] == values[0]["completions"] for values in runs.values() for r in values)
    summary = (f"start time, worker process / engine process: {theirs / ours:.2f}x; seeded completions identical "
               f"across the two settings: {same} of {len(pairs)} (the model's sums run on another thread layout); "
               f"every start of one setting wrote the same completions: {repeats}")
    print(summary)
    table = ("| the model runs | starts | median start s | median generate s (6 workflows) | resident GiB | "
             "engine processes |\n|---|---:|---:|---:|---:|---:|\n" + "\n".join(rows) + f"\n\n{summary}\n")
    record = {"runs": runs, "start_ratio": theirs / ours, "same_across_settings": [same, len(pairs)],
              "each_setting_repeats": repeats}
    write_results(args.out, NAME, record, table,
                  command(NAME, argv), title="vLLM engine start: the model in the engine process or a worker's")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
