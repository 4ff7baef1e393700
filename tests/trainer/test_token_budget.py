"""train.max_tokens_per_pass: passes laid out by hand, the same gradient and round-start log-probs
whether a micro-batch runs in one pass or is split, and a step's peak memory that follows the budget,
not the size of the group, on the tiny model in fp32."""
import pytest
import torch

from flowpo.config import Config, TrainConfig, inconsistency, load_config
from flowpo.errors import ConfigError, FlowPOError
from flowpo.maths.groups import PromptGroup
from flowpo.maths.pairs import PreferencePair
from trainer.batching import CompletionScorer, collate, completion_logprobs, distinct_logprobs, encode_shared
from trainer.fit import fit, round_start_logprobs
from trainer.memory import PeakTensorBytes
from trainer.objectives import micro_batches, pass_loss

# Token counts with the SmolLM2 tokenizer, EOS included: prompts 11 and 3; completions 2, 3, 4, 5, 3, 2 and 2, 5, 2, 2.
GROUPS = [PromptGroup("b", "Solve:", (" ok", " not ok at all", " maybe", " yes"), (0.0, 0.0, 1.0, 1.0),
                      (-1.0, -1.0, 1.0, 1.0)),
          PromptGroup("a", "Solve HumanEval/23 with a workflow:",
                      (" a", " bb cc", " return 1", " x y z w", " ok then", " no"), (0.0, 0.0, 0.5, 0.5, 1.0, 1.0),
                      (-1.2, -1.2, 0.0, 0.0, 1.2, 1.2))]
# Prompt, chosen, rejected: (4, 5, 6), (2, 2, 3), (7, 4, 4), (2, 3, 2) tokens: one pass each of 16, 8, 15 and 8.
PAIRS = [PreferencePair("a", "Write a workflow:", " return solution.code", " return max(x)", 1.0, 0.0),
         PreferencePair("b", "Q:", " yes", " no no", 0.75, 0.25),
         PreferencePair("c", "Solve it step by step:", " 42", " 41", 1.0, 0.5),
         PreferencePair("d", "R:", " a b", " c", 0.5, 0.0)]


class CharTokenizer:
    """One id per character; EOS = 0. Enough to count tokens by eye."""

    eos_token_id, pad_token_id = 0, None

    def __call__(self, text, add_special_tokens=False):
        return type("Out", (), {"input_ids": [ord(c) for c in text]})


class KeepGradient:
    """An optimizer that keeps the step's gradient and moves nothing."""

    def __init__(self, params):
        self.params = [p for p in params if p.requires_grad]

    def step(self):
        self.gradient = torch.cat([p.grad.flatten() for p in self.params])

    def zero_grad(self, set_to_none=True):
        for p in self.params:
            p.grad = None


def group(prompt: str, completions: list[str]) -> PromptGroup:
    n = len(completions)
    return PromptGroup("p", prompt, tuple(completions), (0.0,) * n, tuple(-1.0 + 2.0 * (i % 2) for i in range(n)))


def first_step(policy, tokenizer, items, *, algorithm, max_tokens, share_prompt=True):
    """The learner's own path for one optimizer step over ``items`` (one micro-batch): its passes,
    round-start log-probs (reference: the base model; π_old: the policy), one accumulated step.
    The step's record, its (unclipped) gradient, and the micro-batches."""
    train = TrainConfig(algorithm=algorithm, beta=0.1, epsilon=0.2, max_seq_len=64, max_tokens_per_pass=0)
    mbs = micro_batches(items, tokenizer, size=len(items), max_len=64, max_tokens=max_tokens,
                        share_prompt=share_prompt)
    round_start_logprobs(policy, mbs, reference="base", needs_old=algorithm == "iogrpo", starts_from_base=False,
                         share_prompt=share_prompt, max_tokens=max_tokens)
    optimizer = KeepGradient(policy.parameters())
    (record,) = fit(CompletionScorer(policy, share_prompt=share_prompt), mbs,
                    lambda logps, p: pass_loss(logps, p, train), optimizer, epochs=1, grad_accum_steps=1,
                    max_grad_norm=0.0)
    return record, optimizer.gradient, mbs


