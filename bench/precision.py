"""bf16 against fp32 on this machine's CPU, for the three places FlowPO computes: a matmul of the
model's shapes, one learner step (forward and backward of the policy on a workflow-sized sequence,
as trainer.learner.Policy runs it) and vLLM generation. Prints each time and the ratio bf16 / fp32,
and what flowpo.precision chooses here.

    .venv/bin/python -m bench.precision [--skip-vllm] [--tokens 1100] [--quick] [--out DIR]

Each vLLM engine runs in its own process, one after the other (two CPU engines in one process
share their threads)."""
from __future__ import annotations

import subprocess
import sys
import time

from bench import common
from bench.common import MODEL
from flowpo.model import resolve_model
from flowpo.precision import cpu_multiplies_bf16, local_engine_dtype


def matmul_s(dtype, repeats: int = 5) -> float:
    import torch

    a, b = torch.randn(1024, 576, dtype=dtype), torch.randn(576, 1536, dtype=dtype)  # tokens × hidden × MLP
    a @ b
    began = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return (time.perf_counter() - began) / repeats


def learner_step_s(bf16: bool, tokens: int) -> float:
    """One forward and backward of the LoRA policy, with the learner's dtype and autocast choice."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    path = str(resolve_model(MODEL))
    base = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16 if bf16 else torch.float32)
    policy = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]))
    ids = torch.randint(0, 1000, (1, tokens))
    began = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = policy(input_ids=ids).logits.float().log_softmax(-1).mean()
    loss.backward()
    return time.perf_counter() - began


VLLM_CHILD = """
import os, sys, time
from vllm import LLM, SamplingParams
def main():
    llm = LLM(model=os.path.expanduser(sys.argv[1]), dtype=sys.argv[2], enforce_eager=True,
              kv_cache_memory_bytes=1 << 30, max_model_len=2048, seed=0)
    prompt = " ".join(str(i) for i in range(250))  # about 1,000 tokens
    params = SamplingParams(max_tokens=96, temperature=0.5, seed=1, ignore_eos=True)
    llm.generate([prompt] * 2, params)
    began = time.perf_counter()
    llm.generate([prompt + str(i) for i in range(8)], params)
    print("SECONDS", time.perf_counter() - began)
if __name__ == "__main__":
    main()
"""


def vllm_s(dtype: str) -> float:
    """8 workflows of 96 tokens after a shared prompt, in a fresh process."""
    done = subprocess.run([sys.executable, "-c", VLLM_CHILD, MODEL, dtype], capture_output=True, text=True)
    found = [line for line in done.stdout.splitlines() if line.startswith("SECONDS")]
    if not found:
        raise SystemExit(f"the vLLM {dtype} run failed:\n{done.stderr[-3000:]}")
    return float(found[0].split()[1])


def main(argv: list[str] | None = None) -> int:
    p = common.parser("precision", __doc__, quick="a 300-token learner step (vLLM as always)")
    p.add_argument("--skip-vllm", action="store_true")
    p.add_argument("--tokens", type=int, default=1100, help="sequence length of the learner step")
    args = p.parse_args(argv)
    if args.quick:
        args.tokens = 300
    import torch

    choice = (f"CPU: {torch.backends.cpu.get_cpu_capability()}, bf16 arithmetic: {cpu_multiplies_bf16()}; "
              f"FlowPO runs vLLM 'auto' as {local_engine_dtype('auto')!r} and the learner in "
              f"{'bf16' if cpu_multiplies_bf16() else 'fp32'} here")
    print(choice, flush=True)
    rows = [("matmul 1024×576 · 576×1536", matmul_s(torch.float32), matmul_s(torch.bfloat16)),
            (f"learner step, {args.tokens} tokens", learner_step_s(False, args.tokens),
             learner_step_s(True, args.tokens))]
    if not args.skip_vllm:
        rows.append(("vLLM, 8 × 96 tokens", vllm_s("float32"), vllm_s("bfloat16")))
    print(f"{'':34} {'fp32 s':>9} {'bf16 s':>9} {'bf16/fp32':>10}")
    for name, fp32, bf16 in rows:
        print(f"{name:34} {fp32:9.3f} {bf16:9.3f} {bf16 / fp32:10.1f}")
    table = "\n".join([f"{choice}.", "", "| | fp32 s | bf16 s | bf16 / fp32 |", "|---|---:|---:|---:|",
                       *(f"| {name} | {fp32:.3f} | {bf16:.3f} | {bf16 / fp32:.1f} |" for name, fp32, bf16 in rows)])
    common.write_results(args.out, "precision", {
        "cpu_capability": torch.backends.cpu.get_cpu_capability(), "bf16_arithmetic": cpu_multiplies_bf16(),
        "vllm_auto": local_engine_dtype("auto"), "tokens": args.tokens,
        "rows": [{"what": name, "fp32_s": fp32, "bf16_s": bf16, "bf16_over_fp32": bf16 / fp32}
                 for name, fp32, bf16 in rows]},
        table, common.command("precision", argv), title="bf16 against fp32 on this CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
