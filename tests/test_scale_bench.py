"""bench/scale.py's pure parts on fixed inputs, with the expected figures worked out by hand: the
ideal throughput, the driver's cost over a run and per window, the table and the flatness lines;
and the recorded workflows it makes, read back by the replay's own reader. No timing is asserted
(the bench itself measures; `.venv/bin/python -m bench.scale --quick` runs it in a few minutes).
"""
from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter

import pytest

from bench.scale import recorded_samples, workflow_code
from bench.scale_measure import (
    Meter,
    Setup,
    cpu_per_item,
    flatness,
    growth,
    ideal_rate,
    parse_setup,
    process_kind,
    render_table,
    steady,
    windows,
)
from driver.execute import Selection, plan_replay, read_records
from flowpo.config import TaskConfig
from flowpo.operators import Custom
from flowpo.tasks import load_problems
from flowpo.validate import validate_workflow


def test_the_ideal_is_every_sandbox_always_waiting_on_the_api():
    # 0.5–3 s uniform: 1.75 s a call, 2 calls: 3.5 s an execution; 8 sandboxes: 8 / 3.5 a second
    assert ideal_rate(8, 2, (0.5, 3.0)) == pytest.approx(2.285714, rel=1e-6)
    assert ideal_rate(128, 2, (0.5, 3.0)) == pytest.approx(36.571429, rel=1e-6)
    assert ideal_rate(32, 2, (0.2, 0.2)) == pytest.approx(80.0)  # 32 / 0.4
    # 300 requests per 10 s = 30 calls/s = 15 executions/s of 2 calls: the limit binds below 36.57
    assert ideal_rate(128, 2, (0.5, 3.0), rpm=300, window_s=10) == pytest.approx(15.0)
    # 1000 per 10 s = 50 executions/s: above what 128 sandboxes can ask for, so it does not bind
    assert ideal_rate(128, 2, (0.5, 3.0), rpm=1000, window_s=10) == pytest.approx(36.571429, rel=1e-6)


def test_setups_parse_and_a_bad_one_names_the_form():
    assert parse_setup("4x8:2000") == Setup(4, 8, 2000)
    setup = parse_setup("8x16:1000:rpm300:unshared")
    assert setup == Setup(8, 16, 1000, rpm=300, shared=False)
    assert (setup.sandboxes, setup.label) == (128, "8x16 rpm300 unshared")
    for bad in ("8x16", "8:1000", "0x8:100", "8x16:1000:fast"):
        with pytest.raises(SystemExit, match=rf"--setups '{bad}': expected EXECUTORSxSANDBOXES:ITEMS"):
            parse_setup(bad)


# (monotonic s, driver CPU s, RSS MB, items done), as the meter reads them
READINGS = [(0.0, 1.0, 100.0, 0), (1.0, 1.2, 110.0, 0), (2.0, 1.5, 120.0, 10), (3.0, 1.6, 125.0, 30),
            (4.0, 1.9, 130.0, 50), (5.0, 2.0, 131.0, 50)]


def test_the_steady_part_runs_from_the_first_item_to_the_moment_the_last_arrived():
    rate, ms, peak = steady(READINGS)
    # from (2 s, 10 items, 1.5 CPU s) to (4 s, 50 items, 1.9 CPU s): 40 items in 2 s; 0.4 CPU s / 40
    assert rate == pytest.approx(20.0) and ms == pytest.approx(10.0)
    assert peak == 131.0  # the highest RSS of the whole replay, shutdown included
    assert steady(READINGS[:2]) == (0.0, 0.0, 0.0)  # nothing finished


def test_windows_of_items_and_their_growth():
    # from 10 items: the first window ends at the first reading past 20 (30 items, 0.1 CPU s for 20),
    # the next past 40 (50 items, 0.3 CPU s for 20); the 5 s reading adds no item
    got = windows(READINGS, 20)
    assert [w[0] for w in got] == [30, 50] and [w[2] for w in got] == [125.0, 130.0]
    assert [w[1] for w in got] == pytest.approx([5.0, 15.0])
    assert growth([5.0, 15.0]) == pytest.approx(3.0)
    assert growth([1, 2, 3, 4, 5]) == pytest.approx(3.0)  # (4 + 5) / 2 over (1 + 2) / 2; the middle is left out
    assert growth([2.0]) == 1.0 and growth([]) == 1.0


def row(**change) -> dict:
    base = {"config": "8x16", "sandboxes": 128, "items": 10000, "exec_per_s": 30.0, "ideal": 36.571428,
            "driver_ms_per_item": 3.456, "driver_peak_mb": 180.4, "server_429": 0, "broker_429": 0, "infra_failures": 0,
            "all_cpu_ms_per_item": 45.2, "load": 12.34, "window_items": 1000, "windows": []}
    return {**base, **change}


