"""One learner round on its own Ray Train worker group (gloo on CPU), on a tiny random-weight model."""
import dataclasses
import json
import tempfile
from pathlib import Path

import pytest

from flowpo.config import TrainConfig
from flowpo.maths.groups import PromptGroup
from flowpo.maths.pairs import PreferencePair
from trainer.checkpoint import META_FILE, OPTIMIZER_FILE, read_meta
from trainer.learner import METRICS_FILE, LearnerSettings, equal_shards, train_local
from trainer.warm import train_adapter

pytestmark = pytest.mark.ray


def settings(model, out, **overrides) -> LearnerSettings:
    """The round's own fields by name, the rest into its train section."""
    own = {f.name for f in dataclasses.fields(LearnerSettings)}
    train = dict(beta=0.1, epochs=1, learning_rate=1e-2, grad_accum_steps=1, max_seq_len=64, lora_r=4, lora_alpha=8,
                 lora_dropout=0.0, target_modules=["q_proj", "v_proj"], seed=0, use_gpu=False, bf16=False,
                 num_workers=1, cpus_per_worker=1)
    train.update({k: v for k, v in overrides.items() if k not in own})
    return LearnerSettings(train=TrainConfig(**train), base_model=model, out_dir=str(out),
                           **{k: v for k, v in overrides.items() if k in own})


def margin(model, tokenizer, pair):
    """log π(chosen) − log π(rejected), summed over the completion tokens (the learner's own scorer)."""
    from trainer.batching import collate, completion_logprobs, encode_shared

    batch = collate([encode_shared(tokenizer, pair.prompt, [pair.chosen, pair.rejected], 256)], tokenizer.eos_token_id)
    chosen, rejected = completion_logprobs(model, *batch.tensors()).sum(dim=1)
    return (chosen - rejected).item()


