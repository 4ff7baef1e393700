"""The executor LLM: a vLLM OpenAI-compatible server, hosted by a Ray actor for its lifetime."""
from __future__ import annotations

import ctypes
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from flowpo.errors import FlowPOError
from flowpo.node_tmp import make_node_tmp
from flowpo.precision import local_engine_dtype

PR_SET_PDEATHSIG = 1
LOG_TAIL_BYTES = 4000  # of the server's log in an error message
LOG_PREFIX = "flowpo-executor-llm-"
# vLLM's api_server gives its engine process this long to stop (its default, 0, kills it at once,
# before the engine has unlinked its shared memory); stop() waits longer than that.
ENGINE_SHUTDOWN_S = 30
# multiprocessing's resource tracker, started in a session of its own (out of the actor's process
# group) and forked once more (so that it is nobody's child in the actor's tree).
TRACKER = """
import os, sys
if os.fork():
    os._exit(0)
from multiprocessing.resource_tracker import main
main(int(sys.argv[1]))
"""
# The api_server, in a process that registers its shared memory with a tracker of that kind.
SERVE = ("from actors.llm_server import use_detached_resource_tracker; use_detached_resource_tracker(); "
         "import runpy; runpy.run_module('vllm.entrypoints.openai.api_server', run_name='__main__', alter_sys=True)")


# The api_server runs under a keeper, the actor's child. Ray SIGKILLs an actor's child processes as the
# actor ends (a driver killed, the actor killed), and a SIGKILLed api_server leaves its engine-core
# process running, orphaned, with the resource tracker that waits for it. Under the keeper, the
# api_server is a grandchild in a session of its own, out of reach of those kills: when the keeper
# dies, however it dies, the api_server gets SIGTERM (PR_SET_PDEATHSIG) and stops its engine as vLLM
# means it to. A SIGTERM to the keeper (LLMServer.stop) is passed on; it exits with the server's status.
KEEPER = """
import ctypes, os, signal, subprocess, sys
keeper = os.getpid()
def die_with_keeper():
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != keeper:  # the keeper died before the line above: no signal will come
        os.kill(os.getpid(), signal.SIGTERM)
server = subprocess.Popen(sys.argv[1:], start_new_session=True, preexec_fn=die_with_keeper)
signal.signal(signal.SIGTERM, lambda *_: server.terminate())
code = server.wait()
sys.exit(code if code >= 0 else 128 - code)
"""


def use_detached_resource_tracker() -> None:
    """Have this process, and the processes it spawns (a vLLM engine's), register their shared memory
    and semaphores with a resource tracker that outlives them however they end.

    multiprocessing's tracker unlinks what they registered and did not unlink once all of them are
    gone: a vLLM engine's message queues (``psm_*``) and locks (``sem.*``) after a kill. But it runs
    as this process's child, and Ray kills an actor's child processes as the actor ends, then
    signals its process group (SIGKILL when the node stops): the tracker died with the engine it
    tracked, before it could unlink anything."""
    from multiprocessing import resource_tracker

    tracker = resource_tracker._resource_tracker
    with tracker._lock:
        if tracker._fd is not None:  # already running: what was registered stays with it
            return
        read, write = os.pipe()
        subprocess.run([sys.executable, "-I", "-S", "-c", TRACKER, str(read)], pass_fds=[read],
                       start_new_session=True, check=True)
        os.close(read)
        # As multiprocessing.spawn sets up a process it starts: use a tracker another process runs.
        tracker._fd, tracker._pid = write, None


# vLLM runs a one-device engine's model in its engine-core process (the "uni" executor) when this is
# "0"; with "1", its CPU platform forces the multiprocess executor, which spawns one more process that
# imports vLLM and torch again. Measured with the generator on this 2-core machine under load: engine
# start 36-43 s -> 26-29 s, about 750 MB less memory per engine, the same seeded workflows. A
# tensor-parallel engine asks for "mp" itself (actors.generator.engine_kwargs), so this changes
# nothing there; the driver decides (its environment may say "1") and hands it to each engine.
ENGINE_PROCESSES_ENV = "VLLM_ENABLE_V1_MULTIPROCESSING"


# vLLM's CPU backend runs an OpenMP thread on every core of the machine ("auto"), whatever the engine
# reserved. Two engines on one node (examples/local.yaml's generator and executor LLM) then each wait
# in every parallel step for a thread that the other engine's threads keep off the cores, spinning
# as they wait. Two servers answering 8 calls each at once on this 2-core machine: 100 s and 105 s,
# about 100 CPU-s each, with vLLM's default; 8.0 s each with one thread (bench/results/engine-threads/).
# So an engine on CPUs computes on as many threads as CPUs it reserves, at least one (Ray's rule for
# OMP_NUM_THREADS in an actor). A binding set in the driver's environment is passed on instead.
THREADS_BIND_ENV = "VLLM_CPU_OMP_THREADS_BIND"


