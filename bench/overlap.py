"""Rounds that overlap (pipeline.overlap_rounds) against the papers' sequential rounds, on this machine
split the way a cluster splits nodes.

On two shared cores generation and training would compete for the same CPUs and the comparison
would say nothing about a cluster. So the bench starts a two-node Ray cluster on this machine with
each node pinned to its own cores (``taskset``; every process a node starts inherits the mask): the
generator side (the generator replica, the executor LLM, the executors with process sandboxes, the
evaluators and the driver) on ``--generator-cores``, the learner (``train.resources: {learner: 1}`` on
a node that offers Ray no CPU, so that nothing else lands there) on ``--learner-cores``. It runs the
same config, seeds and rounds both ways under the same split and reports, from each run's metrics.jsonl:

  throughput  rounds per hour, and the ratio overlapped / sequential
  idle        the generators' share of the run spent waiting for the learner, and the learner's share
              spent waiting for a round to train on
  stages      per round, the sequential run's stream (G) and learner (L) seconds, and what they give
              on a cluster: (G + L) / max(G, L) in a steady state

The held-out pass rate of both (what one version of staleness costs): ``python -m bench.learning``
with ``--set pipeline.overlap_rounds=true`` against the same without (see bench/README.md).

    .venv/bin/python -m bench.overlap [--rounds 3] [--generator-cores 0] [--learner-cores 1] [--quick]
                                      [overrides ...]
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench import common
from bench.common import FLOWPO, REPO, free_port, raylet_ports
from bench.faults import TAG_ENV, Watch

RAY = Path(sys.executable).parent / "ray"
# 2 problems × 8 workflows a round and 4 pairs: a round streams in about a minute on one core and
# trains in about two, the proportions of a small run here.
DEFAULT_OVERRIDES = ["task.problem_ids=[HumanEval/23,HumanEval/53]", "train.num_pairs=4", "train.grad_accum_steps=2"]
QUICK = ["task.problem_ids=[HumanEval/23]", "generator.k=6", "train.num_pairs=1", "train.grad_accum_steps=1"]
# Where each side runs: custom resources that only its node offers; process sandboxes, which the
# executor's pinned process starts itself (a Docker container would run outside the node's cores).
PLACEMENT = ["sandbox.backend=process", "generator.resources={generator: 1}", "sandbox.executor_resources={gen: 1}",
             "train.resources={learner: 1}", "train.cpus_per_worker=0", "train.num_workers=1",
             "logging.reports=false", "logging.tensorboard=false"]


class SplitCluster:
    """Two Ray nodes on this machine, each pinned to its own cores; every process tagged for teardown."""

    def __init__(self, root: Path, generator_cores: str, learner_cores: str):
        self.root, self.tag = root, uuid.uuid4().hex
        token = root / "auth_token"  # token authentication, as on a user's cluster: every node and client
        token.write_text(secrets.token_hex(32))
        token.chmod(0o600)
        self.env = {**{k: v for k, v in os.environ.items() if not k.startswith("RAY_")}, TAG_ENV: self.tag,
                    "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token),
                    "RAY_memory_monitor_refresh_ms": "0"}  # a shared machine's memory is not the run's
        self.cores = {"generator": generator_cores, "learner": learner_cores}
        self.address = f"127.0.0.1:{free_port()}"

    def __enter__(self) -> "SplitCluster":
        port = self.address.rsplit(":", 1)[1]
        try:
            self.ray("generator", "start", "--head", "--port", port, "--num-cpus", "2", "--include-dashboard=false",
                     "--disable-usage-stats", "--resources", json.dumps({"generator": 1, "gen": 4}),
                     "--temp-dir", str(self.root / "ray"), "--ray-client-server-port", str(free_port()),
                     *raylet_ports())
            # no CPU for Ray to hand out there: nothing but the learner (train.cpus_per_worker=0) lands on it
            self.ray("learner", "start", "--address", self.address, "--num-cpus", "0",
                     "--resources", json.dumps({"learner": 1}), *raylet_ports())
        except BaseException:
            self.__exit__()
            raise
        return self

    def ray(self, side: str, *args: str) -> None:
        done = subprocess.run(["taskset", "-c", self.cores[side], str(RAY), *args], env=self.env,
                              capture_output=True, text=True, timeout=180)
        if done.returncode != 0:
            raise SystemExit(f"`ray {' '.join(args[:2])}` on the {side} side failed:\n{done.stderr[-3000:]}")

    def __exit__(self, *exc) -> None:
        """No `ray stop`: it would stop every Ray process on the machine (a test's, a user's)."""
        watch = Watch(self.tag, self.root)
        watch.clean_up({})
        time.sleep(2)
        watch.clean_up({})


def run(cluster: SplitCluster, name: str, config: str, overrides: list[str]) -> dict:
    """One `flowpo train` on the cluster, its driver on the generator side's cores."""
    run_dir = cluster.root / name
    argv = ["taskset", "-c", cluster.cores["generator"], str(FLOWPO), "train", str(REPO / config), *overrides,
            f"run_dir={run_dir}"]
    began = time.monotonic()
    with open(cluster.root / f"{name}.log", "w") as log:
        done = subprocess.run(argv, env={**cluster.env, "RAY_ADDRESS": cluster.address}, stdout=log,
                              stderr=subprocess.STDOUT, cwd=REPO)
    wall = time.monotonic() - began
    if done.returncode != 0:
        raise SystemExit(f"the {name} run failed (exit {done.returncode}); its log: {cluster.root / name}.log\n"
                         + (cluster.root / f"{name}.log").read_text()[-3000:])
    return measure(run_dir, wall)


