"""What actors.launch asks of Ray and of vLLM, read without starting either where possible (issue 13):
tensor-parallel replicas, evaluators of tasks without sandboxes, the driver's sandbox check, and
the executor LLM's key kept out of the job's workers."""
from __future__ import annotations

import json
import os
from unittest import mock

import pytest

from actors.launch import (
    JOB_CONFIG_ENV,
    check_local_sandbox,
    cluster_address_for_workers,
    evaluator_options,
    evaluator_sandboxes,
    executor_options,
    generator_plan,
    withhold_from_workers,
)
from flowpo.config import Config
from flowpo.errors import FlowPOError

SECRET = "sk-test-7d1e-not-for-workers"


def gpu_config(num_gpus: float, tensor_parallel_size: int) -> Config:
    config = Config()
    config.generator.num_gpus, config.generator.tensor_parallel_size = num_gpus, tensor_parallel_size
    return config


def test_a_tensor_parallel_replica_runs_its_ranks_in_its_actor_on_the_gpus_it_reserves():
    kwargs, bundle = generator_plan(gpu_config(2, 2), "/models/m")
    assert kwargs["tensor_parallel_size"] == 2 and kwargs["distributed_executor_backend"] == "mp"
    assert bundle == {"CPU": Config().generator.num_cpus, "GPU": 2}  # one bundle: both ranks on one node
    kwargs, bundle = generator_plan(gpu_config(1, 1), "/models/m")
    assert "distributed_executor_backend" not in kwargs and bundle["GPU"] == 1  # vLLM's single-process default


def test_a_replica_reserves_its_custom_resources_beside_its_cpus_and_gpus():
    config = gpu_config(1, 1)
    config.generator.resources = {"generator": 1.0}
    _, bundle = generator_plan(config, "/models/m")
    assert bundle == {"CPU": config.generator.num_cpus, "GPU": 1, "generator": 1.0}  # only nodes with `generator`


def test_a_replica_with_fewer_gpus_than_ranks_is_refused_before_ray_is_asked():
    with pytest.raises(FlowPOError, match=r"generator.num_gpus \(1\).*tensor_parallel_size \(2\)"):
        generator_plan(gpu_config(1, 2), "/models/m")


@pytest.mark.vllm
def test_vllm_keeps_the_mp_backend_inside_a_placement_group(vllm_available):
    """vLLM's own choice, as its ParallelConfig makes it inside a Ray placement group (faked: no
    Ray is started): by default its Ray executor, which refuses a bundle of more than one GPU;
    with the generator's engine arguments, local processes."""
    import ray
    import ray.util
    from vllm import AsyncEngineArgs
    from vllm.config import ParallelConfig

    kwargs, _ = generator_plan(gpu_config(2, 2), "/models/m")
    args = AsyncEngineArgs(**kwargs)  # every key is a real engine argument of this vLLM
    with mock.patch.object(ray, "is_initialized", lambda: True), \
            mock.patch.object(ray.util, "get_current_placement_group", lambda: object()):
        default = ParallelConfig(tensor_parallel_size=2)
        ours = ParallelConfig(tensor_parallel_size=args.tensor_parallel_size,
                              distributed_executor_backend=args.distributed_executor_backend)
    assert default.distributed_executor_backend == "ray"  # what the replica got before
    assert ours.distributed_executor_backend == "mp"


@pytest.mark.parametrize("task", ["gsm8k", "math", "drop", "hotpotqa"])
def test_evaluators_without_sandboxes_do_not_ask_for_sandbox_nodes(task):
    config = Config()
    config.task.name, config.sandbox.executor_resources = task, {"executor": 1}
    assert evaluator_options(config)["resources"] is None
    assert executor_options(config)["resources"] == {"executor": 1}  # executors always run sandboxes


@pytest.mark.parametrize("task", ["humaneval", "mbpp"])
def test_code_evaluators_go_where_sandboxes_run(task):
    config = Config()
    config.task.name, config.sandbox.executor_resources = task, {"executor": 1}
    assert evaluator_options(config)["resources"] == {"executor": 1}


