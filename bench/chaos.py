"""A chaos run: does a run survive what kills its parts, losing, doubling and leaving nothing?

One invocation runs examples/local.yaml (small by default: 2 rounds, 4 pairs a round) as a user runs
it (`flowpo train`, its own Ray instance), first without faults, then once or more (``--minutes``)
with the same seeds while a seeded injector kills its parts from outside (bench/faults.py), at
random moments: a generator replica, an executor, an evaluator (SIGKILL of the Ray actor's process,
which Ray restarts), one sandbox container or all of the run's containers (`docker kill`), a worker
of the learner (a Ray Train worker process) and the driver itself (SIGKILL, then `flowpo train
--resume RUN_DIR`). A driver that stops on its own (an error) is resumed too, and said.

A fault is due once the run's samples.jsonl holds a drawn number of samples (the learner's: all of a
drawn round's, when that round trains), a drawn delay later; it hits a random target of its kind of
the current driver, or the first one to appear (a fault whose target never appears is
``no_target``). Then, against the fault-free run:

  samples   the final samples.jsonl's (round, problem, sample index) against the full set: lost,
            duplicated, extra (must be 0, 0, 0);
  slots     per round, how many hold the same workflow text, answer and score, each difference
            explained (a round ≥ 2 follows the previous round's adapter: a learner killed and
            retried may train another one; docs/usage.md, Reproducibility, says what else may differ);
  cost      wall time of the chaos run (all its drivers) against the fault-free run's;
  leftovers after each run: its processes (driver, Ray, vLLM engines, docker clients), its sandbox
            containers, its /dev/shm entries (psm_*, sem.*), flowpo-* in its temporary directory.

Each run has its own temporary directory (TMPDIR) and environment tag, so that what it leaves is
told from what the rest of the machine does meanwhile; Ray's memory monitor is off in the runs (it
would kill their workers for other programs' memory on a shared machine). Writes results.json and
results.md to --out, by default bench/results/chaos/<date>-<label>/.

    .venv/bin/python -m bench.chaos [--minutes 0] [--faults 7] [--seed 0] [--kinds generator,...] [--quick]
                                    [overrides ...]
"""
from __future__ import annotations

import datetime
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench import common
from bench.common import FLOWPO, REPO
from bench.faults import KINDS, TAG_ENV, Fault, Watch, counted, describe, inject

# Small enough for a 2-core machine: 2 rounds (a learner fault needs a round that trains, and round 2
# follows round 1's adapter) and 4 pairs a round (the example's 16 train for minutes a round here).
DEFAULT_OVERRIDES = ["rounds=2", "train.num_pairs=4"]
# tests/test_chaos.py's run: round 1 of 2 problems × 4 workflows, no training; an executor, a sandbox
# container and the driver killed.
QUICK = ["rounds=1", "task.problem_ids=[HumanEval/23,HumanEval/53]", "generator.k=4", "train.num_pairs=0",
         "logging.reports=false", "logging.tensorboard=false"]
QUICK_KINDS = "executor,sandbox,driver"
INFRA = ("sandbox_error", "llm_error")  # failures that say nothing of the workflow (sandbox/pool.py)
SETTLE_S = 15.0  # after a driver ends, how long its processes get to go before the next one starts


@dataclass
class Leg:
    """One driver of a run: the first `flowpo train`, or a `--resume`."""
    command: str
    rc: int | None = None
    seconds: float = 0.0
    ended_by: str = ""  # "" (it exited), "driver fault" (the injector), "hang" (the bench's timeout)
    error: str = ""  # its last error line, when it stopped on its own
    samples_at_end: int = 0  # lines in samples.jsonl when it ended: which driver wrote a sample
    lingering: list = field(default_factory=list)  # its processes still alive SETTLE_S after it ended


@dataclass
class RunOutcome:
    name: str
    run_dir: str
    wall_s: float = 0.0
    legs: list = field(default_factory=list)
    faults: list = field(default_factory=list)
    leftovers: dict = field(default_factory=dict)
    complete: bool = False  # the last driver exited 0

    @property
    def resumes(self) -> int:
        return len(self.legs) - 1


