"""The learner: Score-DPO on a LoRA adapter, trained by Ray Train's TorchTrainer (DDP; gloo on CPU)."""
from __future__ import annotations

import dataclasses
import json
import math
import os
from contextlib import nullcontext
from pathlib import Path

from trainer.pairs import PreferencePair

METRICS_FILE = "train_metrics.json"


@dataclasses.dataclass(frozen=True)
class LearnerSettings:
    base_model: str
    out_dir: str  # where the new adapter is saved (peft format)
    init_adapter: str  # adapter to continue from; "" starts a fresh LoRA
    beta: float
    epochs: int
    learning_rate: float
    grad_accum_steps: int
    max_seq_len: int
    lora_r: int
    lora_alpha: int
    lora_dropout: float
    target_modules: tuple[str, ...]
    seed: int
    use_gpu: bool
    bf16: bool = True  # bf16 autocast: ~1.6x faster on CPU too, LoRA weights stay fp32


def build_policy(settings: LearnerSettings, device):
    """Base model + LoRA (fresh, or continued from ``init_adapter``); only LoRA weights train."""
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(settings.base_model, dtype=torch.float32).to(device)
    if settings.init_adapter:
        return PeftModel.from_pretrained(base, settings.init_adapter, is_trainable=True)
    lora = LoraConfig(r=settings.lora_r, lora_alpha=settings.lora_alpha, lora_dropout=settings.lora_dropout,
                      target_modules=list(settings.target_modules), task_type="CAUSAL_LM")
    return get_peft_model(base, lora)


def train_loop_per_worker(config: dict) -> None:
    """Runs on every Ray Train worker: its shard of the pairs, DDP gradient sync, rank 0 saves."""
    import ray.train
    import ray.train.torch
    import torch
    from transformers import AutoTokenizer

    from trainer.logprobs import encode_pair, sequence_logprob
    from trainer.losses import score_dpo_loss

    settings: LearnerSettings = config["settings"]
    pairs: list[PreferencePair] = config["pairs"]
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    torch.manual_seed(settings.seed)
    if not settings.use_gpu:
        # Ray pins OMP threads to the reserved (often fractional) CPUs; use this node's cores.
        torch.set_num_threads(os.cpu_count() or 1)
    device = ray.train.torch.get_device()
    tokenizer = AutoTokenizer.from_pretrained(settings.base_model)
    policy = build_policy(settings, device)
    shard = pairs[rank::world]
    encoded = [(encode_pair(tokenizer, p.prompt, p.chosen, settings.max_seq_len),
                encode_pair(tokenizer, p.prompt, p.rejected, settings.max_seq_len)) for p in shard]

    def autocast():
        return torch.autocast(device.type, dtype=torch.bfloat16) if settings.bf16 else nullcontext()

    # Reference = the base model: the same weights with the adapter switched off, no second copy.
    with torch.no_grad(), policy.disable_adapter(), autocast():
        policy.eval()
        refs = [(sequence_logprob(policy, *w), sequence_logprob(policy, *l)) for w, l in encoded]
    policy.train()

    model = ray.train.torch.prepare_model(policy) if world > 1 else policy
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=settings.learning_rate)
    steps_per_epoch = math.ceil(len(encoded) / settings.grad_accum_steps)
    step = 0
    history = []
    for epoch in range(settings.epochs):
        for start in range(0, len(encoded), settings.grad_accum_steps):
            chunk = range(start, min(start + settings.grad_accum_steps, len(encoded)))
            totals = {"loss": 0.0, "accuracy": 0.0, "reward_w": 0.0, "reward_l": 0.0}
            for i in chunk:
                (w_ids, w_start), (l_ids, l_start) = encoded[i]
                pair = shard[i]
                with autocast():
                    policy_w = sequence_logprob(model, w_ids, w_start)
                    policy_l = sequence_logprob(model, l_ids, l_start)
                loss, metrics = score_dpo_loss(
                    policy_w, policy_l, refs[i][0], refs[i][1],
                    torch.tensor(pair.score_chosen), torch.tensor(pair.score_rejected), beta=settings.beta)
                (loss / len(chunk)).backward()
                for key in totals:
                    totals[key] += metrics[key] / len(chunk)
            optimizer.step()
            optimizer.zero_grad()
            step += 1
            record = {**totals, "step": step, "epoch": epoch, "steps_per_epoch": steps_per_epoch,
                      "pairs": len(encoded)}
            history.append(record)
            ray.train.report(record)
    if rank == 0:
        unwrapped = model.module if hasattr(model, "module") else model
        unwrapped.save_pretrained(settings.out_dir)
        # Ray Train 2.x keeps reported metrics only beside checkpoints; the adapter directory
        # carries its own training record instead.
        Path(settings.out_dir, METRICS_FILE).write_text(json.dumps(history))


def train_adapter(pairs: list[PreferencePair], settings: LearnerSettings, *, num_workers: int,
                  cpus_per_worker: float, storage_dir: Path, name: str) -> dict:
    """Fit one round with a TorchTrainer and return the last reported metrics."""
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    resources = {"CPU": cpus_per_worker}
    if settings.use_gpu:
        resources["GPU"] = 1
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"settings": settings, "pairs": pairs},
        scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=settings.use_gpu,
                                     resources_per_worker=resources),
        run_config=RunConfig(storage_path=str(Path(storage_dir).resolve()), name=name),
    )
    result = trainer.fit()
    if result.error:
        raise result.error
    history = json.loads(Path(settings.out_dir, METRICS_FILE).read_text())
    return {**history[-1], "first_loss": history[0]["loss"]} if history else {}
