"""`flowpo` command line: train a run from a YAML config, prepare the embedded model."""
from __future__ import annotations

import argparse
import sys
import time

from flowpo.config import DEFAULT_MODEL_DIR, load_config
from flowpo.errors import FlowPOError


def cmd_train(args) -> int:
    from flowpo.driver import train

    config = load_config(args.config, args.overrides)
    began = time.monotonic()
    summaries = train(config)
    print(f"done in {time.monotonic() - began:.0f} s; run directory: {config.resolved_run_dir}")
    for summary in summaries:
        print("  " + summary.line())
    return 0


def cmd_prepare_model(args) -> int:
    from flowpo.model import prepare_embedded_model

    print(prepare_embedded_model(args.dest))
    return 0


def cmd_check(args) -> int:
    """Validate a config and what it names (model, dataset, Docker, image) without running."""
    from actors.launch import build_backend
    from flowpo.model import check_model_dir
    from flowpo.tasks import load_problems

    config = load_config(args.config, args.overrides)
    check_model_dir(config.model.path)
    problems = load_problems(config.task)
    build_backend(config).check()
    print(f"{args.config}: ok ({len(problems)} problems, {config.rounds} rounds)")
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="flowpo", description=__doc__)
    sub = root.add_subparsers(dest="command", required=True)
    for name, func, helptext in (("train", cmd_train, "run the optimization rounds of CONFIG"),
                                 ("check", cmd_check, "validate CONFIG and what it names")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("config", help="YAML config file, e.g. examples/local.yaml")
        p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.beta=0.2 rounds=1")
        p.set_defaults(func=func)
    p = sub.add_parser("prepare-model", help="convert the embedded SmolLM2-135M-Instruct once")
    p.add_argument("--dest", default=DEFAULT_MODEL_DIR)
    p.set_defaults(func=cmd_prepare_model)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except FlowPOError as exc:
        print(f"flowpo: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
