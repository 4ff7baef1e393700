"""From learner items (pairs or groups) to micro-batches and their passes, and from a pass's log-probs to its loss.

A micro-batch is ``train.micro_batch_size`` pairs or groups: what gradient accumulation counts. It
runs as one or more passes (forward and backward) of at most ``train.max_tokens_per_pass`` padded
tokens each (``batching.padded_tokens``), so the memory of a step follows the budget, not the size of
a group. A group's responses may fall into different passes: ioGRPO's loss is a mean over responses,
each response's term its own, so the passes' losses weighted by their share of the responses
(trainer/fit.py) sum to the one-pass loss, and so do their gradients. A pair stays in one pass
(Score-DPO's term needs both of its log-probs); a pair that alone exceeds the budget is an error.

A pass carries what stays fixed for the round: its tensors, the scores or advantages, and the
reference (and, for ioGRPO, old) per-token log-probs computed once at the start of the round.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from flowpo.algorithms import algorithm
from flowpo.config import TrainConfig
from flowpo.errors import FlowPOError
from flowpo.maths.groups import PromptGroup
from flowpo.maths.pairs import PreferencePair
from trainer.batching import Batch, Encoded, collate, encode_shared, padded_tokens

Atom = tuple[int, tuple[int, ...]]  # (item in the micro-batch, its completions that must share a pass)


@dataclass
class Pass:
    """One forward and backward: some of a micro-batch's completions, with their prompts."""
    batch: Batch
    units: int  # what its loss averages over: its pairs, or its responses for ioGRPO
    values: torch.Tensor  # [C]: each completion's score (pairs) or advantage (groups)
    ref: torch.Tensor | None = None  # [C, Lc] reference per-token log-probs
    old: torch.Tensor | None = None  # [C, Lc] π_old per-token log-probs (ioGRPO)


@dataclass
class MicroBatch:
    """``train.micro_batch_size`` pairs or groups, what ``grad_accum_steps`` counts, in passes whose
    losses, each weighted by its share of the units (trainer/fit.py), sum to the one-pass loss."""
    passes: list[Pass]
    items: int  # pairs or groups

    @property
    def units(self) -> int:
        return sum(p.units for p in self.passes)


def micro_batches(items: list, tokenizer, *, size: int, max_len: int, max_tokens: int = 0,
                  share_prompt: bool = True) -> list[MicroBatch]:
    """``size`` pairs or groups per micro-batch, in order, each split into passes of at most
    ``max_tokens`` padded tokens (0: one pass); a pair's completions are (chosen, rejected)."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    out = []
    for start in range(0, len(items), size):
        chunk = items[start:start + size]
        encoded, values, atoms = zip(*(_encode(item, tokenizer, max_len) for item in chunk))
        atoms = [(i, completions) for i, item_atoms in enumerate(atoms) for completions in item_atoms]
        if max_tokens:
            _check_each_fits(chunk, encoded, atoms, max_tokens, share_prompt)
        parts = _split(encoded, atoms, max_tokens, share_prompt)
        out.append(MicroBatch([_pass(encoded, values, part, pad) for part in parts], items=len(chunk)))
    return out


def _encode(item, tokenizer, max_len: int) -> tuple[Encoded, list[float], list[tuple[int, ...]]]:
    """An item's tokens, its completions' values, and its atoms: a pair's two completions together,
    a group's completions one by one."""
    if isinstance(item, PreferencePair):
        encoded = encode_shared(tokenizer, item.prompt, [item.chosen, item.rejected], max_len)
        return encoded, [item.score_chosen, item.score_rejected], [(0, 1)]
    if isinstance(item, PromptGroup):
        encoded = encode_shared(tokenizer, item.prompt, list(item.completions), max_len)
        return encoded, list(item.advantages), [(i,) for i in range(len(item.completions))]
    raise TypeError(f"learner items must be PreferencePair or PromptGroup, got {type(item).__name__}")


def _atoms_tokens(encoded: tuple[Encoded, ...], atoms: list[Atom], share_prompt: bool) -> int:
    """The padded tokens of one pass of ``atoms``."""
    prompts = {i: len(encoded[i].prompt) for i, _ in atoms}
    completions = [len(encoded[i].completions[c]) for i, cs in atoms for c in cs]
    return padded_tokens(list(prompts.values()), completions, share_prompt=share_prompt)


def _check_each_fits(chunk: list, encoded: tuple[Encoded, ...], atoms: list[Atom], max_tokens: int,
                     share_prompt: bool) -> None:
    """Every atom fits a pass alone. The config's check (at least max_seq_len, twice that for pairs)
    makes this hold for what the learner encodes; a caller with its own budget is told here."""
    for i, completions in atoms:
        alone = _atoms_tokens(encoded, [(i, completions)], share_prompt)
        if alone > max_tokens:
            what = "a pair's prompt and its two workflows" if len(completions) == 2 else "a prompt and a workflow"
            raise FlowPOError(f"{what} (problem {chunk[i].problem_id}) take {alone} tokens in one pass, more than "
                              f"train.max_tokens_per_pass = {max_tokens}: set it to {alone} or more (0: no limit), "
                              "or lower train.max_seq_len")


def _split(encoded: tuple[Encoded, ...], atoms: list[Atom], max_tokens: int, share_prompt: bool) -> list[list[Atom]]:
    """``atoms`` in order, cut into runs of at most ``max_tokens`` padded tokens (0: one run); each atom
    fits alone. Greedy: a pass's padded size only grows as atoms join it."""
    parts: list[list[Atom]] = [[]]
    for atom in atoms:
        if parts[-1] and max_tokens and _atoms_tokens(encoded, parts[-1] + [atom], share_prompt) > max_tokens:
            parts.append([])
        parts[-1].append(atom)
    return parts


def _pass(encoded: tuple[Encoded, ...], values: tuple[list[float], ...], part: list[Atom], pad: int) -> Pass:
    chosen: dict[int, list[int]] = {}  # item → its completions in this pass, both in order
    for i, completions in part:
        chosen.setdefault(i, []).extend(completions)
    batch = collate([Encoded(encoded[i].prompt, tuple(encoded[i].completions[c] for c in cs))
                     for i, cs in chosen.items()], pad)
    pass_values = [values[i][c] for i, cs in chosen.items() for c in cs]
    return Pass(batch, units=len(part), values=torch.tensor(pass_values, dtype=torch.float32))


def pass_loss(logps: torch.Tensor, p: Pass, train: TrainConfig) -> tuple[torch.Tensor, dict]:
    """The loss (a mean over ``p.units``) of one pass given the policy's per-token log-probs,
    by ``train.algorithm`` (flowpo/algorithms.py)."""
    return algorithm(train.algorithm).loss(logps, p.ref, p.old, p.batch.completion_mask, p.values, train)
