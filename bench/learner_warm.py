"""The learner's rounds, cold against warm, side by side in one run on the demo config's sizes.

Cold: a new Ray Train worker group every round (started, model loaded, trained, saved, stopped), as
every round ran before trainer/warm.py. Warm: one ``Learner`` for the run, the model loaded once and
the adapter and optimizer state kept in memory. Both train the same rounds, each from the previous
round's checkpoint, through the driver's own functions (``learner_settings``, ``learner_stage_times``,
``shipped``). For every round and side it prints the learner's wall time, its optimizer steps and
everything else (start-up, loading, data, round-start log-probs, saving, shipping), the steps'
tokens/s, the ratio warm / cold, and the CPU seconds every process of this Ray cluster (and every
sandbox of its executors) took while the learner trained: do idle engines take the learner's cores?

- default: ``train.num_pairs`` Score-DPO pairs a round over the config's problems (the generator's
  real prompt with ``generator.response_prefix``, workflow-like completions of about
  ``generator.max_tokens`` tokens); ``--idle-engines`` also starts the config's generator and
  executor LLM server, leaves them idle as a run does while it trains, and ships each adapter to them.
- ``--pipeline``: the config's whole rounds (``flowpo train``'s ``run_rounds``: generate, execute,
  score, train), once cold and once warm, each on actors of its own (no cache carries over); each
  round's wall time from round_start to round_end.

    .venv/bin/python -m bench.learner_warm [--config examples/local.yaml] [--rounds 3] [--idle-engines] [--quick]
    .venv/bin/python -m bench.learner_warm --pipeline [--rounds 2]
"""
from __future__ import annotations

import dataclasses
import json
import socket
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench import common
from trainer.learner import METRICS_FILE
from trainer.warm import Learner

QUICK = ["train.num_pairs=2", "train.grad_accum_steps=1"]  # with --rounds 2


def round_pairs(config, model: str, round_index: int) -> list:
    """``train.num_pairs`` pairs over the config's problems, with workflow-like completions."""
    from transformers import AutoTokenizer

    from bench.learner import workflow
    from flowpo.maths.pairs import PreferencePair
    from flowpo.model import resolve_model
    from flowpo.prompts import workflow_messages
    from flowpo.tasks import load_problems

    tokenizer = AutoTokenizer.from_pretrained(str(resolve_model(model)))
    problems = load_problems(config.task)
    pairs = []
    for i in range(config.train.num_pairs):
        problem = problems[i % len(problems)]
        # What the generator's prompt_for writes: the chat template, then the scaffold it continues.
        prompt = tokenizer.apply_chat_template(workflow_messages(problem), add_generation_prompt=True,
                                               tokenize=False) + config.generator.response_prefix
        seed = 100 * round_index + 2 * i
        pairs.append(PreferencePair(problem.problem_id, prompt, workflow(tokenizer, seed, config.generator.max_tokens),
                                    workflow(tokenizer, seed + 1, config.generator.max_tokens), 1.0, 0.0))
    return pairs


def cluster_cpu(sandboxes: bool = False) -> Counter:
    """CPU seconds so far of this Ray cluster's processes by actor (a worker's children, vLLM's engine
    and the LLM server among them, count as its own; Ray's agents by their script), and with
    ``sandboxes`` of its executors' sandboxes (their containers' cgroup; Docker's cgroup v1 layout)."""
    import psutil
    import ray

    raylet = ray._private.worker._global_node.all_processes["raylet"][0].process.pid
    totals: Counter = Counter()
    pids: set[int] = set()
    for top in psutil.Process(raylet).children():
        try:
            argv = top.cmdline()
            # "ray::Generator.generate_for" → Generator
            name = argv[0][5:].split(".")[0] if argv[0].startswith("ray::") else \
                next((Path(a).name for a in argv if a.endswith(".py")), top.name())
            for proc in [top, *top.children(recursive=True)]:
                pids.add(proc.pid)
                times = proc.cpu_times()
                totals[name] += times.user + times.system
        except (psutil.NoSuchProcess, psutil.AccessDenied, IndexError):
            continue  # a process that ended between the listing and the reading used no more CPU
    if sandboxes:
        totals["sandboxes"] = sandbox_cpu(pids)
    return totals


