"""The learning curve without actors: rows, table, JSON and plot from fixed evaluation records, the
checkpoints of a run directory, the round report's link, `flowpo evaluate`'s argument rules, and
bench/learning.py's aggregation (--report-only) on the same records, every number by hand."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from driver.cli import main
from driver.curve import (
    ALL,
    CURVE,
    curve_json,
    curve_rows,
    plot_curves,
    render_curve_table,
    run_checkpoints,
    write_curve,
)
from driver.evaluate import Checkpoint
from driver.report import write_round_report
from flowpo.errors import FlowPOError

ROOT = Path(__file__).resolve().parents[2]


def line(method, problem, sample, score, failure=""):
    return {"method": method, "problem_id": problem, "sample_index": sample, "round": 0, "score": score,
            "failure": failure}


def lines(method, per_problem):
    return [line(method, p, j, s, f) for p, runs in per_problem.items() for j, (s, f) in enumerate(runs)]


# Two seeds, problems A, B, C; two workflows per cell for the checkpoints, one run for IO.
OK, CRASH, INVALID, INFRA = "", "crash", "invalid_workflow", "llm_error"
RUNS = {
    0: {"base": lines("base", {"A": [(0.0, CRASH), (0.0, INVALID)], "B": [(1.0, OK), (0.0, OK)],
                               "C": [(0.0, OK), (None, INFRA)]}),
        "round-1": lines("round-1", {"A": [(1.0, OK), (1.0, OK)], "B": [(1.0, OK), (0.0, OK)],
                                     "C": [(1.0, OK), (0.0, OK)]}),
        "io": lines("io", {"A": [(1.0, OK)], "B": [(0.0, OK)], "C": [(None, INFRA)]})},
    1: {"base": lines("base", {"A": [(0.0, OK), (1.0, OK)], "B": [(0.0, OK), (0.0, OK)], "C": [(0.0, OK), (0.0, OK)]}),
        "round-1": lines("round-1", {"A": [(1.0, OK), (0.0, OK)], "B": [(1.0, OK), (1.0, OK)],
                                     "C": [(0.0, OK), (0.0, OK)]}),
        "io": lines("io", {"A": [(0.0, OK)], "B": [(1.0, OK)], "C": [(0.0, OK)]})},
}
LABELS = {"base": "base", "round-1": "round-1", "io": "IO"}
# Cells (seed, problem), means over workflows: base 0: A 0, B .5, C 0 (the unscored run left out);
# 1: A .5, B 0, C 0. round-1 0: A 1, B .5, C .5; 1: A .5, B 1, C 0. io 0: A 1, B 0 (C unscored); 1: A 0, B 1, C 0.
# base per problem A .25, B .25, C 0: mean 1/6, s/√3 = 1/12, t_{.975,2} = 4.302653 → [-.191888, .525221], clip 0.
# round-1 per problem A .75, B .75, C .25: mean 7/12, s/√3 = 1/6 → [-.133776, 1.300442], clipped to [0, 1].
# round-1 - base per cell: 0: A 1, B 0, C .5; 1: A 0, B 1, C 0 → per problem .5, .5, .25: mean 5/12,
# s/√3 = 1/12 → [.058113, .775221]; per seed .5 and 1/3: s/√2 = 1/12, t_{.975,1} = 12.706205 → [-.642184, 1].
# io - base on the 5 shared cells: 0: A 1, B -.5; 1: A -.5, B 1, C 0 → per problem .25, .25, 0: [-.191888, .525221].


def test_rows_by_hand():
    base, round1, io = curve_rows(RUNS, ["base", "round-1", "io"], LABELS, {"io"})
    assert base.vs_base is None and not base.baseline and io.baseline
    assert (base.rate.mean, base.rate.low, base.rate.high) == (pytest.approx(1 / 6), 0.0,
                                                               pytest.approx(0.525221, abs=1e-6))
    assert (base.workflows, base.unscored, base.crashes, base.invalid) == (12, 1, 1, 1)
    assert base.per_seed == {0: pytest.approx(1 / 6), 1: pytest.approx(1 / 6)}
    assert (round1.rate.mean, round1.rate.low, round1.rate.high) == (pytest.approx(7 / 12), 0.0, 1.0)
    d = round1.vs_base
    assert (d.over_problems.mean, d.over_problems.low, d.over_problems.high) == (
        pytest.approx(5 / 12), pytest.approx(0.058113, abs=1e-6), pytest.approx(0.775221, abs=1e-6))
    assert (d.over_seeds.low, d.over_seeds.high) == (pytest.approx(-0.642184, abs=1e-6), 1.0)
    assert (io.vs_base.cells, io.vs_base.unpaired) == (5, 1)
    assert io.vs_base.over_problems.mean == pytest.approx(1 / 6)
    assert (io.workflows, io.unscored) == (6, 1)


def test_table_and_json():
    rows = curve_rows(RUNS, ["base", "round-1", "io"], LABELS, {"io"})
    table = render_curve_table(rows).splitlines()
    assert table[2] == "| base | 16.7 [0.0, 52.5] | – | – | – | 12 | 1 | 8.3 | 8.3 |"
    assert table[3] == ("| round-1 | 58.3 [0.0, 100.0] | +41.7 [5.8, 77.5] | +50.0, +33.3 | +41.7 [-64.2, 100.0] "
                        "| 12 | 0 | 0.0 | 0.0 |")
    # io per seed: 0: (1 - .5)/2 = .25, 1: (-.5 + 1 + 0)/3 = 1/6; mean 5/24, s/√2 = 1/24 → ± 12.706205/24 = .529425
    assert table[4] == ("| IO | 33.3 [0.0, 100.0] | +16.7 [-19.2, 52.5] | +25.0, +16.7 | +20.8 [-32.1, 73.8] "
                        "| 6 | 1 | 0.0 | 0.0 |")
    data = json.loads(json.dumps(curve_json(rows)))  # plain JSON: no nan, string keys
    assert data[1]["vs_base"]["per_seed"] == {"0": pytest.approx(0.5), "1": pytest.approx(1 / 3)}
    assert data[0]["vs_base"] is None and data[1]["rate"]["n"] == 3


def test_curve_files_and_the_round_report_link(tmp_path):
    rows = curve_rows(RUNS, ["base", "round-1", "io"], LABELS, {"io"})
    (tmp_path / "samples.jsonl").write_text(json.dumps({"round": 1, "problem_id": "A", "sample_index": 0,
                                                        "score": 1.0}) + "\n")
    before = write_round_report(tmp_path, 1).read_text()
    assert "Learning curve" not in before  # nothing to link before an evaluation wrote it
    path = write_curve(tmp_path / "reports", rows, title="Learning curve of t", setting="two seeds")
    assert path == tmp_path / "reports" / f"{CURVE}.md" and (tmp_path / "reports" / f"{CURVE}.png").stat().st_size > 0
    assert ("| round-1 | 58.3 [0.0, 100.0] |" in path.read_text()
            and f"![Learning curve of t]({CURVE}.png)" in path.read_text())
    after = write_round_report(tmp_path, 1).read_text()
    assert f"[{CURVE}.md]({CURVE}.md)" in after and f"![Learning curve]({CURVE}.png)" in after
    two = plot_curves(tmp_path / "two.png", {"score_dpo": rows, "iogrpo": rows[:1]}, "both")
    assert two.stat().st_size > 0


def adapter(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "adapter_config.json").write_text(json.dumps({"r": 8}))
    return path


def test_run_checkpoints_are_base_then_rounds_in_order(tmp_path):
    for k in (10, 2, 1):
        adapter(tmp_path / "adapters" / f"round-{k}")
    (tmp_path / "adapters" / "round-3").mkdir()  # a round that did not train: no adapter
    assert [c.name for c in run_checkpoints(tmp_path)] == ["base", "round-1", "round-2", "round-10"]
    assert run_checkpoints(tmp_path)[0] == Checkpoint("base", "")
    with pytest.raises(FlowPOError, match="no round has a checkpoint"):
        run_checkpoints(tmp_path / "empty")


def test_evaluate_takes_one_of_checkpoint_and_all_checkpoints(tmp_path, capsys):
    assert main(["evaluate", "examples/local.yaml"]) == 2
    assert "--checkpoint ROUND|PATH|base, or --all-checkpoints RUN_DIR" in capsys.readouterr().err
    assert main(["evaluate", "examples/local.yaml", "--checkpoint", "1", "--all-checkpoints", str(tmp_path)]) == 2
    capsys.readouterr()
    assert main(["evaluate", "--all-checkpoints", str(tmp_path / "nope")]) == 2
    assert "no config.yaml there" in capsys.readouterr().err
    (tmp_path / "config.yaml").write_text((ROOT / "examples" / "local.yaml").read_text())
    assert main(["evaluate", "--all-checkpoints", str(tmp_path), "task.split=all"]) == 2
    assert "no round has a checkpoint" in capsys.readouterr().err
    assert main(["evaluate", "--all-checkpoints", str(tmp_path), "--samples", "0"]) == 2
    assert "--samples 0" in capsys.readouterr().err


def write_seeds(out: Path, runs: dict, algorithm: str = "score_dpo") -> None:
    """Seed directories as bench/learning.py leaves them under its --out."""
    for seed, methods in runs.items():
        eval_dir = out / algorithm / f"seed-{seed}" / "eval" / ALL
        for method, records in methods.items():
            (eval_dir / method).mkdir(parents=True)
            (eval_dir / method / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        (eval_dir / "results.json").write_text(json.dumps({"methods": [{"method": m} for m in methods]}))
        (eval_dir.parent.parent / "bench-times.json").write_text(json.dumps({"train_s": 10, "evaluate_s": 5}))


def write_bench_out(out: Path, runs: dict) -> subprocess.CompletedProcess:
    """Seed directories as bench/learning.py leaves them, then its --report-only over them."""
    write_seeds(out, runs)
    return subprocess.run([sys.executable, "-m", "bench.learning", "--report-only", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_bench_report_only_aggregates_fixed_records(tmp_path):
    done = write_bench_out(tmp_path, RUNS)
    assert done.returncode == 0, done.stderr
    assert ("base → final: +41.7 [5.8, 77.5] points over 3 problems (6 paired cells, 0 unpaired); "
            "per seed +50.0, +33.3; over seeds +41.7 [-64.2, 100.0]; the interval excludes zero") in done.stdout
    result = json.loads((tmp_path / "score_dpo" / "learning.json").read_text())
    assert result["seeds"] == [0, 1] and result["problems"] == ["A", "B", "C"]
    assert [r["method"] for r in result["rows"]] == ["base", "round-1", "io"]
    assert result["rows"][1]["vs_base"]["over_problems"]["low"] == pytest.approx(0.058113, abs=1e-6)
    assert (tmp_path / "learning.png").stat().st_size > 0
    assert "seed 0: train 10 s, evaluate 5 s" in (tmp_path / "score_dpo" / "learning.md").read_text()


def test_a_seed_that_never_trained_counts_as_no_change(tmp_path):
    # seed 2 has no trained round: its final is its base (differences 0). Cells: seed 0 A +1, B 0,
    # C +.5; seed 2 all 0 → per problem .5, 0, .25: mean .25, s = .25, s/√3 = .144338, half width
    # 4.302653 · .144338 = .621034; per seed .5 and 0: half width 12.706205 · .25, clipped to ±1.
    done = write_bench_out(tmp_path, {0: RUNS[0], 2: {"base": RUNS[1]["base"], "io": RUNS[1]["io"]}})
    assert done.returncode == 0, done.stderr
    assert ("base → final: +25.0 [-37.1, 87.1] points over 3 problems (6 paired cells, 0 unpaired); per seed "
            "+50.0, +0.0; over seeds +25.0 [-100.0, 100.0]; the interval includes zero") in done.stdout


def sweep(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench.learning_sweep", "--report-only", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_sweep_compares_settings_on_the_same_seeds(tmp_path):
    # reference: seeds 0 and 1 as above, and a seed 2 the comparison must leave out (--seeds 2);
    # pairs-16: seed 0 alone. Its cells: base A 0, B .5, C 0: mean 1/6, s/√3 = 1/6, half width
    # 4.302653/6 = .717109 → [-.550, .884]; round-1 A 1, B .5, C .5: mean 2/3 → [-.050, 1.384];
    # difference A 1, B 0, C .5: mean .5, s/√3 = .288675, half width 1.242068 → [-.742, 1.742];
    # its final − the reference's final on seed 0: the same records, 0 everywhere.
    # lr-1e-3: seed 0 with every round-1 workflow passing. base → final A 1, B .5, C 1: mean 5/6,
    # s/√3 = 1/6, half width .717109 → [.116, 1.550]; − the reference's final (A 1, B .5, C .5):
    # A 0, B .5, C .5: mean 1/3, s/√3 = 1/6 → [-.384, 1.050].
    bench, out = tmp_path / "bench", tmp_path / "sweep"
    never = lines("round-1", {"A": [(0.0, CRASH)], "B": [(0.0, CRASH)], "C": [(0.0, CRASH)]})
    always = lines("round-1", {"A": [(1.0, OK), (1.0, OK)], "B": [(1.0, OK), (1.0, OK)], "C": [(1.0, OK), (1.0, OK)]})
    write_seeds(bench, {**RUNS, 2: {"base": RUNS[1]["base"], "round-1": never, "io": RUNS[1]["io"]}})
    write_seeds(out / "pairs-16", {0: RUNS[0]})
    write_seeds(out / "lr-1e-3", {0: {**RUNS[0], "round-1": always}})
    done = sweep("--seeds", "2", "--bench-out", str(bench), "--out", str(out),
                 "--only", "reference,pairs-16,lr-1e-3,beta-0.05")
    assert done.returncode == 0, done.stderr
    table = (out / "sweep.md").read_text().splitlines()
    assert table[4] == ("| reference | --num-pairs 8 | 16.7 [0.0, 52.5] | 58.3 [0.0, 100.0] "
                        "| +41.7 [5.8, 77.5] | +50.0, +33.3 | – | 0.0 | 10, 10 |")
    assert table[5] == ("| pairs-16 | --num-pairs 16 | 16.7 [0.0, 88.4] | 66.7 [0.0, 100.0] "
                        "| +50.0 [-74.2, 100.0] | +50.0 | +0.0 [0.0, 0.0] | 0.0 | 10 |")
    assert table[6] == ("| lr-1e-3 | --num-pairs 8 --learning-rate 1e-3 | 16.7 [0.0, 88.4] | 100.0 [100.0, 100.0] "
                        "| +83.3 [11.6, 100.0] | +83.3 | +33.3 [-38.4, 100.0] | 0.0 | 10 |")
    assert table[7] == "| beta-0.05 | --num-pairs 8 --beta 0.05 | not run |"
    assert "Baselines (the executor alone, as evaluated with reference): IO 33.3 [0.0, 100.0] %." in table
    result = json.loads((out / "sweep.json").read_text())
    assert result["pairs-16"]["final_vs_base"]["low"] == pytest.approx(-0.742068, abs=1e-6)
    assert result["reference"]["final_vs_base"]["per_seed"] == {"0": pytest.approx(0.5), "1": pytest.approx(1 / 3)}
    assert result["reference"]["final_vs_reference"] is None
    assert result["lr-1e-3"]["final_vs_reference"]["low"] == pytest.approx(1 / 3 - 0.717109, abs=1e-6)
    assert result["lr-1e-3"]["final_vs_reference"]["per_seed"] == {"0": pytest.approx(1 / 3)}
    assert (out / "sweep.png").stat().st_size > 0


def test_sweep_names_what_is_missing(tmp_path):
    done = sweep("--only", "reference,pairs-32")
    assert done.returncode == 2 and "--only: no setting named pairs-32" in done.stderr
    done = sweep("--bench-out", str(tmp_path / "none"), "--out", str(tmp_path / "sweep"), "--only", "reference")
    assert done.returncode == 2
    assert f"no setting has an evaluated seed below 1 (looked in {tmp_path / 'none' / 'score_dpo'})" in done.stderr


def evaluated_seed(out: Path, seed: int, methods: dict, argv: list[str]) -> Path:
    """A seed of bench/learning.py evaluated with ``argv``'s settings: its eval config and records."""
    from bench import learning
    from flowpo.config import to_yaml

    args = learning.arguments(argv + ["--out", str(out)])
    write_seeds(out, {seed: methods})
    eval_dir = out / "score_dpo" / f"seed-{seed}" / "eval" / ALL
    (eval_dir / "config.yaml").write_text(to_yaml(learning.eval_config(learning.train_config(args, seed), args)))
    return eval_dir


