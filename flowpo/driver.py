"""The driver: streams each round through generate → execute → evaluate, then trains.

Stages overlap: a chunk's workflows start executing as soon as it is generated, and each
execution is scored as soon as it finishes; executions in flight are bounded (backpressure).
"""
from __future__ import annotations

import itertools
import math
from collections import Counter, deque
from dataclasses import dataclass
from pathlib import Path

import ray
from tqdm import tqdm

from flowpo.config import Config
from flowpo.records import Problem, ScoredSample
from flowpo.runlog import RunLog
from flowpo.validate import reason_kind
from trainer.pairs import Candidate, sample_score_dpo_pairs

PROBLEMS_PER_GENERATE_CALL = 2  # small chunks let execution start while the rest generates


@dataclass(frozen=True)
class RoundSummary:
    round: int
    adapter: str
    workflows: int
    valid: int
    scored: int
    mean_score: float
    pairs: int
    loss: float | None

    def line(self) -> str:
        loss = "skipped (no pairs)" if self.loss is None else f"{self.loss:.4f}"
        return (f"round {self.round} [{self.adapter}]: {self.valid}/{self.workflows} valid workflows, "
                f"mean score {self.mean_score:.3f} over {self.scored} scored, {self.pairs} pairs, loss {loss}")


class _Balancer:
    """Round-robin over actor handles, skipping ones that hold ``limit`` requests already."""

    def __init__(self, handles: list, limit: int):
        self.load = {i: 0 for i in range(len(handles))}
        self.handles, self.limit = handles, limit
        self._order = itertools.cycle(range(len(handles)))

    def free(self) -> bool:
        return any(n < self.limit for n in self.load.values())

    def acquire(self) -> tuple[int, object]:
        for _ in range(len(self.handles)):
            i = next(self._order)
            if self.load[i] < self.limit:
                self.load[i] += 1
                return i, self.handles[i]
        raise RuntimeError("no free actor")  # callers check free() first

    def release(self, i: int) -> None:
        self.load[i] -= 1


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
    return {"executor_sandboxes": executors.get("pool", {}), "executor_llm": executors.get("broker", {}),
            "evaluator_sandboxes": evaluators.get("pool", {})}


def stream_round(round_index: int, problems: list[Problem], actors, config: Config, log: RunLog) -> list[ScoredSample]:
    by_id = {p.problem_id: p for p in problems}
    total = len(problems) * config.generator.k
    bars = {stage: tqdm(total=total, desc=f"round {round_index} {stage:>9}", unit="wf", position=i, leave=True,
                        dynamic_ncols=True)
            for i, stage in enumerate(("generated", "executed", "scored"))}
    executors = _Balancer(actors.executors, config.sandbox.sandboxes_per_executor)
    evaluators = _Balancer(actors.evaluators, config.evaluator.sandboxes_per_evaluator)
    pending: dict = {}  # ObjectRef -> (stage, balancer slot)
    to_execute: deque = deque()
    to_evaluate: deque = deque()
    samples: list[ScoredSample] = []
    for n, start in enumerate(range(0, len(problems), PROBLEMS_PER_GENERATE_CALL)):
        chunk = problems[start:start + PROBLEMS_PER_GENERATE_CALL]
        generator = actors.generators[n % len(actors.generators)]
        pending[generator.generate.remote(chunk, round_index)] = ("generate", None)
    while pending or to_execute or to_evaluate:
        while to_execute and executors.free():
            slot, handle = executors.acquire()
            workflow = to_execute.popleft()
            pending[handle.execute.remote(workflow, by_id[workflow.problem_id])] = ("execute", slot)
        while to_evaluate and evaluators.free():
            slot, handle = evaluators.acquire()
            execution = to_evaluate.popleft()
            pending[handle.evaluate.remote(execution, by_id[execution.workflow.problem_id])] = ("evaluate", slot)
        (ref,), _ = ray.wait(list(pending), num_returns=1)
        stage, slot = pending.pop(ref)
        result = ray.get(ref)
        if stage == "generate":
            to_execute.extend(result)
            bars["generated"].update(len(result))
        elif stage == "execute":
            executors.release(slot)
            to_evaluate.append(result)
            bars["executed"].update(1)
        else:
            evaluators.release(slot)
            samples.append(result)
            log.sample(result.to_log())
            bars["scored"].update(1)
    for bar in bars.values():
        bar.close()
    return samples


def candidates_of(samples: list[ScoredSample]) -> list[Candidate]:
    return [Candidate(problem_id=s.execution.workflow.problem_id, prompt=s.execution.workflow.prompt,
                      completion=s.execution.workflow.completion, score=s.score)
            for s in samples if s.score is not None]


