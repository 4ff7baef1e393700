"""`flowpo evaluate`: one workflow per test problem from a checkpoint, beside the IO, CoT and CoT-SC
baselines, all run through the same executors and evaluators as training; the solve rates as a
markdown table and JSON under ``<run_dir>/eval/<checkpoint>/``.

The bookkeeping (checkpoint resolution, aggregation, the table) is pure and works on the lines of
the per-method ``samples.jsonl``, so the reported numbers can always be recomputed from them.
"""
from __future__ import annotations

import dataclasses
import json
import time
from collections import Counter, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from flowpo.baselines import LABELS, baseline_workflow
from flowpo.config import Config, to_yaml
from flowpo.driver import RESTART_WAIT_S
from flowpo.errors import FlowPOError
from flowpo.records import Problem, ScoredSample

BASE = "base"  # the generator's name for "no adapter"


# ---------------------------------------------------------------------------------------------
# Checkpoint and config


@dataclass(frozen=True)
class Checkpoint:
    name: str  # version the generators serve it under, and the eval directory's name
    path: str  # peft adapter directory; "" for the base model


def resolve_checkpoint(spec: str, run_dir: Path, *, max_lora_rank: int = 0) -> Checkpoint:
    """``base``, a round number of ``run_dir`` (``adapters/round-<N>``) or a peft adapter directory."""
    spec = spec.strip()
    if spec == BASE:
        return Checkpoint(BASE, "")
    if spec.isdigit():
        path = Path(run_dir) / "adapters" / f"round-{int(spec)}"
        name = path.name
    else:
        path = Path(spec).expanduser()
        name = path.resolve().name
        if name in (BASE, *LABELS):  # would read as "no adapter" or as a baseline's row
            name = f"adapter-{name}"
    if not (path / "adapter_config.json").is_file():
        found = (Path(run_dir) / "adapters").glob("round-*/adapter_config.json") if spec.isdigit() else []
        rounds = sorted((p.parent.name for p in found), key=lambda n: (len(n), n))  # round-2 before round-10
        known = f" (this run has: {', '.join(rounds)})" if rounds else ""
        raise FlowPOError(f"--checkpoint {spec}: no peft adapter at {path} (adapter_config.json is missing){known}; "
                          "pass a round of the config's run directory, an adapter directory, or base")
    rank = json.loads((path / "adapter_config.json").read_text()).get("r", 0)
    if max_lora_rank and rank > max_lora_rank:
        raise FlowPOError(f"--checkpoint {spec}: the adapter at {path} has LoRA rank {rank}, above "
                          f"generator.max_lora_rank={max_lora_rank}; pass generator.max_lora_rank={rank}")
    return Checkpoint(name, str(path.resolve()))


def evaluation_config(config: Config, overrides: list[str]) -> tuple[Config, bool]:
    """The config evaluation runs: one workflow per problem (``generator.k=1``) and the test split
    unless ``task.split`` was set on the command line; and whether the split was forced."""
    forced = not any(item.partition("=")[0].strip() == "task.split" for item in overrides)
    task = dataclasses.replace(config.task, split="test") if forced else config.task
    return dataclasses.replace(config, task=task, generator=dataclasses.replace(config.generator, k=1)), forced


def split_note(split: str, forced: bool) -> str:
    return ("split: test (evaluation forces task.split=test; pass task.split=... to change)" if forced
            else f"split: {split} (task.split set on the command line)")


def load_eval_problems(config: Config, split_forced: bool) -> list[Problem]:
    from flowpo.tasks import load_problems

    try:
        return load_problems(config.task)
    except FlowPOError as exc:
        if split_forced and config.task.problem_ids and "task.problem_ids" in str(exc):
            raise FlowPOError(f"{exc}. Evaluation runs the test split: pass task.problem_ids=[] to evaluate all of "
                              "it, or task.split=all to evaluate these problems") from None
        raise


# ---------------------------------------------------------------------------------------------
# Bookkeeping: pure functions of samples.jsonl lines


@dataclass(frozen=True)
class MethodResult:
    method: str  # the checkpoint's name or a baseline's key (io, cot, cot_sc)
    label: str  # as the table shows it
    problems: int
    scored: int  # problems with a score (infrastructure did not fail every repeat)
    infra_failures: int  # problems - scored: excluded from the solve rate
    solved: float  # sum of the scored problems' scores (each a mean over repeats)
    solve_rate: float | None  # solved / scored; None when nothing was scored
    invalid_workflows: int  # workflows rejected statically (scored 0)
    tokens_per_problem: float  # executor LLM tokens of one run on one problem, mean over problems
    cost_per_problem: float  # the same in USD at the configured prices


def run_usage(record: dict) -> tuple[float, float]:
    """(tokens, cost) of one execution of the record's workflow: its repeats' total over their count."""
    details = record.get("details") or {}
    usage = details.get("repeat_usage") or record["usage"]
    runs = max(1, len(details.get("repeat_scores") or [None]))
    return (usage["prompt_tokens"] + usage["completion_tokens"]) / runs, usage["cost_usd"] / runs


