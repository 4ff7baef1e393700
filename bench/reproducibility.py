"""Is a run reproducible to the sample? Round 1 of the same config three times, each as a user runs it
(`flowpo train`, its own Ray instance):

  A  uninterrupted;
  B  uninterrupted again;
  C  killed (SIGKILL, no clean-up) after --kill-after samples, then `flowpo train --resume`;
  D  with --before REV: uninterrupted, on the code of git revision REV (a worktree of it, its own
     config file), to show that a restructuring wrote the same workflows as the code before it.

Each run is stopped once round 1 has all its samples (training is not compared). It prints, for B
and for C against A, how many of the round's (problem, sample index) slots wrote the same workflow,
the same answer and the same score. Workflows are seeded by (run seed, problem, round, sample
index, attempt) and executor-LLM calls by (…, repeat, call number), so where the backends are
deterministic everything matches; vLLM on CPU may still flip a token with the batch's make-up.

    .venv/bin/python -m bench.reproducibility [--config examples/local.yaml] [--kill-after 12] [--before REV] [--quick]
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import common
from bench.common import FLOWPO, REPO

# Round 1 of 2 problems × 4 workflows, C killed after 3 of its 8 samples.
QUICK = ["task.problem_ids=[HumanEval/23,HumanEval/53]", "generator.k=4"]


def samples(run_dir: Path) -> dict:
    """(problem, sample index) -> the round-1 line; a torn last line is not a sample."""
    found = {}
    path = run_dir / "samples.jsonl"
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record["round"] == 1:
            found[(record["problem_id"], record["sample_index"])] = record
    return found


def run_until(command: list[str], run_dir: Path, count: int, *, kill: bool, timeout_s: float, cwd: Path = REPO,
              env: dict | None = None) -> None:
    """Run ``command`` until round 1 holds ``count`` samples, then stop it: SIGKILL to its whole
    process group (a crash) or SIGTERM (a user's stop)."""
    proc = subprocess.Popen(command, cwd=cwd, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout_s
    try:
        while len(samples(run_dir)) < count:
            if proc.poll() is not None:
                raise SystemExit(f"{' '.join(command)} exited {proc.returncode} with {len(samples(run_dir))} samples")
            if time.monotonic() > deadline:
                raise SystemExit(f"{' '.join(command)}: {len(samples(run_dir))} of {count} samples after {timeout_s} s")
            time.sleep(0.5)
    finally:
        os.killpg(proc.pid, signal.SIGKILL if kill else signal.SIGTERM)
        try:
            proc.wait(180)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)


def compare(reference: dict, other: dict) -> dict:
    """How many slots of ``reference`` hold the same workflow, answer and score in ``other``."""
    same = {"workflow": 0, "answer": 0, "score": 0}
    for key, ref in reference.items():
        mine = other.get(key)
        if mine is None:
            continue
        same["workflow"] += ref["completion"] == mine["completion"]
        same["answer"] += ref["answer"] == mine["answer"]  # the first repeat's answer
        same["score"] += ref["score"] == mine["score"]
    return same


def before_command(rev: str, root: Path) -> tuple[list[str], Path, dict]:
    """(command, its working directory, its environment) of ``flowpo train`` on the code of ``rev``:
    a git worktree of it leads PYTHONPATH (Ray's workers inherit it), ahead of this checkout's install."""
    tree = root / f"code-{rev}"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), rev], check=True,
                   stdout=subprocess.DEVNULL)
    cli = ("driver.cli" if (tree / "driver" / "cli.py").is_file() else  # each layout the CLI has had
           "flowpo.orchestration.cli" if (tree / "flowpo" / "orchestration" / "cli.py").is_file() else "flowpo.cli")
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return [sys.executable, "-c", f"from {cli} import main; main()", "train"], tree, env


def run_one(name: str, args, root: Path, total: int) -> dict:
    """Round 1 of run ``name`` (A, B, C or D, see above); its samples by slot."""
    run_dir, flowpo, cwd, env = root / name, [str(FLOWPO), "train"], REPO, None
    if name == "D":
        flowpo, cwd, env = before_command(args.before, root)
    command = [*flowpo, str(cwd / args.config), *args.overrides, f"run_dir={run_dir}", "rounds=1"]
    began = time.monotonic()
    if name == "C":
        run_until(command, run_dir, args.kill_after, kill=True, timeout_s=args.timeout)
        print(f"C killed after {len(samples(run_dir))} samples")
        command = [*flowpo, "--resume", str(run_dir)]
    run_until(command, run_dir, total, kill=False, timeout_s=args.timeout, cwd=cwd, env=env)
    found = samples(run_dir)
    print(f"run {name}: {len(found)} samples in {time.monotonic() - began:.0f} s ({run_dir})", flush=True)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = common.parser("reproducibility", __doc__, quick=f"{' '.join(QUICK)}, C killed after 3 samples")
    parser.add_argument("--config", default="examples/local.yaml")
    parser.add_argument("--kill-after", type=int, default=12, help="samples run C writes before it is killed")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds each run may take")
    parser.add_argument("--before", metavar="REV", help="also run round 1 on the code of this git revision (D)")
    parser.add_argument("--keep", action="store_true", help="keep the runs' directories (printed)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides for all the runs")
    args = parser.parse_args(argv)
    if args.quick:
        args.overrides, args.kill_after = [*QUICK, *args.overrides], 3
    from flowpo.config import load_config

    config = load_config(REPO / args.config, args.overrides)
    total = config.generator.k * len(config.task.problem_ids or [])
    if not total:
        raise SystemExit(f"{args.config}: set task.problem_ids, so that the round's size is known")
    root = Path(tempfile.mkdtemp(prefix="flowpo-repro-"))
    names = ("A", "B", "C") + (("D",) if args.before else ())
    try:
        runs = {name: run_one(name, args, root, total) for name in names}
    finally:
        if args.before:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(root / f"code-{args.before}")])
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    what = {"B": "uninterrupted again", "C": f"killed after {args.kill_after} samples, then --resume",
            "D": f"on the code of {args.before}"}
    same = {name: compare(runs["A"], runs[name]) for name in names[1:]}
    lines = [f"Round 1 of {args.config} {' '.join(args.overrides)}: {total} samples a run; each against run A "
             "(uninterrupted).", "", "| run | | same workflow | same answer | same score |", "|---|---|---:|---:|---:|"]
    for name, s in same.items():
        print(f"{name} vs A: same workflow {s['workflow']}/{total}, same answers {s['answer']}/{total}, "
              f"same score {s['score']}/{total}")
        lines.append(f"| {name} | {what[name]} | {s['workflow']}/{total} | {s['answer']}/{total} "
                     f"| {s['score']}/{total} |")
    common.write_results(args.out, "reproducibility", {
        "config": args.config, "overrides": args.overrides, "kill_after": args.kill_after, "before": args.before,
        "samples": total, "against_A": same}, "\n".join(lines), common.command("reproducibility", argv),
        title="Is a run reproducible to the sample?")
    return 0


if __name__ == "__main__":
    sys.exit(main())
