"""Learner throughput, side by side in one run on the same model, data, threads and settings.

1. Score-DPO: FlowPO's learner (prompt computed once per pair, reference log-probs once per round)
   vs TRL's ``DPOTrainer`` (chosen and rejected each with the whole prompt; reference forward each
   step), one pair per step, LoRA r=8 on q,v, bf16, AdamW;
2. ioGRPO: FlowPO's learner with and without prompt sharing, one group per step.

Prompts are the generator's real prompt (ScoreFlow's template, ≈1,000 tokens); completions are
workflow-like code of about 300 tokens. Tokens/s counts every sequence's prompt + completion tokens
(what a per-sequence trainer processes), the same count for every contender; a step's time includes
its share of the round-start reference pass. The first step of each contender is a warm-up and
is not timed; each figure is the best timed step (the least disturbed by other load), per wall
second and per CPU second of this process (steadier when other jobs share the machine).

    .venv/bin/python -m bench.learner [--pairs 2] [--groups 1] [--group-size 4] [--completion-tokens 300] [--quick]
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

from bench import common


def prompts(tokenizer, count: int, prompt_tokens: int) -> list[str]:
    from flowpo.config import TaskConfig
    from flowpo.prompts import workflow_messages
    from flowpo.tasks import load_problems

    out = []
    for problem in load_problems(TaskConfig(limit=count)):
        text = tokenizer.apply_chat_template(workflow_messages(problem), add_generation_prompt=True, tokenize=False)
        ids = tokenizer(text, add_special_tokens=False).input_ids
        out.append(tokenizer.decode(ids[-prompt_tokens:]))  # keep the end, as the learner's truncation does
    return out


def workflow(tokenizer, seed: int, tokens: int) -> str:
    """A plausible workflow answer, cut to about ``tokens`` tokens."""
    ops = ["CustomCodeGenerate", "ScEnsemble", "Test", "Review", "Revise", "AnswerGenerate", "Programmer"]
    lines = ["class Workflow:", "    def __init__(self, llm):"]
    lines += [f"        self.op{i} = {ops[(seed + i) % len(ops)]}(llm)" for i in range(4)]
    lines += ["", "    async def __call__(self, problem, entry_point):", "        solutions = []"]
    step = 0
    while len(tokenizer("\n".join(lines), add_special_tokens=False).input_ids) < tokens:
        lines += [f"        for attempt in range({(seed + step) % 3 + 1}):",
                  f"            result = await self.op{step % 4}(problem=problem, entry_point=entry_point, "
                  f"instruction='Variant {seed}.{step}: reason about edge cases first')",
                  "            solutions.append(result.code)"]
        step += 1
    ids = tokenizer("\n".join(lines), add_special_tokens=False).input_ids[:tokens]
    return tokenizer.decode(ids) + "\n        return solutions[-1]\n</graph>"


def settings(model: str, out_dir: str, **overrides):
    from flowpo.config import TrainConfig
    from trainer.learner import LearnerSettings

    values = dict(beta=0.1, epochs=1, learning_rate=1e-4, grad_accum_steps=1, max_seq_len=4096, lora_r=8,
                  lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "v_proj"], seed=0, use_gpu=False,
                  bf16=True)
    reference = overrides.pop("reference", "base")
    return LearnerSettings(train=TrainConfig(**{**values, **overrides}), base_model=model, out_dir=out_dir,
                           reference=reference)


def now() -> tuple[float, float]:
    # Wall-clock and this process's CPU time: on a shared machine the second is the steadier one.
    return time.perf_counter(), time.process_time()


def since(mark: tuple[float, float]) -> tuple[float, float]:
    wall, cpu = now()
    return wall - mark[0], cpu - mark[1]


def flowpo_steps(items: list, s) -> tuple[list[tuple[float, float]], list[int]]:
    """(wall, CPU) seconds of each step of FlowPO's learner (``run_local``: one round in this process,
    one micro-batch a step), each charged an equal share of the round-start log-prob pass, and the
    step's tokens."""
    from trainer.learner import run_local

    result = run_local(items, s)
    steps, times = result.history, result.times
    share = (times["reference_s"] / len(steps), times["reference_cpu_s"] / len(steps))
    return [(h["seconds"] + share[0], h["cpu_s"] + share[1]) for h in steps], [h["tokens"] for h in steps]


