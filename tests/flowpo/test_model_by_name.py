"""model.path as a Hugging Face hub id: each node resolves it through its own Hugging Face cache.

No test reaches the hub (this machine has no route to it): a cache laid out as huggingface_hub
lays it out (models--ORG--NAME/refs/main, snapshots/<commit>/) is filled in a tmp dir with the
embedded converted model under a made-up id, and the hub is switched off (HF_HUB_OFFLINE)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from flowpo.errors import FlowPOError

HUB_ID = "flowpo-test/SmolLM2-135M-Instruct"
MISSING_ID = "flowpo-test/no-such-model"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory, model_dir) -> Path:
    """An HF hub cache holding HUB_ID, whose snapshot links to the embedded model's files."""
    cache = tmp_path_factory.mktemp("hf") / "hub"
    repo = cache / ("models--" + HUB_ID.replace("/", "--"))
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    for source in Path(model_dir).iterdir():
        (snapshot / source.name).symlink_to(source)  # the real cache links snapshots to blobs the same way
    return cache


@pytest.fixture
def offline_cache(hub_cache, monkeypatch) -> Path:
    """This process's huggingface_hub sees ``hub_cache`` and never asks the hub."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub_cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_CACHE", str(hub_cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return hub_cache


def snapshot_of(cache: Path) -> Path:
    return (cache / ("models--" + HUB_ID.replace("/", "--")) / "snapshots" / COMMIT).resolve()


def flowpo(*args, cache: Path):
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "driver.cli", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def check_args(model: str) -> list[str]:
    # executor_resources: the sandbox is left to the executors' nodes, so no Docker is needed here
    return ["check", "examples/local.yaml", f"model.path={model}", "sandbox.executor_resources={executor: 1}"]


def test_the_installed_huggingface_hub_finds_the_hand_made_cache(offline_cache):
    from huggingface_hub import snapshot_download

    assert Path(snapshot_download(HUB_ID, local_files_only=True)).resolve() == snapshot_of(offline_cache)


def test_a_hub_id_resolves_to_its_cached_snapshot(offline_cache):
    from flowpo.model import resolve_model

    path = resolve_model(HUB_ID)
    assert path.resolve() == snapshot_of(offline_cache)
    assert (path / "config.json").is_file()
    assert resolve_model(f"{HUB_ID}@{COMMIT}").resolve() == snapshot_of(offline_cache)  # a pinned revision


def test_the_driver_hands_the_id_on_unresolved(offline_cache, model_dir):
    from flowpo.model import model_spec

    assert model_spec(HUB_ID) == HUB_ID  # each node resolves it in its own cache
    assert model_spec(MISSING_ID) == MISSING_ID  # not even looked up on the driver's node
    assert model_spec(model_dir) == str(Path(model_dir).absolute())


def test_an_id_not_in_the_cache_offline_says_what_to_do(offline_cache):
    from flowpo.model import resolve_model

    with pytest.raises(FlowPOError) as info:
        resolve_model(MISSING_ID)
    message = str(info.value)
    assert MISSING_ID in message and str(offline_cache) in message
    assert "HF_HUB_OFFLINE" in message and "hf download" in message


@pytest.fixture
def unreachable_hub(offline_cache, monkeypatch) -> Path:
    """Online mode, but the hub refuses connections: a node without network."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # the discard port: nothing listens
    return offline_cache


def test_without_network_a_cached_id_is_used_and_a_missing_one_is_explained(unreachable_hub):
    from flowpo.model import describe_model, resolve_model

    assert resolve_model(HUB_ID).resolve() == snapshot_of(unreachable_hub)  # the cache first: no hub call
    for find in (resolve_model, describe_model):
        with pytest.raises(FlowPOError) as info:
            find(MISSING_ID)
        message = str(info.value)
        assert "the Hugging Face hub cannot be reached" in message
        assert MISSING_ID in message and str(unreachable_hub) in message and "hf download" in message


def test_a_cut_short_snapshot_is_not_a_model(offline_cache, tmp_path, monkeypatch):
    from huggingface_hub import constants

    from flowpo.model import resolve_model

    cache = tmp_path / "hub"
    shutil.copytree(offline_cache, cache, symlinks=True)
    (cache / ("models--" + HUB_ID.replace("/", "--")) / "snapshots" / COMMIT / "model.safetensors").unlink()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    with pytest.raises(FlowPOError, match="lacks \\*.safetensors weights") as info:
        resolve_model(HUB_ID)
    assert HUB_ID in str(info.value)


def test_a_local_directory_still_works(offline_cache, model_dir):
    from flowpo.model import resolve_model

    assert resolve_model(model_dir) == Path(model_dir)


