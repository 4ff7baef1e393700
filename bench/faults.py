"""Faults made from outside a run, as a crash, the kernel's OOM killer or a lost machine makes them,
and what a run leaves behind once it has ended: bench/chaos.py's and tests/test_chaos.py's tools.

A run is watched, never asked: its processes are found by their environment and titles, killed with
SIGKILL by pid, its sandboxes with `docker kill`; nothing goes through FlowPO's own API.

Every process of a run carries ``TAG_ENV=<tag>`` in its environment: the bench sets it on the driver,
and Ray's daemons, its workers, the vLLM engines, the learner and the `docker run` clients inherit it.
That tells a run's processes from the test suite's or another run's on the same machine (as
tests/test_cluster_job.py tells its cluster's). The run's temporary directory (TMPDIR) is its own as
well: Ray's session, the sandboxes' staged runtime (which every container mounts: that is how a
container is known as the run's) and every ``flowpo-*`` directory land there.
"""
from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

TAG_ENV = "FLOWPO_CHAOS_TAG"
SHM = Path("/dev/shm")
SHM_PREFIXES = ("psm_", "sem.")  # vLLM's ring buffers and locks (actors/shm.py)
SANDBOX_LABEL = "flowpo.sandbox=1"

# What each fault kills. Ray titles an actor's worker process ``ray::[NAME:]Class[.method]``.
ACTOR_TITLES = {
    "generator": re.compile(r"^ray::(\S+:)?Generator\b"),
    "executor": re.compile(r"^ray::(\S+:)?Executor\b"),
    "evaluator": re.compile(r"^ray::(\S+:)?Evaluator\b"),
    "learner": re.compile(r"^ray::(\S+:)?RayTrainWorker\b"),  # a Ray Train worker of the warm learner
}
# sandbox: one running container of the run; containers: all of them at once, as a Docker engine
# that restarts kills them (the engine itself is shared with the rest of the machine: it stays up).
KINDS = ("generator", "executor", "evaluator", "sandbox", "containers", "learner", "driver")


@dataclass
class Fault:
    """One fault of the plan: ``kind`` fires once the run's samples.jsonl holds ``after_samples``
    samples, ``delay_s`` later, on a target found then (or as soon as one appears)."""
    kind: str
    after_samples: int = 0
    delay_s: float = 0.0
    # what happened
    outcome: str = "planned"  # injected, or no_target (the run ended before a target appeared)
    at_s: float | None = None  # seconds into the chaos run
    samples_then: int | None = None  # samples recorded when it was injected
    leg: int | None = None  # the driver it hit: 0 the first, 1 the first resume, ...
    target: str = ""
    due_at: float | None = field(default=None, repr=False)  # monotonic time it became due

    def record(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "due_at"}


def started(proc: psutil.Process) -> float:
    try:
        return proc.create_time()
    except psutil.Error:
        return 0.0


def title(proc: psutil.Process) -> str:
    try:
        return " ".join(" ".join(proc.cmdline()).split())  # one line: a `python -c` script has several
    except psutil.Error:
        return ""


def describe(proc: psutil.Process) -> str:
    """pid, parent pid, age and title: enough to tell an orphan (parent 1) and where it came from."""
    try:
        return f"{proc.pid} (parent {proc.ppid()}, {time.time() - proc.create_time():.0f} s old) {title(proc)[:140]}"
    except psutil.Error:
        return f"{proc.pid} (ended)"


