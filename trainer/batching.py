"""Per-token completion log-probs for prompts that each carry several completions, prompt computed once.

A pair's chosen and rejected workflows share one prompt, and so do a group's members. The shared
path runs the (left-padded) prompts once with ``use_cache=True``, gathers each prompt's KV cache
once per completion, and runs the (right-padded) completions as one batch on top of it. Gradients
flow through the cached keys and values into the prompt pass. The plain path runs every completion
with its own copy of the prompt in the same layout, so the two differ only in the prompt sharing.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Encoded:
    """Token ids of one prompt and its completions (each ending in EOS)."""

    prompt: tuple[int, ...]
    completions: tuple[tuple[int, ...], ...]


def encode_shared(tokenizer, prompt: str, completions: list[str], max_len: int) -> Encoded:
    """Like ``encode_pair`` for several completions: the prompt is cut from the left so that it fits
    with the longest completion in ``max_len``; completions keep their start."""
    eos = tokenizer.eos_token_id
    outs = [(tokenizer(c, add_special_tokens=False).input_ids + [eos])[: max_len - 1] for c in completions]
    keep = max(1, max_len - max(len(c) for c in outs))
    # The first completion token is predicted from the last prompt token, so a prompt has one at least.
    prompt_ids = tokenizer(prompt, add_special_tokens=False).input_ids[-keep:] or [eos]
    return Encoded(tuple(prompt_ids), tuple(tuple(c) for c in outs))


@dataclass(frozen=True)
class Batch:
    prompt_ids: torch.Tensor  # [P, Lp], left-padded
    prompt_mask: torch.Tensor  # [P, Lp]
    completion_ids: torch.Tensor  # [C, Lc], right-padded, completions of prompt 0 first
    completion_mask: torch.Tensor  # [C, Lc]
    owner: torch.Tensor  # [C], the prompt row of each completion
    tokens: int  # Σ over completions of prompt + completion tokens: what a per-sequence trainer processes

    def tensors(self) -> tuple[torch.Tensor, ...]:
        return self.prompt_ids, self.prompt_mask, self.completion_ids, self.completion_mask, self.owner

    def to(self, device) -> "Batch":
        moved = [t.to(device) for t in self.tensors()]
        return Batch(*moved, tokens=self.tokens)


def collate(encoded: list[Encoded], pad_id: int) -> Batch:
    prompt_len = max(len(e.prompt) for e in encoded)
    completions = [(i, c) for i, e in enumerate(encoded) for c in e.completions]
    completion_len = max(len(c) for _, c in completions)
    prompt_ids = torch.full((len(encoded), prompt_len), pad_id, dtype=torch.long)
    prompt_mask = torch.zeros((len(encoded), prompt_len), dtype=torch.long)
    for row, e in enumerate(encoded):
        prompt_ids[row, prompt_len - len(e.prompt):] = torch.tensor(e.prompt)
        prompt_mask[row, prompt_len - len(e.prompt):] = 1
    completion_ids = torch.full((len(completions), completion_len), pad_id, dtype=torch.long)
    completion_mask = torch.zeros((len(completions), completion_len), dtype=torch.long)
    for row, (_, c) in enumerate(completions):
        completion_ids[row, :len(c)] = torch.tensor(c)
        completion_mask[row, :len(c)] = 1
    owner = torch.tensor([i for i, _ in completions], dtype=torch.long)
    tokens = sum(len(encoded[i].prompt) + len(c) for i, c in completions)
    return Batch(prompt_ids, prompt_mask, completion_ids, completion_mask, owner, tokens)


def _positions(mask: torch.Tensor) -> torch.Tensor:
    # Left padding: real tokens count from 0; pad positions are masked out, their value is irrelevant.
    return (mask.cumsum(-1) - 1).clamp(min=0)


class _TokenLogprobs(torch.autograd.Function):
    """log p(target) per position, in fp32, computed one row (sequence) at a time, forward and backward.

    Autograd through ``logits.float()`` and ``logsumexp`` keeps an fp32 copy of the whole pass's logits
    and makes two more as temporaries: with a 49k vocabulary that is most of a pass's memory. Here the
    fp32 work exists for one row at a time; the backward recomputes each row's softmax from the logits
    (which the pass holds anyway) and writes d/dlogits = g·(onehot(target) − softmax) into one buffer."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        out = torch.empty(targets.shape, dtype=torch.float32, device=logits.device)
        for i, (row, target) in enumerate(zip(logits, targets)):
            row = row.float()
            out[i] = row.gather(-1, target[:, None])[:, 0] - torch.logsumexp(row, dim=-1)
        ctx.save_for_backward(logits, targets)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        logits, targets = ctx.saved_tensors
        grad_logits = torch.empty_like(logits, memory_format=torch.contiguous_format)
        for i, (row, target) in enumerate(zip(logits, targets)):
            g = grad[i, :, None].float()
            row_grad = torch.softmax(row.float(), dim=-1).mul_(-g)
            grad_logits[i] = row_grad.scatter_add_(-1, target[:, None], g)
        return grad_logits, None


