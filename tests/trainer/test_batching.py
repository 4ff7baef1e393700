"""Shared-prompt batches: encoding and layout by hand, and the same loss and gradients as one
sequence at a time, for pairs and for groups, on the tiny model."""
import torch

from flowpo.maths.grpo import iogrpo_loss
from flowpo.maths.losses import score_dpo_loss
from trainer.batching import Encoded, collate, completion_logprobs, encode_shared


class CharTokenizer:
    """One id per character; EOS = 0. Enough to count tokens by eye."""

    eos_token_id = 0

    def __call__(self, text, add_special_tokens=False):
        return type("Out", (), {"input_ids": [ord(c) for c in text]})


def test_encode_shared_cuts_the_prompt_for_the_longest_completion():
    # completions "xy"+EOS (3) and "z"+EOS (2); max_len 5 → the prompt keeps 5 − 3 = 2 tokens: "ef"
    enc = encode_shared(CharTokenizer(), "abcdef", ["xy", "z"], max_len=5)
    assert enc == Encoded((ord("e"), ord("f")), ((ord("x"), ord("y"), 0), (ord("z"), 0)))
    # a completion longer than max_len − 1 = 3 is cut to 3 and the prompt keeps its last token
    enc = encode_shared(CharTokenizer(), "abc", ["wxyz"], max_len=4)
    assert enc == Encoded((ord("c"),), ((ord("w"), ord("x"), ord("y")),))


def test_collate_layout_by_hand():
    batch = collate([Encoded((1, 2, 3), ((4,), (5, 6))), Encoded((7,), ((8, 9, 10),))], pad_id=0)
    assert batch.prompt_ids.tolist() == [[1, 2, 3], [0, 0, 7]]  # left-padded
    assert batch.prompt_mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert batch.completion_ids.tolist() == [[4, 0, 0], [5, 6, 0], [8, 9, 10]]  # right-padded
    assert batch.completion_mask.tolist() == [[1, 0, 0], [1, 1, 0], [1, 1, 1]]
    assert batch.owner.tolist() == [0, 0, 1]
    # per sequence: (3 + 1) + (3 + 2) + (1 + 3) = 13 tokens
    assert batch.tokens == 13


def one_sequence(model, prompt, completion):
    """Independent reference: the whole sequence in one forward, per-token completion log-probs."""
    ids = torch.tensor([list(prompt) + list(completion)])
    logps = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), dim=-1)
    return logps.gather(1, ids[0, 1:, None])[len(prompt) - 1:, 0]


def grads_of(model, loss):
    model.zero_grad()
    loss.backward()
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.requires_grad])


def test_pairs_shared_prompt_same_loss_and_gradients(policy, tokenizer):
    # two pairs whose prompts differ in length: padding is exercised too
    items = [("Write a workflow that solves the problem:", " return solution.code", " return max(x)"),
             ("Q:", " yes it is", " no")]
    encoded = [encode_shared(tokenizer, p, [won, lost], 64) for p, won, lost in items]
    batch = collate(encoded, pad_id=tokenizer.eos_token_id)
    scores_w, scores_l, ref = torch.tensor([1.0, 0.75]), torch.tensor([0.0, 0.25]), torch.tensor([-30.0, -20.0])

    def loss_of(seq):  # seq: [4] summed log-probs, chosen/rejected interleaved
        return score_dpo_loss(seq[0::2], seq[1::2], ref, ref, scores_w, scores_l, beta=0.5)[0]

    results = {}
    for share in (True, False):
        loss = loss_of(completion_logprobs(policy, *batch.tensors(), share_prompt=share).sum(dim=1))
        results[share] = (loss.detach(), grads_of(policy, loss))
    separate = torch.stack([one_sequence(policy, e.prompt, c).sum() for e in encoded for c in e.completions])
    loss = loss_of(separate)
    results["separate"] = (loss.detach(), grads_of(policy, loss))
    for key in (True, False):
        assert torch.allclose(results[key][0], results["separate"][0], rtol=1e-5, atol=1e-6)
        assert torch.allclose(results[key][1], results["separate"][1], rtol=1e-4, atol=1e-6)
    assert results["separate"][1].abs().max() > 1e-3  # the gradients compared are not all zero


def test_group_shared_prompt_same_loss_and_gradients(policy, tokenizer):
    # one micro-batch of two groups (4 and 2 members) with prompts of different lengths
    groups = [("Solve HumanEval/23 with a workflow:", [" a", " bb cc", " return 1", " x y z w"],
               [-1.3, -0.4, 0.4, 1.3]),
              ("Solve:", [" ok", " not ok at all"], [1.0, -1.0])]
    encoded = [encode_shared(tokenizer, p, cs, 64) for p, cs, _ in groups]
    batch = collate(encoded, pad_id=tokenizer.eos_token_id)
    adv = torch.tensor([a for _, _, advs in groups for a in advs])
    mask = batch.completion_mask
    with torch.no_grad():  # old and ref: the current policy moved by fixed offsets, so r ≠ 1 and KL ≠ 0
        start = completion_logprobs(policy, *batch.tensors())
    old, ref = (start + 0.1) * mask, (start - 0.2) * mask

    def loss_of(logps):
        return iogrpo_loss(logps, old, ref, mask, adv, beta=0.1, epsilon=0.2)[0]

    results = {}
    for share in (True, False):
        loss = loss_of(completion_logprobs(policy, *batch.tensors(), share_prompt=share))
        results[share] = (loss.detach(), grads_of(policy, loss))
    rows = [one_sequence(policy, e.prompt, c) for e in encoded for c in e.completions]
    separate = torch.zeros_like(start)
    for i, row in enumerate(rows):
        separate[i, :len(row)] = row
    loss = loss_of(separate)
    results["separate"] = (loss.detach(), grads_of(policy, loss))
    for key in (True, False):
        assert torch.allclose(results[key][0], results["separate"][0], rtol=1e-5, atol=1e-6)
        assert torch.allclose(results[key][1], results["separate"][1], rtol=1e-4, atol=1e-6)
    assert results["separate"][1].abs().max() > 1e-3