def test_training_saves_a_checkpoint_whose_adapter_prefers_the_winner(tiny_model_dir, ray_local, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    pair = PreferencePair("p", "Write a workflow:", " return solution.code", " return max(solution)", 1.0, 0.0)
    s = settings(tiny_model_dir, tmp_path / "adapter", epochs=3, learning_rate=5e-3, grad_accum_steps=2,
                 max_seq_len=256, lora_r=8, lora_alpha=16, bf16=True, round_index=1)
    work_dirs = set(Path(tempfile.gettempdir()).glob("flowpo-learner-*"))
    metrics = train_adapter([pair] * 4, s, storage_dir=tmp_path / "ray", name="t")
    # The worker saved in its node's own temporary space, shipped the checkpoint back through Ray's
    # object store and removed its copy: the caller's out_dir is the only one left.
    assert set(Path(tempfile.gettempdir()).glob("flowpo-learner-*")) == work_dirs
    assert not any(p.name.startswith("checkpoint") for p in (tmp_path / "ray").rglob("*"))  # none reported
    assert metrics["step"] == 6 and metrics["items"] == 4
    assert metrics["first_loss"] == pytest.approx(0.6931, abs=1e-3)  # zero-init LoRA: Δ = 0 → log 2
    assert metrics["loss"] < metrics["first_loss"]
    assert {"reward_w", "reward_l", "margin", "accuracy", "grad_norm", "tokens_per_s"} <= set(metrics)
    saved = Path(s.out_dir)
    assert (saved / "adapter_config.json").is_file() and (saved / "adapter_model.safetensors").is_file()
    assert (saved / OPTIMIZER_FILE).is_file() and (saved / META_FILE).is_file()
    assert len(json.loads((saved / METRICS_FILE).read_text())) == 6
    meta = read_meta(saved)
    assert (meta["round"], meta["step"], meta["algorithm"], meta["items"], meta["workers"]) == (1, 6, "score_dpo", 4, 1)

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    with torch.no_grad():
        before = margin(base, tokenizer, pair)
        tuned = PeftModel.from_pretrained(base, s.out_dir)
        after = margin(tuned, tokenizer, pair)
    assert after > before + 0.1


def test_two_workers_update_like_one_worker_with_twice_the_batch(tiny_model_dir, ray_local, tmp_path):
    from safetensors.torch import load_file

    pairs = [PreferencePair("a", "Write a workflow:", " return solution.code", " return max(x)", 1.0, 0.0),
             PreferencePair("b", "Q:", " yes", " no no", 0.75, 0.25),
             PreferencePair("c", "Solve it step by step:", " 42", " 41", 1.0, 0.5),
             PreferencePair("d", "R:", " a b", " c", 0.5, 0.0)]
    # global batch 2 per step, 2 steps: 2 workers × 1 pair, or 1 worker × 2 pairs (one micro-batch); the
    # one worker in this process (train_local, as the other tests' references), without a worker group of
    # its own to start: what Learner.train returns is its last step's record and the first loss
    two = train_adapter(pairs, settings(tiny_model_dir, tmp_path / "two", num_workers=2), storage_dir=tmp_path / "ray",
                        name="two")
    history = train_local(pairs, settings(tiny_model_dir, tmp_path / "one", micro_batch_size=2))
    one = {**history[-1], "first_loss": history[0]["loss"]}
    assert two["items"] == 2 and one["items"] == 4  # per worker
    assert two["step"] == one["step"] == 2
    assert two["first_loss"] == pytest.approx(one["first_loss"], abs=1e-6)
    assert two["grad_norm"] == pytest.approx(one["grad_norm"], rel=1e-4)  # the mean over the global batch
    assert two["tokens"] == one["tokens"]  # summed over workers
    a, b = load_file(str(tmp_path / "two" / "adapter_model.safetensors")), load_file(
        str(tmp_path / "one" / "adapter_model.safetensors"))
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5
    assert max(b[k].abs().max().item() for k in b if "lora_B" in k) > 1e-3  # B starts at 0: it moved


def test_iogrpo_round_resumes_on_two_workers(tiny_model_dir, ray_local, tmp_path):
    from safetensors.torch import load_file

    # groups of 4 and 2 responses: worker 0 holds 4 of the step's 6, worker 1 holds 2
    groups = [PromptGroup("a", "Write a workflow:", (" x", " y z", " return 1", " return 2"), (0.0, 0.0, 1.0, 1.0),
                          (-1.0, -1.0, 1.0, 1.0)),
              PromptGroup("b", "Q:", (" no", " yes"), (0.0, 1.0), (-1.0, 1.0))]
    common = dict(algorithm="iogrpo", reference="previous", epochs=2)
    train_local(groups, settings(tiny_model_dir, tmp_path / "r1", round_index=1, **common))  # steps 1–4
    resume = dict(resume_from=str(tmp_path / "r1"), round_index=2, **common)
    metrics = train_adapter(groups, settings(tiny_model_dir, tmp_path / "r2", num_workers=2, **resume),
                            storage_dir=tmp_path / "ray", name="r2")
    assert metrics["step"] == 6 and metrics["items"] == 1  # steps 5, 6: one group per worker each
    first = json.loads((tmp_path / "r2" / METRICS_FILE).read_text())[0]
    assert first["clip_fraction"] == 0 and first["kl"] == pytest.approx(0, abs=1e-7)  # π_old = the resumed adapter
    meta = read_meta(tmp_path / "r2")
    assert (meta["round"], meta["step"], meta["workers"], meta["items"], meta["completions"]) == (2, 6, 2, 2, 6)
    # the same resumed round on one worker, both groups in one micro-batch: the mean over all 6 responses
    train_local(groups, settings(tiny_model_dir, tmp_path / "one", micro_batch_size=2, **resume))
    a, b = load_file(str(tmp_path / "r2" / "adapter_model.safetensors")), load_file(
        str(tmp_path / "one" / "adapter_model.safetensors"))
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5


def test_shards_are_equal():
    # 5 items over 2 workers: the last one is dropped; fewer items than workers: all of them on one worker
    with pytest.warns(UserWarning, match="dropping the last 1 of 5"):
        assert equal_shards(list(range(5)), 2) == ([0, 1, 2, 3], 2)
    assert equal_shards([0], 4) == ([0], 1)
    assert equal_shards([0, 1, 2], 4) == ([0, 1, 2], 1)
    assert equal_shards([0, 1, 2, 3], 4) == ([0, 1, 2, 3], 4)
