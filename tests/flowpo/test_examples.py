"""Launch files: every example config loads strictly and keeps the papers' defaults, cluster.yaml is a
valid Ray cluster launcher file whose node types can hold what the examples ask for, and the README
shows how to launch them."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import yaml

from flowpo.config import load_config

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = ["humaneval", "mbpp", "gsm8k", "math", "drop", "hotpotqa"]


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_loads_strictly(path):
    load_config(path)  # an unknown key or a bad type raises ConfigError with its dotted path


@pytest.mark.parametrize("name", BENCHMARKS)
def test_benchmark_example_keeps_the_papers_defaults(name):
    c = load_config(ROOT / "examples" / f"{name}.yaml")
    assert c.name == name and c.task.name == name and c.task.split == "validation"
    assert Path(c.run_dir).name == name  # one run directory per benchmark
    assert c.model.path.rstrip("/").endswith("Qwen2.5-7B-Instruct")
    llm = c.executor_llm
    assert (llm.backend, llm.base_url, llm.api_key_env, llm.model) == (
        "openai", "https://api.openai.com/v1", "OPENAI_API_KEY", "gpt-4o-mini")
    assert (c.generator.k, c.rounds, c.evaluator.repeats) == (8, 3, 3)
    assert (c.train.lora_r, c.train.target_modules) == (8, ["q_proj", "v_proj"])
    assert c.train.algorithm == "score_dpo"
    assert c.generator.max_lora_rank >= c.train.lora_r
    # GPU cluster: generator and learner on GPUs, executors only where the `executor` resource is.
    assert c.generator.num_gpus >= 1 and c.generator.kv_cache_gb == 0 and c.train.use_gpu
    assert c.sandbox.executor_resources == {"executor": 1.0}
    assert c.logging.tensorboard and not c.logging.wandb


def cluster() -> dict:
    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


def test_cluster_yaml_is_a_valid_ray_cluster_launcher_file():
    import jsonschema
    import ray
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = cluster()
    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    jsonschema.validate(config, schema)  # the file as written
    # As `ray up` sees it: provider defaults filled in, then Ray's own checks (head type, worker counts).
    cwd = os.getcwd()
    os.chdir(ROOT)  # file_mounts name paths relative to the repository root, where `ray up` runs
    try:
        validate_config(prepare_config(config))
    finally:
        os.chdir(cwd)
    for local in config["file_mounts"].values():
        if local.startswith("~/.ray/"):  # the user's own Ray token, made with `ray get-auth-token --generate`
            continue
        assert (ROOT / local).exists(), local
    assert config["file_mounts"].get("~/.ray/auth_token") == "~/.ray/auth_token"  # token auth on every node
    assert all("RAY_AUTH_MODE=token" in " ".join(config[key])
               for key in ("head_start_ray_commands", "worker_start_ray_commands"))


def test_cluster_node_types():
    config = cluster()
    types = config["available_node_types"]
    assert config["head_node_type"] in types
    gpu = [t for t in types.values() if t["resources"].get("GPU", 0) > 0]
    executor = [t for t in types.values() if t["resources"].get("executor", 0) > 0]
    assert len(gpu) == 1 and len(executor) == 1
    assert executor[0]["max_workers"] > executor[0].get("min_workers", 0)  # the autoscaled CPU pool
    assert "GPU" not in executor[0]["resources"]
    # Setup installs the project with the Makefile's GPU profile, as a local `make setup` would.
    setup = " ".join(config["setup_commands"])
    assert "make venv PROFILE=gpu" in setup and "image" in setup
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^venv:", makefile, re.M) and re.search(r"^image:", makefile, re.M)


@pytest.mark.parametrize("name", BENCHMARKS)
def test_examples_fit_the_cluster(name):
    """What one run asks Ray for fits the node types at their maximum counts."""
    c = load_config(ROOT / "examples" / f"{name}.yaml")
    types = cluster()["available_node_types"]
    gpu_node = next(t for t in types.values() if t["resources"].get("GPU", 0) > 0)
    exec_node = next(t for t in types.values() if t["resources"].get("executor", 0) > 0)
    # Generator replicas and learner workers hold GPUs at the same time (the replicas stay up).
    gpus = c.generator.num_replicas * c.generator.num_gpus + c.train.num_workers
    assert gpus <= gpu_node["resources"]["GPU"] * gpu_node["max_workers"]
    assert c.generator.num_gpus <= gpu_node["resources"]["GPU"]  # one replica's GPUs share a node
    # Executors and evaluators both ask for sandbox.executor_resources.
    units = (c.sandbox.num_executors + c.evaluator.num_evaluators) * c.sandbox.executor_resources["executor"]
    assert units <= exec_node["resources"]["executor"] * exec_node["max_workers"]
    cpus = c.sandbox.num_executors * c.sandbox.executor_num_cpus + c.evaluator.num_evaluators * c.evaluator.num_cpus
    assert cpus <= exec_node["resources"]["CPU"] * exec_node["max_workers"]


def test_readme_documents_the_launch():
    assert "docs/cluster.md" in (ROOT / "README.md").read_text()  # the front door links the cluster page
    readme = (ROOT / "docs" / "cluster.md").read_text()
    assert "ray up cluster.yaml" in readme
    assert re.search(r"ray job submit [^\n]*--working-dir \.", readme)
    assert "-- flowpo train examples/humaneval.yaml" in readme
    assert "OPENAI_API_KEY" in readme and "env_vars" in readme and "excludes" in readme
    for mentioned in set(re.findall(r"examples/[\w.-]+\.yaml", readme)):
        assert (ROOT / mentioned).is_file(), mentioned


@pytest.mark.parametrize("name", BENCHMARKS)
def test_example_header_submits_as_the_readme_does(name):
    """The submit command in each example's header works as pasted: token authentication on (else
    401), the same excludes as docs/cluster.md's (`.git` can exceed the working_dir upload limit)."""
    header = "".join(line[1:] for line in (ROOT / "examples" / f"{name}.yaml").read_text().splitlines(True)
                     if line.startswith("#"))
    command = header.replace("\\\n", " ")
    submit = next(line for line in command.splitlines() if "ray job submit" in line)
    assert re.search(r"RAY_AUTH_MODE=token ray job submit ", submit), submit
    excludes = json.loads(re.search(r"'(\{.*\})'", submit).group(1).replace("'\"$OPENAI_API_KEY\"'", "K"))["excludes"]
    assert {".venv", "runs", ".git"} <= set(excludes), excludes
    assert f"-- flowpo train examples/{name}.yaml" in submit
    assert "shared file system" not in header


