"""`flowpo` command line: train a run from a YAML config, evaluate a checkpoint, replay recorded workflows,
use a trained generator (solve, serve, export), prepare the embedded model."""
from __future__ import annotations

import argparse
import sys
import time

from driver.cli_use import add_commands
from driver.rundir import RunDir
from flowpo.config import DEFAULT_MODEL_DIR, load_config
from flowpo.errors import FlowPOError


def refuse_relative_run_dir_in_job(run_dir, what: str = "run_dir") -> None:
    """A Ray job's entrypoint runs in Ray's temporary copy of `--working-dir` on the head: a relative
    run directory (``what`` names the setting) would land there, and the next submission of the same
    code unpacks that copy again over it."""
    import os
    from pathlib import Path

    from actors.launch import JOB_CONFIG_ENV

    if os.environ.get(JOB_CONFIG_ENV) and not Path(run_dir).is_absolute():
        raise FlowPOError(f"{what} {run_dir} is relative, and this is a Ray job: it would be written in Ray's "
                          "temporary copy of the working directory on the head, which the next submission "
                          "overwrites. Set an absolute path on the head's disk (or on storage you mounted there), "
                          f"e.g. {what}=/mnt/flowpo/runs/NAME.")


def cmd_train(args) -> int:
    from pathlib import Path

    from driver.train import train

    if args.resume:
        # The run's own config, so the resumed rounds are the same rounds; overrides still apply.
        run_dir = Path(args.resume)
        refuse_relative_run_dir_in_job(run_dir)
        overrides = ([args.config] if args.config else []) + list(args.overrides)
        config = load_config(RunDir(run_dir).require("--resume").config, overrides + [f"run_dir={run_dir}"])
    elif not args.config:
        raise FlowPOError("flowpo train needs a CONFIG file, or --resume RUN_DIR")
    else:
        config = load_config(args.config, args.overrides)
        refuse_relative_run_dir_in_job(config.resolved_run_dir)
    began = time.monotonic()
    summaries = train(config, resume=bool(args.resume))
    print(f"done in {time.monotonic() - began:.0f} s; run directory: {config.resolved_run_dir}")
    for summary in summaries:
        print("  " + summary.line())
    return 0


def cmd_prepare_model(args) -> int:
    from flowpo.model import prepare_embedded_model

    print(prepare_embedded_model(args.dest))
    return 0


def cmd_check(args) -> int:
    """Validate a config and what it names (model, every row of the task, its scorer, Docker, image)
    without running (driver/check.py)."""
    from driver.check import check

    return check(load_config(args.config, args.overrides), args.config, run_tests=args.tests)


def evaluated_config(args):
    """(config, overrides) of `flowpo evaluate`: CONFIG with --checkpoint, or with --all-checkpoints
    RUN_DIR the run's own config.yaml (a CONFIG word there is one more override, as with --resume)."""

    if bool(args.checkpoint) == bool(args.all_checkpoints):
        raise FlowPOError("flowpo evaluate needs CONFIG --checkpoint ROUND|PATH|base, or --all-checkpoints RUN_DIR "
                          "(one of the two)")
    if args.checkpoint:
        if not args.config:
            raise FlowPOError("flowpo evaluate --checkpoint needs the run's CONFIG file")
        return load_config(args.config, args.overrides), list(args.overrides)
    run_dir = RunDir(args.all_checkpoints).require("--all-checkpoints")
    overrides = ([args.config] if args.config else []) + list(args.overrides)
    return load_config(run_dir.config, overrides + [f"run_dir={run_dir.path}"]), overrides


def cmd_evaluate(args) -> int:
    from driver.curve import evaluate_all
    from driver.evaluate import evaluate, evaluation_config, split_note
    from flowpo.baselines import parse_baselines

    baselines = parse_baselines(args.baselines)
    loaded, overrides = evaluated_config(args)
    config, forced = evaluation_config(loaded, overrides, args.samples)
    what = f"checkpoint {args.checkpoint}" if args.checkpoint else f"base and every round of {args.all_checkpoints}"
    print(f"evaluating {what} on {config.task.name}, {split_note(config.task.split, forced)}; "
          f"baselines: {', '.join(baselines) or 'none'}; {args.samples} workflow(s) per problem, "
          f"{config.evaluator.repeats} run(s) per workflow")
    if args.checkpoint:
        report = evaluate(config, args.checkpoint, baselines, split_forced=forced, samples=args.samples)
    else:
        report = evaluate_all(config, baselines, split_forced=forced, samples=args.samples)
    print(report.markdown)
    print(f"results: {report.out_dir / 'results.md'}, {report.out_dir / 'results.json'}")
    return 0