def test_the_table_line_of_a_setup():
    table = render_table([row(), row(config="8x16 rpm300 unshared", items=1000, exec_per_s=12.0, ideal=15.0,
                                     server_429=212, broker_429=200, infra_failures=3)])
    assert table.splitlines()[0].startswith("| config | sandboxes | items | exec/s | ideal | ratio | driver ms/item")
    # 30 / 36.57 = 82 %
    assert "| 8x16 | 128 | 10000 | 30.00 | 36.57 | 82% | 3.46 | 180 | 0 / 0 | 0 | 45 | 12.3 |" in table
    unshared = "| 8x16 rpm300 unshared | 128 | 1000 | 12.00 | 15.00 | 80% | 3.46 | 180 | 212 / 200 | 3 | 45 | 12.3 |"
    assert unshared in table


def test_flatness_compares_windows_and_n_with_4n():
    small = row(items=2500, driver_ms_per_item=3.2, driver_peak_mb=175.0,
                windows=[(1000, 3.0, 170.0), (2000, 3.4, 171.0)])
    big = row(windows=[(1000, 3.0, 170.0), (2000, 3.2, 171.0), (3000, 3.1, 172.0), (4000, 3.3, 172.0)])
    lines = flatness([small, big])
    assert lines[0] == ("8x16 (2500 items), per 1000: driver ms/item 3.00 3.40; RSS MB 170 171; "
                        "ms/item second half / first half 1.13")
    # (3.1 + 3.3) / (3.0 + 3.2) = 1.03
    assert lines[1].endswith("ms/item second half / first half 1.03")
    assert lines[2] == "8x16: 2500 → 10000 items: driver ms/item 3.20 → 3.46, peak RSS 175 → 180 MB"


def test_cpu_per_item_by_kind():
    names = {7: "driver"}
    assert [process_kind(7, "python", names), process_kind(8, "ray::Executor.execute_repeats", names),
            process_kind(9, "bwrap", names), process_kind(10, "python3", names)] == [
        "driver", "ray::Executor", "sandboxes", "sandboxes"]
    first = (100, Counter({"driver": 1.0, "python3": 2.0}))
    last = (300, Counter({"driver": 1.5, "python3": 6.0, "ray::Evaluator": 0.2}))
    # 200 items: python3 4 s, driver 0.5 s, the evaluator (not yet there at first) 0.2 s
    assert list(cpu_per_item(first, last).items()) == [("python3", 20.0), ("driver", 2.5), ("ray::Evaluator", 1.0)]
    assert cpu_per_item(last, last) == {}


def test_the_meter_counts_whole_lines_and_polls_once_more_at_the_last(tmp_path):
    path, polls = tmp_path / "samples.jsonl", []
    meter = Meter(path, 3, lambda final: polls.append((meter.readings[-1][3], final)), {os.getpid(): "driver"},
                  every_s=0.01, poll_every_s=3600)
    meter.start()

    def until(check):
        deadline = time.monotonic() + 30
        while not check() and time.monotonic() < deadline:
            time.sleep(0.01)

    path.write_text('{"a": 1}\n{"b"')  # one line, and half of the next (a write in progress)
    until(lambda: meter.readings and meter.readings[-1][3] == 1)
    with open(path, "a") as handle:
        handle.write(': 2}\n{"c": 3}\n')
    until(lambda: polls)
    readings = meter.stop()
    assert [r[3] for r in readings if r[3]][:1] == [1] and readings[-1][3] == 3
    assert polls == [(3, True)]  # not before: the periodic poll is an hour away
    assert [items for items, _ in meter.tree] == [1, 3] and "driver" in meter.cpu_by_kind()


def test_recorded_workflows_replay_as_recorded(tmp_path):
    problems, samples = recorded_samples(tmp_path, 12, 2, 5)
    assert recorded_samples(tmp_path, 12, 2, 5) == (problems, samples)  # cached: made once
    known = {p.problem_id: p for p in load_problems(TaskConfig(name="gsm8k", path=str(problems)))}
    assert len(known) == 500 and known["GSM8K/0"].answers == ("8",)  # 3 + 5 pens
    records = [r for _, r in read_records(samples)]
    assert [r["round"] for r in records] == [1] * 5 + [2] * 5 + [3] * 2  # 5 a round
    assert all(validate_workflow(r["workflow"]) == "" for r in records)
    plan = plan_replay(samples, Selection(rounds=frozenset({1, 2})), set(known), "gsm8k", skip_missing=False)
    assert (plan.lines, plan.selected) == (12, 10)

    asked = []  # the workflow makes exactly its 2 calls, each on the previous answer

    async def llm(prompt: str) -> str:
        asked.append(prompt)
        return f"answer {len(asked)}"

    scope = {"Custom": Custom}
    exec(workflow_code(2, 3), scope)
    answer = asyncio.run(scope["Workflow"](llm)("How many?", ""))
    assert answer == "answer 2" and len(asked) == 2
    assert asked[0].startswith("Step 1 of 2, way 3: solve it.") and asked[1].endswith("answer 1")
    assert json.loads(samples.read_text().splitlines()[0])["score"] == 0.0
