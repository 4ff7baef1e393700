"""Waiting for resources that the autoscaler is still bringing up.

On a fresh cluster a GPU node takes minutes to join (the instance boots, then its set-up installs the
GPU profile). A fixed timeout either fails that first submission or hides, for as long, a request no
node type can hold. So the wait follows the autoscaler: it goes on while the autoscaler launches or
sets up nodes, says which and for how long, and gives up after ``patience_s`` without any.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass

import ray

from flowpo.errors import FlowPOError


@dataclass(frozen=True)
class Progress:
    """What the autoscaler is doing now: node types it is launching or setting up, and those that failed."""
    pending: dict[str, int]  # node type -> nodes launching or setting up
    failed: dict[str, int]

    @property
    def busy(self) -> bool:
        return bool(self.pending)


def progress_from_report(report: dict) -> Progress:
    """The v1 autoscaler's report (``ray status``'s source, JSON in the GCS): ``autoscaler_report``
    holds ``pending_launches`` {type: count}, ``pending_nodes`` [(ip, type, status)] and
    ``failed_nodes`` [(ip, type)]."""
    summary = report.get("autoscaler_report") or {}
    pending: dict[str, int] = dict(summary.get("pending_launches") or {})
    for node in summary.get("pending_nodes") or []:
        pending[node[1]] = pending.get(node[1], 0) + 1
    failed: dict[str, int] = {}
    for node in summary.get("failed_nodes") or []:
        failed[node[1]] = failed.get(node[1], 0) + 1
    return Progress({k: v for k, v in pending.items() if v}, failed)


def autoscaler_progress() -> Progress | None:
    """The running cluster's autoscaler, or None where there is none (a local Ray, `ray start` by hand)."""
    from ray._private import ray_constants
    from ray.experimental.internal_kv import _internal_kv_get

    raw = _internal_kv_get(ray_constants.DEBUG_AUTOSCALING_STATUS)
    if not raw:
        return None
    try:
        return progress_from_report(json.loads(raw))
    except (ValueError, TypeError, IndexError):
        return None


def describe(progress: Progress | None, since: dict[str, float], now: float) -> str:
    """One line of what the wait is waiting for, with how long each node type has been pending."""
    if progress is None:
        return "no autoscaler runs here: no node will join by itself"
    parts = [f"{count} {kind} node{'s' if count > 1 else ''} launching or setting up for "
             f"{(now - since.get(kind, now)) / 60:.0f} min" for kind, count in sorted(progress.pending.items())]
    parts += [f"{count} {kind} node{'s' if count > 1 else ''} failed"
              for kind, count in sorted(progress.failed.items())]
    return "; ".join(parts) or "the autoscaler launches nothing for it"


def wait_for_groups(groups: list, what: str, *, patience_s: float, poll_s: float = 30.0, say=print,
                    progress=autoscaler_progress) -> int:
    """Wait until every placement group of ``groups`` is placed; returns how many were. The wait
    lasts while the autoscaler is launching or setting up nodes, and ``patience_s`` beyond the last
    moment it was; every ``poll_s`` it says what it waits for."""
    began = last_busy = time.monotonic()
    since: dict[str, float] = {}
    refs = [group.ready() for group in groups]
    while True:
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=poll_s)
        now = time.monotonic()
        if len(ready) == len(refs):
            return len(ready)
        state = progress()
        if state is not None and state.busy:
            last_busy = now
            since = {kind: since.get(kind, now) for kind in state.pending}
        if now - last_busy >= patience_s:
            return len(ready)
        say(f"{what}: {len(ready)} of {len(refs)} placed after {(now - began) / 60:.0f} min; "
            f"{describe(state, since, now)}")


GENERATOR_ADVICE = ("Lower generator.num_replicas, num_cpus or num_gpus, or add nodes (with generator.resources, "
                    "nodes that have them)")


def reserve_or_explain(groups: list, what: str, bundle: dict, *, patience_s: float,
                       advice: str = GENERATOR_ADVICE) -> None:
    """``wait_for_groups``, then a clear error (and the groups removed) if some could not be placed;
    ``advice`` says which settings to change."""
    placed = wait_for_groups(groups, what, patience_s=patience_s, poll_s=min(30.0, max(1.0, patience_s)))
    if placed == len(groups):
        return
    for group in groups:
        ray.util.remove_placement_group(group)
    raise FlowPOError(
        f"{what}: only {placed} of {len(groups)} could reserve {bundle}, and for {patience_s:.0f} s no node that "
        f"could hold one was being launched or set up ({describe(autoscaler_progress(), {}, time.monotonic())}); "
        f"the cluster has {ray.cluster_resources()}. {advice}; `ray status` shows the autoscaler's view.")
