"""The generator's placement wait follows the autoscaler: it lasts while nodes are launched or set
up, says which and for how long, and ends with a clear error when nothing that could hold a replica
is coming."""
from __future__ import annotations

import time

import pytest

from actors.placement import Progress, describe, progress_from_report, wait_for_groups

# What a v1 autoscaler writes for `ray status` (autoscaler_report of __autoscaling_status).
REPORT = {"autoscaler_report": {"active_nodes": {"head": 1}, "pending_launches": {"gpu": 1},
                                "pending_nodes": [["10.0.0.7", "executor", "setting-up"],
                                                  ["10.0.0.8", "gpu", "waiting-for-ssh"]],
                                "failed_nodes": [["10.0.0.9", "executor"]]}}


def test_the_autoscaler_report_counts_nodes_launching_or_setting_up_per_type():
    progress = progress_from_report(REPORT)
    assert progress == Progress(pending={"gpu": 2, "executor": 1}, failed={"executor": 1})
    assert progress.busy and not progress_from_report({"autoscaler_report": {"pending_launches": {"gpu": 0}}}).busy


def test_the_wait_says_what_is_pending_and_for_how_long():
    text = describe(progress_from_report(REPORT), {"gpu": 100.0, "executor": 400.0}, now=700.0)
    assert text == ("1 executor node launching or setting up for 5 min; 2 gpu nodes launching or setting up "
                    "for 10 min; 1 executor node failed")
    assert describe(None, {}, 0.0) == "no autoscaler runs here: no node will join by itself"


@pytest.mark.ray
def test_the_wait_lasts_while_nodes_come_and_ends_after_patience_without_any(ray_local):
    import ray

    group = ray.util.placement_group([{"CPU": 1000}])  # no node here can hold it
    polls, said = [], []

    def progress():  # the autoscaler sets up a gpu node for the first three polls, then gives up
        polls.append(time.monotonic())
        return Progress({"gpu": 1} if len(polls) <= 3 else {}, {})

    try:
        began = time.monotonic()
        placed = wait_for_groups([group], "generator replicas", patience_s=0.6, poll_s=0.2, say=said.append,
                                 progress=progress)
        waited = time.monotonic() - began
    finally:
        ray.util.remove_placement_group(group)
    assert placed == 0
    # three busy polls (0.6 s), then 0.6 s of patience: well past the patience alone
    assert len(polls) >= 6 and waited >= 1.2
    assert "generator replicas: 0 of 1 placed after 0 min; 1 gpu node launching or setting up for 0 min" in said[0]
    assert said[-1].endswith("the autoscaler launches nothing for it")
