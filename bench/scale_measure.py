"""The measuring side of bench/scale.py, apart so that its pure parts are tested without Ray: the
setups, the ideal throughput, the driver's cost over the run and per window of items, the table;
and the meter, a thread of the driver that reads its CPU time, its memory and the replay's
progress while ``driver.execute.replay`` runs.
"""
from __future__ import annotations

import os
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

# ---------------------------------------------------------------------------------------------
# Setups, the ideal, the driver's cost, the table


@dataclass(frozen=True)
class Setup:
    executors: int
    per_executor: int
    items: int
    rpm: int = 0  # 0: --rpm
    shared: bool = True  # the run's shared rate limiter on

    @property
    def sandboxes(self) -> int:
        return self.executors * self.per_executor

    @property
    def label(self) -> str:
        return f"{self.executors}x{self.per_executor}" + (f" rpm{self.rpm}" if self.rpm else "") + \
            ("" if self.shared else " unshared")


SETUP = re.compile(r"(\d+)x(\d+):(\d+)(?::rpm(\d+))?(:unshared)?")


def parse_setup(text: str) -> Setup:
    """``4x8:2000[:rpm300][:unshared]``; a bad one names itself and the expected form."""
    found = SETUP.fullmatch(text)
    if not found or min(int(found[1]), int(found[2]), int(found[3])) < 1:
        raise SystemExit(f"--setups {text!r}: expected EXECUTORSxSANDBOXES:ITEMS[:rpmN][:unshared] with "
                         "counts of at least 1, e.g. 4x8:2000 or 8x16:1000:rpm300")
    return Setup(int(found[1]), int(found[2]), int(found[3]), int(found[4] or 0), not found[5])


def ideal_rate(sandboxes: int, calls: int, latency_s: tuple[float, float], rpm: int = 0,
               window_s: float = 60.0) -> float:
    """Executions/s with perfect overlap: each sandbox always waits on one of its workflow's
    ``calls`` sequential calls (mean latency the middle of the uniform range), capped by the rate
    limit (``rpm`` requests per ``window_s``; 0: none)."""
    rate = sandboxes / (calls * (latency_s[0] + latency_s[1]) / 2)
    return min(rate, rpm / window_s / calls) if rpm else rate


Reading = tuple[float, float, float, int]  # (monotonic s, driver CPU s, driver RSS MB, items done)


def steady(readings: list[Reading]) -> tuple[float, float, float]:
    """(items/s, driver CPU ms per item, peak RSS MB) from the first finished item to the last:
    start-up and shutdown are outside."""
    done = [r for r in readings if r[3] > 0]
    if not done:
        return 0.0, 0.0, 0.0
    first = done[0]
    last = next(r for r in done if r[3] == done[-1][3])  # the moment the last item arrived
    items = last[3] - first[3]
    if items <= 0 or last[0] <= first[0]:
        return 0.0, 0.0, max(r[2] for r in done)
    return items / (last[0] - first[0]), 1000 * (last[1] - first[1]) / items, max(r[2] for r in readings)


