"""The round's flow, written once: generate → (dry run) → execute → evaluate → sink, on the
streaming engine (actors/streaming.py).

Every item travels with its *lane*: the method it belongs to. Training streams one lane (the
round's adapter); evaluation streams one lane per checkpoint beside lanes of fixed workflows (the
IO, CoT and CoT-SC baselines, which enter at execute). A replay of recorded workflows
(driver/execute.py) enters at execute too, with its own bounded feed. Commands that are coming
(solve, serve) are a lane and a sink on top of this.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from actors.streaming import Faults, StageClock, Stream, after_dry_run, round_stages
from flowpo.config import Config
from flowpo.records import Problem, ScoredSample, Workflow


@dataclass(frozen=True)
class Generate:
    """Workflows a lane's adapter writes for one problem: its ``slots`` (sample indices; None: all k)."""
    lane: str
    problem: Problem
    slots: list[int] | None = None


def no_progress(stage: str, count: int) -> None:
    """Progress callback that shows nothing."""


def stream_flow(actors, config: Config, *, round_index: int, adapters: dict[str, tuple[str, str]],
                generate: Iterable[Generate], fixed: Iterable[tuple[str, Workflow]] = (),
                problems: Iterable[Problem] = (), on_sample: Callable[[str, ScoredSample], None],
                on_progress: Callable[[str, int], None] = no_progress, faults: Faults | None = None,
                clock: StageClock | None = None, advice: str = "") -> Faults:
    """Run the flow to its end; each scored sample goes to ``on_sample(lane, sample)`` as it arrives.

    ``adapters`` maps a generating lane to its (version, packed adapter) (``driver.learn.shipped``:
    sent with every request, since a restarted replica has lost what it had loaded). ``fixed`` are
    (lane, workflow) pairs that skip generation; their problems must be in ``generate`` or
    ``problems``. ``on_progress(stage, count)`` reports new work per stage: "generated" (sample
    slots, each counted once however often it is regenerated), "executed", "scored". Returns the
    faults: items re-sent per stage because their actor died."""
    requests = list(generate)
    by_id = {r.problem.problem_id: r.problem for r in requests}
    by_id.update((p.problem_id, p) for p in problems)
    repeats = config.evaluator.repeats  # executions per workflow, scored together (their mean)
    stream = Stream(round_stages(
        actors, config,
        generate=lambda h, item: h.generate_for.remote(item[1][0], round_index, item[1][1], item[1][2],
                                                       adapters[item[0]]),
        dry_run=lambda h, item: h.dry_run.remote(item[1], by_id[item[1].problem_id].family),
        execute=lambda h, item: h.execute_repeats.remote(item[1], by_id[item[1].problem_id], repeats),
        evaluate=lambda h, item: h.evaluate_repeats.remote(item[1], by_id[item[1][0].workflow.problem_id])),
        key=lane_key, barrier=config.pipeline.mode == "barrier", faults=faults, clock=clock,
        actor_timeout_s=config.pipeline.actor_timeout_s, advice=advice)
    for request in requests:
        stream.put("generate", (request.lane, (request.problem, request.slots, 1)))
    for lane, workflow in fixed:
        stream.put("execute", (lane, workflow))
    generated: set = set()  # (lane, problem, sample index): a slot regenerated after a dry run counts once

    def on_result(stage: str, item, result) -> None:
        lane = item[0]
        if stage == "generate":
            for workflow in result:
                dry = config.generator.dry_run and not workflow.invalid_reason
                stream.put("dry_run" if dry else "execute", (lane, workflow))
            new = {(lane, w.problem_id, w.sample_index) for w in result} - generated
            generated.update(new)
            on_progress("generated", len(new))
        elif stage == "dry_run":
            after, workflow = after_dry_run(item[1], result, config.generator.max_attempts)
            stream.put(after, (lane, workflow if after == "execute" else
                               (by_id[workflow.problem_id], [workflow.sample_index], workflow.attempts + 1)))
        elif stage == "execute":
            stream.put("evaluate", (lane, result))
            on_progress("executed", 1)
        else:
            on_sample(lane, result)
            on_progress("scored", 1)

    stream.run(on_result)
    return stream.faults


def lane_key(stage: str, item) -> tuple:
    """(lane, problem, slots) of a generate payload (problem, slots, attempt); (lane, problem,
    sample index) of a Workflow (dry_run, execute) or of its Executions (evaluate)."""
    lane, payload = item
    if stage == "generate":
        return lane, payload[0].problem_id, tuple(payload[1] or ())
    workflow = payload[0].workflow if stage == "evaluate" else payload
    return lane, workflow.problem_id, workflow.sample_index