class Runner:
    """Runs `flowpo train CONFIG OVERRIDES` under a fault plan; each run in ``root``/NAME."""

    def __init__(self, root: Path, config: Path, overrides: list[str], *, env: dict | None = None,
                 leg_timeout_s: float = 3600.0, max_legs: int = 12, log=print):
        self.root, self.config, self.overrides = root, config, overrides
        self.extra_env, self.leg_timeout_s, self.max_legs, self.log = env or {}, leg_timeout_s, max_legs, log

    def environment(self, tag: str, tmp: Path) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_") and k != "TMPDIR"}
        env.update(TMPDIR=str(tmp), PYTHONUNBUFFERED="1", RAY_memory_monitor_refresh_ms="0", **self.extra_env)
        env[TAG_ENV] = tag
        return env

    def run(self, name: str, plan: list[Fault] = ()) -> RunOutcome:
        home = self.root / name
        run_dir, tmp = home / "run", home / "t"
        tmp.mkdir(parents=True)
        watch = Watch(str(home), tmp)
        env = self.environment(str(home), tmp)
        first = [str(FLOWPO), "train", str(self.config), *self.overrides, f"run_dir={run_dir}"]
        out = RunOutcome(name, str(run_dir), faults=list(plan))
        began = time.monotonic()
        try:
            while len(out.legs) < self.max_legs:
                resume = (run_dir / "config.yaml").is_file()  # a driver killed before it wrote one: start again
                command = [str(FLOWPO), "train", "--resume", str(run_dir)] if resume and out.legs else first
                leg = Leg(" ".join(command))
                out.legs.append(leg)
                self.leg(leg, command, env, home / f"driver-{len(out.legs) - 1}.log", watch, out, began)
                if leg.rc == 0:
                    out.complete = True
                    break
                self.log(f"  {name}: driver {len(out.legs) - 1} ended ({leg.ended_by or f'exit {leg.rc}'}"
                         f"{': ' + leg.error if leg.error else ''}) after {sample_count(run_dir)} samples; resuming")
                leg.lingering = settle(watch, SETTLE_S)
        finally:  # also when the bench itself is stopped: clean_up kills the driver with the rest
            out.wall_s = time.monotonic() - began
            for fault in out.faults:
                if fault.outcome == "planned":
                    fault.outcome = "no_target"
            out.leftovers = watch.leftovers()
            watch.clean_up(out.leftovers)
        return out

    def leg(self, leg: Leg, command: list[str], env: dict, log_path: Path, watch: Watch, out: RunOutcome,
            began: float) -> None:
        index = len(out.legs) - 1
        with open(log_path, "w") as log:
            proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        since = time.time() - 1.0  # this driver's processes start after this (epoch seconds)
        started, looked = time.monotonic(), 0.0
        while proc.poll() is None:
            now = time.monotonic()
            if now - looked >= 2.0:
                watch.look()
                looked = now
            count = sample_count(Path(out.run_dir))
            for fault in out.faults:
                if fault.outcome != "planned" or count < fault.after_samples:
                    continue
                if fault.due_at is None:
                    fault.due_at = now + fault.delay_s
                if now >= fault.due_at and proc.poll() is None and inject(fault, watch, proc, since):
                    fault.outcome, fault.at_s, fault.samples_then, fault.leg = "injected", now - began, count, index
                    self.log(f"  {out.name} +{now - began:.0f} s: killed {fault.kind} ({fault.target}) "
                             f"at {count} samples")
                    if fault.kind == "driver":
                        leg.ended_by = "driver fault"
                        break
            if now - started > self.leg_timeout_s and proc.poll() is None:
                leg.ended_by = "hang"
                os.kill(proc.pid, signal.SIGKILL)
            time.sleep(0.5)
        leg.rc, leg.seconds = proc.wait(), time.monotonic() - started
        leg.samples_at_end = sample_count(Path(out.run_dir))
        if leg.rc != 0 and not leg.ended_by:
            leg.error = last_error(log_path)


def settle(watch: Watch, seconds: float) -> list[str]:
    """Wait up to ``seconds`` for the ended driver's processes to go; the titles of those that stay."""
    deadline = time.monotonic() + seconds
    while (procs := watch.look()) and time.monotonic() < deadline:
        time.sleep(1)
    return [describe(p) for p in procs]


