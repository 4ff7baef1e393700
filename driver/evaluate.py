"""`flowpo evaluate`: one workflow (or ``--samples N``) per test problem from a checkpoint, beside the
IO, CoT and CoT-SC baselines, all run through the same executors and evaluators as training; the
solve rates as a markdown table and JSON under ``<run_dir>/eval/<checkpoint>/``. Every checkpoint
of a run at once (``--all-checkpoints``, one actor start) is driver/curve.py.

The bookkeeping (checkpoint resolution, aggregation, the table) is pure and works on the lines of
the per-method ``samples.jsonl``, so the reported numbers can always be recomputed from them.
"""
from __future__ import annotations

import dataclasses
import json
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from driver.rundir import RunDir, adapter_name
from flowpo.baselines import LABELS, baseline_workflow
from flowpo.config import Config, to_yaml
from flowpo.errors import FlowPOError
from flowpo.records import BASE_ADAPTER, Problem, ScoredSample

# ---------------------------------------------------------------------------------------------
# Checkpoint and config


@dataclass(frozen=True)
class Checkpoint:
    name: str  # version the generators serve it under, and the eval directory's name
    path: str  # peft adapter directory; "" for the base model


def resolve_checkpoint(spec: str, run_dir: Path, *, max_lora_rank: int = 0) -> Checkpoint:
    """``base``, a round number of ``run_dir`` (``adapters/round-<N>``) or a peft adapter directory."""
    spec = spec.strip()
    if spec == BASE_ADAPTER:
        return Checkpoint(BASE_ADAPTER, "")
    if spec.isdigit():
        path = RunDir(run_dir).adapter(int(spec))
        name = path.name
    else:
        path = Path(spec).expanduser()
        name = path.resolve().name
        if name in (BASE_ADAPTER, *LABELS):  # would read as "no adapter" or as a baseline's row
            name = f"adapter-{name}"
    if not (path / "adapter_config.json").is_file():
        rounds = [adapter_name(k) for k in RunDir(run_dir).trained_rounds()] if spec.isdigit() else []
        known = f" (this run has: {', '.join(rounds)})" if rounds else ""
        raise FlowPOError(f"--checkpoint {spec}: no peft adapter at {path} (adapter_config.json is missing){known}; "
                          "pass a round of the config's run directory, an adapter directory, or base")
    rank = json.loads((path / "adapter_config.json").read_text()).get("r", 0)
    if max_lora_rank and rank > max_lora_rank:
        raise FlowPOError(f"--checkpoint {spec}: the adapter at {path} has LoRA rank {rank}, above "
                          f"generator.max_lora_rank={max_lora_rank}; pass generator.max_lora_rank={rank}")
    return Checkpoint(name, str(path.resolve()))


def evaluation_config(config: Config, overrides: list[str], samples: int = 1) -> tuple[Config, bool]:
    """The config evaluation runs: ``samples`` workflows per problem (``generator.k``, default 1) and
    the test split unless ``task.split`` was set on the command line; and whether the split was forced."""
    if samples < 1:
        raise FlowPOError(f"--samples {samples}: workflows per problem must be at least 1")
    forced = not any(item.partition("=")[0].strip() == "task.split" for item in overrides)
    task = dataclasses.replace(config.task, split="test") if forced else config.task
    return dataclasses.replace(config, task=task, generator=dataclasses.replace(config.generator, k=samples)), forced


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
                  repeats: int, samples: int = 1) -> str:
    problems = results[0].problems // samples if results else 0
    per = "one workflow" if samples == 1 else f"{samples} workflows (the table counts each as a problem)"
    return (f"# Evaluation of {checkpoint.name} on {task}\n\n"
            f"{problems} problems ({split} split), {per} per problem and method, each executed {repeats} "
            f"time(s) and scored by the mean. Solve rate = solved / (problems - infra failures): a problem whose "
            f"every run failed for infrastructure reasons is not scored. Tokens and cost are the executor LLM's "
            f"for one run on one problem (mean over problems).\n\n{render_table(results)}\n")


# ---------------------------------------------------------------------------------------------
# Running: one round without training, on the streaming engine (actors/streaming.py)


def run_methods(problems: list[Problem], checkpoint: Checkpoint, baselines: list[str], actors, config: Config,
                on_sample: Callable[[str, ScoredSample], None], *, samples: int = 1) -> Counter:
    """Generate ``samples`` workflows per problem with the checkpoint and run them, and run each
    baseline ``samples`` times per problem (sample indices 0.., so each run has its own executor-LLM
    seeds, the same for every method): one round without training, each method a lane of the
    round's flow (driver/flow.py); each scored sample goes to ``on_sample(method, sample)`` as it
    arrives. Returns the items re-sent per stage because their actor died."""
    from tqdm import tqdm

    from driver.flow import Generate, stream_flow
    from driver.learn import shipped

    slots = list(range(samples))
    fixed = [(baseline, dataclasses.replace(workflow, sample_index=j))
             for problem in problems for baseline in baselines
             for workflow in [baseline_workflow(baseline, problem.problem_id, problem.family)] for j in slots]
    bar = tqdm(total=len(problems) * samples * (1 + len(baselines)), desc=f"evaluate {checkpoint.name}",
               unit="workflow", dynamic_ncols=True)
    faults = stream_flow(actors, config, round_index=0,
                         adapters={checkpoint.name: shipped(checkpoint.name, checkpoint.path)},
                         generate=[Generate(checkpoint.name, problem, slots) for problem in problems],
                         fixed=fixed, on_sample=on_sample,
                         on_progress=lambda stage, count: bar.update(count) if stage == "scored" else None)
    bar.close()
    return faults.by_stage


