import math

import torch

from flowpo.maths.losses import dpo_loss, score_dpo_loss


def t(*values):
    return torch.tensor(values, dtype=torch.float64)


def test_score_dpo_by_hand():
    # pair 1: rewards  w: -1 - (-2) = 1,  l: -3 - (-2) = -1;  s_w = 1, s_l = 0.5
    #   Δ = 1·1 − (1 − 0.5)·(−1) = 1.5;  β·Δ = 0.15
    # pair 2: rewards  w: 0,  l: 2;  s_w = 0.75, s_l = 0
    #   Δ = 0.75·0 − 1·2 = −2;  β·Δ = −0.2
    # pair 3: rewards  w: 0.5, l: 0.5;  s_w = 1, s_l = 1   → Δ = 0.5 − 0 = 0.5; β·Δ = 0.05
    loss, metrics = score_dpo_loss(t(-1, 0, 0.5), t(-3, 2, 0.5), t(-2, 0, 0), t(-2, 0, 0),
                                   t(1, 0.75, 1), t(0.5, 0, 1), beta=0.1)
    expected = -(math.log(1 / (1 + math.exp(-0.15))) + math.log(1 / (1 + math.exp(0.2)))
                 + math.log(1 / (1 + math.exp(-0.05)))) / 3
    assert math.isclose(loss.item(), expected, rel_tol=1e-12)
    assert math.isclose(metrics["accuracy"], 2 / 3, rel_tol=1e-6)  # float32 mean


def test_score_dpo_with_scores_one_zero_is_dpo():
    gen = torch.Generator().manual_seed(0)
    pw, pl, rw, rl = (torch.randn(5, generator=gen, dtype=torch.float64) for _ in range(4))
    ones, zeros = torch.ones(5, dtype=torch.float64), torch.zeros(5, dtype=torch.float64)
    score_dpo, _ = score_dpo_loss(pw, pl, rw, rl, ones, zeros, beta=0.3)
    dpo, _ = dpo_loss(pw, pl, rw, rl, beta=0.3)
    assert torch.allclose(score_dpo, dpo)


def test_dpo_against_closed_form_and_gradient_direction():
    # Δ = (0 − 0) − (0 − 0) = 0 → loss = log 2
    loss, _ = dpo_loss(t(0.0), t(0.0), t(0.0), t(0.0), beta=0.1)
    assert math.isclose(loss.item(), math.log(2))
    policy_w = torch.zeros(1, requires_grad=True)
    policy_l = torch.zeros(1, requires_grad=True)
    loss, _ = score_dpo_loss(policy_w, policy_l, torch.zeros(1), torch.zeros(1), torch.ones(1),
                             torch.zeros(1), beta=0.1)
    loss.backward()
    # descent raises the winner's log-prob and lowers the loser's: dL/dw = −β·σ(−0)= −0.05
    assert math.isclose(policy_w.grad.item(), -0.05, rel_tol=1e-6)
    assert math.isclose(policy_l.grad.item(), 0.05, rel_tol=1e-6)


def test_custom_score_transform():
    # f(x) = x²: Δ = 0.25·1 − (1 − 0.25)·(−1) = 1 ; loss = −log σ(1)
    loss, _ = score_dpo_loss(t(1.0), t(-1.0), t(0.0), t(0.0), t(0.5), t(0.5), beta=1.0, f=lambda x: x ** 2)
    assert math.isclose(loss.item(), math.log(1 + math.exp(-1.0)), rel_tol=1e-12)


def test_dpo_by_hand():
    # rewards  w: (−1 − (−2), 0 − 0, 0.5 − 0) = (1, 0, 0.5);  l: (−3 − (−2), 2 − 0, −0.5 − 0) = (−1, 2, −0.5)
    # Δ = (2, −2, 1); β·Δ = (0.2, −0.2, 0.1); loss = mean(log(1 + e^−βΔ))
    loss, metrics = dpo_loss(t(-1, 0, 0.5), t(-3, 2, -0.5), t(-2, 0, 0), t(-2, 0, 0), beta=0.1)
    expected = (math.log(1 + math.exp(-0.2)) + math.log(1 + math.exp(0.2)) + math.log(1 + math.exp(-0.1))) / 3
    assert math.isclose(loss.item(), expected, rel_tol=1e-12)
    assert math.isclose(metrics["accuracy"], 2 / 3, rel_tol=1e-6)
    assert math.isclose(metrics["reward_w"], 0.1 * 1.5 / 3, rel_tol=1e-9)  # β·mean(1, 0, 0.5)
    assert math.isclose(metrics["reward_l"], 0.1 * 0.5 / 3, rel_tol=1e-9)  # β·mean(−1, 2, −0.5)
    assert math.isclose(metrics["margin"], 0.1 * 1 / 3, rel_tol=1e-9)  # β·mean(Δ) = β·(2 − 2 + 1)/3


def test_power_score_transform():
    # f(s) = s²: Δ = 0.25·1 − (1 − 0.25)·(−1) = 1, as in the lambda above; p = 1 is the identity itself
    from flowpo.maths.losses import identity, power

    loss, _ = score_dpo_loss(t(1.0), t(-1.0), t(0.0), t(0.0), t(0.5), t(0.5), beta=1.0, f=power(2.0))
    assert math.isclose(loss.item(), math.log(1 + math.exp(-1.0)), rel_tol=1e-12)
    assert power(1.0) is identity
