"""Before the learner's worker group starts, the driver waits until the cluster can hold its workers,
as it does for the generator replicas: Ray Train alone waits without a word for resources no node
has (a train.resources no node offers, a GPU on a CPU-only cluster)."""
from __future__ import annotations

import pytest
import ray

from driver.learn import start_learner_ahead, wait_for_learner_nodes
from flowpo.config import Config
from flowpo.errors import FlowPOError


def placement_groups_left() -> list:
    return [g for g in ray.util.placement_group_table().values() if g["state"] != "REMOVED"]


def test_workers_no_node_can_hold_are_a_clear_error_naming_the_setting(ray_local):
    config = Config()
    config.train.resources, config.train.start_timeout_s = {"learner_node_nobody_has": 1}, 1.0
    with pytest.raises(FlowPOError) as raised:
        wait_for_learner_nodes(config)
    message = str(raised.value)
    assert "learner workers" in message and "learner_node_nobody_has" in message and "train.resources" in message
    assert placement_groups_left() == []  # nothing reserved is left behind


def test_workers_that_fit_leave_their_reservation_to_ray_train(ray_local):
    config = Config()
    config.train.num_workers, config.train.cpus_per_worker = 2, 0.1
    wait_for_learner_nodes(config)
    assert placement_groups_left() == []


class Starts:
    """Stands in for the Learner: what is checked is whether the driver starts it ahead."""
    started = 0

    def start(self):
        self.started += 1


def test_the_learner_starts_ahead_only_when_a_round_may_train_and_its_workers_fit_now(ray_local):
    config = Config()
    config.train.num_workers, config.train.cpus_per_worker = 1, 0.1
    learner = Starts()
    assert start_learner_ahead(learner, config, [1, 2]) and learner.started == 1
    assert not start_learner_ahead(learner, config, [])  # every round trained before a resume
    config.train.num_pairs = 0
    assert not start_learner_ahead(learner, config, [1])  # nothing to train
    config.train.num_pairs, config.train.resources = 16, {"learner_node_nobody_has": 1}
    assert not start_learner_ahead(learner, config, [1])  # nodes still to come: the first trained round waits
    assert learner.started == 1 and placement_groups_left() == []