def sandbox_cpu(owners: set[int]) -> float:
    """CPU seconds of the sandbox containers that processes ``owners`` started (sandbox/docker_backend's labels)."""
    import docker

    host, total = socket.gethostname(), 0.0
    for container in docker.from_env().containers.list(filters={"label": "flowpo.sandbox=1"}):
        owner_host, _, pid = container.labels.get("flowpo.owner", "").rpartition(":")
        usage = Path(f"/sys/fs/cgroup/cpuacct/docker/{container.id}/cpuacct.usage")
        if owner_host == host and pid.isdigit() and int(pid) in owners and usage.is_file():
            total += int(usage.read_text()) / 1e9
    return total


class Rounds:
    """The learner the driver calls, warm (one ``Learner``) or cold (one per round, stopped after
    it); each round's times as ``Learner.round_times`` keeps them (cold: its stop included) and the
    CPU seconds this cluster's processes took meanwhile."""

    def __init__(self, warm: bool, model: str, train, storage_dir: Path, sandboxes: bool = False):
        self.model, self.train_config, self.storage_dir, self.sandboxes = model, train, storage_dir, sandboxes
        self.learner = Learner(model, train, storage_dir=storage_dir, name="warm") if warm else None
        self.round_times: dict[int, dict] = {}
        self.cpu: Counter = Counter()
        self.rows: list[dict] = []  # per round: its learner stage times, tokens/s, cores (and round_s)

    def train(self, items: list, settings) -> dict:
        k = settings.round_index
        before, began = cluster_cpu(self.sandboxes), time.perf_counter()
        if self.learner is not None:
            learner = self.learner
            metrics = learner.train(items, settings)
        else:
            with Learner(self.model, self.train_config, storage_dir=self.storage_dir, name=f"cold-{k}") as learner:
                metrics = learner.train(items, settings)
        self.round_times[k] = {**learner.round_times[k], "wall_s": time.perf_counter() - began}
        self.cpu.update(cluster_cpu(self.sandboxes) - before)
        return metrics

    def close(self) -> None:
        if self.learner is not None:
            self.learner.close()


def step_rates(out_dir: str) -> tuple[float, float]:
    """The optimizer steps' tokens per second, and the cores the learner got during them (its CPU
    seconds per second: below the threads it runs when other processes take the cores)."""
    history = json.loads(Path(out_dir, METRICS_FILE).read_text())
    seconds = max(sum(h["seconds"] for h in history), 1e-9)
    return sum(h["tokens"] for h in history) / seconds, sum(h["cpu_s"] for h in history) / seconds


HEADER = (f"{'round':>5} {'side':<5} {'wall_s':>8} {'startup':>8} {'ref_lp':>8} {'steps':>8} {'overhead':>8} "
          f"{'ovh%':>6} {'ovh+ref%':>8} {'tokens/s':>9} {'cores':>6}")


def row(k: int, side: str, t: dict, rates: tuple[float, float]) -> str:
    """One round's learner stage times (``learner_stage_times``) as a table row."""
    wall, reference = t["generators_idle_training_s"], t.get("learner_reference_s", 0)
    with_reference = 100 * (t["learner_overhead_s"] + reference) / wall
    return (f"{k:>5} {side:<5} {wall:8.1f} {t['learner_startup_s']:8.1f} {reference:8.1f} "
            f"{t.get('learner_steps_s', 0):8.1f} {t['learner_overhead_s']:8.1f} {t['learner_overhead_pct']:5.1f}% "
            f"{with_reference:7.1f}% {rates[0]:9.1f} {rates[1]:6.2f}")


def learner_rounds(config, model: str, rounds: int, generators: list, tmp: Path) -> dict[str, Rounds]:
    """The learner alone: the same pairs cold and warm, round by round, interleaved (the same load for both)."""
    import ray

    from driver.learn import learner_settings, learner_stage_times, shipped

    sides = {side: Rounds(side == "warm", model, config.train, tmp / "ray") for side in ("cold", "warm")}
    print(HEADER, flush=True)
    try:
        for k in range(1, rounds + 1):
            pairs = round_pairs(config, model, k)
            for side, learner in sides.items():
                out, start = tmp / side / f"round-{k}", str(tmp / side / f"round-{k - 1}") if k > 1 else ""
                learner.train(pairs, learner_settings(k, config, model, str(out), start))
                began = time.monotonic()  # as the driver ships the adapter to the generators
                ray.get([g.load_adapter.remote(*shipped(f"{side}-{k}", str(out))) for g in generators])
                stages = learner_stage_times(learner.round_times[k], time.monotonic() - began)
                rates = step_rates(str(out))
                learner.rows.append({"round": k, **stages, "tokens_per_s": rates[0], "cores": rates[1]})
                print(row(k, side, stages, rates), flush=True)
    finally:
        sides["warm"].close()
    return sides


