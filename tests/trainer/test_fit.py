"""The learner's round in one process (train_local): accumulation, resume, reference policies, ioGRPO
and DPO read-outs, on the tiny model in fp32."""
import dataclasses
from pathlib import Path

import pytest
import torch

from flowpo.config import TrainConfig
from flowpo.maths.groups import PromptGroup
from flowpo.maths.pairs import PreferencePair
from trainer.checkpoint import OPTIMIZER_FILE, read_meta
from trainer.learner import LearnerSettings, Policy, prepare_round, train_local

PAIRS = [PreferencePair("a", "Write a workflow:", " return solution.code", " return max(x)", 1.0, 0.0),
         PreferencePair("b", "Q:", " yes", " no no", 0.75, 0.25),
         PreferencePair("c", "Solve it step by step:", " 42", " 41", 1.0, 0.5),
         PreferencePair("d", "R:", " a b", " c", 0.5, 0.0)]


def settings(model, out, **overrides) -> LearnerSettings:
    """The round's own fields by name, the rest into its train section."""
    own = {f.name for f in dataclasses.fields(LearnerSettings)}
    train = dict(beta=0.1, epochs=1, learning_rate=1e-2, grad_accum_steps=1, max_seq_len=64, lora_r=4, lora_alpha=8,
                 lora_dropout=0.0, target_modules=["q_proj", "v_proj"], seed=0, use_gpu=False, bf16=False)
    train.update({k: v for k, v in overrides.items() if k not in own})
    return LearnerSettings(train=TrainConfig(**train), base_model=model, out_dir=str(out),
                           **{k: v for k, v in overrides.items() if k in own})


def setup(s: LearnerSettings, items: list):
    """A worker's policy at the round's start and its micro-batches with their round-start log-probs."""
    policy = Policy(s.base_model, bf16=s.train.bf16, device="cpu")
    policy.start(s, s.start)
    return policy.policy, prepare_round(policy, s, items)


def lora(out) -> dict:
    from safetensors.torch import load_file

    return load_file(str(Path(out) / "adapter_model.safetensors"))


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


def test_gradient_accumulation_4x1_equals_1x4(tiny_model_dir, tmp_path):
    # 4 pairs × 2 epochs: two optimizer steps of 4 pairs each, either 4 micro-batches of 1 or 1 of 4
    accum = train_local(PAIRS, settings(tiny_model_dir, tmp_path / "a", epochs=2, grad_accum_steps=4))
    batch = train_local(PAIRS, settings(tiny_model_dir, tmp_path / "b", epochs=2, micro_batch_size=4))
    assert [h["step"] for h in accum] == [h["step"] for h in batch] == [1, 2]
    assert accum[0]["loss"] == pytest.approx(batch[0]["loss"], abs=1e-6)
    assert accum[1]["loss"] == pytest.approx(batch[1]["loss"], abs=1e-6)
    assert accum[0]["tokens"] == batch[0]["tokens"]
    # Adam hides a gradient's scale from the weights; the (unclipped) norm shows a wrong normalisation
    assert accum[0]["grad_norm"] == pytest.approx(batch[0]["grad_norm"], rel=1e-5)
    assert max_diff(lora(tmp_path / "a"), lora(tmp_path / "b")) < 1e-5
    start = train_local(PAIRS, settings(tiny_model_dir, tmp_path / "z", epochs=0))  # the initial LoRA
    assert start == [] and max_diff(lora(tmp_path / "a"), lora(tmp_path / "z")) > 1e-3  # training moved it


def test_resume_continues_like_one_longer_run(tiny_model_dir, tmp_path):
    # 4 pairs, 2 per step: 2 steps an epoch. One run of 2 epochs = 1 epoch, then 1 resumed epoch.
    s = dict(grad_accum_steps=2)
    train_local(PAIRS, settings(tiny_model_dir, tmp_path / "full", epochs=2, **s))
    train_local(PAIRS, settings(tiny_model_dir, tmp_path / "r1", round_index=1, **s))
    meta = read_meta(tmp_path / "r1")
    assert (meta["round"], meta["step"], meta["algorithm"], meta["items"], meta["completions"]) == (1, 2, "score_dpo",
                                                                                                   4, 8)
    assert (tmp_path / "r1" / OPTIMIZER_FILE).is_file()
    resumed = train_local(PAIRS, settings(tiny_model_dir, tmp_path / "r2", resume_from=str(tmp_path / "r1"),
                                          round_index=2, **s))
    assert [h["step"] for h in resumed] == [3, 4] and read_meta(tmp_path / "r2")["step"] == 4
    assert max_diff(lora(tmp_path / "r2"), lora(tmp_path / "full")) < 1e-5
    # the same weights without the optimizer state (Adam moments, step count) end elsewhere
    train_local(PAIRS, settings(tiny_model_dir, tmp_path / "w", init_adapter=str(tmp_path / "r1"), **s))
    assert max_diff(lora(tmp_path / "w"), lora(tmp_path / "full")) > 1e-4


