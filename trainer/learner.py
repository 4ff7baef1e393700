"""The learner's round, free of Ray's plumbing: its settings, the policy a worker keeps, and one round.

A worker loads the base model once (``Policy``) and trains round after round on it: each round
starts from a checkpoint on this node (``Policy.start``: the adapter, and with ``resume_from`` its
optimizer state and step) or from the adapter still in memory (``Policy.carry_on``, the previous
round's result, exactly what its checkpoint holds), then computes the round-start log-probs and runs
the optimizer steps (``train_round``); rank 0 saves the checkpoint (``save_round``). trainer/warm.py
runs this on Ray Train's workers; ``run_local`` runs one round in this process.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import gc
import json
import time
import warnings
from contextlib import nullcontext
from pathlib import Path

from flowpo.algorithms import algorithm
from flowpo.config import TrainConfig
from trainer.checkpoint import ADAPTER_WEIGHTS, is_checkpoint, load_optimizer, read_meta, save_checkpoint

METRICS_FILE = "train_metrics.json"
OLD_IS_BASE = "base"  # LearnerSettings.old_adapter: π_old is the base model (the data's adapter was none)


@dataclasses.dataclass(frozen=True)
class LearnerSettings:
    """What crosses to the learner for one round: the run's ``train`` section as configured, and the
    round's own values. Paths are the caller's node's; a worker uses its own copy of the start."""
    train: TrainConfig
    base_model: str  # model.path as written: a directory or a hub id, resolved on each worker's node
    out_dir: str = ""  # where the round's checkpoint (peft adapter + optimizer + metadata) is saved
    init_adapter: str = ""  # adapter weights to continue from (fresh optimizer); "" starts a fresh LoRA
    resume_from: str = ""  # a checkpoint dir: its adapter, optimizer state and step continue
    round_index: int = 0  # recorded in the checkpoint's metadata
    reference: str = "base"  # base (adapter off) | previous (the adapter the round starts from)
    # π_old, the policy that wrote the round's data, where it is not the adapter the round starts from
    # (rounds that overlap): OLD_IS_BASE, or an adapter dir; "" when it is the start (sequential rounds)
    old_adapter: str = ""

    @classmethod
    def for_round(cls, train: TrainConfig, *, base_model: str, out_dir: str, init_adapter: str,
                  round_index: int, data_adapter: str | None = None) -> "LearnerSettings":
        """The round's settings from the run's ``train`` section: ``reference: auto`` is each paper's
        own choice (ScoreFlow the base model, SPOGW the previous round); with ``carry_optimizer`` a
        previous round's checkpoint continues with its optimizer state (an adapter from elsewhere
        may have none). ``data_adapter``: the adapter that wrote the round's workflows ("" the base
        model; None: the one the round starts from), π_old where the algorithm needs it."""
        reference = train.reference
        if reference == "auto":
            reference = algorithm(train.algorithm).reference
        resume = init_adapter if train.carry_optimizer and is_checkpoint(init_adapter) else ""
        old = "" if data_adapter is None or data_adapter == init_adapter else (data_adapter or OLD_IS_BASE)
        return cls(train=train, base_model=base_model, out_dir=out_dir, init_adapter=init_adapter,
                   resume_from=resume, round_index=round_index, reference=reference,
                   old_adapter=old if algorithm(train.algorithm).needs_old else "")

    @property
    def start(self) -> str:
        """The checkpoint or adapter the round starts from; "" for a fresh LoRA."""
        return self.resume_from or self.init_adapter