def test_base_from_reuses_base_and_baselines_of_the_same_inputs(tmp_path):
    from bench import learning

    evaluated_seed(tmp_path / "default", 0, RUNS[0], [])
    mine = evaluated_seed(tmp_path / "lr", 0, {"round-1": RUNS[0]["round-1"]}, ["--learning-rate", "1e-3"])
    args = learning.arguments(["--learning-rate", "1e-3", "--out", str(tmp_path / "lr")])
    evaluated = learning.eval_config(learning.train_config(args, 0), args)
    assert learning.reuse_base(tmp_path / "default" / "score_dpo" / "seed-0", evaluated, mine) == ["base", "io"]
    runs, methods, baselines, _ = learning.load_runs(tmp_path / "lr" / "score_dpo")
    assert methods == ["base", "round-1", "io"] and baselines == {"io"}
    assert runs[0]["base"] == RUNS[0]["base"] and runs[0]["io"] == RUNS[0]["io"]

    other_seed = learning.eval_config(learning.train_config(args, 1), args)  # generator.seed differs
    with pytest.raises(FlowPOError, match="evaluated with other settings than this run"):
        learning.reuse_base(tmp_path / "default" / "score_dpo" / "seed-0", other_seed, mine)
    fewer = learning.arguments(["--samples", "2", "--out", str(tmp_path / "lr")])
    with pytest.raises(FlowPOError, match="evaluated with other settings than this run"):
        learning.reuse_base(tmp_path / "default" / "score_dpo" / "seed-0",
                            learning.eval_config(learning.train_config(fewer, 0), fewer), mine)
    (tmp_path / "default" / "score_dpo" / "seed-0" / "eval" / ALL / "io" / "samples.jsonl").unlink()
    with pytest.raises(FlowPOError, match=r"io/samples.jsonl missing although .*results.json lists it"):
        learning.reuse_base(tmp_path / "default" / "score_dpo" / "seed-0", evaluated, mine)
    with pytest.raises(FlowPOError, match="holds no finished evaluation"):
        learning.reuse_base(tmp_path / "nowhere" / "seed-0", evaluated, mine)


