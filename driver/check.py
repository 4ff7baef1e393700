"""`flowpo check CONFIG`: what a run needs, checked before any GPU time is spent, without starting vLLM
or Ray: the model, the sandbox, and the task. The task part loads every row of the data (all splits, no
subset or limit), says how many problems it made and which rows it could not read, shows one problem as
the generator will see it (its whole prompt), and scores every gold answer with the task's scorer: a
scorer that does not give its own gold answers full marks is a bug to find now, not after a round.
Code tasks count the rows with a reference solution; ``--tests`` also runs those through the hidden-test
harness in the configured sandbox, as the evaluator will.

Exit status: 0 all good; 1 rows that could not be read (unless task.allow_dropping is on) or gold answers
below full marks, each reported with counts and examples; 2 a config or data error (the CLI's).
"""
from __future__ import annotations

import dataclasses
from typing import Callable

from flowpo.config import Config
from flowpo.records import Problem

EXAMPLES = 5  # rows or gold answers shown per kind of trouble


def gold_failures(problems: list[Problem], timeout_s: float) -> tuple[int, list[str], str]:
    """(gold answers scored, one line per answer below full marks, a note when they cannot be scored here).
    Each of a problem's gold answers is scored as if a workflow had answered it."""
    from flowpo.scoring import ScorerError, score_text

    scored, failures = 0, []
    for problem in problems:
        if problem.family == "code":
            continue
        if problem.scorer == "judge":
            return 0, [], "scorer judge: gold answers are not scored here (the judge is an LLM)"
        for gold in problem.answers or ():
            scored += 1
            try:
                score, details = score_text(problem, gold, timeout_s=timeout_s)
            except ScorerError as exc:  # a user's function that raised, returned a bad value or hung
                failures.append(f"{problem.problem_id}: gold {gold[:80]!r}: {exc}")
                continue
            if score < 1.0:
                read = {k: v for k, v in details.items() if k != "scorer"}
                failures.append(f"{problem.problem_id}: gold {gold[:80]!r} scored {score:g}"
                                + (f" ({read})" if read else ""))
    return scored, failures, ""


def solution_failures(config: Config, problems: list[Problem]) -> tuple[int, list[str]]:
    """Run each code problem's reference solution through the hidden-test harness (the sandbox of
    ``config``, as the evaluator does): (solutions run, one line per solution that failed)."""
    import asyncio
    import time

    from actors.evaluator import Evaluator
    from actors.launch import build_backend
    from flowpo.records import Execution, Workflow

    with_solution = [p for p in problems if p.family == "code" and p.answers]
    evaluator = Evaluator(build_backend(config, timeout_s=config.evaluator.timeout_s),
                          sandboxes=max(2, config.evaluator.sandboxes_per_evaluator))

    def execution(problem: Problem) -> Execution:
        workflow = Workflow(problem_id=problem.problem_id, round=0, sample_index=0, adapter="reference", prompt="",
                            completion="", code="", generate_s=0.0)
        return Execution(workflow=workflow, answer=problem.answers[0], failure="", error="", llm_calls=0,
                         prompt_tokens=0, completion_tokens=0, execute_s=0.0)

    async def run_all():
        await evaluator.ready()
        try:
            return await asyncio.gather(*(evaluator.evaluate(execution(p), p) for p in with_solution))
        finally:
            await evaluator.close()

    began = time.monotonic()
    samples = asyncio.run(run_all())
    failures = [f"{s.execution.workflow.problem_id}: {s.details.get('test') or s.details}" for s in samples
                if s.score != 1.0]
    print(f"  reference solutions through the hidden tests: {len(samples) - len(failures)} of {len(samples)} pass "
          f"({time.monotonic() - began:.0f} s)")
    return len(samples), failures


def report(title: str, lines: list[str], out: Callable[[str], None] = print) -> None:
    out(f"  {title}")
    for line in lines[:EXAMPLES]:
        out(f"    {line}")
    if len(lines) > EXAMPLES:
        out(f"    ... and {len(lines) - EXAMPLES} more")


