"""Bad input gets one short line that says what is missing and how to fix it — no traceback."""
import subprocess
import sys

import pytest


def flowpo(*args, env=None):
    import os

    return subprocess.run([sys.executable, "-m", "flowpo.orchestration.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120)


def assert_short_error(result, *needles):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr


def test_unknown_key_in_yaml(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("rounds: 1\ngenerator:\n  kk: 3\n")
    assert_short_error(flowpo("train", str(path)), f"{path}:3: generator.kk: unknown key")


def test_bad_override():
    assert_short_error(flowpo("train", "examples/local.yaml", "train.beta=high"),
                       "override 'train.beta=high': train.beta: expected float")


def test_missing_model(tmp_path):
    assert_short_error(flowpo("check", "examples/local.yaml", f"model.path={tmp_path}/none"),
                       "model directory", "make model")


def test_missing_dataset_file(model_dir, tmp_path):
    assert_short_error(flowpo("check", "examples/local.yaml", f"task.path={tmp_path}/he.jsonl"),
                       "dataset file", "not found")


@pytest.mark.docker
def test_missing_sandbox_image(model_dir, docker_backend):
    assert_short_error(flowpo("check", "examples/local.yaml", "sandbox.image=flowpo-no-such-image:1"),
                       "sandbox image 'flowpo-no-such-image:1' not found", "make image")


def test_no_docker_engine(model_dir, tmp_path):
    result = flowpo("check", "examples/local.yaml", env={"DOCKER_HOST": f"unix://{tmp_path}/no.sock"})
    assert_short_error(result, "no Docker engine answers", "make docker")
