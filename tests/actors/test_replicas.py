"""Generator replicas as Ray actors (real vLLM on CPU): placement groups, load balanced by
outstanding work as the driver does it, and an adapter swap while requests are in flight."""
import pytest
import ray

from actors.launch import start_generators
from actors.streaming import Slots, Stage, Stream
from flowpo.config import Config, TaskConfig
from flowpo.records import BASE_ADAPTER
from flowpo.tasks import load_problems

pytestmark = [pytest.mark.vllm, pytest.mark.ray]

PROBLEM_IDS = ["HumanEval/23", "HumanEval/35", "HumanEval/53", "HumanEval/42", "HumanEval/52", "HumanEval/29"]


@pytest.fixture(scope="module")
def replicas(model_dir, vllm_available, ray_local):
    config = Config()
    config.model.path = model_dir
    g = config.generator
    g.num_replicas, g.num_cpus, g.kv_cache_gb, g.enforce_eager = 2, 0.5, 0.3, True
    g.k, g.max_tokens, g.max_attempts, g.response_prefix = 2, 24, 1, "<graph>\nclass Workflow:\n"
    handles, groups = start_generators(config, model_dir)
    ray.get([h.ready.remote() for h in handles])
    yield handles
    for handle in handles:
        ray.kill(handle)
    for group in groups:
        ray.util.remove_placement_group(group)


def stream(slots: Slots, problems) -> list:
    """Generation on the streaming engine: least-loaded replica first, a bounded number in flight each."""
    engine = Stream([Stage("generate", slots, lambda handle, problem: handle.generate_for.remote(problem, 1))],
                    key=lambda stage, problem: problem.problem_id)
    for problem in problems:
        engine.put("generate", problem)
    workflows = []
    engine.run(lambda stage, problem, result: workflows.extend(result))
    return workflows


def test_two_replicas_share_the_load(replicas):
    before = [ray.get(h.stats.remote())["requests"] for h in replicas]
    workflows = stream(Slots(replicas, limit=2), load_problems(TaskConfig(problem_ids=PROBLEM_IDS)))
    served = [ray.get(h.stats.remote())["requests"] - b for h, b in zip(replicas, before)]
    assert sorted((w.problem_id, w.sample_index) for w in workflows) == sorted(
        (pid, j) for pid in PROBLEM_IDS for j in range(2))
    # One request per sample (each has its own seed), k = 2 per problem; each replica served >= 2 problems.
    assert sum(served) == 2 * len(PROBLEM_IDS) and min(served) >= 4, served


def test_adapter_swap_mid_stream_through_ray(replicas, random_adapter):
    """An adapter loads while requests are in flight; they finish on the version they asked for, and
    requests after the swap get the new one. An async actor does not run calls in the order they
    were sent (Ray's actor task-order guarantee is for synchronous actors only), so the early
    requests name their version, as the driver's always do, and the late ones are sent once the
    swap has returned."""
    replica = replicas[0]
    problems = load_problems(TaskConfig(problem_ids=PROBLEM_IDS[:4]))
    early = [replica.generate_for.remote(p, 2, adapter=(BASE_ADAPTER, "")) for p in problems[:2]]
    swapped = replica.load_adapter.remote("v1", random_adapter)
    assert ray.get(swapped) == "v1"
    late = [replica.generate_for.remote(p, 2) for p in problems[2:]]
    early_workflows = [w for ref in early for w in ray.get(ref)]
    late_workflows = [w for ref in late for w in ray.get(ref)]
    assert len(early_workflows) == len(late_workflows) == 4
    assert {w.adapter for w in early_workflows} == {BASE_ADAPTER}
    assert {w.adapter for w in late_workflows} == {"v1"}
