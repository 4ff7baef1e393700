"""Docker isolation backend: long-lived, hardened, network-less containers running the supervisor.

The container runs the standard-library runtime from ``sandbox/runtime`` (mounted read-only) and
speaks JSON lines on a unix socket of the host's, mounted read-only (see sandbox/supervised.py), or
on its stdio; nothing else crosses the boundary.
"""
from __future__ import annotations

import asyncio
import os
import socket
import uuid
from pathlib import Path

from flowpo.errors import FlowPOError
from sandbox.backend import NOBODY_UID, RUNTIME_MOUNT, SUPERVISOR_ARGV, SandboxExit, SandboxLimits, runtime_stage

HOST_SOCKET_MOUNT = "/flowpo-host"


class DockerBackend:
    host_socket = True  # the supervisor connects to the host: no stdio relay on the job's path

    def __init__(self, image: str, limits: SandboxLimits, runtime_dir: Path | None = None):
        self.image = image
        self.limits = limits
        self.runtime_source = runtime_dir  # None: the runtime of the node that starts the sandboxes
        self._client = None  # created lazily: a docker client does not cross Ray's pickling

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_client": None}

    @property
    def runtime_dir(self) -> Path:
        """Staged on this node on first use (see runtime_stage): the engine that mounts it runs here."""
        return runtime_stage(self.runtime_source)

    @property
    def client(self):
        if self._client is None:
            import docker

            self._client = docker.from_env(timeout=60)
        return self._client

    def check(self) -> None:
        """Fail with a clear message if no engine answers or the image is missing."""
        import docker

        try:
            self.client.ping()
        except docker.errors.DockerException as exc:
            raise FlowPOError(
                "no Docker engine answers (" + str(exc).split("\n")[0][:160] + "). "
                "Run `make docker` to install and start one, start dockerd yourself, "
                "or set sandbox.backend: process to use bubblewrap instead.") from None
        try:
            self.client.images.get(self.image)
        except docker.errors.ImageNotFound:
            raise FlowPOError(f"sandbox image {self.image!r} not found. Run `make image` to build it "
                              "offline, or `docker build -t IMAGE sandbox/` where a registry is reachable.") from None

    def new_name(self) -> str:
        return f"flowpo-sbx-{uuid.uuid4().hex[:12]}"

    def argv(self, name: str, host_socket: Path | None = None) -> list[str]:
        """``host_socket``: the host's listening socket, mounted (its directory, read-only) and named
        to the supervisor; None: the conversation runs on the container's stdio (``-i``)."""
        lim = self.limits
        channel = ["-i"] if host_socket is None else [
            "--mount", f"type=bind,source={host_socket.parent},target={HOST_SOCKET_MOUNT},readonly",
            "--env", f"FLOWPO_HOST_SOCKET={HOST_SOCKET_MOUNT}/{host_socket.name}"]
        return [
            # --rm: a sandbox whose owner died (its socket or stdin closes, the supervisor exits)
            # leaves nothing.
            "docker", "run", *channel, "--rm", "--name", name, "--label", "flowpo.sandbox=1",
            "--label", f"flowpo.owner={socket.gethostname()}:{os.getpid()}",
            "--network", "none", "--ipc", "none", "--read-only", "--user", f"{NOBODY_UID}:{NOBODY_UID}",
            "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
            "--memory", f"{lim.memory_mb}m", "--memory-swap", f"{lim.memory_mb}m",
            "--pids-limit", str(lim.pids_limit), "--cpus", str(lim.cpus),
            "--ulimit", f"nofile={lim.open_files}:{lim.open_files}",
            "--tmpfs", f"/tmp:rw,nosuid,nodev,noexec,size={lim.scratch_mb}m,nr_inodes={lim.scratch_inodes},mode=1777",
            "--env", "HOME=/tmp", "--workdir", "/tmp",
            "--mount", f"type=bind,source={self.runtime_dir},target={RUNTIME_MOUNT},readonly",
            "--log-driver", "none",
            self.image, "python3", *SUPERVISOR_ARGV,
        ]

    def spawn_kwargs(self, name: str) -> dict:
        return {}

    def job_limits(self) -> dict:
        # The container's pids cgroup bounds processes; RLIMIT_NPROC would count every container's
        # uid-65534 processes on the host together, so it is left unset here.
        return self.limits.job_limits(processes=0)

    async def remove(self, name: str) -> SandboxExit:
        return await asyncio.to_thread(self._remove_sync, name)

    def _remove_sync(self, name: str) -> SandboxExit:
        import docker

        try:
            container = self.client.containers.get(name)
        except docker.errors.NotFound:
            return SandboxExit(oom_killed=False, detail="container already gone")
        state = container.attrs.get("State", {})
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            pass  # --rm got there first
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # 409: --rm's removal is already in progress
                raise
        return SandboxExit(oom_killed=bool(state.get("OOMKilled")),
                           detail=f"container {state.get('Status')}, exit code {state.get('ExitCode')}")
