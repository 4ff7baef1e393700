"""The streaming engine (actors/streaming.py) on real Ray actors that do simple arithmetic, no vLLM:
stages overlap, in-flight items stay bounded per actor, an item whose actor dies is sent again
(and counted) until a limit, an item that meets a restarting actor waits without stalling the
others, barrier mode drains each stage first, and the stage clock accounts for the time."""
from __future__ import annotations

import os
import time

import psutil
import pytest
import ray

from actors.streaming import MAX_ITEM_RETRIES, Faults, Slots, Stage, StageClock, Stream, after_dry_run
from flowpo.errors import FlowPOError
from flowpo.records import Workflow

pytestmark = pytest.mark.ray


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0)
class Worker:
    """Adds one, after ``delay_s``; records how many calls it held at once; dies (the whole
    process) the first ``deaths`` times it is given a value in ``fatal``."""

    def __init__(self, delay_s: float = 0.05, fatal=(), deaths_file: str = "", node_gone: str = ""):
        if node_gone and os.path.exists(node_gone):  # a restart that never completes, as on a lost node
            time.sleep(3600)
        self.delay_s, self.fatal, self.deaths_file = delay_s, set(fatal), deaths_file
        self.active = self.peak = 0

    async def add_one(self, value: int) -> int:
        import asyncio

        if value in self.fatal and self._die_again():
            os._exit(1)
        self.active += 1
        self.peak = max(self.peak, self.active)
        await asyncio.sleep(self.delay_s)
        self.active -= 1
        return value + 1

    def _die_again(self) -> bool:
        """Deaths survive restarts in a file: ``-1`` lines mean die forever."""
        deaths = open(self.deaths_file).read().split() if os.path.exists(self.deaths_file) else []
        if deaths and deaths[0] == "forever":
            return True
        if len(deaths) >= 1:
            return False
        open(self.deaths_file, "a").write("died\n")
        return True

    def peak_load(self) -> int:
        return self.peak


def started(*args, **kwargs):
    """A Worker that is up (its start-up must not look like a slow stage)."""
    worker = Worker.remote(*args, **kwargs)
    ray.get(worker.peak_load.remote())
    return worker


def two_stage_stream(workers_a, workers_b, *, limit: int = 2, barrier: bool = False, clock=None):
    stages = [Stage("first", Slots(workers_a, limit), lambda h, v: h.add_one.remote(v)),
              Stage("second", Slots(workers_b, limit), lambda h, v: h.add_one.remote(v))]
    return Stream(stages, key=lambda stage, v: v, barrier=barrier, clock=clock, advice=", then try again")


def run_two_stages(stream, values):
    order, done = [], []

    def on_result(stage, item, result):
        order.append(stage)
        if stage == "first":
            stream.put("second", result)
        else:
            done.append(result)

    for value in values:
        stream.put("first", value)
    stream.run(on_result)
    return done, order


def test_items_flow_through_both_stages_and_stages_overlap(ray_local):
    a, b = [started(0.05) for _ in range(2)], [started(0.05)]
    stream = two_stage_stream(a, b, limit=2)
    done, order = run_two_stages(stream, list(range(20)))
    assert sorted(done) == [v + 2 for v in range(20)]
    # Streaming: the second stage finished items before the first had finished them all.
    assert order.index("second") < len(order) - 1 - order[::-1].index("first")
    assert max(ray.get([w.peak_load.remote() for w in a + b])) <= 2  # bounded per actor


def test_barrier_mode_drains_each_stage_before_the_next(ray_local):
    stream = two_stage_stream([started(0.01)], [started(0.01)], limit=3, barrier=True)
    done, order = run_two_stages(stream, list(range(9)))
    assert sorted(done) == [v + 2 for v in range(9)]
    assert order == ["first"] * 9 + ["second"] * 9


def test_the_least_loaded_actor_gets_the_item():
    slots = Slots(["a", "b"], limit=2)
    assert [slots.take()[1] for _ in range(4)] == ["a", "b", "a", "b"] and not slots.free()
    slots.give_back(1)
    assert slots.free() and slots.take() == (1, "b")


def test_an_item_whose_actor_dies_is_sent_again_and_counted(ray_local, tmp_path):
    faults = Faults()
    stages = [Stage("only", Slots([started(0.01, fatal={7}, deaths_file=str(tmp_path / "d"))], 4),
                    lambda h, v: h.add_one.remote(v))]
    stream = Stream(stages, key=lambda stage, v: v, faults=faults)
    for value in range(10):
        stream.put("only", value)
    results = []
    stream.run(lambda stage, item, result: results.append(result))
    assert sorted(results) == list(range(1, 11))  # nothing lost, nothing twice
    assert faults.by_stage["only"] >= 1 and faults.attempts[7] == 1  # the item that killed it, once


