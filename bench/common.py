"""What every bench shares: its command line (``--out``, ``--quick``) and its results, written as
results.json and results.md with the command, the machine, the date and the code's revision."""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
FLOWPO = Path(sys.executable).parent / "flowpo"  # this environment's CLI
MODEL = "~/.cache/flowpo/models/SmolLM2-135M-Instruct"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raylet_ports() -> list[str]:
    """`ray start` flags giving a raylet ports of its own: two nodes on one machine must not share one."""
    flags = ["--node-manager-port", "--object-manager-port", "--dashboard-agent-listen-port",
             "--dashboard-agent-grpc-port", "--runtime-env-agent-port", "--metrics-export-port"]
    return [arg for flag in flags for arg in (flag, str(free_port()))]


def parser(name: str, doc: str, quick: str = "") -> argparse.ArgumentParser:
    """The bench's parser: ``--out`` (default bench/results/<name>/) and, given its help, ``--quick``."""
    p = argparse.ArgumentParser(prog=f"python -m bench.{name}", description=doc,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=out_path, default=RESULTS / name.replace("_", "-"),
                   help="folder for results.json and results.md (relative: to the repository root); "
                        "default %(default)s")
    if quick:
        p.add_argument("--quick", action="store_true", help=quick)
    return p


def out_path(text: str) -> Path:
    path = Path(text).expanduser()
    return path if path.is_absolute() else REPO / path


def command(name: str, argv: list[str] | None) -> str:
    """The command that ran the bench, as a user types it from the repository root."""
    return shlex.join([".venv/bin/python", "-m", f"bench.{name}", *(sys.argv[1:] if argv is None else argv)])


def machine() -> dict:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")),
                 platform.processor() or platform.machine())
    mem = next((int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                if line.startswith("MemTotal")), 0)
    git = ["git", "-C", str(REPO)]
    rev = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                           text=True).stdout.splitlines()
    return {"host": platform.node(), "cpus": os.cpu_count(), "cpu_model": model, "memory_gib": round(mem / 2**20, 1),
            "python": platform.python_version(), "git": rev + (f" + {len(dirty)} modified files" if dirty else ""),
            "load_average": [round(x, 2) for x in os.getloadavg()]}


def machine_line(m: dict) -> str:
    load = m.get("load_average", m.get("load_average_at_start"))
    return (f"{m['cpus']} CPUs ({m['cpu_model']}), {m['memory_gib']} GiB, Python {m.get('python', '?')}"
            + (f", load average {', '.join(map(str, load))}" if load else "") + f"; code {m['git']}")


def write_results(out_dir: Path, name: str, results: dict, table_md: str, command: str, *, title: str = "") -> Path:
    """results.json (the command, date, machine and ``results``) and results.md (the same header, then
    ``table_md``) in ``out_dir``; ``results`` may carry its own "machine" (with more in it)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    record = {"bench": name, "command": command,
              "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "machine": machine(), **results}
    (out_dir / "results.json").write_text(json.dumps(record, indent=1, default=str) + "\n")
    (out_dir / "results.md").write_text(results_md(record, table_md, title or f"bench.{name}"))
    print(f"\nwritten: {out_dir / 'results.json'}, {out_dir / 'results.md'}")
    return out_dir


def results_md(record: dict, table_md: str, title: str) -> str:
    """The page: a title, the command, the date and machine (a dict, or an older result's line), the table."""
    m = record["machine"]
    return (f"# {title}\n\n`{record['command']}`\n\n{record['date']}; "
            f"{machine_line(m) if isinstance(m, dict) else m}.\n\n{table_md.rstrip()}\n")


def bar_plot(path: Path, title: str, ylabel: str, bars: dict[str, dict[str, float]]) -> str:
    """Grouped bars, one group per key of ``bars`` and one colour per key within; the markdown that shows it."""
    from matplotlib.figure import Figure

    series = list(dict.fromkeys(s for group in bars.values() for s in group))
    width = 0.8 / max(1, len(series))
    fig = Figure(figsize=(1.6 + 1.2 * len(bars) * max(1, len(series)) / 2, 3.6))
    ax = fig.subplots()
    for i, s in enumerate(series):
        xs = [g + (i - (len(series) - 1) / 2) * width for g in range(len(bars))]
        ax.bar(xs, [group.get(s, 0.0) for group in bars.values()], width, label=s)
    ax.set_xticks(range(len(bars)), list(bars))
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    if len(series) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return f"![{title}]({path.name})"
