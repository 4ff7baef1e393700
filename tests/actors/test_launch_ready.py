"""Starting the actors survives an actor that dies while it starts (the chaos bench's resumed driver
once stopped on exactly this: its executor was killed during ``ready()``), and still fails fast and
clearly when an actor cannot start at all."""
from __future__ import annotations

import os
import sys

import pytest
import ray

from actors.launch import wait_ready

# The stand-ins travel by value: Ray's workers cannot import this test module.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


@ray.remote(num_cpus=0)
class DiesInItsFirstReady:
    """Its first ``ready()`` kills its own process (as a SIGKILL or an OOM kill would); the actor
    Ray restarts answers."""

    def __init__(self, marker: str):
        self.marker = marker

    def ready(self) -> bool:
        if not os.path.exists(self.marker):
            open(self.marker, "w").close()
            os._exit(1)
        return True


@ray.remote(num_cpus=0)
class CannotStart:
    def __init__(self):
        raise RuntimeError("no model at /nowhere")

    def ready(self) -> bool:
        return True


def test_an_actor_killed_while_starting_is_waited_for_once_ray_restarts_it(ray_local, tmp_path):
    died = DiesInItsFirstReady.options(max_restarts=1).remote(str(tmp_path / "died-once"))
    fine = DiesInItsFirstReady.options(max_restarts=0).remote(str(tmp_path / "never"))
    (tmp_path / "never").touch()
    wait_ready([died, fine], max_restarts=1)
    assert ray.get(died.ready.remote()) is True  # the restarted actor, no marker left to trip on
    assert (tmp_path / "died-once").exists()


def test_an_actor_that_keeps_dying_is_an_error_once_its_restarts_are_spent(ray_local, tmp_path):
    doomed = DiesInItsFirstReady.options(max_restarts=0).remote(str(tmp_path / "dies"))
    with pytest.raises(ray.exceptions.RayActorError):
        wait_ready([doomed], max_restarts=0)


def test_a_constructor_error_is_raised_at_once_with_its_cause(ray_local):
    broken = CannotStart.options(max_restarts=3).remote()
    with pytest.raises(ray.exceptions.RayActorError, match="no model at /nowhere") as raised:
        wait_ready([broken], max_restarts=3)
    assert raised.value.actor_init_failed