# ---------------------------------------------------------------------------------------------
# Accuracy against cost (driver/report_cost.py), in tokens: one workflow per cell.


def costed(method, per_problem):
    return [{**line(method, p, 0, s, f), "answer": "" if f else "x",
             "usage": {"llm_calls": 1, "prompt_tokens": tokens, "completion_tokens": 0, "cost_usd": 0.0}}
            for p, (s, f, tokens) in per_problem.items()]


COST_RUNS = {
    0: {"base": costed("base", {"A": (1.0, OK, 200), "B": (0.0, OK, 400), "C": (0.0, CRASH, 0)}),
        "round-1": costed("round-1", {"A": (1.0, OK, 100), "B": (1.0, OK, 200), "C": (0.0, OK, 300)}),
        "io": costed("io", {"A": (1.0, OK, 50), "B": (0.0, OK, 50), "C": (0.0, OK, 50)})},
    1: {"base": costed("base", {"A": (0.0, OK, 400), "B": (0.0, OK, 200), "C": (0.0, OK, 300)}),
        "round-1": costed("round-1", {"A": (1.0, OK, 100), "B": (0.0, OK, 100), "C": (0.0, CRASH, 0)}),
        "io": costed("io", {"A": (0.0, OK, 50), "B": (1.0, OK, 50), "C": (0.0, OK, 50)})},
}
# Cost per problem (mean over seeds): base A 300, B 300, C 150: mean 250, s = 86.6025, s/√3 = 50,
# ± 4.302653 · 50 = 215.13 → [34.87, 465.13]; round-1 A 100, B 150, C 150: mean 133.33, s/√3 = 16.667,
# ± 71.71 → [61.62, 205.04]; io 50 everywhere: [50, 50].
# Pass rates: base A .5, B 0, C 0: 1/6 [0, 88.4]; round-1 A 1, B .5, C 0: .5; io A .5, B .5, C 0: 1/3.
# round-1 − base cost per cell: seed 0 A −100, B −200, C +300; seed 1 A −300, B −100, C −300 → per problem
# −200, −150, 0: mean −116.67, s = 104.083, s/√3 = 60.093, ± 258.56 → [−375.23, 141.89]; per seed 0, −233.33.
# Pareto: round-1 (.5, 133) beats base (1/6, 250) on both; io (1/3, 50) is cheaper than round-1: front round-1, io.


