"""The round's flow, written once: generate → (dry run) → execute → evaluate → sink, on the
streaming engine (actors/streaming.py).

Every item travels with its *lane*: the method it belongs to. Training streams one lane (the
round's adapter); evaluation streams one lane per checkpoint beside lanes of fixed workflows (the
IO, CoT and CoT-SC baselines, which enter at execute). A replay of recorded workflows
(driver/execute.py) enters at execute too, with its own bounded feed. ``flowpo solve`` and ``flowpo
serve`` are a lane and a sink on top of this: their questions have no gold answers, so their
workflows end at execute (``on_executed``), and solve feeds a file of any length through ``window``.
"""
from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Iterable

from actors.streaming import Faults, StageClock, Stream, after_dry_run, round_stages
from flowpo.config import Config
from flowpo.records import Execution, Problem, ScoredSample, Workflow


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
                clock: StageClock | None = None, advice: str = "",
                on_executed: Callable[[str, list[Execution]], bool] | None = None, window: int = 0) -> Faults:
    """Run the flow to its end; each scored sample goes to ``on_sample(lane, sample)`` as it arrives.

    ``adapters`` maps a generating lane to its (version, packed adapter) (``driver.learn.shipped``:
    sent with every request, since a restarted replica has lost what it had loaded). ``fixed`` are
    (lane, workflow) pairs that skip generation; their problems must be in ``generate`` or
    ``problems``. ``on_progress(stage, count)`` reports new work per stage: "generated" (sample
    slots, each counted once however often it is regenerated), "executed", "scored". Returns the
    faults: items re-sent per stage because their actor died.

    ``on_executed(lane, executions)``, when given, sees each workflow's executions first and returns
    whether they go on to evaluation; False ends that workflow there (a question without gold
    answers). ``window`` > 0 reads ``generate`` lazily: at most that many problems in flight, the next
    read as one finishes (each of its slots scored or ended at execute), so a file of 10,000+
    questions holds the window, not the file; 0 puts every request in at the start."""
    if window and fixed:
        raise ValueError("stream_flow: fixed workflows need their problems up front (window=0)")
    requests = iter(generate)
    by_id = {p.problem_id: p for p in problems}
    open_slots: Counter = Counter()  # (lane, problem) -> its slots not finished yet (window only)
    generated: set = set()  # (lane, problem, sample index): a slot regenerated after a dry run counts once
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

    def feed(count: int | None) -> None:
        for request in itertools.islice(requests, count):
            by_id.setdefault(request.problem.problem_id, request.problem)  # ``problems`` take precedence
            if window:
                open_slots[request.lane, request.problem.problem_id] += \
                    config.generator.k if request.slots is None else len(request.slots)
            stream.put("generate", (request.lane, (request.problem, request.slots, 1)))

    def finished(lane: str, workflow: Workflow) -> None:
        """One sample slot is done: in window mode, a problem whose slots are all done makes room."""
        if not window:
            return
        generated.discard((lane, workflow.problem_id, workflow.sample_index))
        key = (lane, workflow.problem_id)
        open_slots[key] -= 1
        if open_slots[key] <= 0:
            del open_slots[key]
            if not any(pid == workflow.problem_id for _, pid in open_slots):
                by_id.pop(workflow.problem_id, None)
            feed(1)

    feed(window or None)
    for lane, workflow in fixed:
        stream.put("execute", (lane, workflow))

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
            on_progress("executed", 1)
            if on_executed is None or on_executed(lane, result):
                stream.put("evaluate", (lane, result))
            else:
                finished(lane, result[0].workflow)
        else:
            on_sample(lane, result)
            on_progress("scored", 1)
            finished(lane, result.execution.workflow)

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