def last_error(log_path: Path) -> str:
    """The line that says why a driver stopped: `flowpo: error: ...`, else its last line."""
    lines = [line.split("\r")[-1].strip() for line in log_path.read_text(errors="replace").splitlines()]
    lines = [line for line in lines if line]
    errors = [line for line in lines if line.startswith("flowpo: error")]
    return (errors or lines or [""])[-1][:400]


def sample_count(run_dir: Path) -> int:
    path = run_dir / "samples.jsonl"
    try:
        return path.read_bytes().count(b"\n")
    except OSError:
        return 0


def read_samples(run_dir: Path) -> list[dict]:
    """Every sample line of the run; a line torn by a crash is not a sample."""
    path = Path(run_dir) / "samples.jsonl"
    found = []
    for number, line in enumerate(path.read_text().splitlines() if path.is_file() else []):
        try:
            found.append({**json.loads(line), "_line": number})
        except json.JSONDecodeError:
            continue
    return found


def slot(record: dict) -> tuple:
    return record["round"], record["problem_id"], record["sample_index"]


def check_samples(samples: list[dict], expected: set) -> dict:
    keys = [slot(s) for s in samples]
    counts = Counter(keys)
    return {"expected": len(expected), "found": len(set(keys)), "lost": sorted(map(list, expected - set(keys))),
            "duplicated": sorted([*key, n - 1] for key, n in counts.items() if n > 1),
            "extra": sorted(map(list, set(keys) - expected))}


def adapter_digest(run_dir: Path, round_index: int) -> str:
    path = Path(run_dir) / "adapters" / f"round-{round_index}" / "adapter_model.safetensors"
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else ""


def why(clean: dict, chaos: dict, adapter_same: bool | None, driver: int | None) -> str:
    """A difference of one slot, explained from what both records say and which driver of the chaos
    run wrote it (a resumed driver generates every slot it writes, in batches the fault-free run never had)."""
    if clean["workflow"] != chaos["workflow"]:
        if clean.get("prompt") != chaos.get("prompt"):
            return "another workflow for another prompt"
        if clean.get("attempts") != chaos.get("attempts"):
            return (f"another workflow after {chaos.get('attempts')} generation(s) against {clean.get('attempts')} "
                    "(a regeneration of an invalid sample went another way)")
        if adapter_same is False:
            return "another workflow: the previous round's adapter differs (its learner was killed or retried)"
        if driver:
            return ("another workflow from the same seed, generated by a resumed driver in another batch "
                    "(vLLM on CPU: the batch's make-up can flip a token)")
        return "another workflow from the same seed and adapter (vLLM on CPU: the batch's make-up can flip a token)"
    f_clean, f_chaos = clean.get("failure") or "ok", chaos.get("failure") or "ok"
    if f_chaos in INFRA and f_clean not in INFRA:
        return f"unscored in the chaos run: {f_chaos} (infrastructure failed under it: {str(chaos.get('error'))[:160]})"
    if f_clean != f_chaos:
        return f"same workflow, outcome {f_clean} → {f_chaos} ({str(chaos.get('error') or clean.get('error'))[:160]})"
    if clean.get("answer") != chaos.get("answer"):
        return ("same workflow and outcome, another answer: an executor-LLM call took another token "
                "(vLLM on CPU, the batch's make-up; docs/usage.md, Reproducibility)")
    return f"same answer, score {clean.get('score')} → {chaos.get('score')}"


def divergence(a: str, b: str) -> dict:
    """Where two texts part: the offset and a little of each from just before it."""
    at = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    return {"at": at, "of": [len(a), len(b)], "clean": a[max(0, at - 30):at + 40], "chaos": b[max(0, at - 30):at + 40]}


def writer(line: int, ends: list[int]) -> int | None:
    """The driver (0, 1, ...) that wrote samples.jsonl line ``line``, from each driver's line count at its end."""
    return next((i for i, end in enumerate(ends) if line < end), None)