def test_cost_points_by_hand():
    from driver.report_cost import cost_cells, cost_points, paired_cost_difference, render_cost_table

    base, round1, io = cost_points(COST_RUNS, ["base", "round-1", "io"], LABELS, {"io"}, "tokens")
    assert (base.cost.mean, base.cost.low, base.cost.high) == (
        pytest.approx(250), pytest.approx(34.87, abs=0.01), pytest.approx(465.13, abs=0.01))
    assert (round1.cost.mean, round1.cost.low, round1.cost.high) == (
        pytest.approx(400 / 3), pytest.approx(61.62, abs=0.01), pytest.approx(205.04, abs=0.01))
    assert (io.cost.mean, io.cost.low, io.cost.high) == (50, 50, 50)
    assert (base.rate.mean, round1.rate.mean, io.rate.mean) == (pytest.approx(1 / 6), 0.5, pytest.approx(1 / 3))
    assert (base.cost_per_solved, round1.cost_per_solved, io.cost_per_solved) == (
        pytest.approx(1500), pytest.approx(800 / 3), pytest.approx(150))
    assert [p.pareto for p in (base, round1, io)] == [False, True, True]
    assert (base.no_answer, base.crashes, base.workflows, io.no_answer) == (1, 1, 6, 0)
    d = paired_cost_difference(cost_cells(COST_RUNS, "base", "tokens"), cost_cells(COST_RUNS, "round-1", "tokens"))
    assert (d.over_problems.mean, d.over_problems.low, d.over_problems.high) == (
        pytest.approx(-350 / 3), pytest.approx(-375.23, abs=0.01), pytest.approx(141.89, abs=0.01))
    assert d.per_seed == {0: pytest.approx(0), 1: pytest.approx(-700 / 3)} and (d.cells, d.unpaired) == (6, 0)
    table = render_cost_table([base, round1, io]).splitlines()
    assert table[0].startswith("| method | pass rate % [95% CI] | executor cost / problem, tokens [95% CI] |")
    # cost / answer: base's five answered workflows 200, 400, 400, 200, 300 → 300
    assert table[2] == "| base | 16.7 [0.0, 88.4] | 250.0 [34.9, 465.1] | 1500.0 | 300.0 | 16.7 | 16.7 |  |"
    assert table[4] == "| IO | 33.3 [0.0, 100.0] | 50.0 [50.0, 50.0] | 150.0 | 50.0 | 0.0 | 0.0 | ● |"
    assert (base.answer_cost, round1.answer_cost) == (300, 160)  # round-1: 100, 200, 300, 100, 100


