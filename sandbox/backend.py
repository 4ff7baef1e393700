"""What every isolation backend provides, and the limits they enforce.

A backend knows how to start one warm sandbox: a process whose stdio speaks the supervisor
protocol (``sandbox/runtime/flowpo_supervisor.py``). The pool (``sandbox/pool.py``) does the rest
the same way for every backend.
"""
from __future__ import annotations

import functools
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from flowpo import operators
from flowpo.node_tmp import make_node_tmp

RUNTIME_DIR = Path(__file__).parent / "runtime"
STAGE_PREFIX = "flowpo-runtime-"
RUNTIME_MOUNT = "/opt/flowpo"
SUPERVISOR_ARGV = ["-I", f"{RUNTIME_MOUNT}/flowpo_supervisor.py"]
NOBODY_UID = 65534


@functools.lru_cache(maxsize=None)
def runtime_stage(runtime_dir: Path | None = None) -> Path:
    """What a sandbox mounts at RUNTIME_MOUNT: the runtime's files (``runtime_dir``, default this
    node's ``sandbox/runtime``) and the core's operator library as ``flowpo_operators.py``, in a
    directory of this process that any uid can read (the sandbox runs as 65534; a checkout may sit
    where only root can enter). Removed at exit.

    Called by the process that starts the sandboxes, on first use, never by the driver: on a cluster
    the driver's temporary directory is on another machine (a bind mount of it fails with "bind
    source path does not exist"), so a backend carries no staged path across Ray's pickling."""
    runtime_dir = Path(runtime_dir or RUNTIME_DIR).resolve()
    stage = make_node_tmp(STAGE_PREFIX)  # a killed actor's stage goes with the next start on the node
    for source in Path(runtime_dir).glob("*.py"):
        shutil.copyfile(source, stage / source.name)
    shutil.copyfile(operators.__file__, stage / "flowpo_operators.py")
    for path in [stage, *stage.iterdir()]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return stage


def release_node_files() -> None:
    """Remove the files this process staged (the runtime, root's bwrap copy) now: an actor about to
    be killed runs no atexit hook. For a process that owns the only pool it runs (an executor or
    evaluator actor); a later sandbox would stage anew."""
    from sandbox.process_backend import BWRAP_PREFIX, node_bwrap

    for prefix in (STAGE_PREFIX, BWRAP_PREFIX):
        for path in Path(tempfile.gettempdir()).glob(f"{prefix}{os.getpid()}-*"):
            shutil.rmtree(path, ignore_errors=True)
    runtime_stage.cache_clear()
    node_bwrap.cache_clear()


@dataclass(frozen=True)
class SandboxLimits:
    timeout_s: float = 120.0
    cpu_s: float = 0.0  # 0: the wall-clock limit (a job gets at most one core's worth of time)
    memory_mb: int = 512
    pids_limit: int = 64
    cpus: float = 1.0
    open_files: int = 256
    file_size_mb: int = 16
    scratch_mb: int = 64
    scratch_inodes: int = 4096
    max_output_bytes: int = 1_000_000

    def job_limits(self, *, processes: int) -> dict:
        """The per-job rlimits and caps the supervisor applies inside the sandbox."""
        return {"timeout_s": self.timeout_s, "cpu_s": int(self.cpu_s or self.timeout_s) + 1,
                "memory_mb": self.memory_mb, "open_files": self.open_files,
                "file_size_mb": self.file_size_mb, "processes": processes,
                "output_bytes": self.max_output_bytes}


@dataclass(frozen=True)
class SandboxExit:
    """How a sandbox ended, as far as the backend can tell after the fact."""
    oom_killed: bool
    detail: str


class SandboxBackend(Protocol):
    limits: SandboxLimits

    def check(self) -> None:
        """Raise FlowPOError saying what to do when this backend cannot run here."""

    def new_name(self) -> str: ...

    def argv(self, name: str) -> list[str]:
        """The command that starts one sandbox running the supervisor on its stdio."""

    def spawn_kwargs(self, name: str) -> dict:
        """Extra ``asyncio.create_subprocess_exec`` arguments (user, env, ...)."""

    def job_limits(self) -> dict: ...

    async def remove(self, name: str) -> SandboxExit:
        """Tear the sandbox down (it may already be gone) and report how it ended."""
