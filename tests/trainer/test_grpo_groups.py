import math

import pytest
import torch

from flowpo.maths.groups import advantages, build_groups, sharpen
from flowpo.maths.grpo import iogrpo_loss


def test_iogrpo_clipping_by_hand():
    # response 0: A = 1, π = π_old (r = 1), π_ref = π → KL 0;        per response (1 + 1)/2 = 1
    # response 1: A = −1, token 0: lθ − l_old = 0.5 → r = e^0.5 = 1.6487; clip → 1.2
    #   min(−1.6487, −1.2) = −1.6487; token 1 masked out                → per response −1.6487
    # loss = −(1 − 1.6487)/2 = 0.32436
    policy = torch.tensor([[-1.0, -2.0], [-0.5, -9.0]])
    old = torch.tensor([[-1.0, -2.0], [-1.0, -3.0]])
    mask = torch.tensor([[1, 1], [1, 0]])
    loss, metrics = iogrpo_loss(policy, old, policy.clone(), mask, torch.tensor([1.0, -1.0]), beta=0.1, epsilon=0.2)
    assert loss.item() == pytest.approx(-(1 - math.exp(0.5)) / 2, rel=1e-6)
    assert metrics["clip_fraction"] == pytest.approx(1 / 3)  # one of three counted tokens


def test_advantage_masked_kl_by_hand():
    # r = 1 everywhere; l_ref − lθ = 0.5 → KL = e^0.5 − 0.5 − 1 = 0.148721; β = 0.1
    # masked:   resp0 (A=1) = 1 − 0.0148721; resp1 (A=−1) = −1         → loss = 0.0074361
    # unmasked: resp1 = −1 − 0.0148721                                   → loss = 0.0148721
    policy = torch.tensor([[-1.0], [-1.0]])
    ref = policy + 0.5
    mask = torch.ones(2, 1)
    adv = torch.tensor([1.0, -1.0])
    kl = math.exp(0.5) - 1.5
    masked, _ = iogrpo_loss(policy, policy.clone(), ref, mask, adv, beta=0.1, epsilon=0.2)
    unmasked, _ = iogrpo_loss(policy, policy.clone(), ref, mask, adv, beta=0.1, epsilon=0.2, masked_kl=False)
    assert masked.item() == pytest.approx(0.1 * kl / 2, rel=1e-5)
    assert unmasked.item() == pytest.approx(0.1 * kl, rel=1e-5)


def test_advantages_and_sharpening():
    # scores 0, 1 → mean 0.5, std 0.5 → (−1, 1)
    assert advantages([0.0, 1.0]) == pytest.approx([-1.0, 1.0], abs=1e-5)
    assert sharpen((0, 1, 2, 3), [0.3, 0.1, 0.9, 0.5], t=1) == (1, 2)


def test_build_groups_by_hand():
    # C(4,3) variances: (0,1,3): 0,1,1 → 0.2222; (0,1,2) and (0,2,3): 0.1667; (1,2,3): 0.0556
    # top 2 → (0,1,3), (0,1,2); sharpened to t=1 lowest + highest: (0,3) and (0,1)
    groups = build_groups("p", [0.0, 1.0, 0.5, 1.0], m=4, n=3, t=1, top_n=2, max_combinations=100, seed=0)
    assert [g.members for g in groups] == [(0, 3), (0, 1)]
    assert all(g.scores == (0.0, 1.0) for g in groups)
    assert groups[0].advantages == pytest.approx((-1.0, 1.0), abs=1e-5)


def test_zero_variance_and_invalid_settings():
    assert build_groups("p", [1.0] * 6, m=6, n=4, t=1, top_n=5, max_combinations=100, seed=0) == []
    assert build_groups("p", [0.0, 1.0], m=4, n=3, t=1, top_n=5, max_combinations=100, seed=0) == []
    with pytest.raises(ValueError, match="2t < n"):
        build_groups("p", [0.0, 1.0, 0.5], m=3, n=3, t=2, top_n=1, max_combinations=10, seed=0)


def test_capped_combinations_are_seeded():
    scores = [i / 15 for i in range(16)]
    a = build_groups("p", scores, m=16, n=14, t=4, top_n=100, max_combinations=50, seed=3)
    b = build_groups("p", scores, m=16, n=14, t=4, top_n=100, max_combinations=50, seed=3)
    assert len(a) == 50 and a == b  # C(16, 14) = 120 capped at 50
    assert all(len(g.members) == 8 for g in a)


def test_iogrpo_three_responses_by_hand():
    # one token each; β = 0.1, ε = 0.2
    # resp 0: A = 1,    r = 1.5 → min(1.5, 1.2)·1 = 1.2;           l_ref = lθ → KL 0        → 1.2
    # resp 1: A = −1,   r = 0.5 → min(−0.5, 0.8·−1) = −0.8;   l_ref − lθ = ln 2, but A ≤ 0: masked → −0.8
    # resp 2: A = 0.5,  r = 1   → 0.5;  l_ref − lθ = ln 2 → KL = 2 − ln 2 − 1 = 0.306853   → 0.5 − 0.0306853
    # loss = −(1.2 − 0.8 + 0.4693147)/3 = −0.2897716
    d = torch.float64
    policy = torch.tensor([[-1.0], [-2.0], [-1.0]], dtype=d)
    old = policy - torch.log(torch.tensor([[1.5], [0.5], [1.0]], dtype=d))
    ref = policy + torch.tensor([[0.0], [math.log(2)], [math.log(2)]], dtype=d)
    adv = torch.tensor([1.0, -1.0, 0.5], dtype=d)
    loss, metrics = iogrpo_loss(policy, old, ref, torch.ones(3, 1), adv, beta=0.1, epsilon=0.2)
    kl = 2 - math.log(2) - 1
    assert loss.item() == pytest.approx(-(1.2 - 0.8 + 0.5 - 0.1 * kl) / 3, rel=1e-12)
    assert metrics["clip_fraction"] == pytest.approx(2 / 3)  # |r − 1| = 0.5, 0.5, 0 against ε = 0.2
    assert metrics["kl"] == pytest.approx(2 * kl / 3)  # KL (masked or not) over the 3 tokens: 0, kl, kl
    assert metrics["advantage_abs"] == pytest.approx(2.5 / 3)
    assert metrics["kl_masked_fraction"] == pytest.approx(1 / 3)  # resp 1's KL is masked
    # mask off: resp 1 pays its KL too → −(1.2 − 0.8 − 0.0306853 + 0.4693147)/3
    unmasked, _ = iogrpo_loss(policy, old, ref, torch.ones(3, 1), adv, beta=0.1, epsilon=0.2, masked_kl=False)
    assert unmasked.item() == pytest.approx(-(1.2 - 0.8 - 0.1 * kl + 0.5 - 0.1 * kl) / 3, rel=1e-12)
