"""`flowpo evaluate` for real on SmolLM2-135M: the base model's workflows and the IO baseline on two
HumanEval problems, through the vLLM generator actor, Docker executors with the executor LLM over
HTTP (the test session's vLLM server: one engine start less; the README's own-task run,
tests/flowpo/test_own_task_readme.py, trains with the hosted one), and hidden tests; the written
results must agree with the per-method samples."""
import json

import pytest

from driver.evaluate import render_table, summarize_method
from flowpo.baselines import BASELINES

pytestmark = [pytest.mark.slow, pytest.mark.stack, pytest.mark.docker, pytest.mark.vllm, pytest.mark.ray]

PROBLEMS = ["HumanEval/23", "HumanEval/53"]  # strlen and add: the easiest for the 135M model


def test_evaluate_base_and_io_baseline(model_dir, docker_backend, vllm_available, executor_llm_url, tmp_path,
                                       capsys):
    import ray

    from driver.cli import main

    run_dir = tmp_path / "run"
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        # Options before and after the overrides, as a user types them. /53 is in the validation
        # split, so the split is set explicitly (and must then be kept).
        code = main(["evaluate", "examples/local.yaml", "--checkpoint", "base", f"run_dir={run_dir}",
                     "task.split=all", "task.problem_ids=[HumanEval/23,HumanEval/53]", "--baselines", "io",
                     "evaluator.repeats=1", "executor_llm.backend=openai", f"executor_llm.base_url={executor_llm_url}",
                     "executor_llm.shared_limits=never"])
    finally:
        ray.shutdown()
    out = capsys.readouterr().out
    assert code == 0
    assert "split: all (task.split set on the command line)" in out

    eval_dir = run_dir / "eval" / "base"
    samples = {m: [json.loads(line) for line in (eval_dir / m / "samples.jsonl").read_text().splitlines()]
               for m in ("base", "io")}
    for method, lines in samples.items():
        assert sorted(s["problem_id"] for s in lines) == PROBLEMS  # one workflow per problem
        assert all(s["method"] == method and s["round"] == 0 for s in lines)
        assert all(len(s["details"]["repeat_scores"]) == 1 for s in lines)
        assert all(s["score"] in (0.0, 1.0, None) for s in lines)
    assert {s["adapter"] for s in samples["base"]} == {"base"}
    assert all(s["workflow"].startswith("class Workflow") for s in samples["base"])
    assert all(s["workflow"] == BASELINES["code"]["io"] and s["adapter"] == "baseline" for s in samples["io"])
    assert any(s["usage"]["llm_calls"] == 1 for s in samples["io"])  # the executor LLM really answered

    results = json.loads((eval_dir / "results.json").read_text())
    assert (results["checkpoint"], results["split"], results["repeats"]) == ("base", "all", 1)
    assert results["problem_ids"] == PROBLEMS
    assert [m["method"] for m in results["methods"]] == ["base", "io"]
    expected = [summarize_method("base", "base (generated)", samples["base"]),
                summarize_method("io", "IO", samples["io"])]
    for row, want in zip(results["methods"], expected):
        assert row["problems"] == 2 and row["scored"] + row["infra_failures"] == 2
        assert row["solved"] == sum(s["score"] for s in samples[row["method"]] if s["score"] is not None)
        assert row["solve_rate"] == want.solve_rate
        assert row["tokens_per_problem"] == pytest.approx(want.tokens_per_problem)
    table = render_table(expected)
    assert table in (eval_dir / "results.md").read_text() and table in out
    assert "| base (generated) |" in table and "| IO |" in table
    assert (eval_dir / "config.yaml").is_file()
