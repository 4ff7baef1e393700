"""The learner on Ray Train: Score-DPO, DPO or ioGRPO-mKL on a LoRA adapter, one TorchTrainer per round.

Every worker holds the base model with one LoRA adapter (no second copy for the reference), its
shard of the items, and trains with DDP (gloo on CPU, nccl on GPU). No path crosses nodes: the
checkpoint a round starts from travels packed to the workers through Ray's object store, each
worker unpacks it in its node's own temporary space; rank 0 saves the round's checkpoint (adapter,
optimizer state, metadata, per-step metrics) there, ships it back packed, and removes it; the
caller writes it into ``out_dir`` on its own node.
"""
from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import warnings
from contextlib import nullcontext
from pathlib import Path

from trainer.checkpoint import pack, remove, unpack, unpack_local

METRICS_FILE = "train_metrics.json"


@dataclasses.dataclass(frozen=True)
class LearnerSettings:
    base_model: str
    out_dir: str  # where the round's checkpoint (peft adapter + optimizer + metadata) is saved
    init_adapter: str  # adapter weights to continue from (fresh optimizer); "" starts a fresh LoRA
    beta: float
    epochs: int
    learning_rate: float
    grad_accum_steps: int  # micro-batches per optimizer step
    max_seq_len: int
    lora_r: int
    lora_alpha: int
    lora_dropout: float
    target_modules: tuple[str, ...]
    seed: int
    use_gpu: bool
    bf16: bool = True  # bf16 base weights + autocast (~1.6x faster on CPU too); LoRA weights stay fp32
    algorithm: str = "score_dpo"  # score_dpo | dpo | iogrpo
    reference: str = "base"  # base (adapter off) | previous (the adapter the round starts from)
    score_exponent: float = 1.0  # Score-DPO's f(s) = s^p
    epsilon: float = 0.2  # ioGRPO's clip range
    masked_kl: bool = True  # ioGRPO: KL only on responses with A > 0
    micro_batch_size: int = 1  # pairs or groups per forward pass
    max_grad_norm: float = 1.0  # 0: no clipping
    share_prompt: bool = True  # compute each pair's / group's prompt once
    resume_from: str = ""  # a checkpoint dir: its adapter, optimizer state and step continue
    round_index: int = 0  # recorded in the checkpoint's metadata


def build_policy(settings: LearnerSettings, device):
    """Base model + LoRA (fresh, or continued from ``resume_from`` / ``init_adapter``); only LoRA trains."""
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    from flowpo.model import resolve_model

    # Frozen bf16 base weights save autocast a cast of every weight on every forward; peft keeps the
    # adapter weights in fp32 (autocast_adapter_dtype).
    dtype = torch.bfloat16 if settings.bf16 else torch.float32
    # base_model is model.path as written (a directory or a hub id), resolved on this worker's node
    base = AutoModelForCausalLM.from_pretrained(str(resolve_model(settings.base_model)), dtype=dtype).to(device)
    start = settings.resume_from or settings.init_adapter
    if start:
        return PeftModel.from_pretrained(base, start, is_trainable=True)
    lora = LoraConfig(r=settings.lora_r, lora_alpha=settings.lora_alpha, lora_dropout=settings.lora_dropout,
                      target_modules=list(settings.target_modules), task_type="CAUSAL_LM")
    return get_peft_model(base, lora)


