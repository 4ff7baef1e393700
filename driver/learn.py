"""A round's learning step, after its samples are scored: the learner's items by the run's algorithm
(flowpo/algorithms.py), the round on the run's warm learner, the new adapter shipped to every
generator, and where the learner's time went (``stage_times``)."""
from __future__ import annotations

import math
import time

import ray

from actors.placement import reserve_or_explain
from actors.streaming import Faults, get_through_restarts
from driver.rundir import adapter_name
from driver.runlog import RunLog
from flowpo.algorithms import algorithm
from flowpo.config import Config, TrainConfig
from flowpo.maths.cost import line_answered, line_cost
from flowpo.maths.pairs import Candidate
from flowpo.records import ScoredSample
from trainer.checkpoint import pack
from trainer.learner import LearnerSettings  # its heavy imports wait until training
from trainer.warm import Learner, LearnerFailed, train_adapter, worker_resources


def candidates_of(samples: list[ScoredSample], cost_unit: str = "usd") -> list[Candidate]:
    """The scored samples as the learner's candidates, by (problem, sample index): samples arrive in the
    order they finish (and a resumed round's recorded ones first), and the pairs and groups drawn
    with the run's seed must not depend on that order. Each carries its executor cost in ``cost_unit``
    and whether it answered, for the cost-aware signal (flowpo/maths/cost.py)."""
    ordered = sorted(samples, key=lambda s: (s.execution.workflow.problem_id, s.execution.workflow.sample_index))
    return [Candidate(problem_id=s.execution.workflow.problem_id, prompt=s.execution.workflow.prompt,
                      completion=s.execution.workflow.completion, score=s.score,
                      cost=line_cost(line, cost_unit), answered=line_answered(line))
            for s in ordered if s.score is not None for line in [s.to_log()]]


def learner_items(round_index: int, samples: list[ScoredSample], config: Config) -> tuple[list, str]:
    """The round's training data by ``train.algorithm`` (pairs or groups) and, when there is none, why."""
    spec = algorithm(config.train.algorithm)
    items = spec.items(candidates_of(samples, config.train.cost_unit), config, config.train.seed + round_index)
    return items, spec.no_items(config)


def learner_settings(round_index: int, config: Config, model_path: str, out_dir: str,
                     init_adapter: str, data_adapter: str | None = None) -> LearnerSettings:
    """The learner's round: the run's ``train`` section and this round's paths."""
    return LearnerSettings.for_round(config.train, base_model=model_path, out_dir=out_dir, init_adapter=init_adapter,
                                     round_index=round_index, data_adapter=data_adapter)


def train_round(round_index: int, samples: list[ScoredSample], config: Config, log: RunLog,
                model_path: str, init_adapter: str, learner: Learner | None = None,
                data_adapter: str | None = None, faults: Faults | None = None) -> tuple[int, float | None, str]:
    """Build pairs or groups and train on ``learner`` (the run's warm learner; None: a worker group
    of the round's own) from ``init_adapter``; ``data_adapter`` wrote the samples (None: the same);
    a worker group lost mid-round is counted in ``faults``. Returns (their count, loss or None if
    skipped, adapter dir or "")."""
    t = config.train
    items, no_signal = learner_items(round_index, samples, config)
    unit = algorithm(t.algorithm).unit
    if not items:
        print(f"warning: round {round_index} has {no_signal}; training skipped (no signal is invented)")
        log.event("train_skipped", round=round_index, reason=no_signal)
        return 0, None, ""
    out_dir = log.adapter_dir(round_index)
    settings = learner_settings(round_index, config, model_path, str(out_dir.resolve()), init_adapter, data_adapter)
    print(f"round {round_index}: {t.algorithm} on {len(items)} {unit} with {t.num_workers} Ray Train worker(s)")
    if learner is None or not learner.running:
        wait_for_learner_nodes(config)
    if learner is None:
        metrics = train_adapter(items, settings, storage_dir=log.run_dir / "ray_train", name=adapter_name(round_index))
    else:
        metrics = train_on(learner, items, settings, faults)
    loss = float(metrics.get("loss", math.nan))
    worker_metrics = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
    worker_metrics[f"{unit}_per_worker"] = worker_metrics.pop("items", 0)
    log.event("train", round=round_index, algorithm=t.algorithm, reference=settings.reference, adapter=str(out_dir),
              old_policy=settings.old_adapter or "start", **{unit: len(items)}, **worker_metrics)
    return len(items), loss, str(out_dir.resolve())


def train_on(learner: Learner, items: list, settings: LearnerSettings, faults: Faults | None) -> dict:
    """``learner.train``, once more on a new worker group when the group ended mid-round (a worker's
    process killed, its node lost): the round starts again from the checkpoint on disk, as a resumed
    run would, without the run stopping; counted in the round's ``faults`` (stage ``train``). A second
    failure is the run's."""
    try:
        return learner.train(items, settings)
    except LearnerFailed as exc:
        print(f"warning: round {settings.round_index}: {exc.args[0].split('. ')[0]}; training the round again "
              "on a new worker group")
        if faults is not None:
            faults.count("train")
        return learner.train(items, settings)