def compare_runs(clean: list[dict], chaos: list[dict], rounds: int, clean_dir: str, chaos_dir: str,
                 leg_ends: list[int] = ()) -> dict:
    """Per round: slots, and how many hold the same workflow text, answer and score; each difference,
    with the driver of the chaos run that wrote it (``leg_ends``: each driver's samples at its end)."""
    ref, mine = {slot(s): s for s in clean}, {slot(s): s for s in chaos}
    out = {}
    for r in range(1, rounds + 1):
        keys = sorted(k for k in ref if k[0] == r)
        before = (adapter_digest(Path(clean_dir), r - 1), adapter_digest(Path(chaos_dir), r - 1)) if r > 1 else ("", "")
        adapter_same = None if r == 1 else before[0] == before[1]
        same = Counter()
        differences = []
        for key in keys:
            a, b = ref[key], mine.get(key)
            if b is None:
                continue
            flags = {"workflow": a["workflow"] == b["workflow"], "completion": a["completion"] == b["completion"],
                     "answer": a.get("answer") == b.get("answer"), "score": a.get("score") == b.get("score")}
            same.update(k for k, v in flags.items() if v)
            if not all(flags.values()):
                driver = writer(b.get("_line", -1), list(leg_ends))
                differences.append({"slot": list(key), **{f"same_{k}": v for k, v in flags.items()},
                                    "clean": {"failure": a.get("failure") or "ok", "score": a.get("score"),
                                              "attempts": a.get("attempts")},
                                    "chaos": {"failure": b.get("failure") or "ok", "score": b.get("score"),
                                              "attempts": b.get("attempts"), "driver": driver},
                                    "completion": None if flags["completion"]
                                    else divergence(a["completion"], b["completion"]),
                                    "why": why(a, b, adapter_same, driver)})
        regenerated = sum(1 for k in keys if k in mine and writer(mine[k].get("_line", -1), list(leg_ends)))
        out[r] = {"slots": len(keys), **{f"same_{k}": same[k] for k in ("workflow", "completion", "answer", "score")},
                  "written_by_a_resumed_driver": regenerated if leg_ends else None,
                  "adapter_before_same": adapter_same, "differences": differences}
    for r in range(1, rounds + 1):
        out[r]["adapter_same"] = adapter_digest(Path(clean_dir), r) == adapter_digest(Path(chaos_dir), r)
    return out


def run_metrics(run_dir: Path) -> dict:
    """What the run itself recorded: its drivers (run_start), and per round_end the actor failures, the
    items sent again and the sandbox pools' counters (cumulative over each pool's life)."""
    path = Path(run_dir) / "metrics.jsonl"
    events = []
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    ends = [e for e in events if e.get("event") == "round_end"]
    failures = Counter()
    for e in ends:
        failures.update(e.get("actor_failures") or {})
    return {"run_starts": sum(e.get("event") == "run_start" for e in events),
            "actor_failures": dict(failures), "retried_items": sum(e.get("retried_items", 0) for e in ends),
            "rounds": [{"round": e.get("round"), "actor_failures": e.get("actor_failures"),
                        "retried_items": e.get("retried_items"), "restart_waits": e.get("restart_waits"),
                        "failures": e.get("failures"), "executor_sandboxes": e.get("executor_sandboxes"),
                        "evaluator_sandboxes": e.get("evaluator_sandboxes")} for e in ends],
            "run_end": any(e.get("event") == "run_end" for e in events)}


def plan_faults(rng: random.Random, count: int, kinds: list[str], rounds: int, per_round: int) -> list[Fault]:
    """``count`` faults: every kind of ``kinds`` once (in a drawn order) before any kind twice."""
    order: list[str] = []
    while len(order) < count:
        order += rng.sample(kinds, len(kinds))
    total = rounds * per_round
    plan = []
    for kind in order[:count]:
        if kind == "learner":  # while a drawn round trains: it starts once that round has all its samples
            plan.append(Fault(kind, after_samples=rng.randint(1, rounds) * per_round,
                              delay_s=round(rng.uniform(0, 30), 1)))
        else:
            plan.append(Fault(kind, after_samples=rng.randrange(total), delay_s=round(rng.uniform(0, 5), 1)))
    return plan


