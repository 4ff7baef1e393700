"""A directory a process made on its node and could not remove (a Ray actor ended by ray.kill or
SIGKILL runs no atexit hook) is removed by the next process that makes one of its kind."""
from __future__ import annotations

import os
import subprocess
import sys

from flowpo.node_tmp import make_node_tmp, sweep_dead


def test_a_dead_processs_directory_goes_and_a_live_ones_stays(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    gone = tmp_path / f"flowpo-test-{dead.stdout.strip()}-abc"  # its pid has exited
    gone.mkdir()
    (gone / "file").write_text("left by a killed actor")
    live = tmp_path / f"flowpo-test-{os.getppid()}-def"  # our parent is alive
    live.mkdir()
    other = tmp_path / "flowpo-test-notapid"
    other.mkdir()
    made = make_node_tmp("flowpo-test-")
    assert made.parent == tmp_path and made.name.startswith(f"flowpo-test-{os.getpid()}-")
    assert not gone.exists() and live.exists() and other.exists()
    assert sweep_dead("flowpo-test-", tmp_path) == []  # ours is alive too