def engine_env(num_cpus: float = 1.0) -> dict[str, str]:
    """What the driver hands every vLLM engine it starts: its processes and, on CPUs, its threads
    (see above; on a GPU, vLLM reads neither thread setting for its model)."""
    env = {ENGINE_PROCESSES_ENV: os.environ.get(ENGINE_PROCESSES_ENV) or "0"}
    if os.environ.get(THREADS_BIND_ENV):
        return {**env, THREADS_BIND_ENV: os.environ[THREADS_BIND_ENV]}
    return {**env, THREADS_BIND_ENV: "nobind", "OMP_NUM_THREADS": str(max(1, math.floor(num_cpus)))}


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
                 kv_cache_gb: float, gpu_memory_utilization: float, enforce_eager: bool, log_path: str = "",
                 dtype: str = "auto", env: dict[str, str] | None = None):
        self.model_path = model_path
        self.env = engine_env() if env is None else env  # the driver's choice (engine_env), for the server
        self.served_name = served_name
        self.host = host
        self.max_model_len = max_model_len
        self.kv_cache_gb = kv_cache_gb
        self.gpu_memory_utilization = gpu_memory_utilization
        self.enforce_eager = enforce_eager
        self.dtype = dtype  # as configured; command() decides it for this node (flowpo.precision)
        # On the server's own node: "" makes a temporary file there on start(). The driver's run
        # directory is on another machine; it gets the log through log_text().
        self.log_path = Path(log_path) if log_path else None
        self._own_log = False  # a temporary file of this node's, removed by take_log()
        self.process: subprocess.Popen | None = None
        self.base_url = ""

    def command(self, port: int) -> list[str]:
        # The module rather than the `vllm` console script, which fails under vllm-cpu (it looks up
        # the distribution `vllm`).
        argv = [sys.executable, "-c", KEEPER, sys.executable, "-c", SERVE, "--model", self.model_path,
                "--served-model-name", self.served_name, "--host", self.host, "--port", str(port),
                "--max-model-len", str(self.max_model_len), "--enable-prefix-caching",
                "--shutdown-timeout", str(ENGINE_SHUTDOWN_S), "--dtype", local_engine_dtype(self.dtype)]
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
        from actors.shm import remove_orphaned_shm
        from flowpo.model import resolve_model

        remove_orphaned_shm()  # what a dead run's engine left on this node
        self.model_path = str(resolve_model(self.model_path))  # a directory or a hub id, resolved on this node
        port = free_port(self.host)
        if self.log_path is None:  # in a directory of this process's, swept once a killed one is gone
            self.log_path, self._own_log = make_node_tmp(LOG_PREFIX) / "executor_llm.log", True
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(self.command(port), stdout=log, stderr=subprocess.STDOUT,
                                        env={**os.environ, **self.env}, preexec_fn=_die_with_parent)
        advertised = self.host
        if advertised == "0.0.0.0":
            import ray

            advertised = ray.util.get_node_ip_address()
        self.base_url = f"http://{advertised}:{port}/v1"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise FlowPOError(f"the executor LLM server exited with {self.process.returncode}; "
                                  f"the end of its log ({self.where()}):\n{self.log_text(LOG_TAIL_BYTES)}")
            try:
                with urllib.request.urlopen(f"http://{advertised}:{port}/health", timeout=2) as reply:
                    if reply.status == 200:
                        return self.base_url
            except OSError:
                time.sleep(1.0)
        self.stop()
        raise FlowPOError(f"the executor LLM server did not answer within {timeout_s:.0f} s; the end of its log "
                          f"({self.where()}):\n{self.log_text(LOG_TAIL_BYTES)}")

    def where(self) -> str:
        """The log's path and the node it is on (the driver may be on another machine)."""
        return f"{self.log_path} on {socket.gethostname()}"

    def log_text(self, max_bytes: int = 0) -> str:
        """The server's log so far (its last ``max_bytes``; 0: all of it), for the driver to keep."""
        if self.log_path is None or not self.log_path.is_file():
            return ""
        with open(self.log_path, "rb") as log:
            if max_bytes:
                log.seek(max(0, self.log_path.stat().st_size - max_bytes))
            return log.read().decode("utf-8", "replace")

    def take_log(self) -> str:
        """All of the log, for the driver's run directory; a temporary log of this node's is removed."""
        text = self.log_text()
        if self._own_log and self.log_path is not None:
            shutil.rmtree(self.log_path.parent, ignore_errors=True)
            self.log_path, self._own_log = None, False
        return text

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(ENGINE_SHUTDOWN_S + 15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
