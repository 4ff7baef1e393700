"""From learner items (pairs or groups) to micro-batches, and from a micro-batch's log-probs to its loss.

A micro-batch carries what stays fixed for the round: its tensors, the scores or advantages, and
the reference (and, for ioGRPO, old) per-token log-probs computed once at the start of the round.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from flowpo.algorithms import algorithm
from flowpo.config import TrainConfig
from trainer.batching import Batch, collate, encode_shared
from trainer.maths.groups import PromptGroup
from trainer.maths.pairs import PreferencePair


@dataclass
class MicroBatch:
    batch: Batch
    units: int  # what the loss averages over: pairs, or responses for ioGRPO
    values: torch.Tensor  # [C]: each completion's score (pairs) or advantage (groups)
    ref: torch.Tensor | None = None  # [C, Lc] reference per-token log-probs
    old: torch.Tensor | None = None  # [C, Lc] π_old per-token log-probs (ioGRPO)


def micro_batches(items: list, tokenizer, *, size: int, max_len: int) -> list[MicroBatch]:
    """``size`` pairs or groups per micro-batch, in order; a pair's completions are (chosen, rejected)."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    out = []
    for start in range(0, len(items), size):
        chunk = items[start:start + size]
        if isinstance(chunk[0], PreferencePair):
            encoded = [encode_shared(tokenizer, p.prompt, [p.chosen, p.rejected], max_len) for p in chunk]
            values = [v for p in chunk for v in (p.score_chosen, p.score_rejected)]
            units = len(chunk)
        elif isinstance(chunk[0], PromptGroup):
            encoded = [encode_shared(tokenizer, g.prompt, list(g.completions), max_len) for g in chunk]
            values = [a for g in chunk for a in g.advantages]
            units = len(values)
        else:
            raise TypeError(f"learner items must be PreferencePair or PromptGroup, got {type(chunk[0]).__name__}")
        out.append(MicroBatch(collate(encoded, pad), units, torch.tensor(values, dtype=torch.float32)))
    return out


def micro_batch_loss(logps: torch.Tensor, mb: MicroBatch, train: TrainConfig) -> tuple[torch.Tensor, dict]:
    """The loss (a mean over ``mb.units``) of one micro-batch given the policy's per-token log-probs,
    by ``train.algorithm`` (flowpo/algorithms.py)."""
    return algorithm(train.algorithm).loss(logps, mb.ref, mb.old, mb.batch.completion_mask, mb.values, train)