def cmd_execute(args) -> int:
    from driver.execute import Selection, replay, resolve_source

    source = resolve_source(args.recorded, args.with_config)
    config = load_config(source.config, args.overrides)
    selection = Selection(rounds=frozenset(args.round or ()), problems=frozenset(args.problem or ()),
                          min_score=args.min_score, max_score=args.max_score, only_valid=args.only_valid)
    print(f"replaying {source.samples} ({selection.describe()}) with {source.config}; "
          f"{config.evaluator.repeats} run(s) per workflow")
    report = replay(config, source, selection, out=args.out, skip_missing=args.skip_missing)
    print(report.markdown)
    print(f"results: {report.out_dir / 'samples.jsonl'}, {report.out_dir / 'results.md'}, "
          f"{report.out_dir / 'results.json'}")
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="flowpo", description=__doc__)
    sub = root.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="run the optimization rounds of CONFIG")
    p.add_argument("config", nargs="?", help="YAML config file, e.g. examples/local.yaml (not with --resume)")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.beta=0.2 rounds=1")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR after a crash")
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("check", help="validate CONFIG and what it names: model, sandbox, and the task (every row "
                                     "read, one problem as the generator sees it, every gold answer scored)")
    p.add_argument("config", help="YAML config file, e.g. examples/local.yaml")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.beta=0.2 rounds=1")
    p.add_argument("--tests", action="store_true",
                   help="code tasks: also run each reference solution through the hidden tests in the sandbox")
    p.set_defaults(func=cmd_check)
    p = sub.add_parser("evaluate", help="solve rate of a checkpoint and the IO/CoT/CoT-SC baselines on the test split")
    p.add_argument("config", nargs="?", help="YAML config file of the run, e.g. examples/local.yaml "
                                             "(not with --all-checkpoints, which reads the run's config.yaml)")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. evaluator.repeats=3 task.limit=20")
    p.add_argument("--checkpoint", metavar="ROUND|PATH|base",
                   help="a round of the run directory (adapters/round-ROUND), a peft adapter directory, or base")
    p.add_argument("--all-checkpoints", metavar="RUN_DIR",
                   help="base and every round of RUN_DIR on one actor start; writes the learning curve "
                        "(table and plot) into RUN_DIR/reports/")
    p.add_argument("--samples", type=int, default=1, metavar="N",
                   help="workflows per problem of each checkpoint, and runs of each baseline (default 1)")
    p.add_argument("--baselines", default="io,cot,cot_sc", help="io,cot,cot_sc (default), a subset, or none")
    p.set_defaults(func=cmd_evaluate)
    p = sub.add_parser("execute", help="run recorded workflows again (another executor LLM, repeats or split) "
                                       "and compare their scores with the recorded ones")
    p.add_argument("recorded", metavar="RUN_DIR_OR_SAMPLES", help="a run directory, or a samples.jsonl file")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. executor_llm.model=gpt-4o-mini")
    p.add_argument("--with", dest="with_config", metavar="CONFIG",
                   help="config of the replay (default: the config.yaml beside the samples)")
    p.add_argument("--round", type=int, action="append", metavar="K", help="only round K (repeatable)")
    p.add_argument("--problem", action="append", metavar="ID", help="only problem ID (repeatable)")
    p.add_argument("--min-score", type=float, help="only workflows whose recorded score is at least this")
    p.add_argument("--max-score", type=float, help="only workflows whose recorded score is at most this")
    p.add_argument("--only-valid", action="store_true", help="leave out workflows recorded as invalid_workflow")
    p.add_argument("--skip-missing", action="store_true",
                   help="leave out workflows whose problem is not in the config's task split (else an error)")
    p.add_argument("--out", metavar="DIR", help="output directory (default: RUN_DIR/replays/<timestamp>)")
    p.set_defaults(func=cmd_execute)
    add_commands(sub)  # solve, serve, export (driver/cli_use.py)
    p = sub.add_parser("prepare-model", help="convert the embedded SmolLM2-135M-Instruct once")
    p.add_argument("--dest", default=DEFAULT_MODEL_DIR)
    p.set_defaults(func=cmd_prepare_model)
    return root


def main(argv: list[str] | None = None) -> int:
    root = parser()
    args, extra = root.parse_known_args(argv)
    if (extra and args.command in ("evaluate", "execute", "solve", "serve")
            and not any(e.startswith("-") for e in extra)):
        args.overrides += extra  # argparse leaves overrides that follow an option unparsed
    elif extra:
        root.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return args.func(args)
    except FlowPOError as exc:
        # Raised inside an actor (a user's scorer that failed: flowpo/user_scorer.py), it arrives wrapped by
        # Ray with the actor's traceback: its own message says all.
        cause = getattr(exc, "cause", None)
        print(f"flowpo: error: {cause if isinstance(cause, FlowPOError) else exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