def train_round(round_index: int, samples: list[ScoredSample], config: Config, log: RunLog,
                model_path: str, init_adapter: str) -> tuple[int, float | None, str]:
    """Build pairs and train; returns (pairs, loss or None if skipped, adapter dir or "")."""
    from trainer.learner import LearnerSettings, train_adapter

    t = config.train
    pairs = sample_score_dpo_pairs(candidates_of(samples), num_pairs=t.num_pairs, alpha=t.alpha,
                                   seed=t.seed + round_index)
    if not pairs:
        print(f"warning: round {round_index} has no pair of workflows with different scores; "
              "training skipped (no signal is invented)")
        log.event("train_skipped", round=round_index, reason="no pairs with different scores")
        return 0, None, ""
    out_dir = log.adapter_dir(round_index)
    settings = LearnerSettings(
        base_model=model_path, out_dir=str(out_dir.resolve()), init_adapter=init_adapter, beta=t.beta,
        epochs=t.epochs, learning_rate=t.learning_rate, grad_accum_steps=t.grad_accum_steps,
        max_seq_len=t.max_seq_len, lora_r=t.lora_r, lora_alpha=t.lora_alpha, lora_dropout=t.lora_dropout,
        target_modules=tuple(t.target_modules), seed=t.seed, use_gpu=t.use_gpu, bf16=t.bf16)
    print(f"round {round_index}: training on {len(pairs)} pairs with {t.num_workers} Ray Train worker(s)")
    metrics = train_adapter(pairs, settings, num_workers=t.num_workers, cpus_per_worker=t.cpus_per_worker,
                            storage_dir=log.run_dir / "ray_train", name=f"round-{round_index}")
    loss = float(metrics.get("loss", math.nan))
    worker_metrics = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
    worker_metrics["pairs_per_worker"] = worker_metrics.pop("pairs", 0)
    log.event("train", round=round_index, pairs=len(pairs), adapter=str(out_dir), **worker_metrics)
    return len(pairs), loss, str(out_dir.resolve())


def summarize(round_index: int, adapter: str, samples: list[ScoredSample], pairs: int,
              loss: float | None) -> RoundSummary:
    scored = [s.score for s in samples if s.score is not None]
    valid = sum(1 for s in samples if s.execution.failure != "invalid_workflow")
    return RoundSummary(round=round_index, adapter=adapter, workflows=len(samples), valid=valid,
                        scored=len(scored), mean_score=sum(scored) / len(scored) if scored else 0.0,
                        pairs=pairs, loss=loss)


def adapter_probe(generator, sample: ScoredSample, version: str) -> dict:
    """Log-prob of one fixed workflow under the base model and the new adapter: proof it is served."""
    wf = sample.execution.workflow
    base, tuned = ray.get([generator.sequence_logprob.remote(wf.prompt, wf.completion, "base"),
                           generator.sequence_logprob.remote(wf.prompt, wf.completion, version)])
    return {"probe_logprob_base": base, "probe_logprob_adapter": tuned}


def run_rounds(config: Config, problems: list[Problem], actors, log: RunLog, model_path: str) -> list[RoundSummary]:
    summaries = []
    adapter_path, adapter_version = "", "base"
    for round_index in range(1, config.rounds + 1):
        log.event("round_start", round=round_index, adapter=adapter_version, problems=len(problems))
        samples = stream_round(round_index, problems, actors, config, log)
        failures = Counter(s.execution.failure or "ok" for s in samples)
        invalid_reasons = Counter(reason_kind(s.execution.workflow.invalid_reason) for s in samples
                                  if s.execution.workflow.invalid_reason)
        regenerated = sum(s.execution.workflow.attempts - 1 for s in samples)
        pairs, loss, new_adapter = train_round(round_index, samples, config, log, model_path, adapter_path)
        summary = summarize(round_index, adapter_version, samples, pairs, loss)
        log.event("round_end", **summary.__dict__, failures=dict(failures), invalid_reasons=dict(invalid_reasons),
                  regenerations=regenerated, **stage_stats(actors))
        print(summary.line(), "| outcomes:", ", ".join(f"{k} {v}" for k, v in sorted(failures.items())))
        summaries.append(summary)
        if new_adapter:
            adapter_path, adapter_version = new_adapter, f"round-{round_index}"
            ray.get([g.load_adapter.remote(adapter_version, adapter_path) for g in actors.generators])
            log.event("adapter_loaded", round=round_index, adapter=adapter_version, path=adapter_path,
                      **adapter_probe(actors.generators[0], samples[0], adapter_version))
    return summaries


def train(config: Config) -> list[RoundSummary]:
    """Everything ``flowpo train`` does: checks, actors, rounds, shutdown."""
    from actors.launch import build_backend, start_actors
    from flowpo.model import check_model_dir
    from flowpo.tasks import load_problems

    model_path = str(check_model_dir(config.model.path))
    problems = load_problems(config.task)
    build_backend(config).check()
    log = RunLog(config.resolved_run_dir)
    log.write_config(config)
    log.event("run_start", name=config.name, problems=[p.problem_id for p in problems])
    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False)
    actors = start_actors(config, model_path, Path(log.run_dir))
    try:
        summaries = run_rounds(config, problems, actors, log, model_path)
    finally:
        actors.shutdown()
    log.event("run_end", rounds=len(summaries))
    return summaries
