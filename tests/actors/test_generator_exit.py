"""A process that used a generator and shut it down exits cleanly: no "Exception ignored" traceback
from vLLM's ``AsyncLLM.__del__`` at interpreter exit (it used to end every test run and every
``flowpo`` command's log, and a user cannot tell it from a real failure)."""
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.vllm

SCRIPT = textwrap.dedent("""
    import asyncio, sys
    from actors.generator import Generator, SamplingSettings, engine_kwargs
    from flowpo.config import TaskConfig
    from flowpo.tasks import load_problems

    async def main():
        kwargs = engine_kwargs(sys.argv[1], seed=0, dtype="auto", max_model_len=2048, enforce_eager=True,
                               max_lora_rank=8, kv_cache_gb=0.5, gpu_memory_utilization=0.9,
                               tensor_parallel_size=1)
        sampling = SamplingSettings(k=1, temperature=0.5, top_p=1.0, max_tokens=4, stop=(), response_prefix="",
                                    max_attempts=1)
        generator = Generator(kwargs, sampling)
        try:
            workflows = await generator.generate(load_problems(TaskConfig(limit=1)), round_index=1)
        finally:
            generator.shutdown()
        print("generated", len(workflows))

    asyncio.run(main())
""")


def test_a_shut_down_generator_leaves_no_traceback_at_exit(model_dir, vllm_available):
    done = subprocess.run([sys.executable, "-c", SCRIPT, model_dir], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "generated 1" in done.stdout
    assert "Exception ignored" not in done.stderr, done.stderr[-3000:]
