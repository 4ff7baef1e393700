"""The training loop itself, free of Ray: round-start log-probs, then accumulated optimizer steps.

Ray Train's worker (trainer/learner.py) calls these with a DDP-wrapped scorer; tests call them
in-process. The loss of a step is the mean over the step's global batch (all workers' micro-batches),
so 2 workers × batch b, 1 worker × batch 2b and 2b micro-batches accumulated give the same update;
so does a micro-batch run in several passes (trainer/objectives.py).
"""
from __future__ import annotations

import time
from contextlib import contextmanager, nullcontext
from typing import Callable

import torch

from trainer.batching import completion_logprobs, distinct_logprobs
from trainer.objectives import MicroBatch, Pass


def round_start_logprobs(policy, mbs: list[MicroBatch], *, reference: str, needs_old: bool,
                         starts_from_base: bool, autocast: Callable = nullcontext, share_prompt: bool = True,
                         max_tokens: int = 0, old_weights=None) -> None:
    """Fill each pass's ``ref`` (and ``old``) with per-token log-probs, no second model copy.

    reference "base": the adapter switched off; "previous": the adapter the round starts from. π_old
    (ioGRPO) is the policy that generated the round's data: the starting adapter, unless
    ``old_weights`` says it is another (rounds that overlap, where the data is one version older):
    "base" for the adapter off, or a LoRA state dict, swapped in for the pass and back out. With
    ``share_prompt`` each distinct prompt of the round is computed once (``distinct_logprobs``), in
    passes of at most ``max_tokens`` padded tokens (0: no limit); without, pass by training pass.
    """
    if reference not in ("base", "previous"):
        raise ValueError(f"reference must be base or previous, got {reference!r}")
    passes = [p for mb in mbs for p in mb.passes]
    if not passes:
        return
    # Up to 4× a training pass's completions a pass: without a backward to keep activations for, that
    # takes less memory than the training step (and the token budget still holds).
    chunk = 4 * max(p.batch.completion_ids.shape[0] for p in passes)

    def logprobs() -> list[torch.Tensor]:
        if share_prompt:
            return distinct_logprobs(policy, [p.batch for p in passes], chunk=chunk, max_tokens=max_tokens)
        return [completion_logprobs(policy, *p.batch.tensors(), share_prompt=False) for p in passes]

    old_is_start = needs_old and old_weights is None
    need_start = old_is_start or reference == "previous"
    was_training = policy.training
    policy.eval()  # no dropout: these are the fixed targets of the round
    with torch.no_grad(), autocast():
        start = logprobs() if need_start else [None] * len(passes)
        if reference == "previous" or (need_start and starts_from_base):
            ref = start  # a fresh LoRA starts as the base model exactly (B = 0)
        else:
            with policy.disable_adapter():
                ref = logprobs()
        old = start
        if needs_old and old_weights is not None:
            with (policy.disable_adapter() if old_weights == "base" else swapped_adapter(policy, old_weights)):
                old = logprobs()
    for p, p_ref, p_old in zip(passes, ref, old):
        p.ref, p.old = p_ref, p_old if needs_old else None
    policy.train(was_training)


@contextmanager
def swapped_adapter(policy, weights: dict):
    """The peft ``policy`` with another adapter's LoRA ``weights`` (same rank and modules) in place of
    its own for the block, its own copied back after: in place, so an optimizer's parameters and a
    DDP wrapper's hooks stay those of the training adapter."""
    from peft import get_peft_model_state_dict, set_peft_model_state_dict

    own = {name: tensor.detach().clone() for name, tensor in get_peft_model_state_dict(policy).items()}
    set_peft_model_state_dict(policy, weights)
    try:
        yield
    finally:
        set_peft_model_state_dict(policy, own)