@pytest.mark.parametrize("spec", ["{tmp}/none", "./no-such-model-dir", "~/no-such-model-dir", "a/b/c"])
def test_a_missing_path_is_reported_as_a_directory(offline_cache, tmp_path, spec):
    from flowpo.model import resolve_model

    with pytest.raises(FlowPOError) as info:
        resolve_model(spec.format(tmp=tmp_path))
    message = str(info.value)
    assert "model directory" in message and "does not exist" in message
    assert "Hugging Face cache" not in message and "HF_HUB_OFFLINE" not in message


def test_an_incomplete_directory_names_what_it_lacks(tmp_path):
    from flowpo.model import resolve_model

    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FlowPOError, match="incomplete: it lacks a tokenizer .*, \\*.safetensors weights"):
        resolve_model(tmp_path)


@pytest.mark.parametrize("spec", ["Qwen/Qwen--2", "-bad/name", "org/name.git", "org/name@"])
def test_a_malformed_id_is_refused(offline_cache, spec):
    from flowpo.model import resolve_model

    with pytest.raises(FlowPOError, match="neither an existing directory nor a Hugging Face hub id"):
        resolve_model(spec)


def test_flowpo_check_accepts_a_cached_id_offline(hub_cache):
    result = flowpo(*check_args(HUB_ID), cache=hub_cache)
    assert result.returncode == 0, result.stderr
    assert f"model {HUB_ID}, cached at {snapshot_of(hub_cache)}" in result.stdout, result.stdout


def test_flowpo_check_names_the_id_and_the_cache(hub_cache):
    result = flowpo(*check_args(MISSING_ID), cache=hub_cache)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    for needle in (MISSING_ID, str(hub_cache), "HF_HUB_OFFLINE", "hf download"):
        assert needle in result.stderr, result.stderr


def test_flowpo_check_reports_a_missing_directory_as_one(hub_cache, tmp_path):
    result = flowpo(*check_args(f"{tmp_path}/none"), cache=hub_cache)
    assert result.returncode == 2, result.stderr
    assert f"model directory {tmp_path}/none does not exist" in result.stderr, result.stderr


def test_the_llm_server_resolves_the_id_on_its_node(offline_cache, tmp_path, monkeypatch):
    import actors.llm_server as llm_server

    launched = []

    class Exited:
        returncode = 1

        def __init__(self, argv, **_):
            launched.append(argv)

        def poll(self):
            return 1

    monkeypatch.setattr(llm_server.subprocess, "Popen", Exited)
    server = llm_server.LLMServer(HUB_ID, "flowpo-executor", host="127.0.0.1", max_model_len=512,
                                  kv_cache_gb=0.5, gpu_memory_utilization=0.5, enforce_eager=True,
                                  log_path=str(tmp_path / "server.log"))
    with pytest.raises(FlowPOError, match="exited"):
        server.start(timeout_s=5)
    argv = launched[0]
    assert Path(argv[argv.index("--model") + 1]).resolve() == snapshot_of(offline_cache)


def test_the_learner_loads_the_id_offline(offline_cache):
    """The learner's own loading path (tokenizer and base model + LoRA) with HF_HUB_OFFLINE=1."""
    from flowpo.config import TrainConfig
    from trainer.learner import LearnerSettings, Policy, prepare_round

    settings = LearnerSettings(train=TrainConfig(max_seq_len=256, lora_r=4, lora_alpha=8, lora_dropout=0.0),
                               base_model=HUB_ID)
    policy = Policy(settings.base_model, bf16=settings.train.bf16, device="cpu")
    policy.start(settings)
    assert prepare_round(policy, settings, []) == []
    assert Path(policy.policy.base_model.model.config._name_or_path).resolve() == snapshot_of(offline_cache)


@pytest.mark.vllm
def test_the_generator_engine_gets_the_cached_snapshot(offline_cache, vllm_available, monkeypatch):
    """The generator actor's engine arguments, built on its node from the id it was given."""
    from vllm.v1.engine.async_llm import AsyncLLM

    from actors.generator import Generator, SamplingSettings

    seen = {}

    class Engine:
        def get_tokenizer(self):
            return None

    def from_engine_args(args, **_):
        seen["model"], seen["tokenizer"] = args.model, args.tokenizer
        return Engine()

    monkeypatch.setattr(AsyncLLM, "from_engine_args", staticmethod(from_engine_args))
    sampling = SamplingSettings(k=1, temperature=0.5, top_p=1.0, max_tokens=8, stop=(), response_prefix="",
                                max_attempts=1)
    Generator({"model": HUB_ID, "seed": 0, "enforce_eager": True}, sampling)
    assert Path(seen["model"]).resolve() == snapshot_of(offline_cache)