def test_an_item_that_keeps_killing_its_actor_stops_the_run_with_advice(ray_local, tmp_path):
    deaths = tmp_path / "d"
    deaths.write_text("forever\n")
    stages = [Stage("only", Slots([started(0.01, fatal={3}, deaths_file=str(deaths))], 1),
                    lambda h, v: h.add_one.remote(v))]
    stream = Stream(stages, key=lambda stage, v: f"item {v}", advice=", then resume")
    stream.put("only", 3)
    with pytest.raises(FlowPOError, match=rf"the only stage lost item 3 {MAX_ITEM_RETRIES + 1} times.*then resume"):
        stream.run(lambda *args: None)


@ray.remote
def unavailable_once(value: int, marker: str) -> int:
    """Raises ActorUnavailableError the first time (as a call to an actor Ray is restarting does)."""
    if not os.path.exists(marker):
        open(marker, "w").close()
        raise ray.exceptions.ActorUnavailableError(
            "The actor is temporarily unavailable: IOError: The actor is restarting.", None)
    return value


def test_an_item_meeting_a_restarting_actor_waits_without_stalling_the_rest(ray_local, tmp_path):
    marker = str(tmp_path / "once")
    fast = started(0.01)
    stand_in = started(0.01)  # the "restarting" actor's handle: probes find it up again
    stages = [Stage("flaky", Slots([stand_in], 1), lambda h, v: unavailable_once.remote(v, marker)),
              Stage("fast", Slots([fast], 2), lambda h, v: h.add_one.remote(v))]
    stream = Stream(stages, key=lambda stage, v: v)
    stream.put("flaky", 100)
    for value in range(5):
        stream.put("fast", value)
    finished = []
    began = time.monotonic()
    stream.run(lambda stage, item, result: finished.append((stage, time.monotonic() - began)))
    assert stream.faults.restart_waits["flaky"] == 1 and ("flaky" in dict(finished))
    fast_done = max(t for stage, t in finished if stage == "fast")
    assert fast_done < dict(finished)["flaky"]  # the fast stage did not wait for the restart


def lost_node_worker(tmp_path):
    """A Worker whose node is then lost: killed, and its restart never completes."""
    gone = tmp_path / "node-gone"
    worker = started(0.01, node_gone=str(gone))
    gone.touch()
    pid = ray.get(worker.__ray_call__.remote(lambda self: os.getpid()))
    ray.kill(worker, no_restart=False)
    # ray.kill is asynchronous: until its process is gone, a call may still reach the old instance
    # and be answered (seen in CI, on a loaded machine)
    deadline = time.monotonic() + 60
    while running(pid):
        assert time.monotonic() < deadline, f"the killed actor's process {pid} is still running"
        time.sleep(0.05)
    return worker


def running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_items_of_an_actor_that_stops_answering_go_to_the_others(ray_local, tmp_path):
    lost, alive = lost_node_worker(tmp_path), started(0.01)
    stages = [Stage("only", Slots([lost, alive], 2, ["lost-0", "alive-1"]), lambda h, v: h.add_one.remote(v))]
    stream = Stream(stages, key=lambda stage, v: v, actor_timeout_s=3)
    for value in range(8):
        stream.put("only", value)
    done = []
    stream.run(lambda stage, item, result: done.append(result))
    assert sorted(done) == [v + 1 for v in range(8)]  # every item, once
    assert stages[0].slots.down == {0}


def test_a_stage_left_without_actors_stops_the_run_with_a_clear_message(ray_local, tmp_path):
    stages = [Stage("execute", Slots([lost_node_worker(tmp_path)], 2, ["run-executor-0"]),
                    lambda h, v: h.add_one.remote(v))]
    stream = Stream(stages, key=lambda stage, v: v, actor_timeout_s=3, advice=", then resume")
    stream.put("execute", 1)
    began = time.monotonic()
    with pytest.raises(FlowPOError, match=r"the execute stage has no actor left: run-executor-0 did not answer "
                                          r"for 3 s\. Their node is gone.*Every finished item is kept, then resume"):
        stream.run(lambda stage, item, result: None)
    assert time.monotonic() - began < 30


def test_the_stage_clock_accounts_busy_time_and_spans(ray_local):
    clock = StageClock()
    stream = two_stage_stream([started(0.05)], [started(0.05)], limit=1, clock=clock)
    run_two_stages(stream, [1, 2, 3])
    summary = clock.summary()
    assert summary["first_busy_s"] >= 0.14 and summary["second_busy_s"] >= 0.14
    assert 0 < summary["first_span_s"] <= summary["wall_s"] and summary["second_span_s"] <= summary["wall_s"]


def workflow(attempts: int) -> Workflow:
    return Workflow(problem_id="p", round=1, sample_index=0, adapter="base", prompt="", completion="", code="c",
                    generate_s=0.0, attempts=attempts)


def test_after_a_dry_run_a_workflow_runs_is_written_again_or_is_marked_invalid():
    assert after_dry_run(workflow(1), "", 3) == ("execute", workflow(1))
    assert after_dry_run(workflow(1), "crashed on the probe", 3) == ("generate", workflow(1))
    stage, marked = after_dry_run(workflow(3), "crashed on the probe", 3)
    assert stage == "execute" and marked.invalid_reason == "crashed on the probe"
