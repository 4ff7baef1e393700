"""Which settings of the local config learn? bench/learning.py over a few settings, side by side:
each checkpoint's held-out pass rate, and the paired difference base → final with its interval,
on the same seeds and problems.

    .venv/bin/python -m bench.learning_sweep                         # every setting below, seed 0
    .venv/bin/python -m bench.learning_sweep --seeds 3 --only reference,pairs-16
    .venv/bin/python -m bench.learning_sweep --report-only           # the table again, no training

Each setting is one bench/learning.py invocation with its own flags and its own --out
(``<out>/<setting>``), so its seeds are reused like the bench's own; ``reference`` and ``iogrpo`` are
the bench's plain runs in runs/learning, so its 3-seed curves count as their rows. The other settings
evaluate only their trained rounds: each seed's base model and baselines are the reference's
(bench/learning.py --base-from), which makes a setting cost no base evaluation and every row share
one base. Every setting is compared on the seeds asked for (0..S-1) only.
Writes ``<out>/sweep.md``, ``sweep.json`` and ``sweep.png``.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from bench import learning
from driver.curve import CurveRow, curve_rows, interval_text, plot_curves
from flowpo.baselines import LABELS
from flowpo.errors import FlowPOError
from flowpo.stats import PairedDifference


@dataclass(frozen=True)
class Setting:
    name: str
    flags: tuple[str, ...]  # bench/learning.py's flags, beside --seeds and --out
    plain: bool = False  # the bench's own runs (--bench-out), not <sweep out>/<name>


# One change at a time from the reference: 2 rounds, k 8, 8 pairs, lr 5e-4, beta 0.1 (examples/local.yaml
# before this sweep chose 16 pairs). Every flag that differs from examples/local.yaml is named, so a
# setting means the same run whatever the config's defaults become, and its finished seeds stay reusable.
REFERENCE = ("--num-pairs", "8")
REFERENCE_NAME = "reference"
SETTINGS = (
    Setting(REFERENCE_NAME, REFERENCE, plain=True),
    Setting("iogrpo", ("--algorithm", "iogrpo", *REFERENCE), plain=True),
    Setting("pairs-16", ("--num-pairs", "16")),
    Setting("lr-1e-3", (*REFERENCE, "--learning-rate", "1e-3")),
    Setting("beta-0.05", (*REFERENCE, "--beta", "0.05")),
    Setting("rounds-3", (*REFERENCE, "--rounds", "3")),
    Setting("k-12", (*REFERENCE, "--k", "12")),
    Setting("cost-0.5", (*REFERENCE, "--cost-weight", "0.5")),  # cost-aware, in tokens (bench/learning.py)
)


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=1, help="seeds 0..S-1 of every setting (default 1)")
    p.add_argument("--only", help="comma-separated setting names (default: all: "
                                  + ", ".join(s.name for s in SETTINGS) + ")")
    p.add_argument("--out", default="runs/learning-sweep", help="where the settings' runs go (default %(default)s)")
    p.add_argument("--bench-out", default="runs/learning",
                   help="bench/learning.py's own --out, where reference and iogrpo live (default %(default)s)")
    p.add_argument("--report-only", action="store_true", help="no training: compare the finished seeds")
    args = p.parse_args(argv)
    if args.seeds < 1:
        p.error(f"--seeds must be at least 1, got {args.seeds}")
    known = {s.name for s in SETTINGS}
    unknown = [n for n in (args.only or "").split(",") if n and n not in known]
    if unknown:
        p.error(f"--only: no setting named {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return args


def chosen(args: argparse.Namespace) -> list[Setting]:
    names = [n for n in (args.only or "").split(",") if n]
    return [s for s in SETTINGS if not names or s.name in names]


def bench_out(setting: Setting, args: argparse.Namespace) -> Path:
    """The --out bench/learning.py gets for this setting."""
    return Path(args.bench_out) if setting.plain else Path(args.out) / setting.name


def setting_dir(setting: Setting, args: argparse.Namespace) -> Path:
    """Where bench/learning.py leaves this setting's seeds: ``<its --out>/<algorithm>[-cost-<λ>]``."""
    flags = learning.arguments(list(setting.flags) + ["--out", str(bench_out(setting, args))])
    return bench_out(setting, args) / learning.series_name(flags.algorithm, flags.cost_weight)


@dataclass(frozen=True)
class Result:
    rows: list[CurveRow]  # every checkpoint, then the baselines, over the compared seeds
    final: CurveRow  # each seed's last trained checkpoint against its base, as one row
    train_s: list  # each seed's training wall time (bench-times.json), what the setting costs
    finals: dict  # seed -> {base, "final"}: sample lines, for the paired comparison with the reference


def result_of(algo_dir: Path, seeds: int) -> Result | None:
    """The setting's curve over seeds 0..seeds-1 only; None when none of them is evaluated."""
    runs, methods, baselines, times = learning.load_runs(algo_dir)
    runs = {s: m for s, m in runs.items() if s < seeds}
    if not runs:
        return None
    return Result(curve_rows(runs, methods, {**{m: m for m in methods}, **LABELS}, baselines), learning.final_row(runs),
                  [times[s].get("train_s") for s in runs], learning.finals(runs))


