"""`flowpo evaluate --all-checkpoints` for real on SmolLM2-135M: a run directory with one round's
LoRA adapter; the base model, that round and the IO baseline on one held-out HumanEval problem
through one actor start; the learning curve and the round report's link to it. The executor LLM is
the test session's vLLM server (one engine start less; tests/flowpo/test_own_task_readme.py trains
with the hosted one)."""
import json
import shutil

import pytest

from driver.curve import ALL, CURVE, curve_rows
from driver.report import write_round_report

pytestmark = [pytest.mark.slow, pytest.mark.docker, pytest.mark.vllm, pytest.mark.ray]

PROBLEM = "HumanEval/23"  # strlen: in the test split, the easiest for the 135M model


def test_all_checkpoints_of_a_run(model_dir, docker_backend, vllm_available, random_adapter, executor_llm_url,
                                  fresh_ray, tmp_path, capsys):
    from driver.cli import main
    from flowpo.config import load_config, to_yaml

    run_dir = tmp_path / "run"
    shutil.copytree(random_adapter, run_dir / "adapters" / "round-1")
    (run_dir / "config.yaml").write_text(to_yaml(load_config("examples/local.yaml", [
        f"run_dir={run_dir}", "executor_llm.backend=openai", f"executor_llm.base_url={executor_llm_url}",
        "executor_llm.shared_limits=never"])))
    (run_dir / "samples.jsonl").write_text(json.dumps({"round": 1, "problem_id": PROBLEM, "sample_index": 0,
                                                       "score": 0.0}) + "\n")
    write_round_report(run_dir, 1)
    fresh_ray.init(num_cpus=2, include_dashboard=False)
    code = main(["evaluate", "--all-checkpoints", str(run_dir), f"task.problem_ids=[{PROBLEM}]", "--baselines", "io",
                 "evaluator.repeats=1"])
    out = capsys.readouterr().out
    assert code == 0
    assert f"evaluating base and every round of {run_dir}" in out

    eval_dir = run_dir / "eval" / ALL
    lines = {m: [json.loads(x) for x in (eval_dir / m / "samples.jsonl").read_text().splitlines()]
             for m in ("base", "round-1", "io")}
    assert {m: [(s["problem_id"], s["adapter"]) for s in v] for m, v in lines.items()} == {
        "base": [(PROBLEM, "base")], "round-1": [(PROBLEM, "round-1")], "io": [(PROBLEM, "baseline")]}
    results = json.loads((eval_dir / "results.json").read_text())
    assert [c["name"] for c in results["checkpoints"]] == ["base", "round-1"] and results["problem_ids"] == [PROBLEM]
    rows = curve_rows({0: lines}, ["base", "round-1", "io"], {"base": "base", "round-1": "round-1", "io": "IO"},
                      {"io"})
    assert [r["rate"]["mean"] for r in results["curve"]] == [r.rate.mean for r in rows]  # recomputable from samples

    curve = (run_dir / "reports" / f"{CURVE}.md").read_text()
    assert "| base |" in curve and "| round-1 |" in curve and "| IO |" in curve
    assert (run_dir / "reports" / f"{CURVE}.png").stat().st_size > 0
    assert f"[{CURVE}.md]({CURVE}.md)" in (run_dir / "reports" / "round-1.md").read_text()