class Policy:
    """What a worker keeps from round to round: tokenizer, base model, the LoRA policy (only LoRA
    trains), its AdamW optimizer and the optimizer-step count."""

    def __init__(self, base_model: str, *, bf16: bool, device):
        # torch, transformers and peft load only where a learner runs (the driver imports this module).
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from flowpo.model import resolve_model
        from flowpo.precision import cpu_multiplies_bf16, learner_bf16

        self.device = torch.device(device)
        on_cpu = self.device.type == "cpu"
        self.bf16 = learner_bf16(bf16, on_cpu=on_cpu, native_bf16=not on_cpu or cpu_multiplies_bf16())
        if bf16 and not self.bf16:
            print("learner: train.bf16 is on, but this CPU has no bf16 arithmetic (AVX512-BF16 or AMX) and "
                  "would emulate it (100x slower than fp32 on an AVX2 EPYC): the learner computes in fp32",
                  flush=True)
        path = str(resolve_model(base_model))  # resolved on this worker's node
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        # Frozen bf16 base weights save autocast a cast of every weight on every forward; peft keeps
        # the adapter weights in fp32 (autocast_adapter_dtype).
        dtype = torch.bfloat16 if self.bf16 else torch.float32
        self.base = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(self.device)
        self.policy, self.optimizer, self.step = None, None, 0

    def start(self, s: LearnerSettings, start_dir: str = "") -> None:
        """The round's policy from ``start_dir`` (this node's copy of ``s.start``), or a fresh LoRA,
        with a fresh optimizer, or with ``s.resume_from`` the checkpoint's state and step."""
        import torch
        from peft import LoraConfig, PeftModel, get_peft_model

        base = self.policy.unload() if self.policy is not None else self.base  # the LoRA layers out, weights intact
        if start_dir:
            self.policy = PeftModel.from_pretrained(base, start_dir, is_trainable=True)
        else:
            t = s.train
            torch.manual_seed(t.seed)  # the fresh LoRA's A matrices are the same on every worker and run
            lora = LoraConfig(r=t.lora_r, lora_alpha=t.lora_alpha, lora_dropout=t.lora_dropout,
                              target_modules=list(t.target_modules), task_type="CAUSAL_LM")
            self.policy = get_peft_model(base, lora)
        self._fresh_optimizer(s)
        if s.resume_from:
            load_optimizer(self.optimizer, start_dir)
            self.step = read_meta(start_dir)["step"]

    def carry_on(self, s: LearnerSettings) -> None:
        """Start the round from the adapter in memory, the previous round's result: what ``start``
        from that round's checkpoint gives (the same weights, optimizer state and step), read from
        nowhere."""
        if self.policy is None:
            raise RuntimeError("learner: no adapter in memory to continue from")
        if not s.resume_from:
            self._fresh_optimizer(s)

    def _fresh_optimizer(self, s: LearnerSettings) -> None:
        import torch

        params = [p for p in self.policy.parameters() if p.requires_grad]
        self.optimizer, self.step = torch.optim.AdamW(params, lr=s.train.learning_rate), 0

    def release(self) -> None:
        """Hand the memory a round freed (activations, micro-batches) back to the system: a warm
        worker waits through the next generation beside the generators, sandboxes and LLM server."""
        import torch

        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        libc = ctypes.util.find_library("c")
        if libc and hasattr(ctypes.CDLL(libc), "malloc_trim"):  # glibc keeps freed heap pages otherwise
            ctypes.CDLL(libc).malloc_trim(0)

    def autocast(self):
        import torch

        return (lambda: torch.autocast(self.device.type, dtype=torch.bfloat16)) if self.bf16 else nullcontext


def prepare_round(p: Policy, s: LearnerSettings, items: list, *, rank: int = 0, world: int = 1,
                  times: dict | None = None, old_weights=None) -> list:
    """This worker's micro-batches (shard ``rank`` of ``world``) with their round-start log-probs;
    ``old_weights``: π_old's where it is not the starting adapter (trainer/fit.py)."""
    from trainer.fit import round_start_logprobs
    from trainer.objectives import micro_batches

    times = {} if times is None else times
    began = time.perf_counter()
    shard = items[rank::world]  # the caller made the shards equal: DDP steps in lockstep
    t = s.train
    mbs = micro_batches(shard, p.tokenizer, size=t.micro_batch_size, max_len=t.max_seq_len,
                        max_tokens=t.max_tokens_per_pass, share_prompt=t.share_prompt)
    for part in (part for mb in mbs for part in mb.passes):
        part.batch, part.values = part.batch.to(p.device), part.values.to(p.device)
    times["data_s"] = time.perf_counter() - began
    began, cpu = time.perf_counter(), time.process_time()
    round_start_logprobs(p.policy, mbs, reference=s.reference, needs_old=algorithm(t.algorithm).needs_old,
                         starts_from_base=not s.start, autocast=p.autocast(), share_prompt=t.share_prompt,
                         max_tokens=t.max_tokens_per_pass, old_weights=old_weights)
    times.update(reference_s=time.perf_counter() - began, reference_cpu_s=time.process_time() - cpu)
    return mbs


