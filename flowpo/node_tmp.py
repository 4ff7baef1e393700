"""Temporary directories a process makes on its own node, named by its pid, so that the next
process on the node can remove what a dead one left.

A Ray actor ended by ``ray.kill`` or SIGKILL runs no ``atexit`` hook: the sandbox runtime an
executor stages, a generator's adapter copies, root's bwrap copy would stay in /tmp for good, one
set per actor start. Each is made as ``<prefix><pid>-<random>``; making one first removes those of
the same prefix whose process is gone (a pid reused since is left alone: nothing is lost but space).
"""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def sweep_dead(prefix: str, root: str | Path | None = None) -> list[Path]:
    """Remove ``root/<prefix><pid>-*`` directories of this user whose process is gone."""
    removed = []
    for path in Path(root or tempfile.gettempdir()).glob(f"{prefix}*"):
        pid = path.name[len(prefix):].split("-", 1)[0]
        try:
            mine = path.lstat().st_uid == os.getuid()
        except OSError:
            continue
        if pid.isdigit() and mine and not pid_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def make_node_tmp(prefix: str) -> Path:
    """A new ``<prefix><pid>-*`` directory, after sweeping the dead ones; removed at a clean exit too."""
    sweep_dead(prefix)
    path = Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-"))
    atexit.register(shutil.rmtree, path, True)
    return path
