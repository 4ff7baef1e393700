"""A backend is built by the driver and pickled to executor and evaluator actors, which on a cluster
run on other machines. What it mounts into a sandbox (the staged runtime, bubblewrap's copy) must be
made by the process that starts the sandboxes, on its own node: the driver's temporary directory
does not exist there (issue 25: "bind source path does not exist: /tmp/flowpo-runtime-...")."""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

from sandbox.backend import SandboxLimits
from sandbox.docker_backend import DockerBackend
from sandbox.process_backend import ProcessBackend

REPO = Path(__file__).resolve().parents[2]

# On the "other node": unpickle, and report what each backend would mount there.
ON_THE_OTHER_NODE = """
import pickle, sys
docker, process = pickle.loads(sys.stdin.buffer.read())
argv = docker.argv("probe")
mount = next(a for a in argv if a.startswith("type=bind,source="))
print(mount.split(",")[1].removeprefix("source="))
print(process.runtime_dir)
print(process.bwrap)
"""


def test_a_backend_carries_no_path_of_the_process_that_built_it(tmp_path):
    docker = DockerBackend("flowpo-sandbox:latest", SandboxLimits())
    process = ProcessBackend(SandboxLimits())
    # The driver used both here (e.g. `flowpo check`): each staged its files in this process's /tmp.
    here = [Path(docker.runtime_dir), Path(process.runtime_dir)]
    assert all((path / "flowpo_supervisor.py").is_file() for path in here)
    blob = pickle.dumps((docker, process))
    for path in here:
        assert str(path).encode() not in blob, f"{path} of the driver's disk travels with the backend"

    node_tmp = tmp_path / "other-node-tmp"  # the other node's temporary directory
    node_tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(node_tmp), "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", ON_THE_OTHER_NODE], input=blob, env=env, capture_output=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    docker_stage, process_stage, bwrap = done.stdout.decode().split()
    for staged in (docker_stage, process_stage):
        assert staged.startswith(f"{node_tmp}/"), f"{staged} is not on the node that starts the sandboxes"
    if os.geteuid() == 0:  # root runs a copy that uid 65534 can read, staged on that node too
        assert bwrap.startswith(f"{node_tmp}/"), bwrap


def test_the_fallback_decision_stays_on_its_node(monkeypatch):
    """A node without user namespaces falls back to rlimits; the node it is pickled to decides anew."""
    from sandbox import process_backend

    monkeypatch.setattr(process_backend, "node_bwrap", lambda: "/bin/false")  # namespaces refused here
    backend = ProcessBackend(SandboxLimits(timeout_s=2))
    backend.check()
    assert backend.namespaces is False
    assert pickle.loads(pickle.dumps(backend)).namespaces is True
