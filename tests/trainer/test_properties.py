"""Invariants of pair and group construction, for any scores (hypothesis)."""
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from flowpo.maths.groups import build_groups
from flowpo.maths.pairs import Candidate, candidate_pairs, sample_score_dpo_pairs

score = st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0])
problems = st.dictionaries(st.sampled_from(["a", "b", "c"]), st.lists(score, min_size=1, max_size=6), min_size=1)


def candidates(scores_by_problem):
    return [Candidate(pid, f"prompt {pid}", f"{pid}{i}", s)
            for pid, scores in scores_by_problem.items() for i, s in enumerate(scores)]


@given(problems)
def test_pairs_are_within_one_problem_winner_above_loser(scores_by_problem):
    pairs = candidate_pairs(candidates(scores_by_problem))
    assert all(won.problem_id == lost.problem_id and won.score > lost.score for won, lost in pairs)
    expected = sum(1 for scores in scores_by_problem.values() for i, x in enumerate(scores)
                   for y in scores[i + 1:] if x != y)
    assert len(pairs) == expected


@given(problems, st.integers(1, 30), st.floats(0.5, 4), st.integers(0, 100))
def test_sampled_pairs_have_the_requested_count_or_none(scores_by_problem, n, alpha, seed):
    cands = candidates(scores_by_problem)
    pairs = sample_score_dpo_pairs(cands, num_pairs=n, alpha=alpha, seed=seed)
    assert len(pairs) == (n if candidate_pairs(cands) else 0)
    assert all(p.score_chosen > p.score_rejected for p in pairs)
    assert pairs == sample_score_dpo_pairs(cands, num_pairs=n, alpha=alpha, seed=seed)


@settings(deadline=None)
@given(st.lists(score, min_size=0, max_size=9), st.integers(3, 6), st.integers(1, 2), st.integers(1, 10))
def test_groups_are_sharpened_nonzero_variance_and_centred(scores, n, t, top_n):
    if 2 * t >= n:
        return
    groups = build_groups("p", scores, m=8, n=n, t=t, top_n=top_n, max_combinations=40, seed=0)
    assert len(groups) <= top_n
    for g in groups:
        assert len(g.members) == 2 * t == len(set(g.members))
        assert all(0 <= i < min(8, len(scores)) for i in g.members)
        assert list(g.scores) == sorted(g.scores) and max(g.scores) > min(g.scores)
        assert math.isclose(sum(g.advantages), 0.0, abs_tol=1e-9)
        # lowest-scored members get the lowest advantages
        assert list(g.advantages) == sorted(g.advantages)


@settings(deadline=None)
@given(problems, st.integers(1, 4))
def test_sampled_groups_stay_within_one_problem(scores_by_problem, top_n):
    from flowpo.maths.groups import sample_groups

    cands = candidates(scores_by_problem)
    groups = sample_groups(cands, m=6, n=3, t=1, top_n=top_n, max_combinations=20, seed=0)
    for pid in scores_by_problem:
        assert sum(g.problem_id == pid for g in groups) <= top_n
    for g in groups:
        assert g.prompt == f"prompt {g.problem_id}" and all(c.startswith(g.problem_id) for c in g.completions)
        assert len(g.completions) == 2 and g.scores[0] < g.scores[1]


token_lists = st.lists(st.integers(1, 50), min_size=1, max_size=6)


@settings(deadline=None)  # the first example pays for importing torch
@given(st.lists(st.tuples(token_lists, st.lists(token_lists, min_size=1, max_size=3)), min_size=1, max_size=4))
def test_collate_keeps_every_sequence(structure):
    from trainer.batching import Encoded, collate

    encoded = [Encoded(tuple(p), tuple(tuple(c) for c in cs)) for p, cs in structure]
    batch = collate(encoded, pad_id=0)
    row = 0
    for i, e in enumerate(encoded):
        prompt = batch.prompt_ids[i][batch.prompt_mask[i].bool()].tolist()
        assert prompt == list(e.prompt)
        for c in e.completions:
            assert batch.owner[row].item() == i
            assert batch.completion_ids[row][batch.completion_mask[row].bool()].tolist() == list(c)
            row += 1
    assert row == batch.completion_ids.shape[0]
    assert batch.tokens == sum(len(e.prompt) + len(c) for e in encoded for c in e.completions)