def trl_steps(pairs: list, model_dir: str, out_dir: str) -> list[tuple[float, float]]:
    """(wall, CPU) seconds of each ``DPOTrainer`` step on the same pairs, LoRA and precision."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.costs, self._mark = [], now()

        def on_step_begin(self, args, state, control, **kwargs):
            self._mark = now()

        def on_step_end(self, args, state, control, **kwargs):
            self.costs.append(since(self._mark))

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16)
    data = Dataset.from_list([{"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected} for p in pairs])
    args = DPOConfig(output_dir=out_dir, per_device_train_batch_size=1, gradient_accumulation_steps=1,
                     max_steps=len(pairs), learning_rate=1e-4, lr_scheduler_type="constant", beta=0.1, bf16=True,
                     use_cpu=True, max_length=None, report_to=[], save_strategy="no", logging_steps=10_000,
                     disable_tqdm=True, dataloader_num_workers=0, disable_dropout=True, seed=0)
    lora = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    timer = StepTimer()
    trainer = DPOTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer, peft_config=lora,
                         callbacks=[timer])
    trainer.train()
    return timer.costs


def rates(costs: list[tuple[float, float]], tokens: list[int], warmup: int) -> tuple[float, float]:
    """Tokens per wall second and per CPU second, each from the best timed step."""
    timed = list(zip(costs, tokens))[warmup:]
    return max(n / w for (w, _), n in timed), max(n / c for (_, c), n in timed)


def line(label: str, rate: tuple[float, float], extra: str = "") -> str:
    return f"{label:<30} {rate[0]:8.1f} tokens/s   {rate[1]:8.1f} tokens/CPU-s{extra}"


def main(argv: list[str] | None = None) -> int:
    parser = common.parser("learner", __doc__, quick="1 timed pair and group (of 4), 200-token prompts, "
                                                     "60-token completions")
    parser.add_argument("--model", default=common.MODEL)
    parser.add_argument("--pairs", type=int, default=2, help="timed Score-DPO steps (one pair each)")
    parser.add_argument("--groups", type=int, default=1, help="timed ioGRPO steps (one group each)")
    parser.add_argument("--group-size", type=int, default=4, help="completions per group (2t; SPOGW: 8)")
    parser.add_argument("--prompt-tokens", type=int, default=1000, help="prompt length (the real prompt, cut)")
    parser.add_argument("--completion-tokens", type=int, default=300, help="completion length, about")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads")
    parser.add_argument("--skip-trl", action="store_true", help="only FlowPO's learner")
    args = parser.parse_args(argv)
    if args.quick:
        args.pairs, args.groups, args.prompt_tokens, args.completion_tokens = 1, 1, 200, 60

    import datasets
    import torch
    import transformers

    torch.set_num_threads(args.threads)
    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    model, warmup = str(Path(args.model).expanduser()), 1
    pairs, groups = items(args, model, warmup)
    setting = (f"{args.threads} threads; prompt ≈{args.prompt_tokens} tokens, completions ≈{args.completion_tokens}; "
               f"{args.pairs} timed pairs, {args.groups} timed groups of {args.group_size} (+{warmup} warm-up step "
               "each); each figure the best timed step")
    print(f"model {model}; {setting}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        rows, ratios = compare(args, model, pairs, groups, warmup, tmp)
    table = "\n".join([f"{setting}.", "", "| contender | tokens/s | tokens/CPU-s |", "|---|---:|---:|",
                       *(f"| {' '.join(r['contender'].split())} | {r['tokens_per_s']:.1f} | "
                         f"{r['tokens_per_cpu_s']:.1f} |" for r in rows),
                       "", "| ratio | wall | CPU |", "|---|---:|---:|",
                       *(f"| {name} | {w:.2f}× | {c:.2f}× |" for name, (w, c) in ratios.items())])
    common.write_results(args.out, "learner", {
        "settings": {k: v for k, v in vars(args).items() if k != "out"}, "rows": rows,
        "ratios": {name: {"wall": w, "cpu": c} for name, (w, c) in ratios.items()}},
        table, common.command("learner", argv), title="FlowPO's learner against TRL's DPOTrainer; prompt sharing")
    return 0


def items(args, model: str, warmup: int) -> tuple[list, list]:
    """The timed Score-DPO pairs and ioGRPO groups (and the warm-up ones): the real prompt, cut, and
    workflow-like completions."""
    from transformers import AutoTokenizer

    from flowpo.maths.groups import PromptGroup
    from flowpo.maths.pairs import PreferencePair

    tokenizer = AutoTokenizer.from_pretrained(model)
    texts = prompts(tokenizer, max(args.pairs, args.groups) + warmup, args.prompt_tokens)
    pairs = [PreferencePair(f"p{i}", texts[i], workflow(tokenizer, 2 * i, args.completion_tokens),
                            workflow(tokenizer, 2 * i + 1, args.completion_tokens), 1.0, 0.0)
             for i in range(args.pairs + warmup)]
    half = args.group_size // 2
    groups = [PromptGroup(f"g{i}", texts[i], tuple(workflow(tokenizer, 10 * i + j, args.completion_tokens)
                                                   for j in range(args.group_size)),
                          (0.0,) * half + (1.0,) * half, (-1.0,) * half + (1.0,) * half)
              for i in range(args.groups + warmup)]
    return pairs, groups


def compare(args, model: str, pairs: list, groups: list, warmup: int, tmp: str) -> tuple[list, dict]:
    """FlowPO's Score-DPO steps against TRL's, and ioGRPO with and without the shared prompt: the
    rows (contender, tokens/s, tokens/CPU-s) and the ratios (wall, CPU)."""
    rows, ratios = [], {}

    def add(label: str, rate: tuple[float, float], extra: str = "") -> None:
        rows.append({"contender": label, "tokens_per_s": rate[0], "tokens_per_cpu_s": rate[1]})
        print(line(label, rate, extra), flush=True)

    costs, tokens = flowpo_steps(pairs, settings(model, tmp))
    ours = rates(costs, tokens, warmup)
    per_pair = sum(tokens) / len(tokens)
    add("Score-DPO  FlowPO learner", ours, f"   ({per_pair:.0f} tokens a pair)")
    if not args.skip_trl:
        # TRL's sampler shuffles the pairs; their token counts differ by a few at most.
        trl = rates(trl_steps(pairs, model, tmp), [per_pair] * len(tokens), warmup)
        add("Score-DPO  TRL DPOTrainer", trl)
        ratios["FlowPO / TRL"] = (ours[0] / trl[0], ours[1] / trl[1])
    grpo = {}
    for share in (True, False):
        s = settings(model, tmp, algorithm="iogrpo", reference="previous", share_prompt=share)
        costs, tokens = flowpo_steps(groups, s)
        grpo[share] = rates(costs, tokens, warmup)
        per_group = sum(tokens) / len(tokens)
        add("ioGRPO     shared prompt" if share else "ioGRPO     prompt per sequence", grpo[share],
            f"   ({per_group:.0f} tokens a group, {grpo[share][0] / per_group:.4f} groups/s)")
    ratios["ioGRPO shared / per sequence"] = (grpo[True][0] / grpo[False][0], grpo[True][1] / grpo[False][1])
    for name, (wall, cpu) in ratios.items():
        print(f"{'ratio ' + name:<30} {wall:8.2f}x wall     {cpu:8.2f}x CPU", flush=True)
    return rows, ratios


if __name__ == "__main__":
    sys.exit(main())
