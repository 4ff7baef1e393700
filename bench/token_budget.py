"""Peak memory of the learner's round-start pass and of one optimizer step, for ioGRPO groups of k
workflows, with and without ``train.max_tokens_per_pass``.

The real SmolLM2-135M under a LoRA (r=8 on q,v), in the learner's own precision (bf16 where the CPU
multiplies bf16, as on a GPU), one group of k workflows of about ``--completion-tokens`` tokens after
the generator's real prompt (about ``--prompt-tokens`` tokens, bench/learner.py's). Each setting runs in
a fresh process. Two measures: the peak bytes of live tensors (trainer/memory.py: what
``torch.cuda.max_memory_allocated`` counts on a GPU) and the process's peak resident size
(``ru_maxrss``: the model, Python and the allocator's keep included).

    .venv/bin/python -m bench.token_budget [--sizes 4 16] [--budget 2560] [--quick] [--out DIR] [--report-only]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

from bench import common
from bench.common import MODEL

TITLE = "Peak memory by group size, with and without train.max_tokens_per_pass"


def one(k: int, budget: int, prompt_tokens: int, completion_tokens: int) -> dict:
    """One setting in this process: peaks of the round-start pass and of one step, in bytes."""
    import torch

    from bench import learner as learner_bench  # the real prompt, workflow-like completions
    from flowpo.config import TrainConfig
    from flowpo.maths.groups import PromptGroup
    from trainer.batching import CompletionScorer
    from trainer.learner import LearnerSettings, Policy, prepare_round, train_round
    from trainer.memory import PeakTensorBytes

    torch.set_num_threads(os.cpu_count() or 1)
    # room for the prompt and a workflow (workflow() closes it after its ``tokens``)
    train = TrainConfig(algorithm="iogrpo", grad_accum_steps=1, max_seq_len=prompt_tokens + completion_tokens + 32,
                        max_tokens_per_pass=budget,
                        lora_dropout=0.0, bf16=True)
    s = LearnerSettings(train=train, base_model=MODEL, reference="previous")
    policy = Policy(MODEL, bf16=True, device="cpu")
    policy.start(s)
    (prompt,) = learner_bench.prompts(policy.tokenizer, 1, prompt_tokens)
    completions = tuple(learner_bench.workflow(policy.tokenizer, seed, completion_tokens) for seed in range(k))
    group = PromptGroup("p", prompt, completions, (0.0,) * k, tuple((-1.0, 1.0)[i % 2] for i in range(k)))
    began = time.perf_counter()
    with PeakTensorBytes() as start:
        mbs = prepare_round(policy, s, [group])
    start_s, began = time.perf_counter() - began, time.perf_counter()
    start_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    with PeakTensorBytes() as step:
        (record,) = train_round(policy, s, CompletionScorer(policy.policy), mbs)
    passes = mbs[0].passes
    return {"k": k, "budget": budget, "bf16": policy.bf16, "passes": len(passes),
            "pass_tokens": [p.batch.prompt_ids.numel() + p.batch.completion_ids.numel() for p in passes],
            "start_peak_bytes": start.peak, "step_peak_bytes": step.peak, "start_s": start_s,
            "step_s": time.perf_counter() - began, "loss": record["loss"],
            "rss_after_start_bytes": start_rss, "load_average_1min": os.getloadavg()[0],
            "rss_after_step_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


def table(rows: list[dict]) -> str:
    mib = 2 ** 20
    lines = ["| k | budget | passes (padded tokens) | round-start peak MiB | step peak MiB | peak RSS MiB | step s |",
             "|---:|---:|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['k']} | {r['budget'] or 'none'} | {r['passes']} ({', '.join(map(str, r['pass_tokens']))}) "
                     f"| {r['start_peak_bytes'] / mib:.0f} | {r['step_peak_bytes'] / mib:.0f} "
                     f"| {r['rss_after_step_bytes'] / mib:.0f} | {r['step_s']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = common.parser("token_budget", __doc__,
                           quick="groups of 2 and 8 of about 80 tokens after a 250-token prompt, budget 640")
    parser.add_argument("--sizes", type=int, nargs="+", default=[4, 16], help="workflows per group")
    parser.add_argument("--budget", type=int, default=2560, help="train.max_tokens_per_pass of the budgeted runs")
    parser.add_argument("--prompt-tokens", type=int, default=1000)
    parser.add_argument("--completion-tokens", type=int, default=330)
    parser.add_argument("--report-only", action="store_true", help="rewrite results.md from --out's results.json")
    parser.add_argument("--one", type=int, nargs=2, metavar=("K", "BUDGET"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(one(*args.one, args.prompt_tokens, args.completion_tokens)))
        return 0
    if args.report_only:
        data = json.loads((args.out / "results.json").read_text())
        (args.out / "results.md").write_text(common.results_md(data, report(args.out, data), TITLE))
        return 0
    if args.quick:
        args.sizes, args.budget, args.prompt_tokens, args.completion_tokens = [2, 8], 640, 250, 80
    rows = []
    for k in args.sizes:
        for budget in (0, args.budget):
            command = [sys.executable, "-m", "bench.token_budget", "--one", str(k), str(budget), "--prompt-tokens",
                       str(args.prompt_tokens), "--completion-tokens", str(args.completion_tokens)]
            done = subprocess.run(command, capture_output=True, text=True, check=True, cwd=common.REPO)
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
    import torch

    data = {"torch": torch.__version__, "precision": "bf16" if rows[0]["bf16"] else "fp32",
            "prompt_tokens": args.prompt_tokens, "completion_tokens": args.completion_tokens, "rows": rows}
    common.write_results(args.out, "token_budget", data, report(args.out, data),
                         common.command("token_budget", argv), title=TITLE)
    return 0


def report(out, data: dict) -> str:
    """The table, the plot (drawn into ``out``) and what they show."""
    rows = data["rows"]
    loads = [r["load_average_1min"] for r in rows if "load_average_1min" in r]
    load = f" (1-minute load average {min(loads):.1f} to {max(loads):.1f} at the rows' ends)" if loads else ""
    precision = f", {data['precision']}, torch {data['torch']}" if "torch" in data else ""
    plot = common.bar_plot(out / "peak-memory.png", "step peak of live tensors (MiB) by group size", "MiB", {
        f"k={r['k']}": {("budget " + str(b["budget"]) if b["budget"] else "no budget"): b["step_peak_bytes"] / 2**20
                        for b in rows if b["k"] == r["k"]} for r in rows})
    return (f"One ioGRPO group of k workflows of about {data['completion_tokens']} tokens after a "
            f"{data['prompt_tokens']}-token generator prompt, SmolLM2-135M + LoRA{precision}; each row a fresh "
            "process. Peaks: live tensor bytes (trainer/memory.py, what `torch.cuda.max_memory_allocated` counts on a "
            "GPU); peak RSS: the whole process, model included.\n\n"
            f"{table(rows)}\n\n{plot}\n\n"
            "A pass's padded tokens are P·Lp + C·Lc (trainer/batching.py `padded_tokens`). With the budget, a group "
            "split into passes peaks where one pass of them does, whatever the group's size; each extra pass computes "
            "the prompt again (more tokens of work, not of memory). The step seconds come from a machine shared with "
            f"other jobs{load}: compare the memory columns, not the times.\n")


if __name__ == "__main__":
    sys.exit(main())
