"""Generator: a vLLM engine that writes k workflows per problem, with hot-loaded LoRA adapters."""
from __future__ import annotations

import time
from dataclasses import dataclass

from flowpo.prompts import extract_workflow, workflow_messages
from flowpo.records import Problem, Workflow

BASE = "base"


@dataclass(frozen=True)
class SamplingSettings:
    k: int
    temperature: float
    top_p: float
    max_tokens: int
    stop: tuple[str, ...]
    response_prefix: str


def engine_kwargs(model_path: str, *, seed: int, dtype: str, max_model_len: int, enforce_eager: bool,
                  max_lora_rank: int,
                  kv_cache_gb: float, gpu_memory_utilization: float, tensor_parallel_size: int) -> dict:
    """vLLM ``LLM(...)`` arguments; the same on CPU and GPU apart from the memory knob."""
    kwargs = dict(model=model_path, seed=seed, dtype=dtype, max_model_len=max_model_len,
                  enable_lora=True, max_lora_rank=max_lora_rank, max_loras=2,
                  tensor_parallel_size=tensor_parallel_size, enable_prefix_caching=True,
                  enforce_eager=enforce_eager)
    if kv_cache_gb > 0:
        # On CPU vLLM sizes the KV cache from free RAM minus its own RSS, which fails for small
        # shares; an explicit size is predictable.
        kwargs["kv_cache_memory_bytes"] = int(kv_cache_gb * (1 << 30))
    else:
        kwargs["gpu_memory_utilization"] = gpu_memory_utilization
    return kwargs


class Generator:
    """Plain class; ``actors.launch`` wraps it as a Ray actor (one vLLM replica)."""

    def __init__(self, llm_kwargs: dict, sampling: SamplingSettings):
        from vllm import LLM

        self.llm = LLM(**llm_kwargs)
        self.tokenizer = self.llm.get_tokenizer()
        self.sampling = sampling
        self._adapters = {}  # version -> LoRARequest
        self.version = BASE

    def shutdown(self) -> None:
        """Stop the engine's worker processes now rather than at interpreter exit."""
        self.llm.llm_engine.engine_core.shutdown()

    def ready(self) -> str:
        return self.version

    def load_adapter(self, version: str, path: str) -> str:
        """Serve ``version`` (a peft adapter directory) from now on; no merge, no restart."""
        from vllm.lora.request import LoRARequest

        self._adapters[version] = LoRARequest(version, len(self._adapters) + 1, path)
        self.version = version
        return version

    def _lora(self, version: str):
        return None if version == BASE else self._adapters[version]

    def prompt_for(self, problem: Problem) -> str:
        text = self.tokenizer.apply_chat_template(workflow_messages(problem), add_generation_prompt=True,
                                                  tokenize=False)
        return text + self.sampling.response_prefix

    def generate(self, problems: list[Problem], round_index: int) -> list[Workflow]:
        """k workflows per problem: one prompt with n=k samples shares its prefix."""
        from vllm import SamplingParams

        s = self.sampling
        params = SamplingParams(n=s.k, temperature=s.temperature, top_p=s.top_p, max_tokens=s.max_tokens,
                                stop=list(s.stop), include_stop_str_in_output=False)
        version = self.version
        prompts = [self.prompt_for(p) for p in problems]
        began = time.monotonic()
        outputs = self.llm.generate(prompts, params, lora_request=self._lora(version), use_tqdm=False)
        per_sample_s = (time.monotonic() - began) / max(1, len(problems) * s.k)
        workflows = []
        for problem, prompt, output in zip(problems, prompts, outputs):
            for index, sample in enumerate(output.outputs):
                # The learner trains on exactly what was sampled: prompt (with the response
                # prefix) → sample.text.
                workflows.append(Workflow(
                    problem_id=problem.problem_id, round=round_index, sample_index=index, adapter=version,
                    prompt=prompt, completion=sample.text,
                    code=extract_workflow(s.response_prefix + sample.text), generate_s=per_sample_s))
        return workflows

    def sequence_logprob(self, prompt: str, completion: str, version: str) -> float:
        """Sum of log p(completion | prompt) under adapter ``version`` (prompt log-probs)."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        prompt_ids = self.tokenizer(prompt, add_special_tokens=False).input_ids
        completion_ids = self.tokenizer(completion, add_special_tokens=False).input_ids
        params = SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=0.0)
        output = self.llm.generate(TokensPrompt(prompt_token_ids=prompt_ids + completion_ids), params,
                                   lora_request=self._lora(version), use_tqdm=False)[0]
        logprobs = output.prompt_logprobs[len(prompt_ids):]
        return float(sum(step[token].logprob for step, token in zip(logprobs, completion_ids)))
