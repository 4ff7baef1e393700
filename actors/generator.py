"""Generator: one vLLM replica that writes k workflows per problem, with hot-loaded LoRA adapters.

The engine is vLLM's ``AsyncLLM``: every ``generate`` call is a coroutine, so the requests of many
problems (from the driver, concurrently) share the engine's continuous batching, and an adapter can
be loaded while requests are in flight — each request keeps the version it started with.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import os
import shutil
import time
from dataclasses import dataclass

from actors.llm_server import ENGINE_SHUTDOWN_S, engine_env, use_detached_resource_tracker
from flowpo.node_tmp import make_node_tmp
from flowpo.precision import local_engine_dtype
from flowpo.prompts import extract_workflow, generator_prompt, prompt_lengths
from flowpo.records import BASE_ADAPTER, Problem, Workflow
from flowpo.seeds import sample_seed
from flowpo.validate import validate_workflow
from trainer.checkpoint import PackedCheckpoint, unpack


@dataclass(frozen=True)
class SamplingSettings:
    k: int
    temperature: float
    top_p: float
    max_tokens: int
    stop: tuple[str, ...]
    response_prefix: str
    max_attempts: int = 1  # generations per sample slot while the workflow stays invalid
    return_logprobs: bool = False  # per-token log-probs of each sampled workflow
    seed: int = 0  # with the problem, round, sample index and attempt, it fixes each sample (flowpo.seeds)


@dataclass(frozen=True)
class Sample:
    text: str
    logprobs: tuple[float, ...]  # () unless requested


def engine_kwargs(model_path: str, *, seed: int, dtype: str, max_model_len: int, enforce_eager: bool,
                  max_lora_rank: int,
                  kv_cache_gb: float, gpu_memory_utilization: float, tensor_parallel_size: int) -> dict:
    """vLLM engine arguments; the same on CPU and GPU apart from the memory knob."""
    kwargs = dict(model=model_path, seed=seed, dtype=dtype, max_model_len=max_model_len,
                  # One LoRA slot: a run serves one adapter at a time beside the base model. With two,
                  # vLLM 0.32 on CPU died evaluating round-2 after round-1 (KeyError in the LoRA
                  # mapping, cf. vllm-project/vllm#16668); with one it does not.
                  enable_lora=True, max_lora_rank=max_lora_rank, max_loras=1,
                  tensor_parallel_size=tensor_parallel_size, enable_prefix_caching=True,
                  enforce_eager=enforce_eager,
                  # A seeded request whose prefill is split over two steps rewinds its generator's
                  # offset, which the CPU generator cannot do: the engine dies ("CPU Generator does
                  # not use offset") once enough requests arrive in one step. Unsplit prefills.
                  enable_chunked_prefill=False)
    if tensor_parallel_size > 1:
        # Inside a placement group vLLM defaults to its Ray executor, which wants one 1-GPU bundle
        # per rank and refuses the replica's single bundle that holds all its GPUs (actors.launch);
        # "mp" runs the ranks as local processes on the GPUs this actor already holds.
        kwargs["distributed_executor_backend"] = "mp"
    if kv_cache_gb > 0:
        # On CPU vLLM sizes the KV cache from free RAM minus its own RSS, which fails for small
        # shares; an explicit size is predictable.
        kwargs["kv_cache_memory_bytes"] = int(kv_cache_gb * (1 << 30))
    else:
        kwargs["gpu_memory_utilization"] = gpu_memory_utilization
    return kwargs


class Generator:
    """Plain class; ``actors.launch`` wraps it as an async Ray actor (one vLLM replica)."""

    def __init__(self, llm_kwargs: dict, sampling: SamplingSettings, env: dict[str, str] | None = None):
        from vllm import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        from actors.shm import OWNER_ENV, kill_orphaned_engines, remove_orphaned_shm
        from flowpo.model import resolve_model

        kill_orphaned_engines()  # a killed generator's engine outlives it: its processes, then their memory
        remove_orphaned_shm()  # what a dead run's engines left on this node, before this one adds its own
        # model.path as written (a directory or a hub id), resolved on this replica's node; the dtype
        # for this node's device (fp32 for "auto" on a CPU that emulates bf16: flowpo.precision)
        llm_kwargs = {**llm_kwargs, "model": str(resolve_model(llm_kwargs["model"])),
                      "dtype": local_engine_dtype(llm_kwargs.get("dtype", "auto"))}
        use_detached_resource_tracker()  # before the engine's processes start and register with it
        os.environ[OWNER_ENV] = str(os.getpid())  # the engine's processes inherit it: see kill_orphaned_engines
        os.environ.update(engine_env() if env is None else env)  # the driver's choice of engine processes
        try:
            self.engine = AsyncLLM.from_engine_args(AsyncEngineArgs(**llm_kwargs, disable_log_stats=True))
        finally:
            os.environ.pop(OWNER_ENV, None)
        self.tokenizer = self.engine.get_tokenizer()
        self.sampling = sampling
        self._adapters = {}  # version -> LoRARequest
        self.version = BASE_ADAPTER
        self._request_ids = itertools.count()
        self._adapter_root = make_node_tmp("flowpo-adapters-")  # this node's copies; a killed one's are swept
        self.served = {"requests": 0, "samples": 0}

    def shutdown(self) -> None:
        """Stop the engine's processes now rather than at interpreter exit. vLLM's default grace
        (5 s) kills the engine process while it still waits for its worker (5 s, then SIGTERM),
        before it has unlinked its shared memory; a longer one lets it. The engine is dropped here,
        while the interpreter is whole: left for exit, vLLM's ``AsyncLLM.__del__`` shuts it down again
        with its module globals already gone ("TypeError: 'NoneType' object is not callable")."""
        engine, self.engine = self.engine, None
        if engine is None:  # already shut down (explicitly, then by Ray at exit)
            return
        engine.shutdown(timeout=ENGINE_SHUTDOWN_S)
        shutil.rmtree(self._adapter_root, ignore_errors=True)

    def __ray_shutdown__(self) -> None:
        """Ray calls this when the actor exits gracefully; ray.kill skips it (the resource tracker
        covers that, see use_detached_resource_tracker)."""
        self.shutdown()

    def ready(self) -> str:
        return self.version

    def stats(self) -> dict:
        return {"version": self.version, **self.served}

    def load_adapter(self, version: str, adapter: "str | PackedCheckpoint") -> str:
        """Serve ``version`` from now on; no merge, no restart. ``adapter`` is a peft adapter
        directory on this node, or a packed checkpoint (as the driver ships it through Ray's object
        store) that is written to this node's own temporary space for vLLM to read.

        Requests already in flight keep the LoRARequest they started with."""
        from vllm.lora.request import LoRARequest

        if isinstance(adapter, PackedCheckpoint):
            adapter = str(unpack(adapter, self._adapter_root / version))
        self._adapters[version] = LoRARequest(version, len(self._adapters) + 1, adapter)
        self.version = version
        return version

    def _lora(self, version: str):
        return None if version == BASE_ADAPTER else self._adapters[version]

    def prompt_lengths(self, problems: list[Problem]) -> dict[str, int]:
        """Each problem's prompt in tokens, as ``generate_for`` sends it (the run's up-front check)."""
        return prompt_lengths(self.tokenizer, problems, self.sampling.response_prefix)

    def prompt_for(self, problem: Problem) -> str:
        return generator_prompt(self.tokenizer, problem, self.sampling.response_prefix)

    async def _run(self, prompt_ids: list[int], params, version: str):
        from vllm.inputs import TokensPrompt
        from vllm.v1.engine.exceptions import EngineDeadError

        final = None
        request_id = f"gen-{next(self._request_ids)}"
        try:
            async for output in self.engine.generate(TokensPrompt(prompt_token_ids=prompt_ids), params, request_id,
                                                     lora_request=self._lora(version)):
                final = output
        except EngineDeadError:
            # A dead engine never recovers in place: end the process so that Ray restarts the
            # replica and the driver sends its requests again.
            logging.getLogger(__name__).error("the vLLM engine died; exiting so that Ray restarts this replica")
            os._exit(1)
        return final

    async def _sample(self, prompt_ids: list[int], seeds: list[int], version: str) -> list[Sample]:
        """One completion per seed, all in the engine at once. One request per sample, each with its
        own seed, so that a sample depends on its own coordinates only (a resumed run regenerating
        two slots gets what an uninterrupted one got); prefix caching still computes the shared
        prompt once."""
        return list(await asyncio.gather(*(self._sample_one(prompt_ids, seed, version) for seed in seeds)))

    async def _sample_one(self, prompt_ids: list[int], seed: int, version: str) -> Sample:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        s = self.sampling
        params = SamplingParams(n=1, temperature=s.temperature, top_p=s.top_p, max_tokens=s.max_tokens,
                                stop=list(s.stop), logprobs=0 if s.return_logprobs else None, seed=seed,
                                output_kind=RequestOutputKind.FINAL_ONLY)
        (completion,) = (await self._run(prompt_ids, params, version)).outputs
        self.served["requests"] += 1
        self.served["samples"] += 1
        logprobs = tuple(step[token].logprob for step, token in zip(completion.logprobs, completion.token_ids)) \
            if s.return_logprobs and completion.logprobs else ()
        return Sample(completion.text, logprobs)

    async def _ensure_adapter(self, version: str, source) -> str:
        """``version``, loaded from ``source`` first if this replica lacks it (Ray restarted it).
        ``source``: a path, a packed checkpoint or an ObjectRef of one; unused for the base model."""
        if version != BASE_ADAPTER and version not in self._adapters:
            if not isinstance(source, (str, PackedCheckpoint)):  # an ObjectRef of a packed checkpoint
                source = await source
            self.load_adapter(version, source)
        return version

    async def generate_for(self, problem: Problem, round_index: int, slots: list[int] | None = None,
                           first_attempt: int = 1, adapter: tuple[str, str] | None = None) -> list[Workflow]:
        """Workflows for ``slots`` (default all k) of one problem; statically invalid ones are
        regenerated until ``max_attempts`` generations in all.

        ``adapter`` = (version, path) names the policy to sample from; the driver sends it with
        every request, so a replica that Ray restarted (and that lost its loaded adapters) still
        serves the round's policy. Without it, the replica's current version is used."""
        s = self.sampling
        # Requests finish on the version they started on, whatever is loaded meanwhile.
        version = self.version if adapter is None else await self._ensure_adapter(*adapter)
        prompt = self.prompt_for(problem)
        prompt_ids = self.tokenizer(prompt, add_special_tokens=False).input_ids
        done: dict[int, Workflow] = {}
        open_slots = list(range(s.k)) if slots is None else list(slots)
        for attempt in range(first_attempt, s.max_attempts + 1):
            if not open_slots:
                break
            began = time.monotonic()
            seeds = [sample_seed(s.seed, problem.problem_id, round_index, slot, attempt) for slot in open_slots]
            samples = await self._sample(prompt_ids, seeds, version)
            per_sample_s = (time.monotonic() - began) / len(open_slots)
            for slot, sample in zip(open_slots, samples):
                # The learner trains on exactly what was sampled: prompt (with the response prefix) → text.
                code = extract_workflow(s.response_prefix + sample.text)
                done[slot] = Workflow(
                    problem_id=problem.problem_id, round=round_index, sample_index=slot, adapter=version,
                    prompt=prompt, completion=sample.text, code=code, generate_s=per_sample_s,
                    invalid_reason=validate_workflow(code), attempts=attempt, logprobs=sample.logprobs)
            open_slots = [slot for slot in open_slots if done[slot].invalid_reason]
        return [done[slot] for slot in sorted(done)]

    async def generate(self, problems: list[Problem], round_index: int) -> list[Workflow]:
        """k workflows per problem, all problems' requests in the engine at once."""
        per_problem = await asyncio.gather(*(self.generate_for(p, round_index) for p in problems))
        return [w for workflows in per_problem for w in workflows]

    async def sequence_logprob(self, prompt: str, completion: str, version: str, source="") -> float:
        """Sum of log p(completion | prompt) under adapter ``version`` (prompt log-probs); ``source``
        (as for ``generate_for``) loads it on a replica that lacks it."""
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        await self._ensure_adapter(version, source)
        prompt_ids = self.tokenizer(prompt, add_special_tokens=False).input_ids
        completion_ids = self.tokenizer(completion, add_special_tokens=False).input_ids
        params = SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=0.0,
                                output_kind=RequestOutputKind.FINAL_ONLY)
        output = await self._run(prompt_ids + completion_ids, params, version)
        logprobs = output.prompt_logprobs[len(prompt_ids):]
        return float(sum(step[token].logprob for step, token in zip(logprobs, completion_ids)))