def wait_for_learner_nodes(config: Config) -> None:
    """Before a worker group starts: wait, as the generator replicas do, until the cluster can hold its
    workers (the autoscaler may be launching GPU nodes), then let Ray Train take them. Ray Train
    itself waits without a word for resources no node has (a train.resources no node offers, a GPU on
    a CPU cluster): this says which, and what to change."""
    t = config.train
    bundle, group = worker_resources(t), learner_group(t)
    reserve_or_explain([group], "learner workers", bundle, patience_s=t.start_timeout_s,
                       advice="Lower train.num_workers or train.cpus_per_worker, set train.use_gpu only where nodes "
                              "have GPUs, give train.resources only resources some node offers, or add such nodes")
    ray.util.remove_placement_group(group)  # Ray Train reserves its own, now that they fit


def learner_group(t: TrainConfig):
    """A placement group shaped as Ray Train places the worker group: to ask whether it fits."""
    return ray.util.placement_group([worker_resources(t)] * t.num_workers, strategy="PACK")


def start_learner_ahead(learner: Learner, config: Config, rounds_left: list[int]) -> bool:
    """Start the run's worker group as the first round starts streaming, when a round left may train
    and the cluster holds its workers now: its start-up (13 s of round 1's 23 s of learner on 2 CPU
    cores: Ray Train's workers, the model's load) then overlaps the streaming instead of the
    generators' wait. The workers take no more than they hold from the first trained round on.
    Otherwise (nothing to train, or nodes still to come) the first round that trains starts it, as
    before, after ``wait_for_learner_nodes``. Whether it started ahead."""
    t = config.train
    wanted = t.num_groups if algorithm(t.algorithm).unit == "groups" else t.num_pairs
    if wanted <= 0 or not rounds_left:
        return False
    group = learner_group(t)
    fits = group.wait(timeout_seconds=2)
    ray.util.remove_placement_group(group)  # Ray Train reserves its own
    if fits:
        learner.start()
    return fits


def shipped(version: str, path: str) -> tuple[str, object]:
    """(version, adapter) as generators on any node receive it: the run directory's checkpoint,
    packed into Ray's object store (no node reads a path of the driver's), or "" for the base model."""
    return version, (ray.put(pack(path)) if path else "")


def ship_adapter(generators: list, version: str, path: str,
                 timeout_s: float = 600.0) -> tuple[tuple[str, object], float]:
    """Load the new adapter, packed once for all, on every generator: (the adapter as ``shipped``
    gives it, the seconds it took). A replica that dies under it is asked again once Ray has
    restarted it (``get_through_restarts``; loading twice is harmless)."""
    began = time.monotonic()
    adapter = shipped(version, path)
    sent = [(g, g.load_adapter.remote(*adapter)) for g in generators]  # all at once
    for g, ref in sent:
        try:
            ray.get(ref)
        except ray.exceptions.ActorUnavailableError:
            get_through_restarts(lambda g=g: g.load_adapter.remote(*adapter), timeout_s)
    return adapter, time.monotonic() - began


def learner_stage_times(times: dict, ship_s: float, overlap_s: float = 0.0) -> dict:
    """The learner's part of a round for ``stage_times``: its seconds by phase (``learner_*``), the
    adapter's shipping to the generators, and its overhead: everything but the loss's own work, which
    is the optimizer steps and the round-start log-probs (the reference and π_old terms of the loss,
    computed once a round instead of in every step); so start-up, model load, data, saving, shipping
    back and to the generators. The generators wait through all of it, unless the next round streamed
    meanwhile (``overlap_s``, pipeline.overlap_rounds): then only through what is left."""
    if not times:
        return {}
    wall = times["wall_s"] + ship_s
    work = times.get("steps_s", 0.0) + times.get("reference_s", 0.0)
    other = wall - work
    return {**{f"learner_{key}": round(value, 3) for key, value in times.items()},
            "adapter_ship_s": round(ship_s, 3), "learner_overhead_s": round(other, 3),
            "learner_overhead_pct": round(100 * other / wall, 1) if wall > 0 else 0.0,
            "rounds_overlap_s": round(overlap_s, 3), "generators_idle_training_s": round(max(0.0, wall - overlap_s), 3)}


def learner_line(round_index: int, t: dict) -> str:
    """``learner_stage_times`` for the console."""
    return (f"round {round_index} learner: {t['generators_idle_training_s']:.1f} s (the generators idle), optimizer "
            f"steps {t.get('learner_steps_s', 0):.1f} s, round-start log-probs "
            f"{t.get('learner_reference_s', 0):.1f} s, "
            f"overhead {t['learner_overhead_s']:.1f} s ({t['learner_overhead_pct']:.0f}%, start-up "
            f"{t.get('learner_startup_s', 0):.1f} s)")
