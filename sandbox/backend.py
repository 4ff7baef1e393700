"""What every isolation backend provides, and the limits they enforce.

A backend knows how to start one warm sandbox: a process whose stdio speaks the supervisor
protocol (``sandbox/runtime/flowpo_supervisor.py``). The pool (``sandbox/pool.py``) does the rest
the same way for every backend.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from flowpo import operators
from flowpo.config import SandboxConfig
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


_CONFIGURED = SandboxConfig()  # the limits' one home: the config section's defaults and docs


@dataclass(frozen=True)
class SandboxLimits:
    """The ``sandbox`` section's limits as a value record (see flowpo/config.py on how a section
    crosses into infrastructure); the supervisor inside the sandbox takes every limit from here."""
    timeout_s: float = _CONFIGURED.timeout_s
    cpu_s: float = _CONFIGURED.cpu_s  # 0: the wall-clock limit (a job gets at most one core's worth of time)
    memory_mb: int = _CONFIGURED.memory_mb
    pids_limit: int = _CONFIGURED.pids_limit
    cpus: float = _CONFIGURED.cpus
    open_files: int = _CONFIGURED.open_files
    file_size_mb: int = _CONFIGURED.file_size_mb
    scratch_mb: int = _CONFIGURED.scratch_mb
    scratch_inodes: int = _CONFIGURED.scratch_inodes
    max_output_bytes: int = _CONFIGURED.max_output_bytes

    @classmethod
    def from_config(cls, section: SandboxConfig, *, timeout_s: float | None = None) -> "SandboxLimits":
        """The section's limits (``timeout_s`` overrides its wall-clock limit: the evaluator's own)."""
        limits = cls(**{f.name: getattr(section, f.name) for f in dataclasses.fields(cls)})
        return dataclasses.replace(limits, timeout_s=timeout_s) if timeout_s else limits

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

    host_socket: bool  # argv(name, path) makes the supervisor connect to the host's socket at path

    def argv(self, name: str) -> list[str]:
        """The command that starts one sandbox running the supervisor on its stdio."""

    def spawn_kwargs(self, name: str) -> dict:
        """Extra ``asyncio.create_subprocess_exec`` arguments (user, env, ...)."""

    def job_limits(self) -> dict: ...

    async def remove(self, name: str) -> SandboxExit:
        """Tear the sandbox down (it may already be gone) and report how it ended."""
