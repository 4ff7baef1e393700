"""Docker isolation backend: one hardened, network-less container per run.

The container runs the standard-library runtime from ``sandbox/runtime`` (mounted read-only) and
speaks JSON lines over its stdio; nothing else crosses the boundary.
"""
from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from pathlib import Path

from flowpo.errors import FlowPOError

RUNTIME_DIR = Path(__file__).parent / "runtime"
RUNTIME_MOUNT = "/opt/flowpo"
NOBODY = "65534:65534"


@dataclass(frozen=True)
class SandboxLimits:
    timeout_s: float = 120.0
    memory_mb: int = 512
    pids_limit: int = 64
    cpus: float = 1.0
    max_output_bytes: int = 1_000_000
    tmpfs_mb: int = 64


@dataclass(frozen=True)
class ContainerExit:
    exit_code: int | None
    oom_killed: bool


class DockerBackend:
    """Builds the hardened ``docker run`` command line and cleans containers up afterwards."""

    def __init__(self, image: str, limits: SandboxLimits, runtime_dir: Path = RUNTIME_DIR):
        self.image = image
        self.limits = limits
        self.runtime_dir = Path(runtime_dir).resolve()
        self._client = None  # created lazily: a docker client does not cross Ray's pickling

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
                "Run `make docker` to install and start one, or start dockerd yourself.") from None
        try:
            self.client.images.get(self.image)
        except docker.errors.ImageNotFound:
            raise FlowPOError(f"sandbox image {self.image!r} not found. Run `make image` to build it "
                              "offline, or `docker build -t IMAGE sandbox/` where a registry is reachable.") from None

    def new_name(self) -> str:
        return f"flowpo-sbx-{uuid.uuid4().hex[:12]}"

    def command(self, name: str, inner_argv: list[str]) -> list[str]:
        lim = self.limits
        return [
            "docker", "run", "-i", "--name", name,
            "--network", "none", "--read-only", "--user", NOBODY,
            "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
            "--memory", f"{lim.memory_mb}m", "--memory-swap", f"{lim.memory_mb}m",
            "--pids-limit", str(lim.pids_limit), "--cpus", str(lim.cpus),
            "--tmpfs", f"/tmp:rw,nosuid,nodev,size={lim.tmpfs_mb}m,mode=1777",
            "--env", "HOME=/tmp", "--workdir", "/tmp",
            "--mount", f"type=bind,source={self.runtime_dir},target={RUNTIME_MOUNT},readonly",
            "--log-driver", "none",
            self.image, *inner_argv,
        ]

    def runtime_argv(self) -> list[str]:
        return ["python3", "-I", f"{RUNTIME_MOUNT}/flowpo_runtime.py"]

    async def finish(self, name: str) -> ContainerExit:
        """Kill (if still running) and remove the container; report how it ended."""
        return await asyncio.to_thread(self._finish_sync, name)

    def _finish_sync(self, name: str) -> ContainerExit:
        import docker

        try:
            container = self.client.containers.get(name)
        except docker.errors.NotFound:
            return ContainerExit(exit_code=None, oom_killed=False)
        state = container.attrs.get("State", {})
        container.remove(force=True)
        return ContainerExit(exit_code=state.get("ExitCode"), oom_killed=bool(state.get("OOMKilled")))