def test_passes_by_hand():
    tokenizer = CharTokenizer()
    # prompt "abcd" (4 tokens); completions x, yyy, zz, w with EOS: 2, 4, 3, 2 tokens; budget 12.
    # shared: (x, yyy) = 4 + 2·4 = 12; + zz would be 4 + 3·4 = 16, so (zz, w) = 4 + 2·3 = 10
    item = PromptGroup("p", "abcd", ("x", "yyy", "zz", "w"), (0.0, 1.0, 0.0, 1.0), (-1.0, 1.0, -0.5, 0.5))
    (mb,) = micro_batches([item], tokenizer, size=1, max_len=64, max_tokens=12)
    assert [p.batch.completion_ids.shape for p in mb.passes] == [(2, 4), (2, 3)]
    assert [p.units for p in mb.passes] == [2, 2] and mb.units == 4 and mb.items == 1
    assert [p.values.tolist() for p in mb.passes] == [[-1.0, 1.0], [-0.5, 0.5]]
    assert [p.batch.tokens for p in mb.passes] == [(4 + 2) + (4 + 4), (4 + 3) + (4 + 2)]
    # plain: each completion runs with its own prompt, C·(Lp + Lc): x + yyy = 2·8 = 16 > 12, yyy + zz 16, zz + w 14
    (mb,) = micro_batches([item], tokenizer, size=1, max_len=64, max_tokens=12, share_prompt=False)
    assert [p.batch.completion_ids.shape[0] for p in mb.passes] == [1, 1, 1, 1]
    # 0: no limit, one pass (the layout without a budget)
    (mb,) = micro_batches([item], tokenizer, size=1, max_len=64, max_tokens=0)
    assert len(mb.passes) == 1 and mb.passes[0].batch.completion_ids.shape == (4, 4)
    # pairs: "Q:" + "abc" + "de" = 2 + 2·4 = 10 tokens stay together; 9 cannot hold them
    pair = PreferencePair("q", "Q:", "abc", "de", 1.0, 0.0)
    (mb,) = micro_batches([pair, pair], tokenizer, size=2, max_len=64, max_tokens=10)
    assert [p.units for p in mb.passes] == [1, 1] and mb.passes[0].values.tolist() == [1.0, 0.0]
    with pytest.raises(FlowPOError, match=r"problem q\) take 10 tokens .* train.max_tokens_per_pass = 9"):
        micro_batches([pair], tokenizer, size=1, max_len=64, max_tokens=9)


@pytest.mark.parametrize("max_tokens, share_prompt, passes", [
    (24, True, [4, 3, 2, 1]),  # group b whole (3 + 4·5 = 23), then a: (a, bb cc, return 1) = 11 + 3·4 = 23, ...
    (48, True, [5, 5]),  # b's four and a's first together: 2·11 + 5·5 = 47; a's other five: 11 + 5·5 = 36
    (24, False, [3, 1, 1, 1, 1, 1, 1, 1]),  # plain, C·(Lp + Lc): 3·(3 + 5) = 24 of b; a's completions one by one
])
def test_groups_split_over_passes_have_the_one_pass_gradient(policy, tokenizer, max_tokens, share_prompt, passes):
    whole, whole_grad, (whole_mb,) = first_step(policy, tokenizer, GROUPS, algorithm="iogrpo", max_tokens=0,
                                                share_prompt=share_prompt)
    split, split_grad, (split_mb,) = first_step(policy, tokenizer, GROUPS, algorithm="iogrpo", max_tokens=max_tokens,
                                                share_prompt=share_prompt)
    assert len(whole_mb.passes) == 1 and [p.units for p in split_mb.passes] == passes and split["passes"] == len(passes)
    for p in split_mb.passes:
        (prompts, lp), (completions, lc) = p.batch.prompt_ids.shape, p.batch.completion_ids.shape
        assert (prompts * lp + completions * lc if share_prompt else completions * (lp + lc)) <= max_tokens
    assert split["loss"] == pytest.approx(whole["loss"], abs=1e-6)
    assert split["tokens"] == whole["tokens"]
    assert torch.allclose(split_grad, whole_grad, rtol=1e-4, atol=1e-6)
    assert whole_grad.abs().max() > 1e-3  # the gradients compared are not all zero