def windows(readings: list[Reading], every: int) -> list[tuple[int, float, float]]:
    """Per window of ``every`` finished items (the first from the first item): (items done at its
    end, driver CPU ms per item in it, RSS MB at its end). A last partial window is left out."""
    done = [r for r in readings if r[3] > 0]
    out, last = [], done[0] if done else None
    for r in done[1:]:
        if r[3] >= (last[3] // every + 1) * every:
            out.append((r[3], 1000 * (r[1] - last[1]) / (r[3] - last[3]), r[2]))
            last = r
    return out


def growth(values: list[float]) -> float:
    """Mean of the second half over the mean of the first (1.0: flat); 1.0 for fewer than 2."""
    half = len(values) // 2
    if half == 0 or not sum(values[:half]):
        return 1.0
    return (sum(values[-half:]) / half) / (sum(values[:half]) / half)


def render_table(rows: list[dict]) -> str:
    """One line per setup. 429s: answered by the server / met by the brokers (those they reported to
    the shared limiter; without one, their retries: the local API answers nothing else retried);
    lost: workflows unscored for the infrastructure (llm_error after the broker's last retry).
    "all ms/exec": the CPU of every process of the bench (driver, Ray, actors, sandboxes, server)
    per execution: the machine's CPUs cap exec/s near CPUs / that."""
    lines = ["| config | sandboxes | items | exec/s | ideal | ratio | driver ms/item | driver peak MB "
             "| 429s server / brokers | lost | all ms/exec | load |", "|---|" + "---:|" * 11]
    for r in rows:
        lines.append(f"| {r['config']} | {r['sandboxes']} | {r['items']} | {r['exec_per_s']:.2f} | {r['ideal']:.2f} "
                     f"| {r['exec_per_s'] / r['ideal']:.0%} | {r['driver_ms_per_item']:.2f} "
                     f"| {r['driver_peak_mb']:.0f} | {r['server_429']} / {r['broker_429']} | {r['infra_failures']} "
                     f"| {r['all_cpu_ms_per_item']:.0f} | {r['load']:.1f} |")
    return "\n".join(lines)


def flatness(rows: list[dict]) -> list[str]:
    """Whether the driver's cost grows as items are done: per setup, its CPU per item and its RSS
    window by window; and each setup run with N and with at least 4N items, side by side."""
    lines = []
    for r in rows:
        if len(r["windows"]) >= 2:
            ms = [w[1] for w in r["windows"]]
            lines.append(f"{r['config']} ({r['items']} items), per {r['window_items']}: driver ms/item "
                         f"{' '.join(f'{m:.2f}' for m in ms)}; RSS MB {' '.join(f'{w[2]:.0f}' for w in r['windows'])}; "
                         f"ms/item second half / first half {growth(ms):.2f}")
    for small in rows:
        for big in rows:
            if small["config"] == big["config"] and big["items"] >= 4 * small["items"]:
                lines.append(f"{small['config']}: {small['items']} → {big['items']} items: driver ms/item "
                             f"{small['driver_ms_per_item']:.2f} → {big['driver_ms_per_item']:.2f}, peak RSS "
                             f"{small['driver_peak_mb']:.0f} → {big['driver_peak_mb']:.0f} MB")
    return lines


# ---------------------------------------------------------------------------------------------
# The meter


def rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


SANDBOX_COMMANDS = {"bwrap", "python3"}  # a process sandbox: bubblewrap, then the system python3 of its jobs


def process_kind(pid: int, comm: str, names: dict[int, str]) -> str:
    """What a process is, for the CPU breakdown: named by pid (the driver, the server), a sandbox's,
    else its command name (Ray's ``ray::Executor.execute_repeats``-like names lose the method)."""
    if pid in names:
        return names[pid]
    return "sandboxes" if comm in SANDBOX_COMMANDS else comm.split(".")[0]


def tree_cpu_s(root: int, names: dict[int, str]) -> Counter:
    """CPU seconds of ``root`` and every live process under it by kind, with the children they
    reaped (utime + stime + cutime + cstime): the driver, Ray, the actors, their sandboxes (process
    backend: Docker's run under containerd, outside the tree), the server."""
    parent, times = {}, {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # ended meanwhile
            continue
        pid, fields = int(stat.parent.name), text[text.rindex(")") + 2:].split()  # fields from 3 (state) on
        parent[pid] = int(fields[1])
        times[pid] = (process_kind(pid, text[text.index("(") + 1:text.rindex(")")], names),
                      sum(map(int, fields[11:15])) / os.sysconf("SC_CLK_TCK"))
    tree, grew = {root}, True
    while grew:
        more = {pid for pid, up in parent.items() if up in tree} - tree
        tree, grew = tree | more, bool(more)
    total = Counter()
    for pid in tree & set(times):
        total[times[pid][0]] += times[pid][1]
    return total


def cpu_per_item(first: tuple[int, Counter], last: tuple[int, Counter]) -> dict[str, float]:
    """CPU ms per item by kind between two (items done, CPU s by kind) snapshots, largest first."""
    items = last[0] - first[0]
    if items <= 0:
        return {}
    kinds = {kind: 1000 * (last[1][kind] - first[1][kind]) / items for kind in last[1]}
    return dict(sorted(kinds.items(), key=lambda kv: -kv[1]))


class Meter(threading.Thread):
    """Every ``every_s``: this process's CPU time and RSS, and the lines the replay has written;
    the whole process tree's CPU (``names``: pid -> kind) at the first item and at the last
    (``expect``). ``poll(final)`` runs every ``poll_every_s`` once items arrive, and once more
    (final) at the last item, while the actors are still up (the replay stops them before it returns)."""

    def __init__(self, path: Path, expect: int, poll, names: dict[int, str], every_s: float = 0.1,
                 poll_every_s: float = 2.0):
        super().__init__(daemon=True)
        self.path, self.expect, self.poll, self.names = path, expect, poll, names
        self.every_s, self.poll_every_s, self._polled = every_s, poll_every_s, time.monotonic()
        self.readings: list[Reading] = []
        self.tree: list[tuple[int, Counter]] = []  # (items done, CPU s by kind) at the first and last item
        self._halt, self._offset, self._items = threading.Event(), 0, 0

    def run(self) -> None:
        while not self._halt.wait(self.every_s):
            self.readings.append((time.monotonic(), time.process_time(), rss_mb(), self._count()))
            done = self._items >= self.expect
            if (self._items and not self.tree) or (done and len(self.tree) == 1):
                self.tree.append((self._items, tree_cpu_s(os.getpid(), self.names)))
            due = self._items and time.monotonic() - self._polled >= self.poll_every_s  # serving by then
            if self.poll is not None and (done or due):
                self._polled = time.monotonic()
                self.poll(done)
                self.poll = None if done else self.poll

    def cpu_by_kind(self) -> dict[str, float]:
        """CPU ms per item of every process of the bench, by kind, from the first item to the last."""
        return cpu_per_item(*self.tree) if len(self.tree) == 2 else {}

    def _count(self) -> int:
        if self.path.is_file():
            with open(self.path, "rb") as handle:
                handle.seek(self._offset)
                chunk = handle.read()
            self._offset += len(chunk)
            self._items += chunk.count(b"\n")
        return self._items

    def stop(self) -> list[Reading]:
        self._halt.set()
        self.join()
        return self.readings


