"""Summed completion log-probs of causal LMs, the quantity every preference loss consumes."""
from __future__ import annotations

import torch


def encode_pair(tokenizer, prompt: str, completion: str, max_len: int) -> tuple[list[int], int]:
    """Token ids of prompt+completion (EOS appended) and the index where the completion starts.

    The prompt is cut from the left when the whole would exceed ``max_len``; the completion is kept.
    """
    prompt_ids = tokenizer(prompt, add_special_tokens=False).input_ids
    completion_ids = tokenizer(completion, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
    completion_ids = completion_ids[: max_len - 1]
    keep = max(1, max_len - len(completion_ids))
    prompt_ids = prompt_ids[-keep:]
    return prompt_ids + completion_ids, len(prompt_ids)


def sequence_logprob(model, input_ids: list[int], completion_start: int) -> torch.Tensor:
    """Σ_t log p(x_t | x_<t) over the completion tokens (a scalar with grad if the model has one)."""
    device = next(model.parameters()).device
    ids = torch.tensor([input_ids], device=device)
    logits = model(input_ids=ids).logits[0, :-1].float()
    targets = ids[0, 1:]
    token_logprobs = torch.log_softmax(logits, dim=-1).gather(1, targets[:, None])[:, 0]
    return token_logprobs[completion_start - 1:].sum()
