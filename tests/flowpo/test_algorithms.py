"""The algorithm registry is the one place an algorithm is defined: the config's choices come from
it, no other module chooses by an algorithm's name, and each entry's loss is its paper's."""
from __future__ import annotations

import ast
import typing
from pathlib import Path

import pytest
import torch

from flowpo.algorithms import ALGORITHMS, algorithm
from flowpo.config import Config, TrainConfig, inconsistency
from flowpo.maths.grpo import iogrpo_loss
from flowpo.maths.losses import dpo_loss, score_dpo_loss
from flowpo.maths.pairs import Candidate

ROOT = Path(__file__).resolve().parents[2]


def test_the_config_offers_exactly_the_registry():
    assert typing.get_args(typing.get_type_hints(TrainConfig)["algorithm"]) == tuple(ALGORITHMS)
    with pytest.raises(ValueError, match="unknown algorithm 'ppo'; expected one of score_dpo, dpo, iogrpo"):
        algorithm("ppo")


def test_no_module_outside_the_registry_chooses_by_an_algorithms_name():
    """A comparison with an algorithm's name (``== "iogrpo"``, ``in ("dpo", ...)``) anywhere in the
    project's code means a second place to change when a variant is added."""
    found = []
    for package in ("flowpo", "actors", "trainer", "sandbox"):
        for path in (ROOT / package).rglob("*.py"):
            if path == ROOT / "flowpo" / "algorithms.py":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Compare):
                    names = [c.value for c in ast.walk(node) if isinstance(c, ast.Constant)]
                    if any(name in ALGORITHMS for name in names):
                        found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert found == []


def pairs_logps():
    """Two pairs (chosen, rejected interleaved), two tokens each."""
    logps = torch.tensor([[-1.0, -0.5], [-2.0, -1.0], [-0.3, -0.2], [-0.9, -0.4]])
    ref = torch.tensor([[-1.2, -0.6], [-1.8, -1.0], [-0.5, -0.2], [-0.8, -0.4]])
    return logps, ref, torch.ones_like(logps), torch.tensor([1.0, 0.0, 0.75, 0.25])


def test_pair_losses_are_the_papers_on_interleaved_completions():
    logps, ref, mask, scores = pairs_logps()
    train = TrainConfig(beta=0.5, score_exponent=1.0)
    got, _ = algorithm("score_dpo").loss(logps, ref, None, mask, scores, train)
    want, _ = score_dpo_loss(torch.tensor([-1.5, -0.5]), torch.tensor([-3.0, -1.3]), torch.tensor([-1.8, -0.7]),
                             torch.tensor([-2.8, -1.2]), torch.tensor([1.0, 0.75]), torch.tensor([0.0, 0.25]), beta=0.5)
    assert got.item() == pytest.approx(want.item())
    # By hand, pair 1: Δ = 1·(−1.5 + 1.8) − 1·(−3.0 + 2.8) = 0.5; pair 2: Δ = 0.75·0.2 − 0.75·(−0.1) = 0.225
    assert got.item() == pytest.approx(-(torch.nn.functional.logsigmoid(torch.tensor([0.25, 0.1125]))).mean().item())
    got, _ = algorithm("dpo").loss(logps, ref, None, mask, scores, train)
    want, _ = dpo_loss(torch.tensor([-1.5, -0.5]), torch.tensor([-3.0, -1.3]), torch.tensor([-1.8, -0.7]),
                       torch.tensor([-2.8, -1.2]), beta=0.5)
    assert got.item() == pytest.approx(want.item())


def test_iogrpo_loss_takes_old_and_reference_in_their_places():
    logps, ref, mask, _ = pairs_logps()
    old = ref + 0.1
    advantages = torch.tensor([-1.0, 1.0, 0.5, -0.5])
    train = TrainConfig(algorithm="iogrpo", beta=0.2, epsilon=0.2, masked_kl=True)
    got, _ = algorithm("iogrpo").loss(logps, ref, old, mask, advantages, train)
    want, _ = iogrpo_loss(logps, old, ref, mask, advantages, beta=0.2, epsilon=0.2, masked_kl=True)
    assert got.item() == pytest.approx(want.item())
    swapped, _ = iogrpo_loss(logps, ref, old, mask, advantages, beta=0.2, epsilon=0.2, masked_kl=True)
    assert got.item() != pytest.approx(swapped.item())


def test_each_entry_says_what_its_learner_needs():
    assert [(a.name, a.unit, a.needs_old, a.reference) for a in ALGORITHMS.values()] == [
        ("score_dpo", "pairs", False, "base"), ("dpo", "pairs", False, "base"), ("iogrpo", "groups", True, "previous")]


def test_items_come_from_the_entry_with_the_configs_sizes():
    candidates = [Candidate("p", "prompt", f"c{i}", score) for i, score in enumerate([0.0, 1.0, 0.5, 0.0, 1.0])]
    config = Config()
    config.generator.k, config.train.num_pairs = 5, 7
    assert len(algorithm("score_dpo").items(candidates, config, 0)) == 7
    config.train.algorithm, config.train.group_n, config.train.group_t = "iogrpo", 4, 1
    groups = algorithm("iogrpo").items(candidates, config, 0)
    assert groups and all(len(g.completions) == 2 for g in groups)  # sharpened to its lowest and highest
    assert inconsistency(config) == ""
    config.train.group_n = 6
    assert "train.group_n=6 exceeds min(generator.k=5" in inconsistency(config)
    assert "no problem has 6 scored workflows" in algorithm("iogrpo").no_items(config)
