"""Bad input gets one short line that says what is missing and how to fix it — no traceback."""
import json
import subprocess
import sys

import pytest


def flowpo(*args, env=None, timeout=120):
    import os

    return subprocess.run([sys.executable, "-m", "driver.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


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


def test_check_refuses_prompts_longer_than_the_generator_context(model_dir):
    """HumanEval/42's prompt is about 1,120 tokens with the embedded model's template: a 1,100-token
    context cannot hold it, whatever the run does later."""
    assert_short_error(flowpo("check", "examples/local.yaml", "generator.max_model_len=1100"),
                       "generator.max_model_len = 1100 tokens cannot hold the generator prompt of",
                       "HumanEval/42 (", "task.problem_ids")


@pytest.mark.docker
@pytest.mark.vllm
def test_train_refuses_prompts_longer_than_the_generator_context_before_any_round(model_dir, docker_backend,
                                                                                  vllm_available, executor_llm_url,
                                                                                  tmp_path):
    """The run measures the prompts with a replica's own tokenizer before generating anything
    (before, vLLM refused the request mid-round and the run ended in a traceback). The executor LLM is
    the test session's vLLM server: the check needs the generator alone, one engine start less."""
    result = flowpo("train", "examples/local.yaml", "generator.max_model_len=1100", f"run_dir={tmp_path}/run",
                    "executor_llm.backend=openai", f"executor_llm.base_url={executor_llm_url}",
                    "executor_llm.shared_limits=never", timeout=600)  # starts the actors first
    assert_short_error(result, "cannot hold the generator prompt of", "HumanEval/42 (")
    events = [json.loads(line)["event"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert events == ["run_start"]  # no round began


def test_a_relative_output_in_a_ray_job_is_refused_by_the_learning_bench(monkeypatch, capsys):
    """Inside `ray job submit` the entrypoint's working directory is Ray's copy of the code, which the
    next submission unpacks again: bench/learning.py refuses a relative --out as `flowpo train` does."""
    import importlib.util
    from pathlib import Path

    from actors.launch import JOB_CONFIG_ENV

    path = Path(__file__).resolve().parents[2] / "bench" / "learning.py"
    spec = importlib.util.spec_from_file_location("learning_bench", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    monkeypatch.setenv(JOB_CONFIG_ENV, "{}")
    assert bench.main(["--out", "runs/learning"]) == 2
    assert "--out runs/learning is relative, and this is a Ray job" in capsys.readouterr().err


def test_an_error_raised_inside_an_actor_prints_its_own_message(ray_local, monkeypatch, capsys):
    """A user's scorer that fails stops the run from inside an evaluator actor: Ray wraps the error with
    the actor's traceback, and the CLI prints the error's own line."""
    import ray

    from driver import cli
    from flowpo.user_scorer import ScorerError

    @ray.remote
    class Scoring:
        def fail(self):
            raise ScorerError("the scorer mine:score on problem t/1 (answer 'x') raised KeyError: 'topic'")

    def run(args):
        return ray.get(Scoring.remote().fail.remote())

    monkeypatch.setattr(cli, "cmd_prepare_model", run)
    assert cli.main(["prepare-model"]) == 2
    err = capsys.readouterr().err
    assert err == "flowpo: error: the scorer mine:score on problem t/1 (answer 'x') raised KeyError: 'topic'\n"