def token_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """[B, T] log p(target) per position, in fp32, from [B, T, V] logits, one row at a time (``_TokenLogprobs``)."""
    return _TokenLogprobs.apply(logits, targets)


def completion_logprobs(model, prompt_ids, prompt_mask, completion_ids, completion_mask, owner, *,
                        share_prompt: bool = True, prefix: tuple | None = None) -> torch.Tensor:
    """[C, Lc] log-probs of each completion token given its prompt and the completion before it (0 at padding).

    ``prefix`` (shared path): (KV cache of one sequence, its length L), a start common to every
    prompt, which ``prompt_ids`` then continue (the cache is extended in place)."""
    lc = completion_ids.shape[1]
    full_mask = torch.cat([prompt_mask[owner], completion_mask], dim=1)
    if share_prompt:
        past, offset = prefix if prefix is not None else (None, 0)
        if past is not None:
            past.batch_repeat_interleave(prompt_ids.shape[0])
            prompt_mask = torch.cat([prompt_mask.new_ones(prompt_mask.shape[0], offset), prompt_mask], dim=1)
            full_mask = torch.cat([prompt_mask[owner], completion_mask], dim=1)
        out = model(input_ids=prompt_ids, attention_mask=prompt_mask, position_ids=_positions(prompt_mask)[:, offset:],
                    past_key_values=past, use_cache=True, logits_to_keep=1)
        cache = out.past_key_values
        cache.batch_select_indices(owner)  # each prompt's keys/values once per completion (a differentiable gather)
        start = prompt_mask.sum(dim=1)[owner]
        positions = start[:, None] + torch.arange(lc, device=start.device)
        rest = model(input_ids=completion_ids, attention_mask=full_mask, position_ids=positions,
                     past_key_values=cache, use_cache=True).logits
        # The prompt's last logits predict completion token 0; completion position j predicts token j + 1.
        # Log-probs are taken of each tensor whole and joined after, never the [C, Lc, V] logits: a
        # joined (or sliced) copy of those would cost as much memory as the logits themselves.
        first = token_logprobs(out.logits[owner, -1:], completion_ids[:, :1])
        logps = torch.cat([first, token_logprobs(rest, _then_dummy(completion_ids[:, 1:]))[:, :-1]], dim=1)
    else:
        ids = torch.cat([prompt_ids[owner], completion_ids], dim=1)
        logits = model(input_ids=ids, attention_mask=full_mask, position_ids=_positions(full_mask),
                       logits_to_keep=lc + 1).logits
        # Kept position j (the last prompt token, then the completion) predicts completion token j; the last, nothing.
        logps = token_logprobs(logits, _then_dummy(completion_ids))[:, :-1]
    return logps * completion_mask


def _then_dummy(targets: torch.Tensor) -> torch.Tensor:
    """``targets`` and one more column (token 0) for the logits' last position, whose log-prob is dropped."""
    return torch.cat([targets, torch.zeros_like(targets[:, :1])], dim=1)


def rows(batch: Batch) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """(prompt, completion) token ids of each completion row, padding removed."""
    prompts = [tuple(ids[mask.bool()].tolist()) for ids, mask in zip(batch.prompt_ids, batch.prompt_mask)]
    return [(prompts[int(owner)], tuple(ids[mask.bool()].tolist()))
            for ids, mask, owner in zip(batch.completion_ids, batch.completion_mask, batch.owner)]


