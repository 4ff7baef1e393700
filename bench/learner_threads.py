"""The learner beside other work on its node: torch's OpenMP threads waiting as libgomp does by
default (300,000 spins, then sleep), against FlowPO's passive waiting (trainer.warm.worker_env).

A learner's worker computes on every core of its node. On a node that also runs engines, sandboxes
or another job, one of its threads is off the cores in many parallel steps, and the others spin
while they wait for it. This bench trains the same Score-DPO rounds (bench.learner_warm's pairs:
the generator's real prompts, workflow-like completions) on a warm ``Learner``, once for each wait
policy, with ``--busy`` actors that each keep a core busy (default: one per core), and once alone
(not with ``--quick``). For each it reports the learner's wall time, its optimizer steps' time and the
CPU seconds its Ray Train worker took; the ratio is the default's over FlowPO's.

    .venv/bin/python -m bench.learner_threads [--quick] [--busy N] [--rounds 2] [overrides ...]
"""
from __future__ import annotations

import os
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

from bench import common
from bench.learner_warm import Rounds, round_pairs, step_rates

NAME = "learner_threads"
POLICIES = {"libgomp's default (300,000 spins)": {}, "FlowPO's (OMP_WAIT_POLICY=PASSIVE)": None}
SIZES = ["train.num_pairs=4", "train.grad_accum_steps=1"]


@contextmanager
def busy(n: int):
    """``n`` Ray actors that each keep a core busy, as other actors on the node do (at Ray's worker
    niceness, as the learner's workers: busy processes of the shell's would starve them)."""
    import ray

    @ray.remote(num_cpus=0)
    class Busy:
        def spin(self) -> None:
            while True:
                pass

    actors = [Busy.remote() for _ in range(n)]
    for actor in actors:
        actor.spin.remote()
    try:
        yield
    finally:
        for actor in actors:
            ray.kill(actor)


def measure(config, model: str, rounds: int, workers_env: dict | None, tmp: Path) -> dict:
    """``rounds`` rounds on one warm learner whose workers get ``workers_env`` (None: FlowPO's)."""
    from driver.learn import learner_settings
    from trainer import warm

    env = warm.worker_env() if workers_env is None else workers_env
    with mock.patch.object(warm, "worker_env", lambda: env):
        side, loading_cpu_s = Rounds(True, model, config.train, tmp / "ray"), 0.0
        try:
            for k in range(1, rounds + 1):
                out, start = tmp / f"round-{k}", str(tmp / f"round-{k - 1}") if k > 1 else ""
                side.train(round_pairs(config, model, k), learner_settings(k, config, model, str(out), start))
                if k == 1 and rounds > 1:
                    loading_cpu_s = side.cpu["RayTrainWorker"]
        finally:
            side.close()
    timed = [t for k, t in side.round_times.items() if k > 1 or rounds == 1]
    return {"env": env, "wall_s": sum(t["wall_s"] for t in timed), "steps_s": sum(t["steps_s"] for t in timed),
            "first_round_s": side.round_times[1]["wall_s"], "worker_cpu_s": side.cpu["RayTrainWorker"] - loading_cpu_s,
            "tokens_per_s": step_rates(str(tmp / f"round-{rounds}"))[0]}


def main(argv: list[str] | None = None) -> int:
    parser = common.parser(NAME, __doc__, quick="beside busy actors only, not alone")
    parser.add_argument("--config", default="examples/local.yaml")
    parser.add_argument("--rounds", type=int, default=2, help="the first round loads the model; the rest are timed")
    parser.add_argument("--busy", type=int, default=os.cpu_count(), help="busy actors beside the learner")
    parser.add_argument("overrides", nargs="*", help="dotted config overrides, e.g. train.num_pairs=8")
    args = parser.parse_args(argv)

    import ray

    from flowpo.config import load_config
    from flowpo.model import model_spec
    from trainer.warm import WAIT_ENVS

    for name in WAIT_ENVS:  # the baseline is libgomp's own default, not this shell's setting
        os.environ.pop(name, None)
    config = load_config(common.REPO / args.config, [*SIZES, *args.overrides])
    model = model_spec(config.model.path)
    loads = {f"beside {args.busy} busy actors": args.busy} if args.busy else {}
    if not args.quick or not loads:
        loads["alone"] = 0
    results: dict[str, dict] = {}
    ray.init(include_dashboard=False, log_to_driver=False)
    try:
        for load, n in loads.items():
            for policy, env in POLICIES.items():
                with tempfile.TemporaryDirectory(prefix="flowpo-bench-threads-") as tmp, busy(n):
                    r = results.setdefault(load, {})[policy] = measure(config, model, args.rounds, env, Path(tmp))
                print(f"{load}, {policy}: learner {r['wall_s']:.1f} s (steps {r['steps_s']:.1f} s), "
                      f"worker {r['worker_cpu_s']:.1f} CPU-s, {r['tokens_per_s']:.0f} tokens/s", flush=True)
    finally:
        ray.shutdown()
    table = report(results)
    print(table)
    common.write_results(args.out, NAME, {"config": args.config, "overrides": [*SIZES, *args.overrides],
                                          "rounds": args.rounds, "busy": args.busy, "results": results},
                         table, common.command(NAME, argv), title="The learner beside other work: threads that wait")
    return 0


def report(results: dict) -> str:
    """A row per load and policy (rounds after the first), and per load the default's over FlowPO's."""
    default, ours = POLICIES
    lines = ["| load | threads wait | learner s | steps s | worker CPU-s | tokens/s |", "|---|---|---:|---:|---:|---:|"]
    for load, by_policy in results.items():
        for policy, r in by_policy.items():
            lines.append(f"| {load} | {policy} | {r['wall_s']:.1f} | {r['steps_s']:.1f} | {r['worker_cpu_s']:.1f} "
                         f"| {r['tokens_per_s']:.0f} |")
    lines.append("")
    for load, by_policy in results.items():
        a, b = by_policy[default], by_policy[ours]
        lines.append(f"- {load}: default / FlowPO's = {a['wall_s'] / b['wall_s']:.2f}x the learner's time, "
                     f"{a['worker_cpu_s'] / b['worker_cpu_s']:.2f}x its worker's CPU")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