def test_cluster_nodes_run_what_ci_tests():
    """Every node installs the Python CI runs on, the pinned set CI installed, and what Triton needs
    at run time to build its launcher (a C compiler and that Python's headers)."""
    import sys

    config = cluster()
    setup = " ".join(config["initialization_commands"] + config["setup_commands"])
    python = f"python{sys.version_info.major}.{sys.version_info.minor}"
    assert f"make venv PROFILE=gpu PYTHON={python}" in setup
    assert f"{python}-dev" in setup and "build-essential" in setup
    assert "constraints.txt" in (ROOT / "scripts" / "install-venv.sh").read_text()


def test_the_constraints_are_what_this_environment_runs():
    """scripts/constraints.txt pins, at the versions installed here, every package that both profiles
    share: a cluster set up any day runs what these tests ran."""
    from importlib.metadata import PackageNotFoundError, version

    pins = dict(line.split("==", 1) for line in (ROOT / "scripts" / "constraints.txt").read_text().splitlines()
                if line and not line.startswith("#"))
    for shared in ("transformers", "peft", "datasets", "huggingface_hub", "numpy", "ray", "openai", "accelerate"):
        assert shared in pins, f"{shared} is not pinned"
    stale = []
    for name, pinned in pins.items():
        try:
            installed = version(name)
        except PackageNotFoundError:
            continue
        if installed != pinned:
            stale.append(f"{name}: pinned {pinned}, installed {installed}")
    assert not stale, f"scripts/constraints.txt differs from this environment (scripts/freeze-constraints.sh): {stale}"


def test_every_link_and_path_the_docs_name_exists():
    """README.md and docs/*.md: every relative link, and every examples/ config they name, exists."""
    for page in [ROOT / "README.md", ROOT / "bench" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = page.read_text()
        for target in re.findall(r"\]\(([^)#:]+)\)", text):
            assert (page.parent / target).exists(), f"{page.name}: link to {target}"
        for mentioned in set(re.findall(r"examples/[\w.-]+\.yaml", text)):
            assert (ROOT / mentioned).is_file(), f"{page.name}: {mentioned}"