def summarize_method(method: str, label: str, records: list[dict]) -> MethodResult:
    scores = [r["score"] for r in records if r["score"] is not None]
    usage = [run_usage(r) for r in records]
    solved = sum(scores)
    return MethodResult(
        method=method, label=label, problems=len(records), scored=len(scores),
        infra_failures=len(records) - len(scores), solved=solved, solve_rate=solved / len(scores) if scores else None,
        invalid_workflows=sum(1 for r in records if r.get("invalid_reason")),
        tokens_per_problem=sum(t for t, _ in usage) / len(usage) if usage else 0.0,
        cost_per_problem=sum(c for _, c in usage) / len(usage) if usage else 0.0)


def _number(x: float) -> str:
    return f"{x:.2f}".rstrip("0").rstrip(".")


TABLE_HEADER = ("| method | solved | problems | solve rate | infra failures | executor tokens / problem "
                "| executor cost / problem |\n|---|---:|---:|---:|---:|---:|---:|")


def render_table(results: list[MethodResult]) -> str:
    rows = [TABLE_HEADER]
    for r in results:
        rate = "—" if r.solve_rate is None else f"{100 * r.solve_rate:.1f}%"
        rows.append(f"| {r.label} | {_number(r.solved)} | {r.problems} | {rate} | {r.infra_failures} "
                    f"| {r.tokens_per_problem:.0f} | ${r.cost_per_problem:.4f} |")
    return "\n".join(rows)


def render_report(results: list[MethodResult], *, checkpoint: Checkpoint, task: str, split: str,
                  repeats: int) -> str:
    problems = results[0].problems if results else 0
    return (f"# Evaluation of {checkpoint.name} on {task}\n\n"
            f"{problems} problems ({split} split), one workflow per problem and method, each executed {repeats} "
            f"time(s) and scored by the mean. Solve rate = solved / (problems - infra failures): a problem whose "
            f"every run failed for infrastructure reasons is not scored. Tokens and cost are the executor LLM's "
            f"for one run on one problem (mean over problems).\n\n{render_table(results)}\n")


# ---------------------------------------------------------------------------------------------
# Running: the driver's streaming loop, cut down to one round without training


class _Slots:
    """Each request goes to the actor with the least outstanding work, at most ``limit`` each."""

    def __init__(self, handles: list, limit: int):
        self.handles, self.limit, self.load = handles, limit, [0] * len(handles)

    def free(self) -> bool:
        return min(self.load, default=self.limit) < self.limit

    def take(self) -> tuple[int, object]:
        i = min(range(len(self.handles)), key=self.load.__getitem__)
        self.load[i] += 1
        return i, self.handles[i]


MAX_ITEM_RETRIES = 3  # sends of one item whose actor died under it (Ray restarts actors), as the driver


def _problem_id(stage: str, item) -> str:
    """Items: generate (problem, attempt); dry_run and execute a Workflow; evaluate its Executions."""
    if stage == "generate":
        return item[0].problem_id
    return (item[0].workflow if stage == "evaluate" else item).problem_id