@pytest.mark.parametrize("max_tokens, passes", [(16, [1, 1, 1, 1]), (32, [2, 2])])
def test_pairs_split_between_passes_have_the_one_pass_gradient(policy, tokenizer, max_tokens, passes):
    # budget 32: (a, b) = 2·4 + 4·6 = 32 and (c, d) = 2·7 + 4·4 = 30; the four together take 4·7 + 8·6 = 76
    whole, whole_grad, (whole_mb,) = first_step(policy, tokenizer, PAIRS, algorithm="score_dpo", max_tokens=0)
    split, split_grad, (split_mb,) = first_step(policy, tokenizer, PAIRS, algorithm="score_dpo", max_tokens=max_tokens)
    assert len(whole_mb.passes) == 1 and [p.units for p in split_mb.passes] == passes
    assert split["loss"] == pytest.approx(whole["loss"], abs=1e-6)
    assert split["margin"] == pytest.approx(whole["margin"], abs=1e-6)
    assert torch.allclose(split_grad, whole_grad, rtol=1e-4, atol=1e-6)
    assert whole_grad.abs().max() > 1e-3
    with pytest.raises(FlowPOError, match=r"problem a\) take 16 tokens"):
        first_step(policy, tokenizer, PAIRS, algorithm="score_dpo", max_tokens=15)


def test_round_start_logprobs_are_the_same_in_budgeted_passes(policy, tokenizer):
    batches = [collate([encode_shared(tokenizer, g.prompt, list(g.completions), 64)], pad_id=0) for g in GROUPS]
    calls = []  # tokens of each model call: a pass is a prompt call, then a completion call

    def count(module, args, kwargs):
        calls.append(kwargs["input_ids"].numel())

    with torch.no_grad():
        one_by_one = [completion_logprobs(policy, *b.tensors()) for b in batches]
        unlimited = distinct_logprobs(policy, batches, chunk=100)
        hook = policy.register_forward_pre_hook(count, with_kwargs=True)
        try:
            budgeted = distinct_logprobs(policy, batches, chunk=100, max_tokens=20)
        finally:
            hook.remove()
    # b: 3 + 4·5 = 23 > 20, so (ok, not ok at all, maybe) = 18 and (yes) = 5 (with a's first: 2·11 + 2·2 = 26);
    # a: (a, bb cc) = 11 + 2·3, (return 1) = 11 + 4, (x y z w) = 11 + 5, (ok then, no) = 11 + 2·3
    pass_tokens = [calls[i] + calls[i + 1] for i in range(0, len(calls), 2)]
    assert pass_tokens == [3 + 3 * 5, 3 + 2, 11 + 2 * 3, 11 + 4, 11 + 5, 11 + 2 * 3]
    for got, unchunked, alone in zip(budgeted, unlimited, one_by_one):
        assert got.shape == alone.shape
        assert torch.allclose(got, unchunked, atol=1e-5) and torch.allclose(got, alone, atol=1e-5)


def measure(policy, k: int, max_tokens: int) -> tuple[int, int, int]:
    """Peak tensor bytes of the round-start pass and of one optimizer step for a group of ``k``
    completions of 41 tokens after a prompt of 40, and the step's passes."""
    item = group("p" * 40, [f"{i:02d}" + "x" * 38 for i in range(k)])
    mbs = micro_batches([item], CharTokenizer(), size=1, max_len=128, max_tokens=max_tokens)
    with PeakTensorBytes() as start:
        round_start_logprobs(policy, mbs, reference="previous", needs_old=True, starts_from_base=False,
                             max_tokens=max_tokens)
    train = TrainConfig(algorithm="iogrpo", max_seq_len=128)
    optimizer = KeepGradient(policy.parameters())
    with PeakTensorBytes() as step:
        fit(CompletionScorer(policy), mbs, lambda logps, p: pass_loss(logps, p, train), optimizer, epochs=1,
            grad_accum_steps=1, max_grad_norm=0.0)
    return start.peak, step.peak, len(mbs[0].passes)


