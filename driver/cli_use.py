"""The commands that use what a run learned: `flowpo solve`, `flowpo serve`, `flowpo export`
(driver/cli.py adds them with ``add_commands``)."""
from __future__ import annotations

import argparse
import time

CHECKPOINT_HELP = ("a run directory (its latest round, or --round K), an adapter directory, a folder of "
                   "`flowpo export`, or base")


def generator_options(p: argparse.ArgumentParser) -> None:
    """What solve and serve share: the checkpoint, its config, and how questions are asked."""
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. executor_llm.model=gpt-4o-mini")
    p.add_argument("--config", metavar="CONFIG",
                   help="config to run with (executor LLM, sandbox, the task whose format and family the questions "
                        "have); default: the checkpoint's own")
    p.add_argument("--round", type=int, metavar="K", help="with a run directory: round K (default: the latest)")
    p.add_argument("--merged", action="store_true", help="with an exported folder: its merged weights, no LoRA")
    p.add_argument("--family", choices=["code", "math", "qa", "text"],
                   help="ask the questions as this task family (default: the config's task's)")
    p.add_argument("--description", help="the task's description in the generator's prompt (default: the config's)")


def cmd_solve(args) -> int:
    from pathlib import Path

    from driver.solve import Source, new_job, output_dir, resumed_job, solve

    if args.resume:
        if args.checkpoint:  # a word before the overrides is one more override here
            args.overrides.insert(0, args.checkpoint)
        out_dir = Path(args.resume)
        job = resumed_job(out_dir, args.overrides)
    else:
        from flowpo.errors import FlowPOError

        if not args.checkpoint:
            raise FlowPOError("flowpo solve needs a CHECKPOINT (" + CHECKPOINT_HELP + "), or --resume OUT_DIR")
        if args.input and args.question:
            raise FlowPOError("give the questions as --input FILE or --question TEXT, not both")
        source = Source(args.input or "", tuple(args.question or ()))
        job = new_job(args.checkpoint, config_file=args.config, overrides=args.overrides, round_index=args.round,
                      merged=args.merged, source=source, samples=args.samples, family=args.family or "",
                      description=args.description)
        out_dir = output_dir(args.out, job.trained.home)
    for note in job.notes:
        print(f"warning: {note}")
    print(f"solving {job.source.describe(job.config)} with {job.trained.label} ({job.family}; {job.samples} "
          f"workflow(s) per question) into {out_dir}")
    report = solve(job, out_dir, resume=bool(args.resume))
    print(report.markdown)
    if args.question:
        import json

        for line in (out_dir / "answers.jsonl").read_text().splitlines():
            answer = json.loads(line)
            print(f"[{answer['id']}] {answer['answer'] if not answer['failure'] else '(' + answer['failure'] + ')'}")
    return 0


def cmd_serve(args) -> int:
    from driver.prompt_spec import drift
    from driver.serve import ServeSettings, api_key_from, key_digest, serve
    from driver.trained import load_trained

    trained = load_trained(args.checkpoint, config_file=args.config, overrides=args.overrides, round_index=args.round,
                           merged=args.merged)
    family = args.family or trained.config.task.resolved_family
    description = trained.config.task.description if args.description is None else args.description
    for note in drift(trained.spec, family, description) if trained.spec else []:
        print(f"warning: {note}")
    settings = ServeSettings(model_name=args.model_name or trained.checkpoint.name,
                             key_sha256=key_digest(api_key_from(args.api_key_env)),
                             max_body_bytes=args.max_body_bytes, max_concurrency=args.max_concurrency,
                             max_queue=args.max_queue, samples=args.samples, max_samples=max(args.max_samples,
                                                                                             args.samples))
    serve(trained, settings, host=args.host, port=args.port, family=family, description=description,
          log_dir=args.log_dir, key_env=args.api_key_env)
    return 0


def cmd_export(args) -> int:
    from driver.export import export

    began = time.monotonic()
    out = export(args.run_dir, args.checkpoint, args.out, merge=args.merge, base_model_id=args.base_model_id,
                 push=args.push_to_hub or "", private=args.private)
    print(f"exported to {out} in {time.monotonic() - began:.1f} s: " + ", ".join(sorted(p.name for p in out.iterdir())))
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser("solve", help="answer new questions with a trained generator: a workflow per question (or "
                                     "--samples N, voted), run through the executors; JSONL and a summary")
    p.add_argument("checkpoint", nargs="?", metavar="CHECKPOINT", help=CHECKPOINT_HELP)
    generator_options(p)
    p.add_argument("--input", metavar="FILE", help="questions: JSONL (question/problem/prompt, optional id, "
                                                   "entry_point, tests; or the --config task's columns) or .txt")
    p.add_argument("--question", action="append", metavar="TEXT", help="a question (repeatable)")
    p.add_argument("--samples", type=int, default=1, metavar="N",
                   help="workflows per question; the answer is their majority vote (code with tests: the first "
                        "that passes them); default 1")
    p.add_argument("--out", metavar="DIR", help="output directory (default: RUN_DIR/solves/<timestamp>, else "
                                                "./solves/<timestamp>); never written over")
    p.add_argument("--resume", metavar="OUT_DIR", help="finish an interrupted solve in OUT_DIR")
    p.set_defaults(func=cmd_solve)

    p = sub.add_parser("serve", help="an OpenAI-compatible endpoint (POST /v1/chat/completions, GET /v1/models) "
                                     "whose answers come from a trained generator's workflows, on Ray Serve")
    p.add_argument("checkpoint", metavar="CHECKPOINT", help=CHECKPOINT_HELP)
    generator_options(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--model-name", help="the model name clients send (default: the checkpoint's name)")
    p.add_argument("--api-key-env", metavar="VAR", default="",
                   help="require clients to send the key held in environment variable VAR (Bearer token)")
    p.add_argument("--max-body-bytes", type=int, default=65_536, help="largest request body (default 65536)")
    p.add_argument("--max-concurrency", type=int, default=8, help="requests answered at once (default 8)")
    p.add_argument("--max-queue", type=int, default=32, help="requests waiting beyond those; more get 429 (default 32)")
    p.add_argument("--samples", type=int, default=1, metavar="N", help="workflows per question (default 1)")
    p.add_argument("--max-samples", type=int, default=8, metavar="N",
                   help="the most workflows a request may ask for (flowpo.samples; default 8)")
    p.add_argument("--log-dir", help="where the actors' logs go (default: RUN_DIR/serve or ./flowpo-serve)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("export", help="a run's checkpoint as a self-contained folder: peft adapter, generator prompt "
                                      "spec, model card, optionally merged weights")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--checkpoint", metavar="K", help="the round to export (default: the latest trained)")
    p.add_argument("--out", required=True, metavar="DIR", help="the folder to write (new, or empty)")
    p.add_argument("--merge", action="store_true", help="also write merged/: base + adapter, served without LoRA")
    p.add_argument("--base-model-id", default="", metavar="ORG/NAME",
                   help="the hub id of the base model, for the card and adapter_config.json (default: model.path "
                        "when it is a hub id)")
    p.add_argument("--push-to-hub", metavar="REPO", help="upload the folder to this Hugging Face hub repository")
    p.add_argument("--private", action="store_true", help="with --push-to-hub: create the repository private")
    p.set_defaults(func=cmd_export)