def test_pareto_front_and_what_a_solved_problem_costs_when_none_is():
    from driver.report_cost import CostPoint, pareto_front
    from flowpo.stats import Interval

    nan = float("nan")
    assert pareto_front([(0.5, 10), (0.5, 10), (0.4, 5), (0.6, 20), (0.4, 6), (nan, 1)]) == [
        True, True, True, True, False, False]  # equal points do not dominate each other
    none = CostPoint("io", "IO", True, Interval(0.0, nan, nan, 1), Interval(12.0, nan, nan, 1), "usd", 1, 0, 0, 12.0,
                     True)
    assert none.cost_per_solved == float("inf")


def test_curve_with_costs_writes_the_tradeoff_and_both_quantities_over_rounds(tmp_path):
    from driver.report_cost import cost_points

    rows = curve_rows(COST_RUNS, ["base", "round-1", "io"], LABELS, {"io"})
    points = cost_points(COST_RUNS, ["base", "round-1", "io"], LABELS, {"io"}, "tokens")
    (tmp_path / "samples.jsonl").write_text(json.dumps({"round": 1, "problem_id": "A", "sample_index": 0,
                                                        "score": 1.0}) + "\n")
    path = write_curve(tmp_path / "reports", rows, title="t", setting="two seeds", points=points)
    reports = tmp_path / "reports"
    assert (reports / f"{CURVE}-cost.png").stat().st_size > 0 and (reports / "tradeoff.png").stat().st_size > 0
    assert f"![t: cost]({CURVE}-cost.png)" in path.read_text() and "[tradeoff.md](tradeoff.md)" in path.read_text()
    assert "| round-1 | 50.0 [0.0, 100.0] | 133.3 [61.6, 205.0] | 266.7 | 160.0 | 16.7 | 16.7 | ● |" in \
        (reports / "tradeoff.md").read_text()
    report = write_round_report(tmp_path, 1).read_text()
    assert "[tradeoff.md](tradeoff.md)" in report and "![Accuracy against cost](tradeoff.png)" in report


