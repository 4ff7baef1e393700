"""Before the learner's worker group starts, the driver waits until the cluster can hold its workers,
as it does for the generator replicas: Ray Train alone waits without a word for resources no node
has (a train.resources no node offers, a GPU on a CPU-only cluster)."""
from __future__ import annotations

import pytest
import ray

from driver.learn import wait_for_learner_nodes
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
