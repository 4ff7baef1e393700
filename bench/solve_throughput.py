"""`flowpo solve` over a test split against `flowpo evaluate` on the same problems: problems per second
through the same warm actors, and whether both wrote the same workflows.

One session (driver/session.py: the generator, the executors and their sandboxes, the evaluator, the
executor LLM) runs both flows in turn on the checkpoint, each on the same problems: evaluate's
(driver.evaluate.run_methods, no baselines: generate → execute → score by the hidden tests) and
solve's (driver.solve.run_questions: the problems as questions, generate → execute, no score, the
bounded feed, the per-question sink). The order alternates (evaluate, solve, solve, evaluate for
--repeat 2) so that neither always meets the generator's prefix cache warm. Both use round 0 and
the same seeds, so they must write the same workflows; the bench counts the ones that differ.

    .venv/bin/python -m bench.solve_throughput [--problems 20] [--repeat 2] [--executor config|stub] [--quick]
"""
from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

from bench import common


def main(argv: list[str] | None = None) -> int:
    parser = common.parser("solve_throughput", __doc__, quick="6 problems, one pass each")
    parser.add_argument("--config", default="examples/local.yaml")
    parser.add_argument("--checkpoint", default="base", help="a checkpoint flowpo solve takes (default base)")
    parser.add_argument("--problems", type=int, default=20, help="the first N problems of the test split")
    parser.add_argument("--repeat", type=int, default=2, help="passes per command, order alternating")
    parser.add_argument("--executor", choices=["config", "stub"], default="config",
                        help="config: the config's executor LLM (the embedded model); stub: a loopback API")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. sandbox.num_executors=2")
    args = parser.parse_args(argv)
    if args.quick:
        args.problems, args.repeat = 6, 1
    import ray

    from driver.evaluate import run_methods
    from driver.session import prepare, session
    from driver.solve import Question, Sink, run_questions, solve_config
    from driver.trained import load_trained
    from flowpo.llm.local_api import LocalAPI
    from flowpo.tasks import load_problems

    stub = LocalAPI(latency_s=(0.05, 0.2)).start() if args.executor == "stub" else None
    overrides = ["task.split=test", "task.problem_ids=[]", f"task.limit={args.problems}", *args.overrides]
    if stub:
        os.environ["FLOWPO_BENCH_STUB_KEY"] = "stub"  # the stub takes any key
        overrides += ["executor_llm.backend=openai", f"executor_llm.base_url={stub.url}",
                      "executor_llm.api_key_env=FLOWPO_BENCH_STUB_KEY", "executor_llm.model=stub"]
    trained = load_trained(args.checkpoint, config_file=args.config, overrides=overrides)
    config = solve_config(trained.config)
    config = dataclasses.replace(config, generator=dataclasses.replace(config.generator, k=1))
    problems = load_problems(config.task)
    family = config.task.resolved_family
    print(f"{len(problems)} problems of {config.task.name} ({config.task.split} split), checkpoint {trained.label}",
          flush=True)
    runs, workflows = [], {"evaluate": {}, "solve": {}}
    order = (["evaluate", "solve", "solve", "evaluate"] * args.repeat)[:2 * args.repeat]
    began = time.monotonic()
    with session(config, Path(tempfile.mkdtemp(prefix="flowpo-bench-")), prepare(config)) as actors:
        startup = time.monotonic() - began
        print(f"actors started in {startup:.0f} s", flush=True)
        for command in order:
            t0 = time.monotonic()
            if command == "evaluate":
                samples = []
                run_methods(problems, trained.checkpoint, [], actors, config,
                            lambda _, sample, into=samples: into.append(sample))
                for sample in samples:
                    workflows["evaluate"][sample.execution.workflow.problem_id] = sample.execution.workflow.code
                extra = {"solved": sum(s.score for s in samples if s.score is not None)}
            else:
                out = Path(tempfile.mkdtemp(prefix="flowpo-bench-solve-"))
                answers = []
                sink = Sink(out, samples=1, family=family, checkpoint=trained.checkpoint.name, partial={},
                            on_answer=answers.append)
                questions = [Question(p.problem_id, p.prompt, p.entry_point) for p in problems]
                run_questions(actors, config, trained.checkpoint, questions, sink, family=family,
                              description=config.task.description, done=set())
                sink.close()
                for line in answers:
                    workflows["solve"][line["id"]] = line["workflow"]
                extra = {"failures": sum(1 for a in answers if a["failure"])}
            seconds = time.monotonic() - t0
            runs.append({"command": command, "seconds": round(seconds, 1),
                         "problems_per_s": round(len(problems) / seconds, 3), **extra})
            print(f"{command:8s} {seconds:7.1f} s  {len(problems) / seconds:.3f} problems/s  {extra}", flush=True)
    if stub:
        stub.stop()
    ray.shutdown()
    same = sum(1 for pid, code in workflows["solve"].items() if workflows["evaluate"].get(pid) == code)
    mean = {c: sum(r["seconds"] for r in runs if r["command"] == c) / args.repeat for c in ("evaluate", "solve")}
    rate = {c: len(problems) / mean[c] for c in mean}
    table = "\n".join([
        f"{len(problems)} problems of {config.task.name} ({config.task.split} split), checkpoint {trained.label}, "
        f"one workflow each, one session (actors started once, in {startup:.0f} s), executor: "
        f"{'loopback stub' if stub else config.executor_llm.model or config.model.path}; order {', '.join(order)}.", "",
        "| command | passes | mean s | problems/s | what it does per problem |", "|---|---:|---:|---:|---|",
        f"| flowpo evaluate | {args.repeat} | {mean['evaluate']:.1f} | {rate['evaluate']:.3f} | generate, execute, "
        "score (hidden tests in the evaluator's sandboxes) |",
        f"| flowpo solve | {args.repeat} | {mean['solve']:.1f} | {rate['solve']:.3f} | generate, execute, answer line "
        "(no score) |", "",
        f"solve / evaluate throughput: {rate['solve'] / rate['evaluate']:.2f}. Same workflows: {same}/{len(problems)}.",
        "", "| pass | command | seconds | problems/s |", "|---:|---|---:|---:|",
        *(f"| {i + 1} | {r['command']} | {r['seconds']} | {r['problems_per_s']} |" for i, r in enumerate(runs))])
    common.write_results(args.out, "solve_throughput", {
        "problems": len(problems), "task": config.task.name, "split": config.task.split, "checkpoint": trained.label,
        "executor": args.executor, "startup_s": round(startup, 1), "runs": runs, "mean_s": mean,
        "problems_per_s": rate, "same_workflows": same}, table, common.command("solve_throughput", argv),
        title="flowpo solve against flowpo evaluate on the same problems")
    return 0


if __name__ == "__main__":
    sys.exit(main())
