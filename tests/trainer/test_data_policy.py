"""π_old is the policy that wrote a round's data (flowpo/algorithms.py, ``data_policy``): with rounds
that overlap (pipeline.overlap_rounds) it is one adapter version older than the one the learner starts
from, and the learner computes it with that adapter's weights swapped in (trainer/fit.py), on the tiny
model in fp32. The bookkeeping of which adapter that is, hand-computed, for both algorithms."""
import pytest
import torch
from peft import get_peft_model_state_dict, set_peft_model_state_dict

from flowpo.config import TrainConfig
from flowpo.maths.groups import PromptGroup
from trainer.fit import round_start_logprobs
from trainer.learner import OLD_IS_BASE, LearnerSettings
from trainer.objectives import micro_batches

GROUP = PromptGroup("a", "Solve HumanEval/23 with a workflow:", (" a", " bb cc", " return 1", " x y z w"),
                    (0.0, 0.0, 1.0, 1.0), (-1.0, -1.0, 1.0, 1.0))


def passes(tokenizer):
    return micro_batches([GROUP], tokenizer, size=1, max_len=64, max_tokens=0)


def start_and_old(policy, tokenizer, **kwargs):
    mbs = passes(tokenizer)
    round_start_logprobs(policy, mbs, reference="previous", needs_old=True, starts_from_base=False, **kwargs)
    (part,) = mbs[0].passes
    return part.ref, part.old


def test_old_logprobs_come_from_the_adapter_that_wrote_the_data(policy, tokenizer):
    own = {name: tensor.detach().clone() for name, tensor in get_peft_model_state_dict(policy).items()}
    torch.manual_seed(1)
    older = {name: tensor + 0.05 * torch.randn_like(tensor) for name, tensor in own.items()}  # another adapter
    set_peft_model_state_dict(policy, older)
    try:
        _, expected_old = start_and_old(policy, tokenizer)  # what that adapter gives as the starting one
    finally:
        set_peft_model_state_dict(policy, own)
    start, same = start_and_old(policy, tokenizer)  # sequential rounds: π_old is the start
    assert torch.equal(start, same)

    ref, old = start_and_old(policy, tokenizer, old_weights=older)
    assert torch.allclose(old, expected_old, atol=1e-6)
    assert torch.equal(ref, start), "the reference (previous: the starting adapter) must not move"
    assert (old - start).abs().max() > 1e-3, "the two adapters give the same log-probs: nothing was swapped"
    after = get_peft_model_state_dict(policy)
    assert all(torch.equal(after[name], own[name]) for name in own), "the training adapter was not restored"

    with policy.disable_adapter(), torch.no_grad():
        _, base_old = start_and_old(policy, tokenizer)
    _, old = start_and_old(policy, tokenizer, old_weights=OLD_IS_BASE)
    assert torch.allclose(old, base_old, atol=1e-6)


@pytest.mark.parametrize("algorithm, init, data, old", [
    ("iogrpo", "", None, ""),  # round 1: a fresh LoRA, its own data
    ("iogrpo", "/r/round-1", "/r/round-1", ""),  # sequential: the data's adapter is the start
    ("iogrpo", "/r/round-1", "", OLD_IS_BASE),  # overlapped round 2: data from the base model
    ("iogrpo", "/r/round-2", "/r/round-1", "/r/round-1"),  # overlapped round 3: one version older
    ("iogrpo", "", "", ""),  # round 1 skipped training: base model both
    ("score_dpo", "/r/round-2", "/r/round-1", ""),  # the reference is the base model: π_old unused
    ("dpo", "/r/round-1", "", ""),
])
def test_which_adapter_is_pi_old(algorithm, init, data, old):
    settings = LearnerSettings.for_round(TrainConfig(algorithm=algorithm), base_model="m", out_dir="o",
                                         init_adapter=init, round_index=3, data_adapter=data)
    assert settings.old_adapter == old