def test_the_driver_checks_docker_only_where_executors_may_run(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")  # no engine answers
    config = Config()
    config.sandbox.backend = "docker"
    with pytest.raises(FlowPOError, match="no Docker engine answers"):
        check_local_sandbox(config)  # executors may land on this machine: fail early
    config.sandbox.executor_resources = {"executor": 1}
    assert check_local_sandbox(config) is False  # on other nodes: they check there, in ready()


def submitted_job(monkeypatch, env_vars: dict, **runtime_env) -> None:
    """The entrypoint's view of `ray job submit --runtime-env-json '{"env_vars": ...}'`."""
    monkeypatch.setenv(JOB_CONFIG_ENV, json.dumps({"runtime_env": {**runtime_env, "env_vars": env_vars},
                                                   "metadata": {}}))


def test_the_name_is_the_one_ray_reads():
    from ray._private.runtime_env.constants import RAY_JOB_CONFIG_JSON_ENV_VAR

    assert JOB_CONFIG_ENV == RAY_JOB_CONFIG_JSON_ENV_VAR


def test_the_key_is_dropped_from_the_jobs_runtime_env_and_nothing_else(monkeypatch):
    submitted_job(monkeypatch, {"OPENAI_API_KEY": SECRET, "HF_HOME": "/mnt/flowpo/hf"},
                  working_dir="gcs://_ray_pkg_x.zip")
    assert withhold_from_workers(["OPENAI_API_KEY"]) == ["OPENAI_API_KEY"]
    job = json.loads(os.environ[JOB_CONFIG_ENV])
    assert job["runtime_env"] == {"working_dir": "gcs://_ray_pkg_x.zip", "env_vars": {"HF_HOME": "/mnt/flowpo/hf"}}
    assert SECRET not in json.dumps(job)
    assert withhold_from_workers(["OPENAI_API_KEY"]) == []  # nothing left to drop


def test_outside_a_submitted_job_there_is_nothing_to_withhold(monkeypatch):
    monkeypatch.delenv(JOB_CONFIG_ENV, raising=False)
    assert withhold_from_workers(["OPENAI_API_KEY"]) == []


def test_the_workers_of_a_submitted_job_learn_the_clusters_address():
    job = json.dumps({"runtime_env": {"env_vars": {"HF_HOME": "/mnt/hf"}}, "metadata": {}})
    environ = {"RAY_ADDRESS": "10.0.0.5:6379", JOB_CONFIG_ENV: job}  # as `ray job submit` starts the entrypoint
    given = {"env_vars": {"RAY_ADDRESS": "10.0.0.5:6379"}}
    assert cluster_address_for_workers(environ) == given
    assert cluster_address_for_workers({"RAY_ADDRESS": "10.0.0.5:6379"}) == given  # a driver joining by address


@pytest.mark.parametrize("environ", [
    {},  # the driver starts a Ray of its own: there is no address yet
    {"RAY_ADDRESS": ""},
    {"RAY_ADDRESS": "auto"},
    {"RAY_ADDRESS": "http://10.0.0.5:8265"},  # a dashboard or Ray Client URL is not the GCS address
    {"RAY_ADDRESS": "10.0.0.5:6379",  # the job sets it itself: a second value would be refused
     JOB_CONFIG_ENV: json.dumps({"runtime_env": {"env_vars": {"RAY_ADDRESS": "10.0.0.5:6379"}}})},
])
def test_no_address_is_added_where_there_is_none_to_give(environ):
    assert cluster_address_for_workers(environ) is None


@pytest.mark.ray
def test_a_worker_of_the_job_does_not_see_the_key(monkeypatch, fresh_ray):
    """A real Ray start with the job's runtime env as `ray job submit` hands it to the entrypoint:
    the other variable reaches the worker (the runtime env is applied), the key does not."""
    # (The driver's own environment, where the key stays, is not set here: a local Ray's workers would
    # inherit it from the raylet this process starts; a cluster's raylets were started by `ray start`.)
    submitted_job(monkeypatch, {"FLOWPO_TEST_KEY": SECRET, "FLOWPO_TEST_OTHER": "kept"})
    withhold_from_workers(["FLOWPO_TEST_KEY"])
    ray = fresh_ray
    ray.init(num_cpus=1, include_dashboard=False)

    @ray.remote(num_cpus=0)
    def worker_env() -> tuple:
        import os

        return os.environ.get("FLOWPO_TEST_KEY"), os.environ.get("FLOWPO_TEST_OTHER")

    assert ray.get(worker_env.remote(), timeout=120) == (None, "kept")


def test_every_cluster_node_boots_the_one_pinned_image_and_runs_ray_in_the_docker_group():
    from pathlib import Path

    import yaml

    cluster = yaml.safe_load((Path(__file__).resolve().parents[2] / "cluster.yaml").read_text())
    images = {t["node_config"]["ImageId"] for t in cluster["available_node_types"].values()}
    assert len(images) == 1 and images.pop().startswith("ami-")  # no resolve:ssm: at each launch
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        assert any('sg docker -c "ray start' in command for command in cluster[key]), key


def test_a_code_evaluator_with_one_sandbox_is_refused_naming_the_field():
    config = Config()
    config.task.name, config.evaluator.sandboxes_per_evaluator = "humaneval", 1
    with pytest.raises(FlowPOError, match=r"evaluator.sandboxes_per_evaluator: .*two sandboxes.*got 1"):
        evaluator_sandboxes(config)


def test_engine_threads_follow_the_cpus_an_engine_reserves_unless_the_driver_binds_them(monkeypatch):
    from actors.llm_server import engine_env

    monkeypatch.delenv("VLLM_CPU_OMP_THREADS_BIND", raising=False)
    assert engine_env(0.5)["OMP_NUM_THREADS"] == "1" and engine_env(0.5)["VLLM_CPU_OMP_THREADS_BIND"] == "nobind"
    assert engine_env(4.7)["OMP_NUM_THREADS"] == "4"
    monkeypatch.setenv("VLLM_CPU_OMP_THREADS_BIND", "0-3")
    assert "OMP_NUM_THREADS" not in engine_env(4) and engine_env(4)["VLLM_CPU_OMP_THREADS_BIND"] == "0-3"
