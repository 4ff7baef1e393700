"""Score-DPO through Ray Train's TorchTrainer (gloo on CPU) on a tiny random-weight model."""
import json
from pathlib import Path

import pytest

from trainer.learner import METRICS_FILE, LearnerSettings, train_adapter
from trainer.pairs import PreferencePair

pytestmark = pytest.mark.ray


def margin(model, tokenizer, pair):
    from trainer.logprobs import encode_pair, sequence_logprob

    w = sequence_logprob(model, *encode_pair(tokenizer, pair.prompt, pair.chosen, 256))
    l = sequence_logprob(model, *encode_pair(tokenizer, pair.prompt, pair.rejected, 256))
    return (w - l).item()


def test_training_saves_a_peft_adapter_that_prefers_the_winner(tiny_model_dir, ray_local, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    pair = PreferencePair("p", "Write a workflow:", " return solution.code", " return max(solution)", 1.0, 0.0)
    settings = LearnerSettings(
        base_model=tiny_model_dir, out_dir=str(tmp_path / "adapter"), init_adapter="", beta=0.1, epochs=3,
        learning_rate=5e-3, grad_accum_steps=2, max_seq_len=256, lora_r=8, lora_alpha=16, lora_dropout=0.0,
        target_modules=("q_proj", "v_proj"), seed=0, use_gpu=False)
    metrics = train_adapter([pair] * 4, settings, num_workers=1, cpus_per_worker=1, storage_dir=tmp_path / "ray",
                            name="t")
    assert metrics["step"] == 6 and metrics["pairs"] == 4
    assert metrics["first_loss"] == pytest.approx(0.6931, abs=1e-3)  # zero-init LoRA: Δ = 0 → log 2
    assert metrics["loss"] < metrics["first_loss"]
    saved = Path(settings.out_dir)
    assert (saved / "adapter_config.json").is_file() and (saved / "adapter_model.safetensors").is_file()
    assert len(json.loads((saved / METRICS_FILE).read_text())) == 6

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    with torch.no_grad():
        before = margin(base, tokenizer, pair)
        tuned = PeftModel.from_pretrained(base, settings.out_dir)
        after = margin(tuned, tokenizer, pair)
    assert after > before + 0.1


def test_two_workers_train_with_ddp(tiny_model_dir, ray_local, tmp_path):
    pairs = [PreferencePair("p", "Q:", " yes", " no", 1.0, 0.0), PreferencePair("q", "R:", " a", " b", 0.5, 0.0)]
    settings = LearnerSettings(
        base_model=tiny_model_dir, out_dir=str(tmp_path / "adapter"), init_adapter="", beta=0.1, epochs=1,
        learning_rate=1e-3, grad_accum_steps=1, max_seq_len=64, lora_r=4, lora_alpha=8, lora_dropout=0.0,
        target_modules=("q_proj", "v_proj"), seed=0, use_gpu=False)
    metrics = train_adapter(pairs * 2, settings, num_workers=2, cpus_per_worker=0.5, storage_dir=tmp_path / "ray",
                            name="ddp")
    assert metrics["pairs"] == 2  # each worker holds its shard of the 4 pairs
    assert (Path(settings.out_dir) / "adapter_model.safetensors").is_file()
