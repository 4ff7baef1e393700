"""Shared memory a dead run left (issue 26: two vLLM ring buffers of 240 and 160 MB and a semaphore
after a SIGKILLed driver) is removed by the next engine that starts on the node; what a live process
maps, what was just made and what is not an engine's kind of entry stay."""
from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time

from actors.shm import SHM, orphaned_entries, remove_orphaned_shm

HOLDER = """
import mmap, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR)
held = mmap.mmap(fd, 4096)
print("mapped", flush=True)
time.sleep(600)
"""


def make(name: str, age_s: float):
    path = SHM / name
    path.write_bytes(b"\0" * 4096)
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


def test_only_unmapped_old_engine_entries_are_removed():
    tag = secrets.token_hex(4)
    dead_ring = make(f"psm_{tag}dead", age_s=3600)  # a killed engine's ring buffer
    dead_lock = make(f"sem.mp-{tag}", age_s=3600)  # and its lock
    fresh = make(f"psm_{tag}fresh", age_s=1)  # made a moment ago: about to be mapped
    live = make(f"psm_{tag}live", age_s=3600)  # old, but a running engine maps it
    other = make(f"flowpo-{tag}", age_s=3600)  # not an engine's kind of entry
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(live)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "mapped"
        ours = {p.name for p in orphaned_entries()} & {p.name for p in (dead_ring, dead_lock, fresh, live, other)}
        assert ours == {dead_ring.name, dead_lock.name}
        removed = remove_orphaned_shm()
        assert {dead_ring.name, dead_lock.name} <= set(removed)
        assert not dead_ring.exists() and not dead_lock.exists()
        assert fresh.exists() and live.exists() and other.exists()
    finally:
        holder.kill()
        holder.wait()
        for path in (dead_ring, dead_lock, fresh, live, other):
            path.unlink(missing_ok=True)


# A "generator" that starts an "engine" carrying its pid, then dies at once (as a SIGKILLed one does).
DYING_OWNER = """
import os, subprocess, sys
engine = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          env={**os.environ, "FLOWPO_ENGINE_OWNER": str(os.getpid())})
print(engine.pid, flush=True)
os._exit(0)
"""


def test_an_engine_whose_generator_died_is_killed_and_a_live_ones_is_not():
    import psutil

    from actors.shm import kill_orphaned_engines

    owner = subprocess.run([sys.executable, "-c", DYING_OWNER], capture_output=True, text=True, timeout=60)
    orphan = psutil.Process(int(owner.stdout.split()[0]))
    kept = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                            env={**os.environ, "FLOWPO_ENGINE_OWNER": str(os.getpid())})  # its owner lives
    try:
        killed = kill_orphaned_engines()
        assert orphan.pid in killed and kept.pid not in killed
        orphan.wait(10)
        assert kept.poll() is None
    finally:
        kept.kill()
        kept.wait()
        if orphan.is_running():
            orphan.kill()