def trial_record(clean: RunOutcome, chaos: RunOutcome, expected: set, rounds: int, seed: int) -> dict:
    samples = read_samples(Path(chaos.run_dir))
    return {"injector_seed": seed, "wall_s": round(chaos.wall_s, 1), "cost": round(chaos.wall_s / clean.wall_s, 2),
            "complete": chaos.complete, "resumes": chaos.resumes,
            "legs": [asdict(leg) for leg in chaos.legs], "faults": [f.record() for f in chaos.faults],
            "samples": check_samples(samples, expected),
            "slots": compare_runs(read_samples(Path(clean.run_dir)), samples, rounds, clean.run_dir, chaos.run_dir,
                                  [leg.samples_at_end for leg in chaos.legs]),
            "metrics": run_metrics(Path(chaos.run_dir)), "leftovers": chaos.leftovers}


def fault_table(trials: list[dict]) -> dict:
    """Per kind: planned; injected; absorbed (the same driver recorded more samples after it, or
    finished the run); stopped the run (the driver then ended on its own: the last fault of that
    driver); undecided (that driver ended, killed or stopped by a later fault, before either showed);
    resumed (a driver fault); survived (its run completed with no sample lost or duplicated); no target."""
    table: dict = {}
    for t in trials:
        ok = t["complete"] and not t["samples"]["lost"] and not t["samples"]["duplicated"]
        legs = t["legs"]
        stopped_legs = {i for i, leg in enumerate(legs) if leg["rc"] not in (0, None) and not leg["ended_by"]}
        last_of_leg = {}
        for i, f in enumerate(t["faults"]):
            if f["outcome"] == "injected" and f["kind"] != "driver":
                if f["leg"] not in last_of_leg or f["at_s"] > t["faults"][last_of_leg[f["leg"]]]["at_s"]:
                    last_of_leg[f["leg"]] = i
        stoppers = {last_of_leg[leg] for leg in stopped_legs if leg in last_of_leg}
        for i, f in enumerate(t["faults"]):
            row = table.setdefault(f["kind"], Counter())
            row["planned"] += 1
            if f["outcome"] != "injected":
                row["no_target"] += 1
                continue
            row["injected"] += 1
            row["survived"] += ok
            leg = legs[f["leg"]]
            if f["kind"] == "driver":
                row["resumed"] += 1
            elif i in stoppers:
                row["stopped_run"] += 1
            elif leg["rc"] == 0 or leg["samples_at_end"] > f["samples_then"]:
                row["absorbed"] += 1
            else:
                row["undecided"] += 1
    return {kind: dict(row) for kind, row in sorted(table.items())}


def items(values: list, most: int = 12) -> str:
    """A list of leftovers on one markdown line."""
    return ", ".join(" ".join(str(v).split()) for v in values[:most]) + (" …" if len(values) > most else "")


def leftover_line(left: dict) -> str:
    parts = [f"{len(left.get(k, []))} {k}" for k in ("processes", "containers", "shm", "tmp")]
    return ", ".join(parts)


