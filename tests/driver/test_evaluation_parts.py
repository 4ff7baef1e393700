"""`flowpo evaluate` pieces that need no actors: checkpoint resolution, the evaluation config, the
solve-rate arithmetic, the table, and the baseline workflows (valid, and they run)."""
import asyncio
import json

import pytest

import flowpo.operators as ops
from driver.evaluate import Checkpoint, evaluation_config, render_table, resolve_checkpoint, run_usage, summarize_method
from flowpo.baselines import BASELINES, LABELS, baseline_workflow, parse_baselines
from flowpo.config import Config, apply_override
from flowpo.errors import FlowPOError
from flowpo.validate import validate_workflow


def adapter(path, r=8):
    path.mkdir(parents=True)
    (path / "adapter_config.json").write_text(json.dumps({"r": r, "peft_type": "LORA"}))
    return path


# ---------------------------------------------------------------------------------------------
# Checkpoints


def test_base_needs_no_directory(tmp_path):
    assert resolve_checkpoint("base", tmp_path / "no-run") == Checkpoint("base", "")


def test_a_round_is_the_run_directorys_adapter(tmp_path):
    path = adapter(tmp_path / "adapters" / "round-2")
    assert resolve_checkpoint("2", tmp_path) == Checkpoint("round-2", str(path.resolve()))


def test_a_missing_round_names_the_path_and_the_rounds_there(tmp_path):
    adapter(tmp_path / "adapters" / "round-1")
    adapter(tmp_path / "adapters" / "round-10")
    adapter(tmp_path / "adapters" / "round-2")
    with pytest.raises(FlowPOError) as exc:
        resolve_checkpoint("3", tmp_path)
    assert str(tmp_path / "adapters" / "round-3") in str(exc.value)
    assert "(this run has: round-1, round-2, round-10)" in str(exc.value)


def test_a_path_is_an_adapter_directory(tmp_path):
    path = adapter(tmp_path / "my-adapter")
    assert resolve_checkpoint(str(path), tmp_path / "run") == Checkpoint("my-adapter", str(path.resolve()))
    # a directory named like "no adapter" or a baseline row gets a name that cannot be confused
    assert resolve_checkpoint(str(adapter(tmp_path / "x" / "base")), tmp_path).name == "adapter-base"
    assert resolve_checkpoint(str(adapter(tmp_path / "y" / "io")), tmp_path).name == "adapter-io"


def test_a_directory_without_adapter_config_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FlowPOError, match=f"no peft adapter at {tmp_path / 'empty'}"):
        resolve_checkpoint(str(tmp_path / "empty"), tmp_path)


def test_a_rank_the_engine_cannot_load_is_refused_up_front(tmp_path):
    path = adapter(tmp_path / "wide", r=16)
    with pytest.raises(FlowPOError, match="generator.max_lora_rank=16"):
        resolve_checkpoint(str(path), tmp_path, max_lora_rank=8)
    assert resolve_checkpoint(str(path), tmp_path, max_lora_rank=16).name == "wide"


# ---------------------------------------------------------------------------------------------
# The evaluation config


def test_evaluation_forces_the_test_split_and_one_workflow_per_problem():
    config = apply_override(apply_override(Config(), "task.split=validation"), "generator.k=8")
    evaluated, forced = evaluation_config(config, ["evaluator.repeats=3"])
    assert (evaluated.task.split, evaluated.generator.k, forced) == ("test", 1, True)
    assert evaluated.evaluator.repeats == config.evaluator.repeats  # the rest is the run's config
    assert config.task.split == "validation"  # the caller's config is not changed


def test_a_split_given_on_the_command_line_is_kept():
    config = apply_override(Config(), "task.split=all")
    evaluated, forced = evaluation_config(config, ["task.split=all"])
    assert (evaluated.task.split, evaluated.generator.k, forced) == ("all", 1, False)


# ---------------------------------------------------------------------------------------------
# Solve rates and the table


def record(score, *, repeat_scores, prompt_tokens, completion_tokens, cost=0.0, invalid=""):
    usage = {"llm_calls": len(repeat_scores), "prompt_tokens": prompt_tokens,
             "completion_tokens": completion_tokens, "cost_usd": cost}
    first = {"llm_calls": 1, "prompt_tokens": -1, "completion_tokens": -1, "cost_usd": -1.0}  # must not be used
    return {"problem_id": "P", "score": score, "invalid_reason": invalid, "usage": first,
            "details": {"repeat_scores": repeat_scores, "repeat_usage": usage}}


RECORDS = [
    # 3 repeats, all pass: score 1; 300 + 150 tokens over 3 runs = 150 tokens a run, $0.03 / 3 = $0.01
    record(1.0, repeat_scores=[1.0, 1.0, 1.0], prompt_tokens=300, completion_tokens=150, cost=0.03),
    # 1 of 3 passes: score 1/3; 90 + 60 over 3 = 50 a run, $0
    record(1 / 3, repeat_scores=[0.0, 1.0, 0.0], prompt_tokens=90, completion_tokens=60),
    # every repeat failed for infrastructure reasons: not scored; 0 tokens
    record(None, repeat_scores=[None, None, None], prompt_tokens=0, completion_tokens=0),
    # statically invalid: scored 0, no LLM call
    record(0.0, repeat_scores=[0.0, 0.0, 0.0], prompt_tokens=0, completion_tokens=0, invalid="interface: x"),
]


def test_usage_per_run_is_the_repeats_total_over_their_count():
    assert run_usage(RECORDS[0]) == (150.0, 0.01)
    # without repeat details (a plain samples.jsonl line) the line's own usage is one run
    assert run_usage({"usage": {"prompt_tokens": 7, "completion_tokens": 5, "cost_usd": 0.5}}) == (12.0, 0.5)