def run_methods(problems: list[Problem], checkpoint: Checkpoint, baselines: list[str], actors, config: Config,
                on_sample: Callable[[str, ScoredSample], None]) -> Counter:
    """Generate (k=1) and run the checkpoint's workflow and each baseline on every problem; each scored
    sample goes to ``on_sample(method, sample)`` as it arrives. Stages overlap, bounded per actor.
    Returns the items re-sent per stage because their actor died."""
    import ray
    from tqdm import tqdm

    adapter = (checkpoint.name, checkpoint.path)  # with every request: a restarted replica has lost it
    by_id = {p.problem_id: p for p in problems}
    repeats = config.evaluator.repeats
    slots = {"generate": _Slots(actors.generators, config.generator.max_inflight_problems),
             "dry_run": _Slots(actors.executors, max(1, config.sandbox.sandboxes_per_executor // repeats)),
             "evaluate": _Slots(actors.evaluators, max(config.evaluator.sandboxes_per_evaluator, 4))}
    slots["execute"] = slots["dry_run"]  # one budget per executor, as in the driver
    me = checkpoint.name
    queues = {"generate": deque((me, (p, 1)) for p in problems), "dry_run": deque(), "evaluate": deque(),
              "execute": deque((b, baseline_workflow(b, p.problem_id, p.family)) for p in problems for b in baselines)}
    pending: dict = {}  # ObjectRef -> (stage, method, actor index, item)
    resent: Counter = Counter()  # stage -> items sent again
    tries: Counter = Counter()  # (stage, method, problem) -> sends lost with their actor
    bar = tqdm(total=len(problems) * (1 + len(baselines)), desc=f"evaluate {me}", unit="problem", dynamic_ncols=True)
    while pending or any(queues.values()):
        for stage, queue in queues.items():
            while queue and slots[stage].free():
                i, handle = slots[stage].take()
                method, item = queue.popleft()
                if stage == "generate":
                    ref = handle.generate_for.remote(item[0], 0, [0], item[1], adapter)
                elif stage == "dry_run":
                    ref = handle.dry_run.remote(item, by_id[item.problem_id].family)
                elif stage == "execute":
                    ref = handle.execute_repeats.remote(item, by_id[item.problem_id], repeats)
                else:
                    ref = handle.evaluate_repeats.remote(item, by_id[item[0].workflow.problem_id])
                pending[ref] = (stage, method, i, item)
        (ref,), _ = ray.wait(list(pending), num_returns=1)
        stage, method, i, item = pending.pop(ref)
        slots[stage].load[i] -= 1
        try:
            result = ray.get(ref)
        except ray.exceptions.ActorUnavailableError:  # Ray is restarting it: not a new failure
            time.sleep(RESTART_WAIT_S)
            queues[stage].appendleft((method, item))
            continue
        except ray.exceptions.RayActorError as exc:
            key = (stage, method, _problem_id(stage, item))
            tries[key] += 1
            if tries[key] > MAX_ITEM_RETRIES:
                raise FlowPOError(f"evaluation: the {stage} stage lost {key[1]} on {key[2]} {tries[key]} times "
                                  f"({type(exc).__name__}); an actor keeps dying: check the Ray logs") from None
            resent[stage] += 1
            queues[stage].appendleft((method, item))
            continue
        if stage == "generate":
            (workflow,) = result
            dry = config.generator.dry_run and not workflow.invalid_reason
            queues["dry_run" if dry else "execute"].append((method, workflow))
        elif stage == "dry_run":  # result: "" when it ran, else why not (the driver's rule)
            if not result:
                queues["execute"].append((method, item))
            elif item.attempts < config.generator.max_attempts:
                queues["generate"].append((method, (by_id[item.problem_id], item.attempts + 1)))
            else:
                queues["execute"].append((method, dataclasses.replace(item, invalid_reason=result)))
        elif stage == "execute":
            queues["evaluate"].append((method, result))
        else:
            on_sample(method, result)
            bar.update(1)
    bar.close()
    return resent


@dataclass(frozen=True)
class EvalReport:
    out_dir: Path
    results: list[MethodResult]
    markdown: str


def write_results(out_dir: Path, results: list[MethodResult], markdown: str, meta: dict) -> None:
    (out_dir / "results.md").write_text(markdown)
    payload = {**meta, "methods": [dataclasses.asdict(r) for r in results]}
    (out_dir / "results.json").write_text(json.dumps(payload, indent=2) + "\n")


def evaluate(config: Config, checkpoint_spec: str, baselines: list[str], *, split_forced: bool = True) -> EvalReport:
    """Everything ``flowpo evaluate`` does after building its config (see ``evaluation_config``)."""
    import ray

    from actors.launch import check_local_sandbox, start_actors, withhold_from_workers
    from flowpo.model import check_model_dir

    model_path = str(check_model_dir(config.model.path))
    checkpoint = resolve_checkpoint(checkpoint_spec, config.resolved_run_dir,
                                    max_lora_rank=config.generator.max_lora_rank)
    problems = load_eval_problems(config, split_forced)
    check_local_sandbox(config)  # a cluster's executors check their own nodes
    out_dir = config.resolved_run_dir / "eval" / checkpoint.name
    methods = [checkpoint.name, *baselines]
    records: dict[str, list[dict]] = {m: [] for m in methods}
    for method in methods:  # each evaluation rewrites its directory's sample logs
        (out_dir / method).mkdir(parents=True, exist_ok=True)
        (out_dir / method / "samples.jsonl").write_text("")
    (out_dir / "config.yaml").write_text(to_yaml(config))

    def on_sample(method: str, sample: ScoredSample) -> None:
        line = {"method": method, **sample.to_log()}
        records[method].append(line)
        with open(out_dir / method / "samples.jsonl", "a") as handle:  # flushed per line, as the run log
            handle.write(json.dumps(line) + "\n")

    began = time.monotonic()
    if not ray.is_initialized():
        withhold_from_workers([config.executor_llm.api_key_env])  # only the brokers get the key
        ray.init(include_dashboard=False, log_to_driver=False)
    actors = start_actors(config, model_path, out_dir)
    try:
        resent = run_methods(problems, checkpoint, baselines, actors, config, on_sample)
    finally:
        actors.shutdown()
    labels = {checkpoint.name: f"{checkpoint.name} (generated)", **LABELS}
    results = [summarize_method(m, labels[m], records[m]) for m in methods]
    markdown = render_report(results, checkpoint=checkpoint, task=config.task.name, split=config.task.split,
                             repeats=config.evaluator.repeats)
    write_results(out_dir, results, markdown, {
        "checkpoint": checkpoint.name, "adapter_path": checkpoint.path, "task": config.task.name,
        "split": config.task.split, "repeats": config.evaluator.repeats, "wall_s": round(time.monotonic() - began, 1),
        "resent_after_actor_death": dict(resent), "problem_ids": [p.problem_id for p in problems]})
    return EvalReport(out_dir, results, markdown)