def render(results: dict) -> str:
    clean, trials, totals = results["clean"], results["trials"], results["totals"]
    lines = [f"Config {results['config']} with {' '.join(results['overrides'])}; "
             f"{totals['expected_per_run']} samples a run; load average at start "
             f"{results['machine']['load_average_at_start']}, at the end {results['machine']['load_average_at_end']}.",
             "",
             "## Summary", "",
             f"- faults injected: {totals['injected']} "
             f"({', '.join(f'{k} {v}' for k, v in totals['injected_by_kind'].items())}); "
             f"survived: {totals['survived']}; planned but no target appeared: {totals['no_target']}",
             f"- samples lost: {totals['lost']}, duplicated: {totals['duplicated']}, extra: {totals['extra']}",
             f"- resumes: {totals['resumes']} ({totals['resumes_after_driver_kill']} after a driver kill, "
             f"{totals['resumes_after_stop']} after the run stopped on its own, {totals['hangs']} after a hang)",
             f"- wall time: fault-free {clean['wall_s']:.0f} s; chaos "
             + ", ".join(f"{t['wall_s']:.0f} s ({t['cost']:.2f}×)" for t in trials),
             f"- left behind (processes, containers, /dev/shm, flowpo-* temp dirs): fault-free run: "
             f"{leftover_line(clean['leftovers'])}; chaos runs: "
             + "; ".join(leftover_line(t["leftovers"]) for t in trials), "",
             *attention(results), "## Faults by kind", "",
             "| kind | planned | injected | absorbed | stopped the run | undecided | driver resumed | survived "
             "| no target |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for kind, row in totals["faults_by_kind"].items():
        lines.append(f"| {kind} | {row.get('planned', 0)} | {row.get('injected', 0)} | {row.get('absorbed', 0)} | "
                     f"{row.get('stopped_run', 0)} | {row.get('undecided', 0)} | {row.get('resumed', 0)} | "
                     f"{row.get('survived', 0)} | "
                     f"{row.get('no_target', 0)} |")
    lines += ["", "Absorbed: the same driver recorded more samples after it, or finished the run (Ray restarted the "
              "actor, the pool replaced the sandbox, the items were sent again). Stopped the run: the driver ended on "
              "its own after it, and `--resume` finished the run. Undecided: that driver ended (killed, or stopped "
              "by a later fault) before it recorded another sample. Survived: its run completed with no sample lost "
              "or duplicated.", ""]
    for n, t in enumerate(trials, 1):
        lines += [f"## Chaos run {n} (injector seed {t['injector_seed']})", "",
                  f"{t['wall_s']:.0f} s ({t['cost']:.2f}× the fault-free run), {len(t['legs'])} driver(s), "
                  f"complete: {t['complete']}; samples {t['samples']['found']}/{t['samples']['expected']}, "
                  f"lost {len(t['samples']['lost'])}, duplicated {len(t['samples']['duplicated'])}; "
                  f"the run recorded actor failures {t['metrics']['actor_failures'] or 'none'}, "
                  f"{t['metrics']['retried_items']} items sent again.", "",
                  "| fault | due after samples | delay s | outcome | at s | samples then | driver | target |",
                  "|---|---:|---:|---|---:|---:|---:|---|"]
        for f in t["faults"]:
            at = f"{f['at_s']:.0f}" if f["at_s"] is not None else ""
            lines.append(f"| {f['kind']} | {f['after_samples']} | {f['delay_s']} | {f['outcome']} | {at} | "
                         f"{'' if f['samples_then'] is None else f['samples_then']} | "
                         f"{'' if f['leg'] is None else f['leg']} | {f['target'][:70]} |")
        lines += ["", f"| driver | exit | s | ended by | error | still alive {SETTLE_S:.0f} s after |",
                  "|---:|---:|---:|---|---|---|"]
        for i, leg in enumerate(t["legs"]):
            lines.append(f"| {i} | {leg['rc']} | {leg['seconds']:.0f} | {leg['ended_by'] or 'itself'} | "
                         f"{leg['error'][:150]} | {len(leg['lingering'])} |")
        lines += [""] + [f"- driver {i}: still alive {SETTLE_S:.0f} s after it ended: {items(leg['lingering'])}"
                         for i, leg in enumerate(t["legs"]) if leg["lingering"]]
        lines += ["", "| round | slots | written by a resumed driver | same workflow | same answer | same score | "
                  "previous adapter same | differences |", "|---:|---:|---:|---:|---:|---:|---|---|"]
        for r, s in t["slots"].items():
            whys = Counter(d["why"].split(":")[0].split(" (")[0] for d in s["differences"])
            lines.append(f"| {r} | {s['slots']} | {s['written_by_a_resumed_driver']} | {s['same_workflow']} | "
                         f"{s['same_answer']} | {s['same_score']} | "
                         f"{'' if s['adapter_before_same'] is None else s['adapter_before_same']} | "
                         f"{'; '.join(f'{n}× {w}' for w, n in whys.items())} |")
        lines.append("")
        for r, s in t["slots"].items():
            for d in s["differences"]:
                where = f" (written by driver {d['chaos']['driver']})" if d["chaos"].get("driver") is not None else ""
                text = (f"; the completions part at character {d['completion']['at']}: {d['completion']['clean']!r} / "
                        f"{d['completion']['chaos']!r}" if d.get("completion") else "")
                lines.append(f"- round {r} {d['slot'][1]} #{d['slot'][2]}{where}: {d['why']}{text}")
        left = t["leftovers"]
        lines += ["", f"Left behind: {leftover_line(left)}."]
        for k in ("processes", "containers", "shm", "tmp"):
            if left.get(k):
                lines.append(f"- {k}: {items(left[k])}")
        if left.get("shm_unattributed"):
            lines.append(f"- /dev/shm entries new since the run began that no process maps and that were never seen "
                         f"mapped by the run (another program's, or the run's too briefly seen): "
                         f"{items(left['shm_unattributed'], 8)}")
        lines.append("")
    if clean["leftovers"] and any(clean["leftovers"].get(k) for k in ("processes", "containers", "shm", "tmp")):
        lines += ["## Left behind by the fault-free run", ""]
        for k in ("processes", "containers", "shm", "tmp"):
            if clean["leftovers"].get(k):
                lines.append(f"- {k}: {items(clean['leftovers'][k])}")
        lines.append("")
    return "\n".join(lines)


def attention(results: dict) -> list[str]:
    """What the runs showed that a reader must look at: lines of markdown, or none."""
    totals, trials = results["totals"], results["trials"]
    found = []
    if totals["lost"] or totals["duplicated"] or totals["extra"]:
        found.append(f"samples lost {totals['lost']}, duplicated {totals['duplicated']}, extra {totals['extra']}")
    if totals["hangs"]:
        found.append(f"{totals['hangs']} driver(s) hung (killed after the bench's timeout)")
    for n, t in enumerate(trials, 1):
        if not t["complete"]:
            found.append(f"chaos run {n} did not complete: {t['legs'][-1]['error']}")
        for leg in t["legs"]:
            if leg["error"]:
                found.append(f"chaos run {n}: a driver stopped on its own: {leg['error'][:200]}")
        left = t["leftovers"]
        for kind in ("processes", "containers", "shm"):
            if left.get(kind):
                found.append(f"chaos run {n} left {len(left[kind])} {kind}: {items(left[kind], 4)}")
    tmp = sorted({e.split("-")[1] for run in [results["clean"], *trials] for e in run["leftovers"].get("tmp", [])})
    if tmp:
        found.append(f"flowpo-* temporary entries left ({', '.join(f'flowpo-{k}-*' for k in tmp)}), "
                     "the fault-free run's "
                     f"too: {len(results['clean']['leftovers'].get('tmp', []))}")
    return ["## What needs attention", "", *[f"- {line}" for line in found], ""] if found else []


def totals_of(trials: list[dict], expected: int) -> dict:
    by_kind = fault_table(trials)
    legs = [leg for t in trials for leg in t["legs"][:-1]]  # every driver but a run's last was followed by a resume
    return {"expected_per_run": expected,
            "injected": sum(r.get("injected", 0) for r in by_kind.values()),
            "injected_by_kind": {k: r.get("injected", 0) for k, r in by_kind.items()},
            "survived": sum(r.get("survived", 0) for r in by_kind.values()),
            "no_target": sum(r.get("no_target", 0) for r in by_kind.values()),
            "lost": sum(len(t["samples"]["lost"]) for t in trials),
            "duplicated": sum(len(t["samples"]["duplicated"]) for t in trials),
            "extra": sum(len(t["samples"]["extra"]) for t in trials),
            "resumes": len(legs), "resumes_after_driver_kill": sum(leg["ended_by"] == "driver fault" for leg in legs),
            "resumes_after_stop": sum(not leg["ended_by"] for leg in legs),
            "hangs": sum(leg["ended_by"] == "hang" for leg in legs),
            "left_behind": sum(counted(t["leftovers"]) for t in trials),
            "faults_by_kind": by_kind}


def main(argv: list[str] | None = None) -> int:
    parser = common.parser("chaos", __doc__, quick=f"{' '.join(QUICK)}, 3 faults of {QUICK_KINDS} "
                                                  "(tests/test_chaos.py's run, its executor LLM the config's own)")
    parser.set_defaults(out=None)  # bench/results/chaos/<date>-<label>/: every run keeps its own page
    parser.add_argument("--config", default="examples/local.yaml")
    parser.add_argument("--minutes", type=float, default=0.0,
                        help="repeat chaos runs (injector seed, seed+1, ...) while the next fits in this many minutes "
                             "from the start, the fault-free run included; 0: one chaos run")
    parser.add_argument("--faults", type=int, default=len(KINDS), help="faults per chaos run")
    parser.add_argument("--seed", type=int, default=0,
                        help="the injector's seed (the run's own seeds are the config's)")
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated, of {', '.join(KINDS)}")
    parser.add_argument("--label", default="", help="results folder name after the date; default seed<S>-faults<K>")
    parser.add_argument("--timeout", type=float, default=3600,
                        help="seconds one driver may run before it counts as hung")
    parser.add_argument("--keep", action="store_true", help="keep the runs' directories (printed)")
    parser.add_argument("overrides", nargs="*",
                        help=f"dotted overrides for every run; default {' '.join(DEFAULT_OVERRIDES)}")
    args = parser.parse_args(argv)
    if args.quick:
        args.overrides, args.faults, args.kinds = [*QUICK, *args.overrides], 3, QUICK_KINDS
        args.label = args.label or "quick"
    from flowpo.config import load_config

    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    if unknown := set(kinds) - set(KINDS):
        raise SystemExit(f"--kinds: unknown {sorted(unknown)}; known: {', '.join(KINDS)}")
    overrides = args.overrides or DEFAULT_OVERRIDES
    config = load_config(REPO / args.config, overrides)
    problems = config.task.problem_ids or []
    if not problems:
        raise SystemExit(f"{args.config}: set task.problem_ids, so that a run's samples are known")
    per_round = config.generator.k * len(problems)
    expected = {(r, p, j) for r in range(1, config.rounds + 1) for p in problems for j in range(config.generator.k)}
    info = common.machine()
    info["load_average_at_start"] = info.pop("load_average")
    began = time.monotonic()
    # Short: Ray's sockets live under <TMPDIR>/ray/session_.../sockets, at most 107 bytes a path.
    root = Path(tempfile.mkdtemp(prefix="fpx-", dir="/tmp"))
    runner = Runner(root, REPO / args.config, overrides, leg_timeout_s=args.timeout)
    print(f"chaos bench in {root}: {config.rounds} round(s) of {per_round} samples; fault-free run first", flush=True)
    trials: list[dict] = []
    try:
        clean = runner.run("clean")
        if not clean.complete:
            raise SystemExit(f"the fault-free run failed: {clean.legs[-1].error} (logs in {root / 'clean'})")
        clean_metrics = run_metrics(Path(clean.run_dir))
        print(f"fault-free run: {clean.wall_s:.0f} s; left behind: {leftover_line(clean.leftovers)}", flush=True)
        # a driver that runs three times as long as the whole fault-free run is hung
        runner.leg_timeout_s = min(args.timeout, max(600.0, 3 * clean.wall_s))
        while True:
            seed = args.seed + len(trials)
            plan = plan_faults(random.Random(seed), args.faults, kinds, config.rounds, per_round)
            print(f"chaos run {len(trials) + 1} (injector seed {seed}): "
                  + ", ".join(f"{f.kind}@{f.after_samples}+{f.delay_s}s" for f in plan), flush=True)
            chaos = runner.run(f"chaos-{seed}", plan)
            trials.append(trial_record(clean, chaos, expected, config.rounds, seed))
            t = trials[-1]
            print(f"chaos run {len(trials)}: {chaos.wall_s:.0f} s ({t['cost']:.2f}×), {chaos.resumes} resume(s), "
                  f"complete {chaos.complete}, lost {len(t['samples']['lost'])}, duplicated "
                  f"{len(t['samples']['duplicated'])}; left behind: {leftover_line(chaos.leftovers)}", flush=True)
            elapsed = time.monotonic() - began
            if elapsed + chaos.wall_s > args.minutes * 60:
                break
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"runs kept in {root}")
    totals = totals_of(trials, len(expected))
    label = args.label or f"seed{args.seed}-faults{args.faults}"
    results = {"label": label,
               "machine": {**info, "load_average_at_end": [round(x, 2) for x in os.getloadavg()]},
               "config": args.config, "overrides": overrides, "kinds": kinds, "faults_per_run": args.faults,
               "minutes": args.minutes, "wall_s": round(time.monotonic() - began, 1),
               "clean": {"wall_s": round(clean.wall_s, 1), "legs": [asdict(leg) for leg in clean.legs],
                         "leftovers": clean.leftovers, "metrics": clean_metrics},
               "trials": trials, "totals": totals}
    body = render(results)
    print(body)
    out = args.out or common.RESULTS / "chaos" / f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d}-{label}"
    common.write_results(out, "chaos", results, body, common.command("chaos", argv), title=f"Chaos run: {label}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