def test_reference_is_the_base_model_or_the_starting_adapter(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    from trainer.batching import completion_logprobs

    train_local(PAIRS, settings(tiny_model_dir, tmp_path / "r1", epochs=2))  # an adapter that differs from base
    common = dict(init_adapter=str(tmp_path / "r1"), algorithm="iogrpo")
    group = [PromptGroup("a", "Q:", (" no", " yes"), (0.0, 1.0), (-1.0, 1.0))]
    _, (base_mb,) = setup(settings(tiny_model_dir, tmp_path / "x", reference="base", **common), group)
    policy, (prev_mb,) = setup(settings(tiny_model_dir, tmp_path / "y", reference="previous", **common), group)
    (base_mb,), (prev_mb,) = base_mb.passes, prev_mb.passes  # one pass each: the group fits the budget
    plain = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    with torch.no_grad():
        base = completion_logprobs(plain, *base_mb.batch.tensors())
        adapter = completion_logprobs(policy.eval(), *prev_mb.batch.tensors())
    assert torch.allclose(base_mb.ref, base, atol=1e-5)  # adapter switched off = the base weights
    assert torch.allclose(base_mb.old, adapter, atol=1e-5)  # π_old = the starting adapter
    assert torch.equal(prev_mb.ref, prev_mb.old) and torch.allclose(prev_mb.ref, adapter, atol=1e-5)
    assert (base - adapter).abs().max() > 1e-3  # the two references do differ


def test_iogrpo_first_step_is_on_policy(tiny_model_dir, tmp_path):
    # scores (0, 0, 1, 1): mean 0.5, std 0.5 → A = (−1, −1, 1, 1); mean |A| = 1
    group = PromptGroup("a", "Write a workflow:", (" x", " y z", " return 1", " return 2"), (0.0, 0.0, 1.0, 1.0),
                        (-1.0, -1.0, 1.0, 1.0))
    history = train_local([group], settings(tiny_model_dir, tmp_path / "g", algorithm="iogrpo", reference="previous",
                                            epochs=2))
    first, second = history
    # step 1: π = π_old = π_ref → r = 1, KL = 0, nothing clipped; per response (1/|y|)·Σ_t A_i = A_i → loss −mean(A) = 0
    assert first["clip_fraction"] == 0 and first["kl"] == pytest.approx(0, abs=1e-7)
    assert first["ratio"] == pytest.approx(1, abs=1e-6) and first["loss"] == pytest.approx(0, abs=1e-6)
    assert first["advantage_abs"] == pytest.approx(1.0)
    assert first["grad_norm"] > 0 and first["tokens_per_s"] > 0
    assert second["kl"] > 0 and second["ratio"] != pytest.approx(1, abs=1e-6)  # step 2 is off the old policy
    assert read_meta(tmp_path / "g")["completions"] == 4


def test_dpo_uses_the_pair_not_the_scores(tiny_model_dir, tmp_path):
    rescored = [PreferencePair(p.problem_id, p.prompt, p.chosen, p.rejected, 1.0, 0.0) for p in PAIRS]
    dpo = train_local(PAIRS, settings(tiny_model_dir, tmp_path / "d", algorithm="dpo", grad_accum_steps=2))
    train_local(rescored, settings(tiny_model_dir, tmp_path / "s", grad_accum_steps=2))
    scored = train_local(PAIRS, settings(tiny_model_dir, tmp_path / "t", grad_accum_steps=2))
    # zero-init LoRA: Δ = 0 → the first loss is log 2 = 0.693147 for all three
    assert dpo[0]["loss"] == pytest.approx(0.693147, abs=1e-5) == scored[0]["loss"]
    assert max_diff(lora(tmp_path / "d"), lora(tmp_path / "s")) < 1e-6  # DPO = Score-DPO with scores (1, 0)
    assert max_diff(lora(tmp_path / "d"), lora(tmp_path / "t")) > 1e-4  # and the scores do matter to Score-DPO
    assert {"reward_w", "reward_l", "margin", "accuracy", "grad_norm", "tokens_per_s"} <= set(dpo[1])
    assert dpo[1]["margin"] == pytest.approx(dpo[1]["reward_w"] - dpo[1]["reward_l"], abs=1e-6)