def check(config: Config, name: str, *, run_tests: bool = False) -> int:
    from actors.launch import check_local_sandbox
    from flowpo.model import describe_model, local_model_dir
    from flowpo.prompts import (
        check_prompt_room,
        check_training_room,
        generator_prompt,
        prompt_lengths,
        workflow_messages,
    )
    from flowpo.tasks import load_task

    model = describe_model(config.model.path)  # a hub id: found in this node's cache, or known to the hub
    task = config.task
    # Every row, every bad one listed (not only the first), whatever the run selects.
    everything = load_task(dataclasses.replace(task, split="all", problem_ids=[], limit=0, subset=0,
                                               allow_dropping=True))
    family, scorer = task.resolved_family, task.resolved_scorer or "hidden tests"
    print(f"task {task.name}: {everything.converted} problems from {everything.source} ({everything.rows} rows read"
          + (f", {everything.outside} outside the benchmark" if everything.outside else "")
          + f"); family {family}, scored by {scorer}")
    status = 0
    if everything.dropped:
        allowed = task.allow_dropping
        report(f"{len(everything.dropped)} rows could not be read or converted"
               + (" (task.allow_dropping: a run leaves them out)" if allowed else
                  " (a run stops at the first; fix them, or set task.allow_dropping to leave them out)"),
               [f"{where}: {why}" for where, why in everything.dropped])
        status = 0 if allowed else 1
    selected = load_task(task).problems if status == 0 else everything.problems
    print(f"  the run uses {len(selected)} of them ({task.split} split"
          + (f", {len(task.problem_ids)} problem_ids" if task.problem_ids else "")
          + (f", limit {task.limit}" if task.limit else "") + ")")

    tokenizer = None
    model_dir = local_model_dir(config.model.path)
    if model_dir is not None:  # else each run checks with its replicas' tokenizer (actors.launch)
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model_dir)
    shown = selected[0]
    print(f"\none problem as the generator sees it ({shown.problem_id}):\n" + "-" * 72)
    if tokenizer is not None:
        print(generator_prompt(tokenizer, shown, config.generator.response_prefix))
    else:
        print("\n\n".join(f"[{m['role']}]\n{m['content']}" for m in workflow_messages(shown)))
    print("-" * 72)

    if family == "code":
        with_solution = sum(bool(p.answers) for p in everything.problems)
        print(f"  {with_solution} of {everything.converted} code problems have a reference solution"
              + ("" if run_tests or not with_solution else " (--tests runs them through the hidden tests)"))
        if run_tests and with_solution:
            _, failures = solution_failures(config, everything.problems)
            if failures:
                report(f"{len(failures)} reference solutions fail their hidden test", failures)
                status = 1
    else:
        scored, failures, note = gold_failures(everything.problems, config.evaluator.math_timeout_s
                                               if hasattr(config.evaluator, "math_timeout_s") else 5.0)
        if note:
            print(f"  {note}")
        elif failures:
            report(f"{len(failures)} of {scored} gold answers do not get full marks from {scorer}", failures)
            status = 1
        else:
            print(f"  gold answers: {scored} of {scored} get full marks from {scorer}")

    if tokenizer is not None:
        g = config.generator
        lengths = prompt_lengths(tokenizer, selected, g.response_prefix)
        warning = check_prompt_room(lengths, g.max_model_len, g.max_tokens)
        check_training_room(lengths, config.train.max_seq_len, g.max_tokens)
        if warning:
            print(f"warning: {warning}")
    sandbox = "" if check_local_sandbox(config) else (
        f"; sandbox not checked here: executors run on nodes with {config.sandbox.executor_resources}")
    verdict = "ok" if status == 0 else "found problems (above)"
    print(f"{name}: {verdict} ({model}; {len(selected)} problems, {config.rounds} rounds{sandbox})")
    return status
