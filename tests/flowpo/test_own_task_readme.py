"""README's "Your own task" runs as written: its shell block (the CSV and the scorer it writes, `flowpo
check`, `flowpo train`) is read out of the README and run in a fresh directory that holds only the
virtualenv and examples/, as a newcomer's checkout would. The train line gets the smallest limits
appended (2 problems, k = 4, 2 pairs): the whole round on 8 problems takes too long for CI on 2 cores;
everything else is the README's text."""
from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from flowpo.config import load_config

ROOT = Path(__file__).resolve().parents[2]
SMALLEST = "task.limit=2 generator.k=4 train.num_pairs=2 train.grad_accum_steps=1 logging.reports=false"


def section() -> str:
    text = (ROOT / "README.md").read_text()
    return re.search(r"^## Your own task\n(.*?)^## ", text, re.S | re.M).group(1)


def blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", section(), re.S | re.M)


def checkout(tmp_path: Path) -> Path:
    """A directory with the repository's virtualenv and examples/, and nothing of the example yet."""
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    return tmp_path


def run(script: str, cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-e", "-c", script], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})


def test_the_readme_shows_the_config_it_runs():
    (script,) = blocks("bash")
    assert (".venv/bin/flowpo check examples/capitals.yaml" in script
            and ".venv/bin/flowpo train examples/capitals.yaml" in script)
    (shown,) = blocks("yaml")
    task = load_config(ROOT / "examples" / "capitals.yaml").task
    for key, value in yaml.safe_load(shown)["task"].items():
        actual = getattr(task, key)
        assert (vars(actual) if key == "columns" else actual) == (
            {**vars(type(actual)()), **value} if key == "columns" else value), key


@pytest.mark.docker
def test_the_readme_example_checks_as_written(model_dir, docker_backend, tmp_path):
    (script,) = blocks("bash")
    until_train = script.split(".venv/bin/flowpo train")[0]
    result = run(until_train, checkout(tmp_path), timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "task capitals: 8 problems from my_task/capitals.csv (8 rows read); family text, scored by " \
           "my_task.capitals_scorer:score" in out
    assert "The task: Name the capital city of a country." in out and "What is the capital of France?" in out
    assert "gold answers: 9 of 9 get full marks from my_task.capitals_scorer:score" in out  # Bolivia has two
    # A scorer that does not give its own golds full marks is reported, with a nonzero status.
    (tmp_path / "my_task" / "capitals_scorer.py").write_text(
        "def score(answer, golds, row):\n    return 1.0 if row['continent'] == 'Europe' else 0.0\n")
    bad = run(".venv/bin/flowpo check examples/capitals.yaml", tmp_path, timeout=300)
    assert bad.returncode == 1 and "7 of 9 gold answers do not get full marks" in bad.stdout, bad.stdout[-2000:]
    assert "jp: gold 'Tokyo' scored 0" in bad.stdout


@pytest.mark.slow
@pytest.mark.stack  # a whole run with engines of its own: in the stack group (tests/conftest.py)
@pytest.mark.docker
@pytest.mark.vllm
@pytest.mark.ray
def test_the_readme_example_trains_one_round(model_dir, docker_backend, vllm_available, tmp_path):
    (script,) = blocks("bash")
    lines = [line.split("#")[0].rstrip() + f" run_dir={tmp_path}/run {SMALLEST}" if "flowpo train" in line else line
             for line in script.splitlines()]
    result = run("\n".join(lines), checkout(tmp_path), timeout=1500)
    errors = [line for line in result.stderr.splitlines() if line.startswith("flowpo: error") or "Error" in line]
    assert result.returncode == 0, "\n".join([result.stdout[-3000:], *errors[-20:]])
    samples = [json.loads(line) for line in (tmp_path / "run" / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 2 * 4 and {s["problem_id"] for s in samples} == {"fr", "jp"}
    scored = [s for s in samples if s["score"] is not None]
    assert scored and all(s["score"] in (0.0, 1.0) for s in scored)
    events = [json.loads(line)["event"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert events[0] == "run_start" and events[-1] == "run_end"
