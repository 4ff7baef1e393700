"""ioGRPO with the advantage-masked KL (SPOGW eq. 3.6), a pure function of token log-probs."""
from __future__ import annotations

import torch


def iogrpo_loss(policy_logps: torch.Tensor, old_logps: torch.Tensor, ref_logps: torch.Tensor,
                token_mask: torch.Tensor, advantages: torch.Tensor, *, beta: float, epsilon: float,
                masked_kl: bool = True) -> tuple[torch.Tensor, dict]:
    """Negative mean over responses of
    (1/|y_i|) Σ_t [min(r_t·A_i, clip(r_t, 1−ε, 1+ε)·A_i) − β·m_i·KL_t],
    r_t = exp(lθ − l_old), KL_t = exp(l_ref − lθ) − (l_ref − lθ) − 1, m_i = 1[A_i > 0] (or 1 when
    ``masked_kl`` is off). Log-prob tensors are [B, T]; ``token_mask`` marks completion tokens.
    """
    mask = token_mask.to(policy_logps.dtype)
    adv = advantages[:, None]
    ratio = torch.exp(policy_logps - old_logps)
    surrogate = torch.minimum(ratio * adv, torch.clamp(ratio, 1 - epsilon, 1 + epsilon) * adv)
    log_ratio_ref = ref_logps - policy_logps
    kl = torch.exp(log_ratio_ref) - log_ratio_ref - 1
    kl_weight = (advantages > 0).to(policy_logps.dtype)[:, None] if masked_kl else torch.ones_like(adv)
    per_token = surrogate - beta * kl_weight * kl
    per_response = (per_token * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
    loss = -per_response.mean()
    tokens = mask.sum().clamp(min=1)
    metrics = {"loss": loss.item(), "kl": ((kl * mask).sum() / tokens).item(),
               "clip_fraction": ((((ratio - 1).abs() > epsilon).to(mask.dtype) * mask).sum() / tokens).item(),
               "ratio": ((ratio * mask).sum() / tokens).item(),
               "advantage_abs": advantages.abs().mean().item(),
               "kl_masked_fraction": 1.0 - kl_weight.mean().item()}
    return loss, metrics