def pipeline_rounds(config, model: str, rounds: int, tmp: Path) -> dict[str, Rounds]:
    """The config's whole rounds through ``run_rounds``, cold then warm, each on actors of its own."""
    from actors.launch import start_actors
    from driver.runlog import RunLog
    from driver.train import run_rounds
    from flowpo.tasks import load_problems

    problems, sides = load_problems(config.task), {}
    walls = {}
    for side in ("cold", "warm"):
        run = dataclasses.replace(config, run_dir=str(tmp / side), rounds=rounds,
                                  logging=dataclasses.replace(config.logging, reports=False, tensorboard=False))
        log, actors = RunLog.from_config(run), start_actors(run, model, tmp / side)
        sides[side] = Rounds(side == "warm", model, config.train, tmp / side / "ray_train", sandboxes=True)
        try:
            run_rounds(run, problems, actors, log, model, None, sides[side])
        finally:
            sides[side].close()
            actors.shutdown()
            log.close()
        events = [json.loads(line) for line in (tmp / side / "metrics.jsonl").read_text().splitlines()]
        starts = {e["round"]: e["time"] for e in events if e["event"] == "round_start"}
        ends = {e["round"]: e for e in events if e["event"] == "round_end"}
        walls[side] = {k: ends[k]["time"] - starts[k] for k in ends}
        print(HEADER + f" {'round_s':>8}", flush=True)
        for k, end in sorted(ends.items()):
            stages = end["stage_times"]
            if "learner_overhead_pct" in stages:
                rates = step_rates(str(tmp / side / "adapters" / f"round-{k}"))
                sides[side].rows.append({"round": k, **stages, "tokens_per_s": rates[0], "cores": rates[1],
                                         "round_s": walls[side][k]})
                print(row(k, side, stages, rates) + f" {walls[side][k]:8.1f}", flush=True)
    for k in sorted(walls["cold"]):
        print(f"round {k} wall time (round_start → round_end) warm / cold: {walls['warm'][k]:.1f} s / "
              f"{walls['cold'][k]:.1f} s = {walls['warm'][k] / walls['cold'][k]:.2f}", flush=True)
    return sides