def test_shared_path_embeds_each_prompt_once(policy):
    # prompt of 5 tokens, completions of 3 and 3: shared = 5 + 2·3 = 11 positions, plain = 2·(5 + 3) = 16
    batch = collate([Encoded((11, 12, 13, 14, 15), ((21, 22, 23), (31, 32, 33)))], pad_id=0)
    seen = []
    hook = policy.get_input_embeddings().register_forward_hook(lambda m, args, out: seen.append(args[0].numel()))
    try:
        with torch.no_grad():
            shared = completion_logprobs(policy, *batch.tensors(), share_prompt=True)
            plain = completion_logprobs(policy, *batch.tensors(), share_prompt=False)
    finally:
        hook.remove()
    assert seen == [5, 6, 16]
    assert torch.allclose(shared, plain, atol=1e-5)


def test_distinct_logprobs_compute_each_prompt_once_and_equal_one_batch_at_a_time(policy, tokenizer):
    from trainer.batching import distinct_logprobs

    # pairs drawn with replacement: (P, a, b) twice, (P, a, c), (Q, d, e); P is computed once for a, b, c
    encode = lambda prompt, *completions: encode_shared(tokenizer, prompt, list(completions), 64)  # noqa: E731
    batches = [collate([encode("Write a workflow:", " a = 1", " b")], pad_id=0),
               collate([encode("Write a workflow:", " a = 1", " b"), encode("Q:", " yes", " no no")], pad_id=0),
               collate([encode("Write a workflow:", " a = 1", " return c")], pad_id=0)]
    prompt_rows = []

    def count(module, args, kwargs):
        if kwargs.get("logits_to_keep") == 1:  # a prompt pass (completion_logprobs' shared path)
            prompt_rows.append(kwargs["input_ids"].shape[0])

    hook = policy.register_forward_pre_hook(count, with_kwargs=True)
    try:
        with torch.no_grad():
            together = distinct_logprobs(policy, batches, chunk=8)
    finally:
        hook.remove()
    assert prompt_rows == [2]  # P and Q once each, in one pass (their 4 distinct completions fit in a chunk)
    with torch.no_grad():
        one_by_one = [completion_logprobs(policy, *b.tensors()) for b in batches]  # P three times
    for got, want in zip(together, one_by_one):
        assert got.shape == want.shape and torch.allclose(got, want, atol=1e-5)
    with torch.no_grad():  # a chunk of 2 completions: P's three distinct completions take two passes
        assert all(torch.allclose(a, b) for a, b in zip(distinct_logprobs(policy, batches, chunk=2), together))


def test_distinct_logprobs_compute_the_start_all_prompts_share_once(policy, tokenizer):
    from trainer.batching import distinct_logprobs, rows, shared_start

    # three prompts of one template: the instructions are computed once, then each problem's own end
    template = "You design agent workflows. Use the operators. Write the workflow between graph tags. Problem: "
    encode = lambda prompt, *completions: encode_shared(tokenizer, prompt, list(completions), 128)  # noqa: E731
    batches = [collate([encode(template + "add two numbers", " a = 1", " b"),
                        encode(template + "sort a list", " return sorted(x)", " x")], pad_id=0),
               collate([encode(template + "reverse a string", " s[::-1]", " s")], pad_id=0)]
    prompts = list(dict.fromkeys(prompt for b in batches for prompt, _ in rows(b)))
    assert len(prompts) == 3 and shared_start(prompts) >= 15  # the template's tokens, about
    with torch.no_grad():
        shared = distinct_logprobs(policy, batches, chunk=3, min_prefix=4)  # passes: (3 completions), (1 + 2)
        alone = distinct_logprobs(policy, batches, chunk=3, min_prefix=10_000)  # no shared start
        one_by_one = [completion_logprobs(policy, *b.tensors()) for b in batches]
    for a, b, c in zip(shared, alone, one_by_one):
        assert torch.allclose(a, c, atol=1e-5) and torch.allclose(b, c, atol=1e-5)
    assert shared_start([(1, 2, 3), (1, 2, 4, 5), (1, 2)]) == 1  # each prompt keeps a token of its own
    assert shared_start([(1, 2, 3)]) == 0 and shared_start([(1, 2), (3, 4)]) == 0