def distinct_logprobs(model, batches: list[Batch], *, chunk: int, max_tokens: int = 0,
                      min_prefix: int = 32) -> list[torch.Tensor]:
    """``completion_logprobs`` (shared prompts) of every batch, each distinct (prompt, completion)
    computed once, each distinct prompt once (passes of up to ``chunk`` completions and, with
    ``max_tokens``, up to that many padded tokens: ``passes``), and the start
    that all prompts share (at least ``min_prefix`` tokens: the template's instructions and examples)
    once. A round's pairs repeat their problems' prompts (drawn with replacement, several a problem),
    a prompt is most of a pair's tokens, and most of a prompt is the template: a round-start pass
    over the micro-batches one by one repeats most of its work."""
    device = batches[0].prompt_ids.device
    by_row = [rows(b) for b in batches]
    by_prompt: dict[tuple, dict[tuple, None]] = {}  # insertion-ordered sets
    for prompt, completion in (row for batch_rows in by_row for row in batch_rows):
        by_prompt.setdefault(prompt, {})[completion] = None
    cut, prefix = shared_start(list(by_prompt)), None
    if cut >= min_prefix:
        prefix = model(input_ids=torch.tensor([next(iter(by_prompt))[:cut]], device=device), use_cache=True,
                       logits_to_keep=1).past_key_values
    else:
        cut = 0
    values: dict[tuple, torch.Tensor] = {}
    for group in passes(by_prompt, chunk, max_tokens):
        batch = collate([Encoded(prompt[cut:], part) for prompt, part in group], pad_id=0).to(device)  # pads are masked
        past = (copy.deepcopy(prefix), cut) if prefix is not None else None  # each pass extends its own copy
        logps = iter(completion_logprobs(model, *batch.tensors(), share_prompt=True, prefix=past))
        values.update({(prompt, c): next(logps)[:len(c)] for prompt, part in group for c in part})
    out = []
    for batch, batch_rows in zip(batches, by_row):
        logps = torch.zeros(batch.completion_ids.shape, dtype=torch.float32, device=device)
        for i, row in enumerate(batch_rows):
            logps[i, :len(row[1])] = values[row]
        out.append(logps)
    return out


def shared_start(prompts: list[tuple[int, ...]]) -> int:
    """Tokens at the start of every prompt, leaving each at least one of its own; 0 for one prompt."""
    if len(prompts) < 2:
        return 0
    first, last = min(prompts), max(prompts)  # the common prefix of all is that of the extremes
    common = next((i for i, (a, b) in enumerate(zip(first, last)) if a != b), min(len(first), len(last)))
    return min(common, min(len(p) for p in prompts) - 1)


def passes(by_prompt: dict[tuple, dict[tuple, None]], chunk: int, max_tokens: int = 0):
    """(prompt, completions) groups of at most ``chunk`` completions in all and, with ``max_tokens``,
    at most that many padded tokens (``padded_tokens``, whole prompts), prompts in order. A
    completion that alone exceeds ``max_tokens`` gets a pass of its own."""
    group: list[tuple[tuple, list[tuple]]] = []
    prompt_lens: list[int] = []
    completion_lens: list[int] = []
    for prompt, completions in by_prompt.items():
        for completion in completions:
            same_prompt = bool(group) and group[-1][0] == prompt
            grown = padded_tokens(prompt_lens + ([] if same_prompt else [len(prompt)]),
                                  completion_lens + [len(completion)])
            if group and (len(completion_lens) == chunk or (max_tokens and grown > max_tokens)):
                yield [(p, tuple(cs)) for p, cs in group]
                group, prompt_lens, completion_lens, same_prompt = [], [], [], False
            if not same_prompt:
                group.append((prompt, []))
                prompt_lens.append(len(prompt))
            group[-1][1].append(completion)
            completion_lens.append(len(completion))
    if group:
        yield [(p, tuple(cs)) for p, cs in group]


def padded_tokens(prompt_lens: list[int], completion_lens: list[int], *, share_prompt: bool = True) -> int:
    """The tokens one pass runs through the model, padding included, as ``collate`` lays it out: P
    prompt rows of the longest prompt's length Lp and C completion rows of the longest completion's Lc.
    Shared prompts: P·Lp + C·Lc. Plain: every completion with its own prompt, C·(Lp + Lc).

    Logits and saved activations grow with these tokens. Not counted: in the shared layout each
    completion attends to its prompt through a copy of the prompt's keys and values (C·Lp positions,
    about a tenth of a computed token's bytes each for SmolLM2)."""
    if not completion_lens:
        return 0
    lp, lc, c = max(prompt_lens), max(completion_lens), len(completion_lens)
    return len(prompt_lens) * lp + c * lc if share_prompt else c * (lp + lc)


class CompletionScorer(torch.nn.Module):
    """The policy as one module whose forward is a whole batch's log-probs, so DDP sees one forward
    per backward even though the shared path calls the model twice."""

    def __init__(self, policy, share_prompt: bool = True):
        super().__init__()
        self.policy = policy
        self.share_prompt = share_prompt

    def forward(self, prompt_ids, prompt_mask, completion_ids, completion_mask, owner):
        return completion_logprobs(self.policy, prompt_ids, prompt_mask, completion_ids, completion_mask, owner,
                                   share_prompt=self.share_prompt)
