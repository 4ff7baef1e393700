"""Fixtures of the learner's tests: the tiny random-weight model under a LoRA adapter, and its tokenizer."""
import pytest
import torch


@pytest.fixture(scope="module")
def policy(tiny_model_dir):
    """The tiny model with a LoRA adapter whose B matrices are non-zero: the A matrices get gradients
    too, and the policy differs from the base model (its adapter switched off)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj"],
                                            task_type="CAUSAL_LM"))
    for name, param in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.1)
    return model


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)
