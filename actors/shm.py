"""Shared memory that a dead run left on this node.

A vLLM engine talks to its processes through ring buffers (``psm_*``) and locks (``sem.*``) in
/dev/shm. FlowPO's shutdown and a detached resource tracker unlink them (actors/llm_server.py), but a
node whose processes were all killed at once (a SIGKILLed driver with its own Ray, a lost node that
comes back) keeps them: hundreds of MB each time, piling up on a long-lived node. Every engine maps
its entries while it lives, so an entry of ours that no process maps, and that has not just been
made, belongs to nobody: the next engine to start on the node removes it.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

SHM = Path("/dev/shm")
PREFIXES = ("psm_", "sem.")  # multiprocessing.shared_memory's and POSIX semaphores' names
# An entry is made, then mapped a moment later; an unmapped one this young may be on its way.
MIN_AGE_S = 60.0


def mapped_inodes(proc: Path = Path("/proc")) -> set[int]:
    """Inodes of /dev/shm entries that some process maps (those we may read: ours, or all as root)."""
    inodes: set[int] = set()
    for pid in proc.iterdir():
        if not pid.name.isdigit():
            continue
        try:
            lines = (pid / "maps").read_text().splitlines()
        except OSError:  # ended meanwhile, or another user's
            continue
        for fields in map(str.split, lines):
            if len(fields) > 5 and fields[5].startswith(f"{SHM}/"):
                inodes.add(int(fields[4]))
    return inodes


def orphaned_entries(shm: Path = SHM, *, min_age_s: float = MIN_AGE_S, now: float | None = None) -> list[Path]:
    """This user's ``psm_*`` and ``sem.*`` entries that no process maps and that are ``min_age_s`` old."""
    now = time.time() if now is None else now
    mapped = mapped_inodes()
    found = []
    for entry in os.scandir(shm):
        if not entry.name.startswith(PREFIXES):
            continue
        try:
            stat = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if stat.st_uid == os.getuid() and stat.st_ino not in mapped and now - stat.st_mtime >= min_age_s:
            found.append(Path(entry.path))
    return sorted(found)


def remove_orphaned_shm(shm: Path = SHM, *, min_age_s: float = MIN_AGE_S) -> list[str]:
    """Remove what ``orphaned_entries`` finds; returns the names removed."""
    removed = []
    for path in orphaned_entries(shm, min_age_s=min_age_s):
        try:
            path.unlink()
            removed.append(path.name)
        except FileNotFoundError:  # its own tracker got there first
            continue
    if removed:
        print(f"removed {len(removed)} shared-memory entries in {shm} that an earlier, dead run left on this node")
    return removed


# An engine's processes carry their owner's pid in this variable (set while the owner starts them),
# so that the next start on the node can tell a dead owner's engines from anyone else's.
OWNER_ENV = "FLOWPO_ENGINE_OWNER"


def kill_orphaned_engines(proc: Path = Path("/proc")) -> list[int]:
    """SIGKILL processes of this user whose FLOWPO_ENGINE_OWNER is a pid that is gone: a vLLM engine
    core and its workers outlive a generator killed by SIGKILL (they hold GBs of memory and the ring
    buffers ``remove_orphaned_shm`` cannot remove while they map them)."""
    import signal

    from flowpo.node_tmp import pid_alive

    marker, killed = f"{OWNER_ENV}=".encode(), []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if entry.stat().st_uid != os.getuid():
                continue
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        owner = next((v[len(marker):] for v in environ if v.startswith(marker)), b"")
        if owner.isdigit() and not pid_alive(int(owner)):
            try:
                os.kill(int(entry.name), signal.SIGKILL)
                killed.append(int(entry.name))
            except ProcessLookupError:
                continue
    if killed:
        print(f"killed {len(killed)} engine processes that a dead generator left on this node: {killed}")
    return killed