def test_peak_memory_of_a_step_follows_the_budget_not_the_group_size(policy):
    # A pass of 4 completions: 40 + 4·41 = 204 tokens. The tiny model's 49k-entry vocabulary makes the
    # logits (and their gradient) most of a pass's bytes: 4·41 tokens · 49152 · 4 bytes = 32 MiB each.
    budget = 40 + 4 * 41
    figures = {(k, b): measure(policy, k, b) for k in (4, 16) for b in (budget, 0)}
    print({key: (f"{start / 2**20:.1f} MiB", f"{step / 2**20:.1f} MiB", passes)
           for key, (start, step, passes) in figures.items()})
    (start_4, step_4, passes_4), (start_16, step_16, passes_16) = figures[4, budget], figures[16, budget]
    assert (passes_4, passes_16) == (1, 4)
    assert step_16 <= 1.05 * step_4 and start_16 <= 1.05 * start_4  # four times the group, the same peak
    assert figures[4, 0][:2] == pytest.approx((start_4, step_4), rel=0.05)  # 4 completions fit the budget anyway
    (free_start_16, free_step_16, _) = figures[16, 0]
    assert free_step_16 > 3 * step_4 and free_start_16 > 3 * start_4  # without the budget: one pass, 4× the tokens
    # what the budget bounds is mostly one pass's logits and their gradient (63 MiB): the rest is the tiny
    # model's activations and one row's softmax
    logits = 4 * 41 * 49152 * 4
    assert 2 * logits < step_16 < 1.5 * 2 * logits


def test_the_budget_must_hold_one_pair_or_one_group_member(tmp_path):
    def problem(**train) -> str:
        return inconsistency(Config(train=TrainConfig(**train)))

    assert problem(max_seq_len=64, max_tokens_per_pass=128) == ""  # a pair: < 2 · 64 tokens
    assert problem(algorithm="iogrpo", max_seq_len=64, max_tokens_per_pass=64) == ""  # a member: ≤ 64
    assert problem(max_seq_len=64, max_tokens_per_pass=0) == ""  # no limit
    assert problem(max_seq_len=64, max_tokens_per_pass=127).startswith(
        "train.max_tokens_per_pass=127 is below 2 × train.max_seq_len = 128: a pass must hold a pair")
    assert "below train.max_seq_len = 64" in problem(algorithm="iogrpo", max_seq_len=64, max_tokens_per_pass=63)
    with pytest.raises(ConfigError, match=r"train.max_tokens_per_pass: must be >= 0 \(0 = no limit\), got -1"):
        TrainConfig(max_tokens_per_pass=-1)
    # checked once all overrides are in, so their order does not matter
    (tmp_path / "run.yaml").write_text("train: {algorithm: score_dpo}\n")
    raised = ["train.max_seq_len=10000", "train.max_tokens_per_pass=20000"]
    assert load_config(tmp_path / "run.yaml", raised).train.max_tokens_per_pass == 20000
    with pytest.raises(ConfigError, match="train.max_tokens_per_pass=16384 is below 2 × train.max_seq_len = 20000"):
        load_config(tmp_path / "run.yaml", raised[:1])


def test_a_round_in_budgeted_passes_trains_the_same_adapter(tiny_model_dir, tmp_path):
    from trainer.learner import LearnerSettings, train_local

    # max_seq_len 16 holds every prompt and workflow of GROUPS; a budget of 16 tokens runs b in passes
    # of (ok, not ok at all) = 3 + 2·5 and (maybe, yes) = 3 + 2·2, and a's six one by one (11 + 2·3 > 16)
    def run(out, max_tokens):
        train = TrainConfig(algorithm="iogrpo", reference="previous", beta=0.1, epochs=2, learning_rate=1e-2,
                            grad_accum_steps=2, max_seq_len=16, max_tokens_per_pass=max_tokens, lora_r=4, lora_alpha=8,
                            lora_dropout=0.0, seed=0, bf16=False)
        return train_local(GROUPS, LearnerSettings(train=train, base_model=tiny_model_dir, out_dir=str(out)))

    whole, split = run(tmp_path / "whole", 0), run(tmp_path / "split", 16)
    assert [h["passes"] for h in whole] == [2, 2] and [h["passes"] for h in split] == [8, 8]
    # Step 2 runs on the adapter step 1 made, off the old policy (ratios ≠ 1, KL > 0): its loss and gradient
    # norm compare the weights too. (Directly, float noise in a near-zero gradient entry can move a weight
    # by up to lr under Adam's first update, ±lr per entry. The "kl" read-out is a token mean within a pass
    # averaged over passes by their responses, so it follows the passes; the loss is a mean over responses.)
    assert whole[1]["kl"] > 0 and whole[1]["loss"] != pytest.approx(whole[0]["loss"], abs=1e-4)
    for one, many in zip(whole, split):
        assert many["loss"] == pytest.approx(one["loss"], abs=1e-6)
        assert many["grad_norm"] == pytest.approx(one["grad_norm"], rel=1e-4)
