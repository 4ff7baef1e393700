"""Shared memory of the vLLM engines (issue 13): their message queues (``psm_*``) and locks (``sem.*``)
in /dev/shm are gone after FlowPO's shutdown, after an error while the actors run, and after the
driver is ended by a signal (its shutdown in ``finally`` may be cut short; Ray kills its actors).

The engines here run vLLM's multiprocess executor (``VLLM_ENABLE_V1_MULTIPROCESSING=1``, as a
tensor-parallel replica always does): FlowPO's default for a one-device engine keeps the model in the
engine-core process (actors.llm_server.engine_env), whose queues need no ring buffers, so the
shared-memory path is exercised where it exists.

Other processes on the machine may create (and leave) entries meanwhile, so each test follows the
new entries that its own actors' processes map, found by inode: glibc maps a semaphore under the
temporary name it created it with."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import ray

from actors.launch import Actors, start_generators, start_llm_server
from flowpo.config import Config

pytestmark = [pytest.mark.vllm, pytest.mark.ray]

SHM = Path("/dev/shm")
ROOT = Path(__file__).resolve().parents[2]

# A driver as driver.train.train runs one: on the test's Ray cluster, which outlives it, or on a
# Ray instance of its own (``local``), as `flowpo train` starts one. The test signals it while it waits.
DRIVER = """
import json, os, sys, time
from pathlib import Path

import ray

from tests.actors.test_shm_cleanup import actor_pids, small_config, start

os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "1"  # the driver's choice, handed to every engine

model_dir, run_dir, cluster = sys.argv[1:4]
ray.init(address=cluster, include_dashboard=False, log_to_driver=False)
actors = start(small_config(model_dir), model_dir, Path(run_dir))
try:
    Path(run_dir, "pids.tmp").write_text(json.dumps(actor_pids(actors)))
    Path(run_dir, "pids.tmp").rename(Path(run_dir, "pids.json"))
    time.sleep(600)
finally:
    actors.shutdown()
"""


def small_config(model_dir: str) -> Config:
    config = Config()
    config.model.path = model_dir
    g, llm = config.generator, config.executor_llm
    g.num_replicas, g.num_cpus, g.kv_cache_gb, g.enforce_eager = 1, 0.5, 0.3, True
    llm.num_cpus, llm.kv_cache_gb, llm.enforce_eager = 0.5, 0.3, True
    return config


def start(config: Config, model_dir: str, run_dir: Path) -> Actors:
    """The generator replicas and the executor LLM server, as actors.launch.start_actors starts them."""
    generators, groups = start_generators(config, model_dir)
    llm_server = start_llm_server(config, model_dir)[0]
    ray.get([h.ready.remote() for h in generators])
    return Actors(generators, [], [], llm_server, groups, llm_log=run_dir / "logs" / "executor_llm.log")


def actor_pids(actors: Actors) -> list[int]:
    handles = [h for h in [*actors.generators, actors.llm_server] if h is not None]
    return ray.get([h.__ray_call__.remote(lambda self: os.getpid()) for h in handles])


def names() -> set[str]:
    return set(os.listdir(SHM))


def engine_processes(roots: list[int]) -> list[psutil.Process]:
    """Processes ``roots`` (actors, a driver) and their descendants: the vLLM engines' processes."""
    processes = [psutil.Process(root) for root in roots]
    return processes + [child for process in processes for child in process.children(recursive=True)]


def mapped_entries(processes: list[psutil.Process]) -> dict[str, int]:
    """The /dev/shm entries (name -> inode) that ``processes`` map."""
    inodes = set()
    for process in processes:
        try:
            lines = Path(f"/proc/{process.pid}/maps").read_text().splitlines()
        except OSError:
            continue
        inodes.update(int(f[4]) for f in map(str.split, lines) if len(f) > 5 and f[5].startswith(f"{SHM}/"))
    return {entry.name: entry.inode() for entry in os.scandir(SHM) if entry.inode() in inodes}


def engine_entries(processes: list[psutil.Process], before: set[str], engines: int) -> dict[str, int]:
    """What the running engines hold: new entries, each engine's two message queues and a lock at least."""
    entries = mapped_entries(processes)
    assert set(entries) <= names() - before, "the engines map entries that existed before they started"
    assert sum(name.startswith("psm_") for name in entries) >= 2 * engines, entries
    assert any(name.startswith("sem.") for name in entries), entries
    return entries


