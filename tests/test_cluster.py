"""A two-node Ray cluster (ray.cluster_utils.Cluster: real raylets on this machine): executor
actors ask for the `executor` resource and land on the node that has it, and serve there."""
import pytest

from flowpo.config import Config
from flowpo.records import Problem, Workflow

pytestmark = [pytest.mark.ray, pytest.mark.docker]

CODE = ("class Workflow:\n    def __init__(self, llm):\n        pass\n\n"
        "    async def __call__(self, problem, entry_point):\n        return 'ran on the executor node'\n")


def test_executors_are_placed_by_resource_on_the_cpu_node(docker_backend, fresh_ray):
    from ray.cluster_utils import Cluster
    from ray.util.state import list_actors

    from actors.launch import start_executors

    ray = fresh_ray
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    executor_node = cluster.add_node(num_cpus=2, resources={"executor": 4})
    ray.init(address=cluster.address)
    try:
        config = Config()
        config.sandbox.num_executors, config.sandbox.sandboxes_per_executor = 2, 1
        config.sandbox.executor_resources = {"executor": 1}
        executors = start_executors(config, "http://127.0.0.1:9/v1", "EMPTY")  # no LLM call is made
        assert ray.get([e.ready.remote() for e in executors], timeout=120) == [True, True]
        names = [a for a in list_actors(filters=[("state", "=", "ALIVE")]) if "-executor-" in (a.name or "")]
        assert len(names) == 2 and {a.node_id for a in names} == {executor_node.node_id}
        workflow = Workflow(problem_id="p", round=1, sample_index=0, adapter="base", prompt="", completion="",
                            code=CODE, generate_s=0.0)
        execution = ray.get(executors[0].execute.remote(workflow, Problem("p", "problem", "f")), timeout=120)
        assert (execution.failure, execution.answer) == ("", "ran on the executor node")
        ray.get([e.close.remote() for e in executors], timeout=60)
    finally:
        ray.shutdown()
        cluster.shutdown()