def measure(run_dir: Path, wall: float) -> dict:
    """Per round: its span (round_start to round_end), the learner's wall seconds, the generators'
    idle seconds and the seconds the next round streamed during training; and the run's totals."""
    events = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    starts = {e["round"]: e["time"] for e in events if e["event"] == "round_start"}
    rounds = []
    for end in (e for e in events if e["event"] == "round_end"):
        t = end.get("stage_times", {})
        learner = t.get("learner_wall_s", 0.0) + t.get("adapter_ship_s", 0.0)
        rounds.append({"round": end["round"], "span_s": end["time"] - starts[end["round"]], "learner_s": learner,
                       "generators_idle_s": t.get("generators_idle_training_s", 0.0),
                       "overlap_s": t.get("rounds_overlap_s", 0.0), "staleness": end.get("staleness", 0)})
    first, last = min(starts.values()), max(e["time"] for e in events if e["event"] == "round_end")
    rounds_s = last - first  # from the first round's start to the last round's end: start-up excluded
    learner_s = sum(r["learner_s"] for r in rounds)
    return {"wall_s": wall, "rounds_s": rounds_s, "rounds": rounds,
            "rounds_per_hour": 3600 * len(rounds) / rounds_s,
            "generators_idle_share": sum(r["generators_idle_s"] for r in rounds) / rounds_s,
            "learner_idle_share": 1 - learner_s / rounds_s}


def expected_on_a_cluster(sequential: dict) -> dict:
    """From the sequential run's stages: a round streams G and trains L seconds; overlapped, a steady
    round takes max(G, L) instead of G + L."""
    g = [r["span_s"] - r["learner_s"] for r in sequential["rounds"]]
    lrn = [r["learner_s"] for r in sequential["rounds"]]
    mean_g, mean_l = sum(g) / len(g), sum(lrn) / len(lrn)
    return {"stream_s": mean_g, "learner_s": mean_l, "ratio": (mean_g + mean_l) / max(mean_g, mean_l)}


def main(argv: list[str] | None = None) -> int:
    parser = common.parser("overlap", __doc__, quick=f"2 rounds of {' '.join(QUICK)}")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--config", default="examples/local.yaml")
    parser.add_argument("--generator-cores", default="0", help="taskset list of the generator side's cores")
    parser.add_argument("--learner-cores", default="1", help="taskset list of the learner's cores")
    parser.add_argument("overrides", nargs="*", help=f"dotted overrides for both runs; default {DEFAULT_OVERRIDES}")
    args = parser.parse_args(argv)
    if shutil.which("taskset") is None:
        raise SystemExit("taskset (util-linux) is needed to pin each side to its own cores")
    overrides = [*(QUICK if args.quick else args.overrides or DEFAULT_OVERRIDES), *PLACEMENT,
                 f"rounds={2 if args.quick else args.rounds}"]
    root = Path(tempfile.mkdtemp(prefix="fpo-", dir="/tmp"))  # short: Ray's socket paths live under it
    results = {}
    try:
        with SplitCluster(root, args.generator_cores, args.learner_cores) as cluster:
            for mode, overlap in (("sequential", "false"), ("overlapped", "true")):
                print(f"{mode} run ...", flush=True)
                results[mode] = run(cluster, mode, args.config, [*overrides, f"pipeline.overlap_rounds={overlap}"])
                print(f"{mode}: {results[mode]['rounds_s']:.0f} s for the rounds", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    table, record = report(results, overrides, args)
    print(table)
    common.write_results(args.out, "overlap", record, table, common.command("overlap", argv),
                         title="Overlapped rounds against sequential rounds, each side on its own cores")
    return 0


def report(results: dict, overrides: list[str], args) -> tuple[str, dict]:
    seq, ovl = results["sequential"], results["overlapped"]
    ratio = ovl["rounds_per_hour"] / seq["rounds_per_hour"]
    cluster = expected_on_a_cluster(seq)
    lines = [f"Generator side on cores {args.generator_cores}, learner on cores {args.learner_cores}; the same "
             f"config, seeds and rounds both ways: `{' '.join(overrides)}`.", "",
             "| rounds | seconds for the rounds | rounds per hour | generators idle | learner idle | data staleness |",
             "|---|---:|---:|---:|---:|---|"]
    for mode, r in results.items():
        lines.append(f"| {mode} | {r['rounds_s']:.0f} | {r['rounds_per_hour']:.1f} | "
                     f"{100 * r['generators_idle_share']:.0f}% | {100 * r['learner_idle_share']:.0f}% | "
                     f"{', '.join(str(x['staleness']) for x in r['rounds'])} |")
    lines += ["", f"**Overlapped / sequential round throughput: {ratio:.2f}×** on this machine.", "",
              "| round | sequential span s | of which learner s | overlapped span s | streamed during training s |",
              "|---:|---:|---:|---:|---:|"]
    for s, o in zip(seq["rounds"], ovl["rounds"]):
        lines.append(f"| {s['round']} | {s['span_s']:.0f} | {s['learner_s']:.0f} | {o['span_s']:.0f} | "
                     f"{o['overlap_s']:.0f} |")
    lines += ["", f"On a cluster, from the sequential run's stages (a round streams {cluster['stream_s']:.0f} s and "
              f"trains {cluster['learner_s']:.0f} s): a steady overlapped round takes max(G, L) instead of G + L, "
              f"**{cluster['ratio']:.2f}×** the sequential throughput; balanced stages would give 2×."]
    return "\n".join(lines), {"ratio": ratio, "cluster": cluster, "overrides": overrides, **results}


if __name__ == "__main__":
    sys.exit(main())