def autocast_for(settings: LearnerSettings, device):
    import torch

    return (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if settings.bf16 else nullcontext


def setup_round(s: LearnerSettings, items: list, device, *, rank: int = 0, world: int = 1):
    """The policy, this worker's micro-batches (shard ``rank`` of ``world``) with their round-start
    log-probs, and the autocast context."""
    import torch
    from transformers import AutoTokenizer

    from flowpo.model import resolve_model
    from trainer.fit import round_start_logprobs
    from trainer.objectives import micro_batches

    device = torch.device(device)
    torch.manual_seed(s.seed)  # the fresh LoRA's A matrices are the same on every worker and run
    tokenizer = AutoTokenizer.from_pretrained(str(resolve_model(s.base_model)))
    policy = build_policy(s, device)
    shard = items[rank::world]  # train_adapter made the shards equal: DDP steps in lockstep
    mbs = micro_batches(shard, tokenizer, size=s.micro_batch_size, max_len=s.max_seq_len)
    for mb in mbs:
        mb.batch, mb.values = mb.batch.to(device), mb.values.to(device)
    autocast = autocast_for(s, device)
    round_start_logprobs(policy, mbs, reference=s.reference, needs_old=s.algorithm == "iogrpo",
                         starts_from_base=not (s.resume_from or s.init_adapter), autocast=autocast,
                         share_prompt=s.share_prompt)
    return policy, mbs, autocast


def run_round(s: LearnerSettings, model, policy, mbs: list, autocast, *, world: int = 1,
              on_step=lambda record: None) -> tuple[object, list[dict]]:
    """AdamW over the LoRA weights (state restored from ``resume_from``), then ``fit``; (optimizer, history)."""
    import torch

    from trainer.checkpoint import load_optimizer, read_meta
    from trainer.fit import fit
    from trainer.objectives import micro_batch_loss

    optimizer = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=s.learning_rate)
    start_step = 0
    if s.resume_from:
        load_optimizer(optimizer, s.resume_from)
        start_step = read_meta(s.resume_from)["step"]

    def loss_fn(logps, mb):
        return micro_batch_loss(logps, mb, algorithm=s.algorithm, beta=s.beta, score_exponent=s.score_exponent,
                                epsilon=s.epsilon, masked_kl=s.masked_kl)

    def step_hook(record):
        record.update(items=_items(mbs), steps_per_epoch=-(-len(mbs) // s.grad_accum_steps))
        on_step(record)

    history = fit(model, mbs, loss_fn, optimizer, epochs=s.epochs, grad_accum_steps=s.grad_accum_steps,
                  max_grad_norm=s.max_grad_norm, autocast=autocast, start_step=start_step, world=world,
                  on_step=step_hook)
    return optimizer, history


def _items(mbs: list) -> int:
    return sum(mb.batch.prompt_ids.shape[0] for mb in mbs)  # one prompt per pair or group


def save_round(s: LearnerSettings, policy, optimizer, items: list, history: list[dict], world: int,
               origin: LearnerSettings | None = None) -> None:
    """The round's checkpoint and metrics; ``items`` are all workers' pairs or groups. The metadata
    records ``origin``'s paths (the caller's, when this worker used its own copies)."""
    from trainer.checkpoint import read_meta, save_checkpoint
    from trainer.groups import PromptGroup

    step = history[-1]["step"] if history else (read_meta(s.resume_from)["step"] if s.resume_from else 0)
    completions = sum(len(i.completions) if isinstance(i, PromptGroup) else 2 for i in items)
    origin = origin or s
    meta = {"round": s.round_index, "step": step, "algorithm": s.algorithm, "reference": s.reference,
            "items": len(items), "completions": completions, "workers": world, "resumed_from": origin.resume_from,
            "init_adapter": origin.init_adapter, "settings": dataclasses.asdict(origin)}
    save_checkpoint(s.out_dir, policy, optimizer, meta)
    # Ray Train 2.x keeps reported metrics only beside checkpoints; the adapter directory
    # carries its own training record instead.
    Path(s.out_dir, METRICS_FILE).write_text(json.dumps(history))


def train_local(items: list, settings: LearnerSettings) -> list[dict]:
    """One round in this process, no Ray (one worker): for tests, benchmarks and debugging."""
    import torch

    from trainer.batching import CompletionScorer

    device = torch.device("cuda" if settings.use_gpu else "cpu")
    policy, mbs, autocast = setup_round(settings, items, device)
    model = CompletionScorer(policy, share_prompt=settings.share_prompt)
    optimizer, history = run_round(settings, model, policy, mbs, autocast)
    save_round(settings, policy, optimizer, items, history, world=1)
    return history


def train_loop_per_worker(config: dict) -> None:
    """Runs on every Ray Train worker: its shard, round-start log-probs, DDP steps; rank 0 saves."""
    import ray.train
    import ray.train.torch
    import torch

    from trainer.batching import CompletionScorer

    s: LearnerSettings = config["settings"]
    start_dir = unpack_local(config["start"], "flowpo-learner-start-") if config["start"] else None
    if start_dir:  # the caller's paths are the caller's: this node reads its own copy
        s = dataclasses.replace(s, init_adapter=str(start_dir), resume_from=str(start_dir) if s.resume_from else "")
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    if not s.use_gpu:
        # Ray pins OMP threads to the reserved (often fractional) CPUs; share this node's cores instead.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // context.get_local_world_size()))
    device = ray.train.torch.get_device()
    policy, mbs, autocast = setup_round(s, config["items"], device, rank=rank, world=world)
    scorer = CompletionScorer(policy, share_prompt=s.share_prompt)
    model = ray.train.torch.prepare_model(scorer) if world > 1 else scorer.to(device)

    # Every worker reports each step (Ray Train 2.x makes report a barrier): live progress in Ray.
    optimizer, history = run_round(s, model, policy, mbs, autocast, world=world, on_step=ray.train.report)
    if rank == 0:
        work_dir = tempfile.mkdtemp(prefix="flowpo-learner-out-")
        save_round(dataclasses.replace(s, out_dir=work_dir), policy, optimizer, config["items"], history, world,
                   origin=config["settings"])
        config["outbox"].put(pack(work_dir))
        remove(work_dir)  # shipped: nothing of the round stays on this node
    if start_dir:
        remove(start_dir)


def equal_shards(items: list, num_workers: int) -> tuple[list, int]:
    """Items cut to a multiple of the worker count (DDP needs equal steps), and the workers to use."""
    workers = max(1, min(num_workers, len(items)))
    usable = len(items) - len(items) % workers
    if usable < len(items):
        warnings.warn(f"learner: dropping the last {len(items) - usable} of {len(items)} items so that "
                      f"{workers} workers hold equal shards", stacklevel=2)
    return items[:usable], workers


def train_adapter(items: list, settings: LearnerSettings, *, num_workers: int, cpus_per_worker: float,
                  storage_dir: Path, name: str) -> dict:
    """Fit one round (items: PreferencePair or PromptGroup) with a TorchTrainer; the last step's
    metrics. ``settings``' paths (``init_adapter``, ``resume_from``, ``out_dir``) are this node's:
    the starting checkpoint is shipped to the workers and the result shipped back into ``out_dir``.

    ``storage_dir`` is Ray Train's run storage; no checkpoint is reported to it (the adapter comes
    back through the object store), so it holds only Ray Train's own run records and need not be
    shared between nodes."""
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer
    from ray.util.queue import Queue

    items, workers = equal_shards(items, num_workers)
    start = settings.resume_from or settings.init_adapter
    outbox = Queue(maxsize=1)
    resources = {"CPU": cpus_per_worker}
    if settings.use_gpu:
        resources["GPU"] = 1
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"settings": settings, "items": items, "start": pack(start) if start else None,
                           "outbox": outbox},
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=settings.use_gpu, resources_per_worker=resources),
        run_config=RunConfig(storage_path=str(Path(storage_dir).resolve()), name=name),
    )
    try:
        result = trainer.fit()
        if result.error:
            raise result.error
        unpack(outbox.get(timeout=60), settings.out_dir)
    finally:
        outbox.shutdown()
    history = json.loads(Path(settings.out_dir, METRICS_FILE).read_text())
    return {**history[-1], "first_loss": history[0]["loss"]} if history else {}