def evaluate_methods(config: Config, checkpoints: list[Checkpoint], baselines: list[str], problems: list[Problem],
                     out_dir: Path, *, samples: int = 1) -> tuple[dict[str, list[dict]], dict]:
    """Start the actors once and run the checkpoints one after the other (each request names its
    adapter, which the generators load on first use; the baselines run once, beside the first);
    each method's lines go to ``out_dir/<method>/samples.jsonl`` as they arrive (rewritten).
    Returns the lines by method, and what the results record about the run."""
    from actors.launch import check_prompts_fit
    from driver.session import prepare, session

    model_path = prepare(config)
    records: dict[str, list[dict]] = {m: [] for m in [c.name for c in checkpoints] + baselines}
    for method in records:
        (out_dir / method).mkdir(parents=True, exist_ok=True)
        (out_dir / method / "samples.jsonl").write_text("")
    (out_dir / "config.yaml").write_text(to_yaml(config))

    def on_sample(method: str, sample: ScoredSample) -> None:
        line = {"method": method, **sample.to_log()}
        records[method].append(line)
        with open(out_dir / method / "samples.jsonl", "a") as handle:  # flushed per line, as the run log
            handle.write(json.dumps(line) + "\n")

    began, resent = time.monotonic(), Counter()
    with session(config, out_dir, model_path) as actors:
        check_prompts_fit(actors, problems, config)
        for i, checkpoint in enumerate(checkpoints):
            resent += run_methods(problems, checkpoint, baselines if i == 0 else [], actors, config, on_sample,
                                  samples=samples)
    return records, {"task": config.task.name, "split": config.task.split, "repeats": config.evaluator.repeats,
                     "samples": samples, "seed": config.seed, "wall_s": round(time.monotonic() - began, 1),
                     "resent_after_actor_death": dict(resent), "problem_ids": [p.problem_id for p in problems]}


def tradeoff_section(config: Config, records: dict[str, list[dict]], labels: dict, baselines: list[str],
                     out_dir: Path, markdown: str) -> tuple[str, list[dict]]:
    """The report's accuracy against cost (driver/report_cost.py): each method a point with intervals on
    both axes, the Pareto front, cost per solved problem; ``<out_dir>/tradeoff.png``. Returns the
    markdown with it and its JSON."""
    from driver.report import TRADEOFF, tradeoff_lines
    from driver.report_cost import config_cost_unit, cost_json, cost_points

    points = cost_points({config.seed: records}, list(records), labels, set(baselines), config_cost_unit(config))
    lines = tradeoff_lines(out_dir, points, title="Pass rate against executor cost", name=TRADEOFF)
    return markdown + "\n## Accuracy against cost\n\n" + "\n".join(lines), cost_json(points)


@dataclass(frozen=True)
class EvalReport:
    out_dir: Path
    results: list[MethodResult]
    markdown: str


def write_results(out_dir: Path, results: list[MethodResult], markdown: str, meta: dict) -> None:
    (out_dir / "results.md").write_text(markdown)
    payload = {**meta, "methods": [dataclasses.asdict(r) for r in results]}
    (out_dir / "results.json").write_text(json.dumps(payload, indent=2) + "\n")


def evaluate(config: Config, checkpoint_spec: str, baselines: list[str], *, split_forced: bool = True,
             samples: int = 1) -> EvalReport:
    """Everything ``flowpo evaluate --checkpoint`` does after building its config (see ``evaluation_config``)."""
    checkpoint = resolve_checkpoint(checkpoint_spec, config.resolved_run_dir,
                                    max_lora_rank=config.generator.max_lora_rank)
    problems = load_eval_problems(config, split_forced)
    out_dir = RunDir(config.resolved_run_dir).evaluation(checkpoint.name)
    records, meta = evaluate_methods(config, [checkpoint], baselines, problems, out_dir, samples=samples)
    labels = {checkpoint.name: f"{checkpoint.name} (generated)", **LABELS}
    results = [summarize_method(m, labels[m], lines) for m, lines in records.items()]
    markdown = render_report(results, checkpoint=checkpoint, task=config.task.name, split=config.task.split,
                             repeats=config.evaluator.repeats, samples=samples)
    markdown, cost = tradeoff_section(config, records, labels, baselines, out_dir, markdown)
    write_results(out_dir, results, markdown, {"checkpoint": checkpoint.name, "adapter_path": checkpoint.path, **meta,
                                               "cost": cost})
    return EvalReport(out_dir, results, markdown)
