"""The learning algorithms, one entry each: what the learner trains on (pairs or groups, drawn from
a round's scored workflows), its loss, whether the loss needs π_old, the reference policy that
``train.reference: auto`` picks, and what the config must allow. Adding a variant is one entry here.

The losses are pure functions of per-token log-probs (flowpo/maths); torch loads only where a
learner runs, so the driver and the CLI read this registry without it.

How each algorithm uses the cost-aware signal (``train.cost_weight`` λ > 0; flowpo/maths/cost.py
states the rule: v = (s + λ·(1 − c̃)) / (1 + λ), on [0, 1]) in place of the score: Score-DPO and DPO
rank and pair by it, weight pairs P ∝ (v_w − v_l)^α, and Score-DPO's loss scales by f(v_w) and
1 − f(v_l); ioGRPO screens, sharpens and takes advantages on it. λ = 0 skips it: the items are
exactly those of the scores.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from flowpo.maths.cost import cost_adjusted
from flowpo.maths.groups import sample_groups
from flowpo.maths.pairs import Candidate, sample_score_dpo_pairs

if TYPE_CHECKING:  # the config imports this registry for its list of names
    import torch

    from flowpo.config import Config, TrainConfig

# (logps, ref, old, token mask, values, train) -> (loss, metrics); tensors are [C, Lc] per completion
# (a pair's completions interleaved chosen, rejected) and values [C] (scores or advantages).
Loss = Callable[..., "tuple[torch.Tensor, dict]"]


@dataclass(frozen=True)
class Algorithm:
    name: str
    summary: str  # the config's help for it
    unit: str  # what a round trains on, as summaries and reports name it: "pairs" or "groups"
    needs_old: bool  # the loss needs π_old, the policy that generated the round's data
    reference: str  # what ``train.reference: auto`` means: "base" (adapter off) or "previous"
    # How the policy that wrote the round's data enters the loss: with rounds that overlap
    # (pipeline.overlap_rounds) it is one version older than the adapter the learner starts from.
    data_policy: str
    overlap: bool  # whether rounds may overlap: the loss stays right when data is one version old
    items: Callable[["list[Candidate]", "Config", int], list]  # (scored candidates, config, seed) -> items
    loss: Loss
    no_items: Callable[["Config"], str]  # why a round has no items, when it has none
    check: Callable[["Config"], str] = lambda config: ""  # why the config can never work ("" when it can)


def score_dpo_pairs(candidates: list[Candidate], config: "Config", seed: int) -> list:
    t = config.train
    if t.cost_weight:  # pairs, their weights and the loss's f(s_w), 1 − f(s_l) from the signal
        candidates = cost_adjusted(candidates, t.cost_weight)
    return sample_score_dpo_pairs(candidates, num_pairs=t.num_pairs, alpha=t.alpha, seed=seed)


def score_dpo_loss(logps, ref, old, mask, values, train: "TrainConfig"):
    from flowpo.maths.losses import power, score_dpo_loss

    policy, ref = logps.sum(dim=1), ref.sum(dim=1)
    return score_dpo_loss(policy[0::2], policy[1::2], ref[0::2], ref[1::2], values[0::2], values[1::2],
                          beta=train.beta, f=power(train.score_exponent))


def dpo_loss(logps, ref, old, mask, values, train: "TrainConfig"):
    from flowpo.maths.losses import dpo_loss

    policy, ref = logps.sum(dim=1), ref.sum(dim=1)
    return dpo_loss(policy[0::2], policy[1::2], ref[0::2], ref[1::2], beta=train.beta)


def group_sizes(config: "Config") -> tuple[int, int, int]:
    """ioGRPO's (m, n, t): as set, or derived from generator.k in SPOGW's proportions (16, 14, 4)."""
    t = config.train
    m = t.group_m or config.generator.k
    n = t.group_n or m - 2
    return m, n, t.group_t or max(1, round(2 * n / 7))


def iogrpo_groups(candidates: list[Candidate], config: "Config", seed: int) -> list:
    m, n, t = group_sizes(config)
    if config.train.cost_weight:  # groups: screening, sharpening, advantages from the signal
        candidates = cost_adjusted(candidates, config.train.cost_weight)
    return sample_groups(candidates, m=m, n=n, t=t, top_n=config.train.num_groups,
                         max_combinations=config.train.max_combinations, seed=seed)


def iogrpo_loss(logps, ref, old, mask, values, train: "TrainConfig"):
    from flowpo.maths.grpo import iogrpo_loss

    return iogrpo_loss(logps, old, ref, mask, values, beta=train.beta, epsilon=train.epsilon,
                       masked_kl=train.masked_kl)


def iogrpo_check(config: "Config") -> str:
    k = config.generator.k
    m, n, sharpen = group_sizes(config)
    if n > min(k, m):
        return (f"train.group_n={n} exceeds min(generator.k={k}, train.group_m={m}) = {min(k, m)}: ioGRPO "
                "could never form a group, and every round would train nothing. Set train.group_n to at most "
                f"{min(k, m)}, or leave train.group_m, group_n and group_t at 0 to derive them from generator.k")
    if not 0 < 2 * sharpen < n:
        return (f"train.group_t={sharpen} with train.group_n={n}: a group is sharpened to its t lowest and t "
                "highest scores, so 0 < 2 * group_t < group_n is needed (generator.k of 5 or more)")
    return ""


def cost_check(config: "Config") -> str:
    """Why the cost term could never act ("" when it can): USD costs at prices of 0 are all 0."""
    t, llm = config.train, config.executor_llm
    if t.cost_weight and t.cost_unit == "usd" and not (llm.prompt_usd_per_mtok or llm.completion_usd_per_mtok):
        return (f"train.cost_weight={t.cost_weight} with train.cost_unit=usd, but executor_llm.prompt_usd_per_mtok "
                "and completion_usd_per_mtok are 0: every workflow would cost $0 and the cost term do nothing. Set "
                "the executor's prices, or train.cost_unit=tokens or calls")
    return ""


OFFLINE = ("unused: pairs from any policy's workflows; the reference is the base model, so data one version "
           "old changes which pairs a round sees, not the loss")

ALGORITHMS: dict[str, Algorithm] = {a.name: a for a in (
    Algorithm("score_dpo", "ScoreFlow's Score-DPO: pairs, the implicit rewards scaled by their scores", "pairs",
              needs_old=False, reference="base", items=score_dpo_pairs, loss=score_dpo_loss,
              data_policy=OFFLINE, overlap=True,
              no_items=lambda config: "no pair of workflows with different scores"),
    Algorithm("dpo", "DPO on the same pairs, their scores unused", "pairs", needs_old=False, reference="base",
              items=score_dpo_pairs, loss=dpo_loss, data_policy=OFFLINE, overlap=True,
              no_items=lambda config: "no pair of workflows with different scores"),
    Algorithm("iogrpo", "SPOGW's iterative offline GRPO with the advantage-masked KL: groups", "groups",
              needs_old=True, reference="previous", items=iogrpo_groups, loss=iogrpo_loss,
              data_policy="π_old of the clipped ratio: the learner computes it with the adapter that wrote the "
                          "round's workflows (recorded on each sample), whatever round that adapter is from",
              overlap=True,
              no_items=lambda config: (f"no problem has {group_sizes(config)[1]} scored workflows with different "
                                       "scores (ioGRPO groups)"),
              check=iogrpo_check),
)}


def algorithm(name: str) -> Algorithm:
    try:
        return ALGORITHMS[name]
    except KeyError:
        raise ValueError(f"unknown algorithm {name!r}; expected one of {', '.join(ALGORITHMS)}") from None