class Watch:
    """One run's processes, sandbox containers, shared memory and temporary files, seen from outside.
    ``look`` (call it every few seconds while the run lives) remembers every pid of the run and every
    /dev/shm entry its processes map, so that what is left at the end can be told as the run's."""

    def __init__(self, tag: str, tmp: Path):
        self.marker = f"{TAG_ENV}={tag}\0".encode()
        self.tmp = Path(tmp)
        self.shm_before = set(os.listdir(SHM))
        self.pids: set[int] = set()
        self.shm: set[str] = set()

    def processes(self) -> list[psutil.Process]:
        found = []
        for proc in psutil.process_iter():
            try:
                if proc.pid != os.getpid() and self.marker in Path(f"/proc/{proc.pid}/environ").read_bytes():
                    found.append(proc)
            except OSError:
                continue
        return found

    def look(self) -> list[psutil.Process]:
        procs = self.processes()
        for proc in procs:
            self.pids.add(proc.pid)
            self.shm |= {n for n in shm_mapped_by(proc.pid) if n.startswith(SHM_PREFIXES)}
        return procs

    def actors(self, kind: str, since: float = 0.0) -> list[psutil.Process]:
        """The run's live worker processes of ``kind`` (generator, executor, evaluator, learner) started
        at or after ``since`` (epoch seconds: the current driver's, not one a killed driver left)."""
        pattern = ACTOR_TITLES[kind]
        return [p for p in self.processes() if pattern.search(title(p)) and started(p) >= since]

    def containers(self) -> list[dict]:
        """The run's sandbox containers, running or not: {id, name, running, status, owner_pid}. A
        container is the run's when it mounts from the run's temporary directory (the staged runtime);
        its owner label names the process that started it."""
        ids = docker("ps", "-a", "-q", "--no-trunc", "--filter", f"label={SANDBOX_LABEL}").split()
        if not ids:
            return []
        try:
            inspected = json.loads(docker("inspect", *ids) or "[]")
        except json.JSONDecodeError:  # one went away between ps and inspect: next look
            inspected = []
        ours = []
        for c in inspected:
            owner = (c.get("Config", {}).get("Labels") or {}).get("flowpo.owner", "")
            owner_pid = int(owner.rsplit(":", 1)[-1]) if owner.rsplit(":", 1)[-1].isdigit() else -1
            mounts = [m.get("Source", "") for m in c.get("Mounts", [])]
            if any(m.startswith(f"{self.tmp}/") for m in mounts):
                state = c.get("State", {})
                ours.append({"id": c["Id"], "name": c.get("Name", "").lstrip("/"),
                             "running": bool(state.get("Running")), "status": state.get("Status", ""),
                             "owner_pid": owner_pid})
        return ours

    def leftovers(self, grace_s: float = 60.0) -> dict:
        """What the run left once its driver ended: processes (after up to ``grace_s`` for them to
        exit), sandbox containers, its /dev/shm entries, flowpo-* entries in its temporary directory."""
        deadline = time.monotonic() + grace_s
        while (procs := self.look()) and time.monotonic() < deadline:
            time.sleep(2)
        now_shm = set(os.listdir(SHM))
        mapped = mapped_shm_names()
        new_unmapped = {n for n in now_shm - self.shm_before - self.shm
                        if n.startswith(SHM_PREFIXES) and n not in mapped}
        entries = sorted(os.listdir(self.tmp)) if self.tmp.is_dir() else []
        return {
            "processes": [describe(p) for p in procs],
            "containers": [f"{c['name']} ({c['status']})" for c in self.containers()],
            "shm": sorted(self.shm & now_shm),  # entries the run's processes mapped, still there
            # new since the watch began, mapped by no one, never seen mapped by the run: the run's if it made
            # them too briefly to be seen, or another program's (the test suite's) that it left
            "shm_unattributed": sorted(new_unmapped),
            "tmp": [e for e in entries if e.startswith("flowpo-")],
            # for the record, not counted: Ray's session directory, vLLM's sockets, torch's caches
            "tmp_other": [e for e in entries if not e.startswith("flowpo-")],
        }

    def clean_up(self, left: dict) -> None:
        """Remove what ``leftovers`` found (the machine is shared): the run's processes, containers and
        shared memory. The temporary directory goes with the bench's root."""
        for proc in self.processes():
            try:
                proc.kill()
            except psutil.Error:
                pass
        ids = [c["id"] for c in self.containers()]
        if ids:
            docker("rm", "-f", *ids)
        for name in left.get("shm", []):
            try:
                (SHM / name).unlink()
            except OSError:
                pass


def counted(left: dict) -> int:
    """How many things a run left behind (``tmp_other`` and unattributed /dev/shm entries aside)."""
    return sum(len(left[k]) for k in ("processes", "containers", "shm", "tmp"))


def shm_mapped_by(pid: int | str) -> set[str]:
    """Names of the /dev/shm entries process ``pid`` maps."""
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
    except OSError:  # ended meanwhile
        return set()
    return {line.split(f" {SHM}/", 1)[1].removesuffix(" (deleted)") for line in maps.splitlines()
            if f" {SHM}/" in line}


def mapped_shm_names() -> set[str]:
    """Every /dev/shm entry some process maps (all of them: the bench runs as the run's user or root)."""
    return set().union(*(shm_mapped_by(pid) for pid in os.listdir("/proc") if pid.isdigit()))


def docker(*args: str, timeout: float = 60) -> str:
    try:
        return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout).stdout
    except subprocess.TimeoutExpired:
        return ""


def inject(fault: Fault, watch: Watch, driver: subprocess.Popen, since: float) -> bool:
    """Kill ``fault``'s target now, if the current driver (started at ``since``, epoch seconds) has
    one: a random one of its kind, chosen by the fault's own draw; SIGKILL by pid, or `docker kill`.
    True if something was killed."""
    pick = random.Random(f"{fault.kind}:{fault.after_samples}:{fault.delay_s}")
    if fault.kind == "driver":
        os.kill(driver.pid, signal.SIGKILL)
        fault.target = f"driver pid {driver.pid}"
        return True
    if fault.kind in ("sandbox", "containers"):
        current = {p.pid for p in watch.processes() if started(p) >= since}
        running = sorted((c for c in watch.containers() if c["running"] and c["owner_pid"] in current),
                         key=lambda c: c["name"])
        if not running:
            return False
        chosen = [pick.choice(running)] if fault.kind == "sandbox" else running
        docker("kill", *[c["id"] for c in chosen])
        fault.target = ", ".join(c["name"] for c in chosen)
        return True
    procs = sorted(watch.actors(fault.kind, since), key=lambda p: p.pid)
    if not procs:
        return False
    proc = pick.choice(procs)
    fault.target = f"{title(proc)[:80]} pid {proc.pid}"
    try:
        proc.send_signal(signal.SIGKILL)
    except psutil.Error:
        return False
    return True
