"""The probe after a round (the new adapter's log-prob of one workflow, proof it is served) survives
a generator replica that dies under it, as one did once in CI (most likely killed by Ray's memory
monitor): Ray restarts the replica, the probe asks again, and the restarted replica, which lost its
adapters, loads the adapter that the call carries. A replica that dies on every probe is an error
once the retries are spent, and one that Ray will not restart at once: an error that says the round
is saved and how to resume.

A plain Ray actor stands in for the replica: the property is the driver's and Ray's, and a vLLM
engine would add minutes, not coverage (the real replica's loading from the call is in
tests/actors/test_generator.py)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import ray

from actors.streaming import MAX_ITEM_RETRIES
from driver.learn import ship_adapter
from driver.train import adapter_probe
from flowpo.config import PipelineConfig
from flowpo.errors import FlowPOError
from flowpo.records import BASE_ADAPTER, Execution, ScoredSample, Workflow
from trainer.checkpoint import PackedCheckpoint

# The stand-in travels by value: Ray's workers cannot import this test module.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

BASE_LOGPROB, ADAPTER_LOGPROB = -12.5, -7.25


@ray.remote(num_cpus=0)
class Replica:
    """Serves the adapters it has loaded, as a generator replica does; its process dies under the
    first ``deaths`` adapter probes (counted in files, which outlive the process)."""

    def __init__(self, deaths_dir: str, deaths: int, deaths_on_load: bool = False):
        self.deaths_dir, self.deaths, self.deaths_on_load = Path(deaths_dir), deaths, deaths_on_load
        self.adapters: dict[str, PackedCheckpoint] = {}

    def load_adapter(self, version: str, source) -> str:
        self.adapters[version] = source
        if self.deaths_on_load and not (self.deaths_dir / "load").exists():
            (self.deaths_dir / "load").touch()
            os._exit(1)
        return version

    def loaded(self) -> dict[str, str]:
        return {version: type(source).__name__ for version, source in self.adapters.items()}

    def sequence_logprob(self, prompt: str, completion: str, version: str, source="") -> float:
        if version == BASE_ADAPTER:
            return BASE_LOGPROB
        if version not in self.adapters:
            if not source:
                raise KeyError(f"adapter {version} is not loaded here and the call does not carry it")
            self.load_adapter(version, source)
        died = len(list(self.deaths_dir.iterdir()))
        if died < self.deaths:
            (self.deaths_dir / str(died)).touch()
            os._exit(1)  # as the replica does when its engine dies
        return ADAPTER_LOGPROB


def a_sample() -> ScoredSample:
    wf = Workflow(problem_id="p", round=1, sample_index=0, adapter=BASE_ADAPTER, prompt="P", completion="C",
                  code="class Workflow: ...", generate_s=0.0)
    return ScoredSample(Execution(workflow=wf, answer="a", failure="", error="", llm_calls=1, prompt_tokens=1,
                                  completion_tokens=1, execute_s=0.0), score=1.0, evaluate_s=0.0)


@pytest.fixture
def adapter_dir(tmp_path) -> str:
    out = tmp_path / "adapters" / "round-1"
    out.mkdir(parents=True)
    (out / "adapter_config.json").write_text("{}")
    (out / "adapter_model.safetensors").write_bytes(b"weights")
    return str(out)


def replica(tmp_path: Path, deaths: int, max_restarts: int):
    deaths_dir = tmp_path / "deaths"
    deaths_dir.mkdir()
    return Replica.options(max_restarts=max_restarts).remote(str(deaths_dir), deaths), deaths_dir


def test_a_replica_that_dies_under_the_probe_is_probed_again_with_the_adapter_once_restarted(
        ray_local, tmp_path, adapter_dir):
    generator, deaths_dir = replica(tmp_path, deaths=1, max_restarts=3)
    adapter, _ = ship_adapter([generator], "round-1", adapter_dir)
    probe = adapter_probe(generator, a_sample(), adapter, PipelineConfig())
    assert probe == {"probe_logprob_base": BASE_LOGPROB, "probe_logprob_adapter": ADAPTER_LOGPROB}
    assert len(list(deaths_dir.iterdir())) == 1  # it did die under the probe
    # The replica that answered is the restarted one: it loaded the adapter from the call itself.
    assert ray.get(generator.loaded.remote()) == {"round-1": "PackedCheckpoint"}


def test_a_replica_that_dies_under_every_probe_is_an_error_once_the_retries_are_spent(
        ray_local, tmp_path, adapter_dir):
    generator, deaths_dir = replica(tmp_path, deaths=10, max_restarts=10)
    adapter, _ = ship_adapter([generator], "round-1", adapter_dir)
    with pytest.raises(FlowPOError, match="kept dying while adapter round-1 was probed .*ActorUnavailableError.*"
                                          "resume with `flowpo train --resume RUN_DIR`"):
        adapter_probe(generator, a_sample(), adapter, PipelineConfig())
    assert len(list(deaths_dir.iterdir())) == 1 + MAX_ITEM_RETRIES  # the first try and the retries, no more


def test_a_replica_ray_will_not_restart_is_an_error_at_once(ray_local, tmp_path, adapter_dir):
    generator, deaths_dir = replica(tmp_path, deaths=1, max_restarts=0)
    adapter, _ = ship_adapter([generator], "round-1", adapter_dir)
    with pytest.raises(FlowPOError, match="ActorDiedError"):
        adapter_probe(generator, a_sample(), adapter, PipelineConfig())


def test_a_replica_that_dies_while_the_adapter_is_shipped_is_sent_it_again_once_restarted(
        ray_local, tmp_path, adapter_dir):
    deaths_dir = tmp_path / "deaths"
    deaths_dir.mkdir()
    generator = Replica.options(max_restarts=3).remote(str(deaths_dir), 0, True)
    adapter, _ = ship_adapter([generator], "round-1", adapter_dir)
    assert (deaths_dir / "load").exists()  # it did die under the first load
    assert ray.get(generator.loaded.remote()) == {"round-1": "PackedCheckpoint"}  # the restarted one has it
