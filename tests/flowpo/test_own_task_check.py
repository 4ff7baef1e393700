"""`flowpo check` on a task of your own: every bad row reported (counts and examples, not only the
first), golds below full marks, code tasks' reference solutions counted; exit 1 for what it found, 2
for a config error; no vLLM, no Ray. The sandbox is left to executor nodes (sandbox.executor_resources),
so these need the embedded model's tokenizer and nothing else."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from flowpo.config import load_config

pytestmark = pytest.mark.usefixtures("model_dir")


def flowpo_check(config_path, *overrides):
    return subprocess.run([sys.executable, "-m", "driver.cli", "check", str(config_path),
                           "sandbox.executor_resources={executor: 1}", *overrides],
                          capture_output=True, text=True, timeout=300)


def write_task(tmp_path, rows, **task):
    data = tmp_path / "quiz.jsonl"
    data.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    config = tmp_path / "quiz.yaml"
    config.write_text(json.dumps({"task": {"name": "quiz", "path": str(data),
                                           "columns": {"problem": "q", "answer": "a"}, **task}}))
    load_config(config)
    return config, data


def test_check_lists_every_bad_row_and_exits_1(tmp_path):
    rows = [{"q": "2+2?", "a": "4"}, "{broken", {"q": "", "a": "1"}, {"q": "3+3?", "a": "6"}, {"a": "9"}]
    config, data = write_task(tmp_path, rows)
    result = flowpo_check(config)
    assert result.returncode == 1, result.stderr
    out = result.stdout
    assert "task quiz: 2 problems from" in out and "(5 rows read); family text, scored by exact" in out
    assert "3 rows could not be read or converted (a run stops at the first" in out
    assert f"{data}:2: not valid JSON" in out and f"{data}:3: column 'q' is empty" in out
    assert f"{data}:5: missing column 'q'" in out and "found problems (above)" in out
    allowed = flowpo_check(config, "task.allow_dropping=true")
    assert allowed.returncode == 0 and "(task.allow_dropping: a run leaves them out)" in allowed.stdout
    assert "gold answers: 2 of 2 get full marks from exact" in allowed.stdout


def test_check_reports_golds_a_scorer_does_not_accept(tmp_path):
    config, _ = write_task(tmp_path, [{"q": f"Pick {c}.", "a": c} for c in "ABCDEFG"] + [{"q": "Say hi.", "a": "hi"}],
                           scorer="choice")
    result = flowpo_check(config)
    assert result.returncode == 1
    assert "1 of 8 gold answers do not get full marks from choice" in result.stdout
    assert "quiz/7: gold 'hi' scored 0" in result.stdout


def test_check_counts_a_code_tasks_reference_solutions(tmp_path):
    rows = [{"text": "Write add(a, b).", "tests": "assert add(1, 2) == 3", "fn": "add",
             "solution": "def add(a, b):\n    return a + b\n"},
            {"text": "Write neg(x).", "tests": "assert neg(1) == -1", "fn": "neg", "solution": ""}]
    data = tmp_path / "code.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = tmp_path / "code.yaml"
    config.write_text(json.dumps({"task": {"name": "mine", "path": str(data), "columns": {
        "problem": "text", "test": "tests", "entry_point": "fn", "answer": "solution", "prelude": ""}}}))
    result = flowpo_check(config)
    assert result.returncode == 0, result.stderr
    assert "1 of 2 code problems have a reference solution (--tests runs them through the hidden tests)" \
        in result.stdout
    assert "family code, scored by hidden tests" in result.stdout


def test_check_names_a_scorer_that_cannot_be_imported(tmp_path):
    config, _ = write_task(tmp_path, [{"q": "2+2?", "a": "4"}], scorer="nowhere_xyz.scorers:score")
    result = flowpo_check(config)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "task.scorer: scorer 'nowhere_xyz.scorers:score': cannot import nowhere_xyz.scorers" in result.stderr
