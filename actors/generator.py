"""Generator: a vLLM engine that writes k workflows per problem, with hot-loaded LoRA adapters."""
from __future__ import annotations

import time
from dataclasses import dataclass

from flowpo.prompts import extract_workflow, workflow_messages
from flowpo.records import Problem, Workflow
from flowpo.validate import validate_workflow

BASE = "base"


@dataclass(frozen=True)
class SamplingSettings:
    k: int
    temperature: float
    top_p: float
    max_tokens: int
    stop: tuple[str, ...]
    response_prefix: str
    max_attempts: int = 1  # generations per sample slot while the workflow stays invalid


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

    def _sample(self, prompts: list[str], counts: list[int], version: str) -> tuple[list[list[str]], float]:
        """``counts[i]`` completions of ``prompts[i]`` (one request with n = count: shared prefix)."""
        from vllm import SamplingParams

        s = self.sampling
        todo = [(i, p, n) for i, (p, n) in enumerate(zip(prompts, counts)) if n > 0]
        params = [SamplingParams(n=n, temperature=s.temperature, top_p=s.top_p, max_tokens=s.max_tokens,
                                 stop=list(s.stop)) for _, _, n in todo]
        began = time.monotonic()
        outputs = self.llm.generate([p for _, p, _ in todo], params, lora_request=self._lora(version),
                                    use_tqdm=False) if todo else []
        texts: list[list[str]] = [[] for _ in prompts]
        for (i, _, _), output in zip(todo, outputs):
            texts[i] = [sample.text for sample in output.outputs]
        return texts, (time.monotonic() - began) / max(1, sum(counts))

    def generate(self, problems: list[Problem], round_index: int) -> list[Workflow]:
        """k workflows per problem; statically invalid ones are regenerated up to max_attempts."""
        s = self.sampling
        version = self.version  # requests started on a version finish on it
        prompts = [self.prompt_for(p) for p in problems]
        slots: list[list[Workflow | None]] = [[None] * s.k for _ in problems]
        for attempt in range(1, s.max_attempts + 1):
            open_slots = [[j for j, w in enumerate(row) if w is None or w.invalid_reason] for row in slots]
            if not any(open_slots):
                break
            texts, per_sample_s = self._sample(prompts, [len(o) for o in open_slots], version)
            for i, (problem, prompt) in enumerate(zip(problems, prompts)):
                for j, text in zip(open_slots[i], texts[i]):
                    # The learner trains on exactly what was sampled: prompt (with the response
                    # prefix) → text.
                    code = extract_workflow(s.response_prefix + text)
                    slots[i][j] = Workflow(
                        problem_id=problem.problem_id, round=round_index, sample_index=j, adapter=version,
                        prompt=prompt, completion=text, code=code, generate_s=per_sample_s,
                        invalid_reason=validate_workflow(code), attempts=attempt)
        return [w for row in slots for w in row]

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
