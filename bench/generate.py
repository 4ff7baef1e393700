"""Generator throughput, side by side in one run on the same model, prompts and sampling settings.

1. vLLM (the generator actor's engine) vs Hugging Face `generate`, batch of B prompts;
2. one prompt with n = k samples (shared prefix) vs k separate copies of the prompt.

Every generation is forced to the same length (ignore EOS) so tokens/s compare like for like.

    .venv/bin/python -m bench.generate [--batch 16] [--k 8] [--new-tokens 64] [--quick] [--out DIR]
"""
from __future__ import annotations

import sys
import time

from bench import common


def workflow_prompts(tokenizer, count: int) -> list[str]:
    from flowpo.config import TaskConfig
    from flowpo.prompts import workflow_messages
    from flowpo.tasks import load_problems

    problems = load_problems(TaskConfig(limit=count))
    return [tokenizer.apply_chat_template(workflow_messages(p), add_generation_prompt=True, tokenize=False)
            for p in problems]


def bench_vllm(llm, prompts: list[str], n: int, new_tokens: int) -> float:
    from vllm import SamplingParams

    params = SamplingParams(n=n, temperature=0.8, top_p=0.95, max_tokens=new_tokens, min_tokens=new_tokens,
                            ignore_eos=True)
    began = time.perf_counter()
    outputs = llm.generate(prompts, params, use_tqdm=False)
    seconds = time.perf_counter() - began
    return sum(len(c.token_ids) for o in outputs for c in o.outputs) / seconds


def bench_hf(model_dir: str, prompts: list[str], new_tokens: int) -> float:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16).eval()
    batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    began = time.perf_counter()
    with torch.no_grad():
        out = model.generate(**batch, do_sample=True, temperature=0.8, top_p=0.95, max_new_tokens=new_tokens,
                             min_new_tokens=new_tokens, pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
    seconds = time.perf_counter() - began
    return (out.shape[1] - batch.input_ids.shape[1]) * len(prompts) / seconds


def main(argv: list[str] | None = None) -> int:
    parser = common.parser("generate", __doc__, quick="batch 4, k 2, 16 new tokens")
    parser.add_argument("--model", default=common.MODEL)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=64)
    args = parser.parse_args(argv)
    if args.quick:
        args.batch, args.k, args.new_tokens = 4, 2, 16

    from vllm import LLM

    from flowpo.model import check_model_dir

    model_dir = str(check_model_dir(args.model))
    llm = LLM(model=model_dir, dtype="bfloat16", seed=0, enforce_eager=True, enable_prefix_caching=True,
              kv_cache_memory_bytes=1 << 30, max_model_len=2048)
    prompts = workflow_prompts(llm.get_tokenizer(), args.batch)
    bench_vllm(llm, prompts[:2], 1, 8)  # warm-up

    vllm_tps = bench_vllm(llm, prompts, 1, args.new_tokens)
    hf_tps = bench_hf(model_dir, prompts, args.new_tokens)
    print(f"batch {args.batch}, {args.new_tokens} new tokens each, bf16, this machine's CPU")
    print(f"  vLLM generator engine : {vllm_tps:8.1f} tokens/s")
    print(f"  Hugging Face generate : {hf_tps:8.1f} tokens/s")
    print(f"  ratio vLLM / HF       : {vllm_tps / hf_tps:8.2f}x")

    groups = max(1, args.batch // args.k)
    shared = bench_vllm(llm, prompts[:groups], args.k, args.new_tokens)
    copies = bench_vllm(llm, [p for p in prompts[groups:2 * groups] for _ in range(args.k)], 1, args.new_tokens)
    print(f"{groups} prompt(s) x k={args.k} samples")
    print(f"  one prompt, n=k       : {shared:8.1f} tokens/s")
    print(f"  k separate prompts    : {copies:8.1f} tokens/s")
    print(f"  ratio shared / copies : {shared / copies:8.2f}x")
    table = "\n".join([
        f"bf16, every generation forced to {args.new_tokens} new tokens (EOS ignored).", "",
        "| contender | setting | tokens/s |", "|---|---|---:|",
        f"| vLLM (the generator's engine) | batch {args.batch} | {vllm_tps:.1f} |",
        f"| Hugging Face generate | batch {args.batch} | {hf_tps:.1f} |",
        f"| vLLM, one prompt with n = k | {groups} prompt(s) × k = {args.k} | {shared:.1f} |",
        f"| vLLM, k separate copies | {groups} prompt(s) × k = {args.k} | {copies:.1f} |", "",
        f"vLLM / HF: {vllm_tps / hf_tps:.2f}×; shared / copies: {shared / copies:.2f}×."])
    common.write_results(args.out, "generate", {
        "batch": args.batch, "k": args.k, "new_tokens": args.new_tokens, "vllm_tokens_per_s": vllm_tps,
        "hf_tokens_per_s": hf_tps, "vllm_over_hf": vllm_tps / hf_tps, "shared_tokens_per_s": shared,
        "copies_tokens_per_s": copies, "shared_over_copies": shared / copies},
        table, common.command("generate", argv), title="vLLM against Hugging Face generate; n samples against k copies")
    return 0


if __name__ == "__main__":
    sys.exit(main())
