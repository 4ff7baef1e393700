from collections import Counter

from flowpo.maths.pairs import Candidate, candidate_pairs, sample_score_dpo_pairs


def cand(pid, name, score):
    return Candidate(problem_id=pid, prompt=f"prompt {pid}", completion=name, score=score)


def test_candidate_pairs_are_within_problem_with_different_scores():
    cands = [cand("a", "a1", 1.0), cand("a", "a2", 0.0), cand("a", "a3", 0.0), cand("b", "b1", 1.0),
             cand("b", "b2", 1.0)]
    pairs = candidate_pairs(cands)
    # a: (a1>a2), (a1>a3); a2 vs a3 tie; b: tie → nothing
    assert sorted((won.completion, lost.completion) for won, lost in pairs) == [("a1", "a2"), ("a1", "a3")]


def test_no_pairs_when_all_scores_tie():
    assert sample_score_dpo_pairs([cand("a", "x", 0.0), cand("a", "y", 0.0)], num_pairs=5, alpha=3,
                                  seed=0) == []


def test_sampling_weights_follow_score_gap_to_alpha():
    # gaps: (1.0 vs 0.0) = 1 → weight 1;  (1.0 vs 0.5) = 0.5 → 0.125;  (0.5 vs 0.0) = 0.5 → 0.125
    # P = 1/1.25 = 0.8, 0.1, 0.1
    cands = [cand("a", "hi", 1.0), cand("a", "mid", 0.5), cand("a", "lo", 0.0)]
    pairs = sample_score_dpo_pairs(cands, num_pairs=20000, alpha=3, seed=1)
    counts = Counter((p.chosen, p.rejected) for p in pairs)
    assert abs(counts[("hi", "lo")] / 20000 - 0.8) < 0.02
    assert abs(counts[("hi", "mid")] / 20000 - 0.1) < 0.02
    assert all(p.score_chosen > p.score_rejected for p in pairs)


def test_sampling_is_seeded():
    cands = [cand("a", str(i), i / 4) for i in range(5)]
    first = sample_score_dpo_pairs(cands, num_pairs=10, alpha=3, seed=7)
    assert first == sample_score_dpo_pairs(cands, num_pairs=10, alpha=3, seed=7)
    assert first != sample_score_dpo_pairs(cands, num_pairs=10, alpha=3, seed=8)