def _sum_over_workers(numbers: list[float], device: torch.device) -> torch.Tensor:
    """Sum ``numbers`` elementwise over all workers, reduced on ``device``.

    The collective must run on a device that the process group has a backend for: Ray Train's GPU
    group is NCCL only (CUDA tensors), where a CPU tensor fails with "No backend type associated
    with device type cpu"; its CPU group is gloo. The model's device is right in both."""
    tensor = torch.tensor(numbers, dtype=torch.float64, device=device)
    torch.distributed.all_reduce(tensor)
    return tensor


def _all_sum(values: dict, world: int, device: torch.device) -> dict:
    if world == 1 or not torch.distributed.is_initialized():
        return values
    keys = sorted(values)
    summed = _sum_over_workers([float(values[k]) for k in keys], device)
    return dict(zip(keys, summed.tolist()))  # a few numbers per step: the copy back to the host is cheap


def fit(model, mbs: list[MicroBatch], loss_fn: Callable, optimizer, *, epochs: int, grad_accum_steps: int,
        max_grad_norm: float, autocast: Callable = nullcontext, start_step: int = 0, world: int = 1,
        on_step: Callable[[dict], None] = lambda record: None) -> list[dict]:
    """Train ``model`` (a scorer: batch tensors → per-token log-probs) and return one record per step.

    ``loss_fn(logps, pass) -> (mean loss over pass.units, metrics)``; gradients of the passes of
    ``grad_accum_steps`` micro-batches are summed (DDP syncs only on the last) before one clipped
    optimizer step. Each pass's loss is weighted by units / (the step's units over all workers) ·
    world: DDP's average over workers then gives the mean over the global batch, even when workers
    hold different numbers of responses (groups of different sizes) or of passes.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    device = params[0].device if params else torch.device("cpu")  # where the process group reduces (see _all_sum)
    step, history = start_step, []
    for epoch in range(epochs):
        for first in range(0, len(mbs), grad_accum_steps):
            passes = [p for mb in mbs[first:first + grad_accum_steps] for p in mb.passes]
            began, cpu_began = time.perf_counter(), time.process_time()
            units = _all_sum({"units": sum(p.units for p in passes)}, world, device)["units"]
            sums = _accumulate(model, passes, loss_fn, units=units, world=world, autocast=autocast)
            # DDP has averaged the gradients, so this norm is the global batch's on every worker.
            norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm if max_grad_norm > 0 else float("inf"))
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            seconds, cpu = time.perf_counter() - began, time.process_time() - cpu_began
            tokens = sum(p.batch.tokens for p in passes)
            reduced = _all_sum({**sums, "tokens": tokens, "passes": len(passes), "seconds": seconds, "cpu_s": cpu},
                               world, device)
            # metrics: unit-weighted means over the global batch; tokens and passes: summed; the step's time:
            # the mean worker's; its CPU seconds (all of a worker's threads): well below seconds × threads
            # when other processes take the cores
            record = {key: reduced[key] / units for key in sums}
            record.update(grad_norm=float(norm), tokens=int(reduced["tokens"]), passes=int(reduced["passes"]),
                          seconds=reduced["seconds"] / world, cpu_s=reduced["cpu_s"] / world, step=step, epoch=epoch)
            record["tokens_per_s"] = record["tokens"] / max(record["seconds"], 1e-9)
            history.append(record)
            on_step(record)
    return history


def _accumulate(model, passes: list[Pass], loss_fn: Callable, *, units: float, world: int,
                autocast: Callable) -> dict[str, float]:
    """Forward and backward every pass, its loss weighted by its share of the step's ``units`` (all
    workers'), times ``world`` for DDP's average; the metrics' unit-weighted sums."""
    sums: dict[str, float] = {}
    for i, p in enumerate(passes):
        sync = i == len(passes) - 1 or not hasattr(model, "no_sync")
        with nullcontext() if sync else model.no_sync():
            with autocast():
                logps = model(*p.batch.tensors())
            loss, metrics = loss_fn(logps, p)
            (loss * (p.units * world / units)).backward()
        for key, value in metrics.items():
            sums[key] = sums.get(key, 0.0) + value * p.units
    return sums