def test_bench_reports_the_cost_change_and_the_goal(tmp_path):
    # COST_RUNS (above): final = round-1. Cost −116.7 [−375.2, 141.9] tokens (−46.7% of base's 250): no goal.
    # Pass rate per cell: seed 0 A 0, B +1, C 0; seed 1 A +1, B 0, C 0 → .5, .5, 0: +33.3, s/√3 = .1667,
    # ± .717 → [−38.4, 100 (clipped)].
    write_seeds(tmp_path, COST_RUNS)
    done = subprocess.run([sys.executable, "-m", "bench.learning", "--report-only", "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert ("cost base → final: -116.7 [-375.2, 141.9] tokens per problem (-46.7% of base's 250.0) over 3 problems "
            "(per seed +0.0, -233.3); pass rate +33.3 [-38.4, 100.0] points (lower bound -38.4); an answered "
            "workflow's cost 300.0 → 160.0; held-out no answer "
            "16.7% → 16.7%, crash 16.7% → 16.7%; goal (a cost cut whose interval excludes zero, pass rate not lower): "
            "not reached") in done.stdout
    assert (tmp_path / "learning-cost.png").stat().st_size > 0 and (tmp_path / "score_dpo" / "tradeoff.png").is_file()

    # A cost-aware series whose final is the base model at half the tokens, every score the same. Per cell:
    # seed 0 A −100, B −200, C 0 (the crash cost nothing); seed 1 A −200, B −100, C −150 → per problem −150,
    # −150, −75: mean −125, s = 43.30, s/√3 = 25, ± 107.57 → [−232.6, −17.4]; pass rate +0.0 [0.0, 0.0].
    def halved(records):
        return [{**r, "usage": {**r["usage"], "prompt_tokens": r["usage"]["prompt_tokens"] // 2}} for r in records]

    cheaper = {seed: {**m, "round-1": [{**r, "method": "round-1"} for r in halved(m["base"])]}
               for seed, m in COST_RUNS.items()}
    write_seeds(tmp_path, cheaper, algorithm="score_dpo-cost-0.5")
    results = tmp_path / "results"
    done = subprocess.run([sys.executable, "-m", "bench.learning", "--report-only", "--out", str(tmp_path),
                           "--cost-weight", "0.5", "--results", str(results)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert ("cost base → final: -125.0 [-232.6, -17.4] tokens per problem (-50.0% of base's 250.0) over 3 problems "
            "(per seed -100.0, -150.0); pass rate +0.0 [0.0, 0.0] points (lower bound 0.0); an answered workflow's "
            "cost 300.0 → 150.0") in done.stdout
    assert "goal (a cost cut whose interval excludes zero, pass rate not lower): reached" in done.stdout
    record = json.loads((results / "score_dpo-cost-0.5" / "results.json").read_text())
    assert record["command"].endswith("--cost-weight 0.5 --results " + str(results)) and record["cost"]["goal"]
    assert record["cost"]["final_vs_base"]["cost"]["high"] == pytest.approx(-17.43, abs=0.01)
    assert {p.name for p in (results / "score_dpo-cost-0.5").iterdir()} == {
        "results.json", "results.md", "tradeoff.png", "learning.png", "learning-cost.png"}
    both = json.loads((tmp_path / "score_dpo-cost-0.5" / "learning.json").read_text())
    assert both["algorithm"] == "score_dpo" and both["cost"]["unit"] == "tokens"


def test_flowpo_evaluate_shows_accuracy_against_cost(tmp_path):
    """`flowpo evaluate --checkpoint`'s report (driver/evaluate.py), one seed: seed 0 of COST_RUNS. The
    config names usd at no price, so tokens: base A 200, B 400, C 0 → 200, s/√3 = 115.47, ± 496.8
    → [0 (clipped), 696.8]."""
    from driver.evaluate import tradeoff_section
    from flowpo.config import Config

    markdown, cost = tradeoff_section(Config(), COST_RUNS[0], LABELS, ["io"], tmp_path, "# Evaluation\n")
    assert markdown.startswith("# Evaluation\n\n## Accuracy against cost\n")
    assert "| base | 33.3 [0.0, 100.0] | 200.0 [0.0, 696.8] | 600.0 | 300.0 | 33.3 | 33.3 |  |" in markdown
    assert "![Pass rate against executor cost](tradeoff.png)" in markdown and (tmp_path / "tradeoff.png").is_file()
    assert [(c["method"], c["unit"], c["pareto"]) for c in cost] == [
        ("base", "tokens", False), ("round-1", "tokens", True), ("io", "tokens", True)]