def test_solve_rate_excludes_infrastructure_failures():
    r = summarize_method("round-1", "round-1 (generated)", RECORDS)
    assert (r.problems, r.scored, r.infra_failures, r.invalid_workflows) == (4, 3, 1, 1)
    assert r.solved == pytest.approx(1 + 1 / 3)  # 1 + 1/3 + 0
    assert r.solve_rate == pytest.approx((1 + 1 / 3) / 3)  # 4/9 = 0.444…, over the 3 scored problems
    assert r.tokens_per_problem == pytest.approx((150 + 50 + 0 + 0) / 4)  # 50: over all 4 problems
    assert r.cost_per_problem == pytest.approx(0.01 / 4)


def test_nothing_scored_has_no_rate():
    r = summarize_method("io", "IO", [RECORDS[2]])
    assert (r.scored, r.solved, r.solve_rate) == (0, 0, None)
    assert summarize_method("io", "IO", []).problems == 0


def test_table_rows():
    table = render_table([summarize_method("round-1", "round-1 (generated)", RECORDS),
                          summarize_method("io", "IO", RECORDS[:1]),
                          summarize_method("cot", "CoT", [RECORDS[2]])])
    lines = table.splitlines()
    assert lines[0].startswith("| method | solved | problems | solve rate | infra failures |")
    assert lines[2] == "| round-1 (generated) | 1.33 | 4 | 44.4% | 1 | 50 | $0.0025 |"
    assert lines[3] == "| IO | 1 | 1 | 100.0% | 0 | 150 | $0.0100 |"
    assert lines[4] == "| CoT | 0 | 1 | — | 1 | 0 | $0.0000 |"
    assert all(line.count("|") == 8 for line in lines)


# ---------------------------------------------------------------------------------------------
# Baselines


def test_baselines_flag():
    assert parse_baselines("io,cot,cot_sc") == parse_baselines("all") == ["io", "cot", "cot_sc"]
    assert parse_baselines("CoT-SC, io") == ["io", "cot_sc"]  # table order, whatever the flag's order
    assert parse_baselines("none") == []
    with pytest.raises(FlowPOError, match="unknown baseline tot"):
        parse_baselines("io,tot")


@pytest.mark.parametrize("family", sorted(BASELINES))
@pytest.mark.parametrize("name", list(LABELS))
def test_every_baseline_passes_static_validation(family, name):
    assert validate_workflow(BASELINES[family][name]) == ""
    workflow = baseline_workflow(name, "P/1", family)
    assert (workflow.invalid_reason, workflow.adapter, workflow.code) == ("", "baseline", BASELINES[family][name])


class FakeLLM:
    """Replies by what an operator asks: an ensemble a letter, code a fenced function, else an answer."""

    def __init__(self):
        self.prompts = []

    async def __call__(self, prompt):
        self.prompts.append(prompt)
        if "Answer with one letter" in prompt:
            return "B"
        if "```python" in prompt:
            return "```python\ndef add(a, b):\n    return a + b\n```"
        return "Reasoning.\nAnswer: \\boxed{42}"


def run_workflow(code, problem, entry_point=""):
    namespace = {**ops.OPERATORS, **ops.RESULT_TYPES}
    exec(compile(code, "<workflow>", "exec"), namespace)  # noqa: S102 - our own fixed texts
    llm = FakeLLM()
    value = asyncio.run(namespace["Workflow"](llm)(problem, entry_point))
    return ops.as_answer(value), llm.prompts


# (calls the executor LLM gets, what the answer must contain) per baseline: CoT-SC samples 3, then votes
CALLS = {"io": 1, "cot": 1, "cot_sc": 4}


@pytest.mark.parametrize("name", list(LABELS))
def test_code_baselines_run_and_return_the_function(name):
    answer, prompts = run_workflow(BASELINES["code"][name], 'def add(a, b):\n    """a + b"""\n', "add")
    assert answer.startswith("def add(a, b):") and len(prompts) == CALLS[name]
    assert ("step by step" in prompts[0]) == (name != "io")


@pytest.mark.parametrize("name", list(LABELS))
def test_math_baselines_return_a_boxed_answer(name):
    answer, prompts = run_workflow(BASELINES["math"][name], "What is 6 * 7?")
    assert "\\boxed{42}" in answer and len(prompts) == CALLS[name]
    assert ("step by step" in prompts[0]) == (name != "io")


@pytest.mark.parametrize("name", list(LABELS))
def test_qa_baselines_return_the_short_answer_alone(name):
    answer, prompts = run_workflow(BASELINES["qa"][name], "Passage: ...\n\nQuestion: how many?")
    # IO returns the reply as is (it asks for the short answer); CoT and CoT-SC cut the reasoning off
    assert answer == ("Reasoning.\nAnswer: \\boxed{42}" if name == "io" else "\\boxed{42}")
    assert len(prompts) == CALLS[name] and ("step by step" in prompts[0]) == (name != "io")


# ---------------------------------------------------------------------------------------------
# The command line


def test_cli_missing_round_is_a_short_error_and_overrides_may_follow_the_options(model_dir, tmp_path):
    import os
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "driver.cli", "evaluate", "examples/local.yaml", "--checkpoint", "9",
                             f"run_dir={tmp_path}", "--baselines", "io"], capture_output=True, text=True,
                            env=dict(os.environ), timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert f"--checkpoint 9: no peft adapter at {tmp_path}/adapters/round-9" in result.stderr
    assert "split: test (evaluation forces task.split=test" in result.stdout