def lingering(processes: list[psutil.Process], entries: dict[str, int], timeout_s: float = 10) -> list[str]:
    """The entries still in /dev/shm ``timeout_s`` after the last of ``processes`` exited (a resource
    tracker unlinks what they left once all of them are gone; a killed engine's processes may take
    a while to end on the SIGTERM that Ray sends their process group)."""
    _, alive = psutil.wait_procs(processes, timeout=300)
    assert not alive, f"still running: {alive}"
    deadline = time.monotonic() + timeout_s
    while set(entries) & names() and time.monotonic() < deadline:
        time.sleep(0.5)
    return sorted(set(entries) & names())


def test_flowpo_shutdown_releases_the_engines_shared_memory_also_after_an_error(model_dir, vllm_available,
                                                                              ray_local, tmp_path, capsys,
                                                                              monkeypatch):
    """FlowPO's shutdown, in the ``finally`` that an error raised while the actors run passes through
    (one engine start for both cases: an actor call that fails leaves the engines running, and the
    shutdown must stop them as it does after a clean run)."""
    before = names()
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "1")  # multiprocess engines (module docstring)
    actors = start(small_config(model_dir), model_dir, tmp_path)
    processes, entries = [], {}
    with pytest.raises(ray.exceptions.RayTaskError):
        try:
            processes = engine_processes(actor_pids(actors))
            entries = engine_entries(processes, before, engines=2)
            # The server logs on its own node (on a cluster, not the driver's); the driver keeps the log.
            node_log = Path(ray.get(actors.llm_server.__ray_call__.remote(lambda self: str(self.log_path))))
            assert node_log.is_file() and not node_log.is_relative_to(tmp_path)
            ray.get(actors.generators[0].generate_for.remote(None, 1))  # fails inside the actor
        finally:
            actors.shutdown()
    assert "did not stop cleanly" not in capsys.readouterr().out  # the engines stopped as vLLM means them to
    assert entries and lingering(processes, entries) == []
    kept = (tmp_path / "logs" / "executor_llm.log").read_text()
    assert "Application startup complete" in kept or "Uvicorn running" in kept or "Starting vLLM" in kept, kept[-2000:]
    assert not node_log.exists(), "the server's temporary log was left on its node"


@pytest.mark.parametrize("cluster, first_signal, kill_after_s", [
    # `ray job stop`: SIGTERM (Ray's handler raises SystemExit, the driver's finally shuts down), then
    # SIGKILL after RAY_JOB_STOP_WAIT_TIME_S (3 s), mid-shutdown
    ("shared", signal.SIGTERM, 3),
    ("local", signal.SIGTERM, None),  # `flowpo train` on its own Ray: SIGTERM ends the Ray node first
    # `flowpo train` on its own Ray, killed (the OOM killer, a chaos run): nothing of the driver runs;
    # Ray SIGKILLs the actors and their children, and the executor LLM's engine must still stop
    ("local", signal.SIGKILL, None),
], ids=["ray-job-stop", "own-ray", "sigkill-own-ray"])
def test_a_driver_ended_by_a_signal_leaves_no_shared_memory(model_dir, vllm_available, ray_local, tmp_path,
                                                             cluster, first_signal, kill_after_s):
    before = names()
    address = ray.get_runtime_context().gcs_address if cluster == "shared" else "local"
    with open(tmp_path / "driver.log", "w") as log:
        driver = subprocess.Popen([sys.executable, "-c", DRIVER, model_dir, str(tmp_path), address], cwd=ROOT,
                                  stdout=log, stderr=subprocess.STDOUT)
    try:
        processes = engine_processes(wait_for_pids(driver, tmp_path))
        entries = engine_entries(processes, before, engines=2)
        driver.send_signal(first_signal)
        try:
            driver.wait(kill_after_s or 120)
        except subprocess.TimeoutExpired:
            driver.kill()
    finally:
        if driver.poll() is None:
            driver.kill()
        driver.wait()
    assert lingering(processes, entries) == [], (tmp_path / "driver.log").read_text()[-3000:]


def wait_for_pids(driver: subprocess.Popen, run_dir: Path, timeout_s: float = 600) -> list[int]:
    pids, deadline = run_dir / "pids.json", time.monotonic() + timeout_s
    while not pids.exists() and driver.poll() is None and time.monotonic() < deadline:
        time.sleep(1)
    assert pids.exists(), (run_dir / "driver.log").read_text()[-3000:]
    return json.loads(pids.read_text())