def vs_reference(result: Result, reference: Result) -> PairedDifference | None:
    """This setting's final checkpoint − the reference's, cell by cell (same seed, same problem):
    whether the change beat the reference, not only the base. None for the reference itself."""
    if result is reference:
        return None
    runs = {seed: {"reference": reference.finals[seed]["final"], "final": f["final"]}
            for seed, f in result.finals.items() if seed in reference.finals}
    return curve_rows(runs, ["final"], {}, set(), base="reference")[0].vs_base if runs else None


def render(results: dict[str, Result], settings: list[Setting], seeds: int) -> str:
    checkpoints = max(([r.method for r in x.rows if not r.baseline] for x in results.values()), key=len)
    head = ["setting", "flags", *[f"{m} %" for m in checkpoints], "base → final, points [95% CI over problems]",
            "Δ per seed", "final − reference's final, points [95% CI]", "final crash %", "train s per seed"]
    lines = [f"# Settings of examples/local.yaml compared on held-out problems (seeds 0..{seeds - 1})", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in settings:
        if s.name not in results:
            lines.append(f"| {s.name} | {' '.join(s.flags) or '–'} | not run |")
            continue
        rows, final = {r.method: r for r in results[s.name].rows}, results[s.name].final
        d = final.vs_base
        r = vs_reference(results[s.name], results[REFERENCE_NAME]) if REFERENCE_NAME in results else None
        lines.append("| " + " | ".join([
            s.name, " ".join(s.flags) or "–",
            *[interval_text(rows[m].rate) if m in rows else "–" for m in checkpoints],
            interval_text(d.over_problems, True) if d else "–",
            ", ".join(f"{100 * v:+.1f}" for v in d.per_seed.values()) if d else "–",
            interval_text(r.over_problems, True) if r else "–",
            f"{100 * final.share(final.crashes):.1f}",
            ", ".join("?" if t is None else f"{t:.0f}" for t in results[s.name].train_s)]) + " |")
    name, first = next(iter(results.items()))  # every setting evaluates the same baselines
    baselines = [r for r in first.rows if r.baseline]
    if baselines:
        lines += ["", f"Baselines (the executor alone, as evaluated with {name}): "
                  + ", ".join(f"{r.label} {interval_text(r.rate)} %" for r in baselines) + "."]
    return "\n".join(lines) + "\n"


def summary(result: Result, setting: Setting, reference: Result | None) -> dict:
    d, r = result.final.vs_base, reference and vs_reference(result, reference)
    return {"flags": list(setting.flags), "rates": {r.method: r.rate.mean for r in result.rows},
            "train_s": result.train_s,
            "final_vs_base": d and {"mean": d.over_problems.mean, "low": d.over_problems.low,
                                    "high": d.over_problems.high, "per_seed": d.per_seed},
            "final_vs_reference": r and {"mean": r.over_problems.mean, "low": r.over_problems.low,
                                         "high": r.over_problems.high, "per_seed": r.per_seed}}


def report(args: argparse.Namespace, settings: list[Setting]) -> str:
    """Write ``<out>/sweep.{md,json,png}`` for the settings with evaluated seeds; the markdown."""
    results = {s.name: x for s in settings if (x := result_of(setting_dir(s, args), args.seeds))}
    if not results:
        raise FlowPOError(f"no setting has an evaluated seed below {args.seeds} (looked in "
                          + ", ".join(str(setting_dir(s, args)) for s in settings) + ")")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    markdown = render(results, settings, args.seeds)
    (out / "sweep.md").write_text(markdown + "\n![settings](sweep.png)\n")
    (out / "sweep.json").write_text(json.dumps({s.name: summary(results[s.name], s, results.get(REFERENCE_NAME))
                                                for s in settings if s.name in results}, indent=2) + "\n")
    first = next(iter(results))  # the baselines once: every setting evaluates the same ones
    plot_curves(out / "sweep.png", {n: [r for r in x.rows if not r.baseline or n == first] for n, x in results.items()},
                f"Held-out pass rate per checkpoint and setting (seeds 0..{args.seeds - 1})")
    return markdown


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    settings = chosen(args)
    try:
        if not args.report_only:
            for s in settings:
                print(f"=== {s.name}: bench/learning.py {' '.join(s.flags)}")
                flags = [*s.flags, "--seeds", str(args.seeds), "--out", str(bench_out(s, args))]
                if not s.plain:  # the reference's base and baselines stand for every setting's: same seeds and inputs
                    flags += ["--base-from", str(Path(args.bench_out) / "score_dpo")]
                code = learning.main(flags)
                if code:
                    return code
        print(report(args, settings))
        print(f"written: {args.out}/sweep.md, sweep.json, sweep.png")
    except FlowPOError as exc:
        print(f"learning_sweep: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