def train_round(p: Policy, s: LearnerSettings, model, mbs: list, *, world: int = 1,
                times: dict | None = None) -> list[dict]:
    """``fit`` on ``model`` (the policy's scorer, DDP-wrapped or not) from the policy's optimizer
    and step; the per-step records."""
    import torch

    from trainer.fit import fit
    from trainer.objectives import pass_loss

    t = s.train
    steps_per_epoch = -(-len(mbs) // t.grad_accum_steps)
    items = sum(mb.items for mb in mbs)

    def loss_fn(logps, part):
        return pass_loss(logps, part, t)

    # LoRA dropout draws from here: a round's masks are the same whether it starts from memory or disk.
    torch.manual_seed(t.seed + s.round_index)
    began = time.perf_counter()
    history = fit(model, mbs, loss_fn, p.optimizer, epochs=t.epochs, grad_accum_steps=t.grad_accum_steps,
                  max_grad_norm=t.max_grad_norm, autocast=p.autocast(), start_step=p.step, world=world,
                  on_step=lambda record: record.update(items=items, steps_per_epoch=steps_per_epoch))
    if times is not None:
        times["steps_s"] = time.perf_counter() - began
    if history:
        p.step = history[-1]["step"]
    return history


def save_round(p: Policy, s: LearnerSettings, out_dir: str, items: list, history: list[dict], world: int) -> None:
    """The round's checkpoint and metrics in ``out_dir``; ``items`` are all workers' pairs or groups.
    The metadata records ``s``'s (the caller's) paths."""
    from flowpo.maths.groups import PromptGroup

    completions = sum(len(i.completions) if isinstance(i, PromptGroup) else 2 for i in items)
    meta = {"round": s.round_index, "step": p.step, "algorithm": s.train.algorithm, "reference": s.reference,
            "items": len(items), "completions": completions, "workers": world, "resumed_from": s.resume_from,
            "init_adapter": s.init_adapter, "settings": dataclasses.asdict(s)}
    save_checkpoint(out_dir, p.policy, p.optimizer, meta)
    # Ray Train 2.x keeps reported metrics only beside checkpoints; the adapter directory
    # carries its own training record instead.
    Path(out_dir, METRICS_FILE).write_text(json.dumps(history))


def read_old_weights(s: LearnerSettings, old_dir: str, device) -> "dict | str | None":
    """π_old for ``prepare_round``: None where it is the adapter the round starts from, OLD_IS_BASE, or
    the LoRA weights in ``old_dir`` (this node's copy of ``s.old_adapter``)."""
    if not s.old_adapter or s.old_adapter == OLD_IS_BASE:
        return s.old_adapter or None
    from safetensors.torch import load_file

    return load_file(str(Path(old_dir) / ADAPTER_WEIGHTS), device=str(device))


@dataclasses.dataclass(frozen=True)
class RoundResult:
    history: list  # one record per optimizer step
    times: dict  # seconds: load_s, data_s, reference_s (and its CPU seconds), steps_s, save_s


def run_local(items: list, settings: LearnerSettings) -> RoundResult:
    """One round in this process, no Ray (one worker), from ``settings.start`` on disk: for tests,
    benchmarks and debugging."""
    from trainer.batching import CompletionScorer

    times: dict = {}
    began = time.perf_counter()
    t = settings.train
    p = Policy(settings.base_model, bf16=t.bf16, device="cuda" if t.use_gpu else "cpu")
    p.start(settings, settings.start)
    times["load_s"] = time.perf_counter() - began
    mbs = prepare_round(p, settings, items, times=times,
                        old_weights=read_old_weights(settings, settings.old_adapter, p.device))
    history = train_round(p, settings, CompletionScorer(p.policy, share_prompt=settings.train.share_prompt), mbs,
                          times=times)
    began = time.perf_counter()
    save_round(p, settings, settings.out_dir, items, history, world=1)
    times["save_s"] = time.perf_counter() - began
    return RoundResult(history, times)


def train_local(items: list, settings: LearnerSettings) -> list[dict]:
    """``run_local``'s per-step records."""
    return run_local(items, settings).history


def equal_shards(items: list, num_workers: int) -> tuple[list, int]:
    """The items a round trains on and the workers that train it: a multiple of ``num_workers``
    (DDP steps every worker in lockstep), or, with fewer items than workers, all of them on one.

    A worker group is fixed for the run, so a round cannot use some of its workers in a DDP group:
    an empty worker has no gradient to all-reduce, padding by repetition would weigh items twice, and
    cutting to a multiple would drop the whole round. One worker takes every item instead: the loss
    of a step is the mean over its items either way (trainer/fit.py), so the update is the same as on
    len(items) workers whenever the items fit in one accumulated step."""
    if len(items) < num_workers:
        return items, 1
    usable = len(items) - len(items) % num_workers
    if usable < len(items):
        warnings.warn(f"learner: dropping the last {len(items) - usable} of {len(items)} items so that "
                      f"{num_workers} workers hold equal shards", stacklevel=2)
    return items[:usable], num_workers