def summary(sides: dict[str, Rounds]) -> list[str]:
    """Warm against cold over all rounds and from round 2 on: the learner's wall time; its time outside
    optimizer steps; and its wall time at the cold rounds' step time (the steps are the same work on
    both sides, their time moves with this machine's other load). Then the CPU by process."""
    def total(side: str, key: str, later: bool) -> float:
        return sum(t[key] for k, t in sides[side].round_times.items() if k > 1 or not later)

    lines = []
    for later, label in ((False, "all rounds"), (True, "rounds 2+")):
        wall_c, wall_w = total("cold", "wall_s", later), total("warm", "wall_s", later)
        steps_c, steps_w = total("cold", "steps_s", later), total("warm", "steps_s", later)
        if not wall_c:
            continue
        other_c, other_w = wall_c - steps_c, wall_w - steps_w
        lines.append(f"{label}: learner wall warm / cold {wall_w:.1f} / {wall_c:.1f} s = {wall_w / wall_c:.2f}; "
                     f"outside optimizer steps {other_w:.1f} / {other_c:.1f} s = {other_w / other_c:.2f}; wall at "
                     f"the cold step time {(steps_c + other_w) / wall_c:.2f}")
    for side, rounds in sides.items():
        seconds = sum(t["wall_s"] for t in rounds.round_times.values())
        lines.append(f"{side}: CPU of this cluster's processes during the learner's {seconds:.0f} s (% of one core; "
                     "processes that ended meanwhile, as a cold round's workers, are not counted):")
        for name, cpu in sorted(rounds.cpu.items(), key=lambda kv: -kv[1]):
            lines.append(f"  {name:<28} {cpu:8.1f} s  {100 * cpu / seconds:6.1f}%")
    print("\n".join(lines), flush=True)
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = common.parser("learner_warm", __doc__, quick=f"2 rounds of {' '.join(QUICK)}")
    parser.add_argument("--config", default="examples/local.yaml")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--idle-engines", action="store_true",
                        help="start the config's generator and executor LLM server and leave them idle")
    parser.add_argument("--pipeline", action="store_true", help="whole rounds (generate, execute, score, train)")
    parser.add_argument("overrides", nargs="*", help="dotted config overrides, e.g. train.num_pairs=4")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.overrides = 2, [*QUICK, *args.overrides]

    import ray

    from actors.launch import Actors, start_generators, start_llm_server
    from flowpo.config import load_config
    from flowpo.model import model_spec

    config = load_config(common.REPO / args.config, args.overrides)
    model, t = model_spec(config.model.path), config.train
    setting = (f"{args.config} {' '.join(args.overrides)}: {t.algorithm}, {t.num_pairs} pairs a round, "
               f"grad_accum_steps {t.grad_accum_steps}, {t.num_workers} worker(s) × {t.cpus_per_worker} CPU, "
               f"completions ≈{config.generator.max_tokens} tokens; {args.rounds} rounds"
               f"{', idle engines' if args.idle_engines else ''}{', whole rounds' if args.pipeline else ''}")
    print(setting, flush=True)
    ray.init(include_dashboard=False, log_to_driver=False)
    engines = None
    try:
        with tempfile.TemporaryDirectory(prefix="flowpo-bench-warm-") as tmp:
            if args.pipeline:
                sides = pipeline_rounds(config, model, args.rounds, Path(tmp))
            else:
                if args.idle_engines:
                    generators, groups = start_generators(config, model)
                    engines = Actors(generators=generators, executors=[], evaluators=[], llm_server=None,
                                     placement_groups=groups)
                    engines.llm_server, _, _ = start_llm_server(config, model)
                    ray.get([g.ready.remote() for g in generators])
                sides = learner_rounds(config, model, args.rounds, engines.generators if engines else [], Path(tmp))
            lines = summary(sides)
    finally:
        if engines is not None:
            engines.shutdown()
        ray.shutdown()
    common.write_results(args.out, "learner_warm", {
        "config": args.config, "overrides": args.overrides, "rounds": args.rounds, "idle_engines": args.idle_engines,
        "pipeline": args.pipeline,
        "sides": {side: {"rows": r.rows, "cpu_s": dict(r.cpu)} for side, r in sides.items()}},
        report(setting, sides, lines, args.out), common.command("learner_warm", argv),
        title="The learner's rounds, cold against warm")
    return 0


def report(setting: str, sides: dict[str, Rounds], summary_lines: list[str], out: Path) -> str:
    """The rounds' table, a plot of the learner's wall time per round, and the summary."""
    whole = any("round_s" in r for rounds in sides.values() for r in rounds.rows)
    lines = [f"{setting}.", "", "| round | side | learner wall s | start-up s | reference log-probs s | steps s "
             "| overhead s | overhead % | tokens/s | cores |" + (" round s |" if whole else ""),
             "|---:|---|" + "---:|" * (8 + whole)]
    for k in sorted({r["round"] for rounds in sides.values() for r in rounds.rows}):
        for side, rounds in sides.items():
            for r in (r for r in rounds.rows if r["round"] == k):
                lines.append(f"| {k} | {side} | {r['generators_idle_training_s']:.1f} | {r['learner_startup_s']:.1f} "
                             f"| {r.get('learner_reference_s', 0):.1f} | {r.get('learner_steps_s', 0):.1f} "
                             f"| {r['learner_overhead_s']:.1f} | {r['learner_overhead_pct']:.1f} "
                             f"| {r['tokens_per_s']:.1f} | {r['cores']:.2f} |"
                             + (f" {r['round_s']:.1f} |" if whole else ""))
    plot = common.bar_plot(out / "learner-wall.png", "the learner's wall time per round (s)", "s", {
        f"round {k}": {side: r["generators_idle_training_s"] for side, rounds in sides.items()
                       for r in rounds.rows if r["round"] == k}
        for k in sorted({r["round"] for rounds in sides.values() for r in rounds.rows})})
    return "\n".join([*lines, "", plot, "", "```", *summary_lines, "```"])


if __name__ == "__main__":
    sys.exit(main())
