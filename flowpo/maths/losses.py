"""Preference losses as pure functions of tensors (summed completion log-probs per sequence)."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F


def identity(x: torch.Tensor) -> torch.Tensor:
    return x


def power(exponent: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """Score transform f(s) = s^p for scores in [0, 1]; p = 1 is the paper's identity."""
    return identity if exponent == 1 else (lambda s: s ** exponent)


def _reward_metrics(loss: torch.Tensor, reward_w: torch.Tensor, reward_l: torch.Tensor, delta: torch.Tensor,
                    beta: float) -> dict:
    # Rewards are the implicit β·(log π − log π_ref); the margin and accuracy are DPO's usual read-outs.
    return {"loss": loss.item(), "reward_w": (beta * reward_w).mean().item(),
            "reward_l": (beta * reward_l).mean().item(), "margin": (beta * (reward_w - reward_l)).mean().item(),
            "accuracy": (delta > 0).float().mean().item()}


def score_dpo_loss(policy_w: torch.Tensor, policy_l: torch.Tensor, ref_w: torch.Tensor, ref_l: torch.Tensor,
                   s_w: torch.Tensor, s_l: torch.Tensor, *, beta: float,
                   f: Callable[[torch.Tensor], torch.Tensor] = identity) -> tuple[torch.Tensor, dict]:
    """Score-DPO (ScoreFlow): implicit rewards scaled by the evaluation scores.

    Δ = f(s_w)·(logπθ(w) − logπref(w)) − (1 − f(s_l))·(logπθ(l) − logπref(l)),
    loss = mean(−log σ(β·Δ)). With s_w = 1, s_l = 0 and f = identity it is DPO.
    """
    reward_w = policy_w - ref_w
    reward_l = policy_l - ref_l
    delta = f(s_w) * reward_w - (1 - f(s_l)) * reward_l
    loss = -F.logsigmoid(beta * delta).mean()
    return loss, _reward_metrics(loss, reward_w, reward_l, delta, beta)


def dpo_loss(policy_w: torch.Tensor, policy_l: torch.Tensor, ref_w: torch.Tensor, ref_l: torch.Tensor, *,
             beta: float) -> tuple[torch.Tensor, dict]:
    """DPO: loss = mean(−log σ(β·((logπθ(w) − logπref(w)) − (logπθ(l) − logπref(l)))))."""
    reward_w, reward_l = policy_w - ref_w, policy_l - ref_l
    delta = reward_w - reward_l
    loss = -F.logsigmoid(beta * delta).mean()
    return loss, _reward_metrics(loss, reward_w, reward_l, delta, beta)
