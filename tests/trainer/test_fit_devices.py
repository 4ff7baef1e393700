"""Where the learner's per-step metric sums are reduced (trainer/fit.py, issue 13).

Ray Train's GPU workers share an NCCL-only process group: its backend map names CUDA alone, and a
collective on a CPU tensor fails with "No backend type associated with device type cpu" — which the
learner's step metrics did with 2 GPU workers, at the first optimizer step. No CUDA here, so the
tests build the same shape on CPU: a group whose only backend is for a non-CPU device type ("meta",
served by gloo), where torch's dispatch refuses CPU tensors exactly as NCCL's group does. A second
test sums real numbers over 2 gloo ranks, as Ray Train's CPU workers do.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from trainer.fit import _all_sum, _sum_over_workers, fit


@pytest.fixture
def meta_only_group():
    """A 1-rank process group with a backend for "meta" tensors only, like NCCL's for "cuda"."""
    dist.init_process_group(backend="meta:gloo", store=dist.HashStore(), rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_a_group_without_a_cpu_backend_reduces_on_its_own_device(meta_only_group):
    # The group's device: the collective is dispatched (meta tensors carry shapes, not values).
    summed = _sum_over_workers([3.0, 4.0], torch.device("meta"))
    assert summed.device.type == "meta" and summed.shape == (2,)
    # The old code's CPU tensor, in the same group: the error every 2-GPU example died with.
    with pytest.raises(RuntimeError, match="No backend type associated with device type cpu"):
        _sum_over_workers([3.0, 4.0], torch.device("cpu"))


def test_one_worker_needs_no_process_group():
    assert not dist.is_initialized()
    assert _all_sum({"loss": 0.5}, 1, torch.device("meta")) == {"loss": 0.5}


@dataclass
class _Batch:
    tokens: int

    def tensors(self) -> tuple:
        return ()


@dataclass
class _Pass:
    batch: _Batch
    units: int


@dataclass
class _MicroBatch:
    passes: list[_Pass]


class _Scorer(torch.nn.Module):
    """One weight; the "log-probs" are that weight, so the loss and its metric are known exactly."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.tensor(1.0))

    def forward(self) -> torch.Tensor:
        return self.weight


def _rank_main(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group(backend="cpu:gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        # rank 0 holds 1 unit of 10 tokens with metric 1.0 in one pass; rank 1 holds 3 units of 30 tokens with
        # metric 2.0 in two passes (1 unit and 10 tokens, 2 units and 20 tokens)
        passes = [_Pass(_Batch(tokens=10), units=1)] if rank == 0 else [_Pass(_Batch(10), 1), _Pass(_Batch(20), 2)]
        mbs = [_MicroBatch(passes)]
        value = float(rank + 1)
        scorer = _Scorer()
        history = fit(scorer, mbs, lambda logps, mb: (logps * 0.0, {"metric": value}),
                      torch.optim.SGD(scorer.parameters(), lr=0.0), epochs=1, grad_accum_steps=1,
                      max_grad_norm=0.0, world=2)
        Path(out_dir, f"{rank}.json").write_text(json.dumps(history))
        dist.barrier()  # neither rank tears its connections down while the other still reduces
    finally:
        dist.destroy_process_group()


def test_two_gloo_workers_report_the_global_batch(tmp_path):
    mp.spawn(_rank_main, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    records = [json.loads((tmp_path / f"{rank}.json").read_text())[0] for rank in (0, 1)]
    assert records[0] == records[1]  # every rank logs the same, global step
    assert records[0]["tokens"] == 10 + 30 and records[0]["passes"] == 1 + 2  # summed over workers
    assert records[0]["metric"] == pytest.approx((1 * 1.0 + 3 * 2.0) / 4)  # unit-weighted mean: 7/4
