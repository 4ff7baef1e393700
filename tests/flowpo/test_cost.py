"""The cost-aware signal (train.cost_weight λ, train.cost_unit; flowpo/maths/cost.py) by hand, through the
registry for both algorithms: the normalization, the crash trap, infrastructure failures left unscored,
and λ = 0 giving exactly today's pairs, weights and advantages."""
import dataclasses
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from driver.learn import candidates_of, learner_items
from flowpo.algorithms import algorithm
from flowpo.config import Config, TrainConfig, inconsistency
from flowpo.errors import ConfigError
from flowpo.maths.cost import (
    answered,
    cost_adjusted,
    cost_signal,
    line_cost,
    normalized_costs,
    unit_interval,
    usage_cost,
)
from flowpo.maths.groups import sample_groups
from flowpo.maths.pairs import Candidate, candidate_pairs, sample_score_dpo_pairs
from flowpo.records import Execution, ScoredSample, Workflow


def cand(name, score, cost, ok=True, pid="p"):
    return Candidate(pid, f"prompt {pid}", name, score, cost=cost, answered=ok)


# One problem: two solves (a cheap, b costly), an answered wrong (c), a crash (d) and a costly answered wrong (e).
# Costliest answered: b, 400. c̃ = a 100/400 = 0.25, b 1, c 200/400 = 0.5, d 1 (no answer), e 300/400 = 0.75.
# λ = 0.4: u = s + λ(1 − c̃) = a 1.3, b 1.0, c 0.2, d 0.0, e 0.1
PROBLEM = [cand("a", 1.0, 100), cand("b", 1.0, 400), cand("c", 0.0, 200), cand("d", 0.0, 0, ok=False),
           cand("e", 0.0, 300)]
SIGNAL = {"a": 1.3, "b": 1.0, "c": 0.2, "d": 0.0, "e": 0.1}


def config(**train) -> Config:
    return dataclasses.replace(Config(), train=TrainConfig(**train))


def test_normalization_and_signal_by_hand():
    costs, answers = [c.cost for c in PROBLEM], [c.answered for c in PROBLEM]
    assert normalized_costs(costs, answers) == [0.25, 1.0, 0.5, 1.0, 0.75]
    assert cost_signal([c.score for c in PROBLEM], costs, answers, cost_weight=0.4) == pytest.approx(
        [1.3, 1.0, 0.2, 0.0, 0.1])
    # The same problem at 1000 times the cost (another task, another unit): the same signal
    assert cost_signal([c.score for c in PROBLEM], [1000 * c for c in costs], answers, cost_weight=0.4) == \
        pytest.approx([1.3, 1.0, 0.2, 0.0, 0.1])
    # No answered workflow, or answers that cost nothing: nothing to compare, the scores' order stays
    assert normalized_costs([5.0, 0.0], [False, False]) == [1.0, 1.0]
    assert normalized_costs([0.0, 0.0, 9.0], [True, True, False]) == [0.0, 0.0, 1.0]


def test_signal_is_per_problem_and_keeps_the_order():
    other = [cand("x", 0.0, 10, pid="q"), cand("y", 1.0, 20, pid="q")]  # q's costliest answer is y's 20
    mixed = [PROBLEM[0], other[0], *PROBLEM[1:], other[1]]
    got = cost_adjusted(mixed, 0.4)
    assert [c.completion for c in got] == ["a", "x", "b", "c", "d", "e", "y"]
    # x: 0 + 0.4·(1 − 10/20) = 0.2; y: 1 + 0.4·0 = 1.0; p's as above, unchanged by q's costs
    assert [1.4 * c.score for c in got] == pytest.approx([1.3, 0.2, 1.0, 0.2, 0.0, 0.1, 1.0])


def test_units_and_what_answered_means():
    usage = {"llm_calls": 6, "prompt_tokens": 900, "completion_tokens": 300, "cost_usd": 0.003}
    assert [usage_cost(usage, unit, runs=3) for unit in ("usd", "tokens", "calls")] == pytest.approx([0.001, 400, 2])
    line = {"usage": {"llm_calls": 1, "prompt_tokens": 1, "completion_tokens": 1, "cost_usd": 0.0},
            "details": {"repeat_scores": [1.0, 0.0, None], "repeat_usage": usage}}
    assert line_cost(line, "tokens") == 400  # the repeats' total over their count, as `flowpo evaluate` counts it
    assert answered("", "def f(): ...") and not answered("crash", "x") and not answered("", "  \n")
    with pytest.raises(ValueError, match="unknown cost unit 'euro'"):
        usage_cost(usage, "euro")


def test_score_dpo_pairs_and_weights_by_hand():
    # u gaps (winner > loser): a>b 0.3, a>c 1.1, a>d 1.3, a>e 1.2, b>c 0.8, b>d 1.0, b>e 0.9, c>d 0.2, c>e 0.1, e>d 0.1
    pool = candidate_pairs(cost_adjusted(PROBLEM, 0.4))  # on [0, 1]: u / 1.4
    gaps = {(won.completion, lost.completion): round(1.4 * (won.score - lost.score), 6) for won, lost in pool}
    assert gaps == {("a", "b"): 0.3, ("a", "c"): 1.1, ("a", "d"): 1.3, ("a", "e"): 1.2, ("b", "c"): 0.8,
                    ("b", "d"): 1.0, ("b", "e"): 0.9, ("c", "d"): 0.2, ("c", "e"): 0.1, ("e", "d"): 0.1}
    # P ∝ gap^3 (the same for gap / 1.4): a>d 2.197 of
    # 2.197 + 1.728 + 1.331 + 1.0 + 0.729 + 0.512 + 0.027 + 0.008 + 0.001 + 0.001 = 7.534
    pairs = algorithm("score_dpo").items(PROBLEM, config(cost_weight=0.4, cost_unit="tokens", num_pairs=20000), 1)
    counts = Counter((p.chosen, p.rejected) for p in pairs)
    assert counts[("a", "d")] / 20000 == pytest.approx(2.197 / 7.534, abs=0.015)
    assert counts[("b", "c")] / 20000 == pytest.approx(0.512 / 7.534, abs=0.01)
    # The loss's values: u / (1 + λ) in [0, 1]: a 1.3/1.4, b 1/1.4, c 0.2/1.4, d 0, e 0.1/1.4
    values = {name: v for p in pairs for name, v in ((p.chosen, p.score_chosen), (p.rejected, p.score_rejected))}
    assert values == pytest.approx({"a": 1.3 / 1.4, "b": 1 / 1.4, "c": 0.2 / 1.4, "d": 0.0, "e": 0.1 / 1.4})
    assert unit_interval(1.0 + 0.4, 0.4) == 1.0  # the cheapest solve is a full 1


def test_iogrpo_groups_and_advantages_by_hand():
    # n = 5, t = 2: the one group of five, sharpened to its 2 lowest and 2 highest u: d 0, e 0.1 | b 1.0, a 1.3
    # mean 0.6, deviations −0.6, −0.5, 0.4, 0.7, population std √(1.26 / 4) = 0.561249
    # A = −1.069045, −0.890871, 0.712697, 1.247219 (the same for u / 1.4, which the group's scores are)
    c = config(algorithm="iogrpo", cost_weight=0.4, cost_unit="tokens", group_m=5, group_n=5, group_t=2)
    [group] = algorithm("iogrpo").items(PROBLEM, c, 0)
    assert group.completions == ("d", "e", "b", "a")
    assert group.scores == pytest.approx((0.0, 0.1 / 1.4, 1.0 / 1.4, 1.3 / 1.4))
    assert group.advantages == pytest.approx((-1.069045, -0.890871, 0.712697, 1.247219), abs=1e-5)
    # Today (λ = 0): scores 1, 1, 0, 0, 0 → lowest c, d, highest a, b; the crash and the cheap solve are
    # indistinguishable from the answered wrong and the costly solve
    [today] = algorithm("iogrpo").items(PROBLEM, dataclasses.replace(c, train=dataclasses.replace(
        c.train, cost_weight=0.0)), 0)
    assert (today.completions, today.advantages) == (("c", "d", "a", "b"), pytest.approx((-1, -1, 1, 1), abs=1e-5))


@pytest.mark.parametrize("weight", [0.01, 0.4, 1.0, 3.0, 1e6, 1e300])
def test_a_crash_never_outranks_a_solve_nor_a_costlier_answer_of_its_score(weight):
    # The crash costs nothing; the solve and the answered wrong are the problem's costliest (c̃ = 1).
    crash, solve, costly_wrong = cand("crash", 0.0, 0, ok=False), cand("solve", 1.0, 1e9), cand("wrong", 0.0, 1e9)
    cheap_wrong = cand("cheap", 0.0, 1)
    u = {c.completion: c.score for c in cost_adjusted([crash, solve, costly_wrong, cheap_wrong], weight)}
    assert u["solve"] > u["crash"] and u["wrong"] >= u["crash"] and u["cheap"] > u["crash"]
    cands = [crash, solve, costly_wrong, cheap_wrong]
    pairs = algorithm("score_dpo").items(cands, config(cost_weight=weight, cost_unit="tokens", num_pairs=200), 0)
    assert pairs and all(p.rejected == "crash" or p.chosen != "crash" for p in pairs)  # never chosen
    assert not any(p.chosen == "crash" for p in pairs)
    c = config(algorithm="iogrpo", cost_weight=weight, cost_unit="tokens", group_m=4, group_n=3, group_t=1)
    for g in algorithm("iogrpo").items(cands, c, 0):
        adv = dict(zip(g.completions, g.advantages))
        if "crash" in adv:
            assert all(adv["crash"] <= a for a in adv.values())
            if weight <= 1e6:  # beyond, 1 / (1 + λ) is lost beside 1 in the group's mean: a tie, not a reversal
                assert all(adv["crash"] < a for name, a in adv.items() if name in ("solve", "cheap"))


def test_a_failures_own_cost_is_never_compared():
    cheap_crash, dear_crash = cand("d", 0.0, 0, ok=False), cand("d", 0.0, 10**6, ok=False)
    assert cost_adjusted(PROBLEM[:3] + [cheap_crash], 0.4) == cost_adjusted(PROBLEM[:3] + [dear_crash], 0.4)[:3] + \
        [dataclasses.replace(cheap_crash, score=0.0)]
    assert [1.4 * c.score for c in cost_adjusted(PROBLEM[:3] + [dear_crash], 0.4)] == pytest.approx([1.3, 1.0, 0.2, 0])


@given(st.lists(st.tuples(st.sampled_from([0.0, 0.25, 0.5, 1.0]), st.floats(0, 1e6), st.booleans()),
                min_size=2, max_size=8),
       st.floats(0, 1e12))
def test_no_failure_outranks_an_answer_of_its_score_or_higher_for_any_costs_and_weight(rows, weight):
    u = cost_signal([s for s, _, _ in rows], [c for _, c, _ in rows], [a for _, _, a in rows], cost_weight=weight)
    for (s_fail, _, ok_fail), u_fail in zip(rows, u):
        if ok_fail:
            continue
        for (s, _, ok), u_answer in zip(rows, u):
            if ok and s > s_fail:
                assert u_answer > u_fail
            elif ok and s == s_fail:
                assert u_answer >= u_fail


MIXED = [Candidate(pid, f"prompt {pid}", f"{pid}{i}", s, cost=c, answered=ok)
         for pid, rows in {"a": [(0.0, 5, True), (1.0, 30, True), (0.5, 0, False), (1.0, 10, True), (0.0, 80, True)],
                           "b": [(0.25, 1, True), (0.25, 2, True), (0.75, 0, False), (0.0, 7, True), (1.0, 3, True)]
                           }.items() for i, (s, c, ok) in enumerate(rows)]


@pytest.mark.parametrize("name", ["score_dpo", "dpo", "iogrpo"])
def test_weight_zero_gives_exactly_todays_items(name):
    c = config(algorithm=name, cost_weight=0.0, cost_unit="tokens", num_pairs=50, group_m=5, group_n=4, group_t=1)
    plain = [dataclasses.replace(x, cost=0.0, answered=True) for x in MIXED]
    got = algorithm(name).items(MIXED, c, 3)
    assert got == algorithm(name).items(plain, c, 3)
    if name == "iogrpo":
        assert got == sample_groups(plain, m=5, n=4, t=1, top_n=c.train.num_groups,
                                    max_combinations=c.train.max_combinations, seed=3)
    else:
        assert got == sample_score_dpo_pairs(plain, num_pairs=50, alpha=3.0, seed=3)
    # and a weight changes them
    assert algorithm(name).items(MIXED, dataclasses.replace(c, train=dataclasses.replace(c.train, cost_weight=0.5)),
                                 3) != got


def sample(problem, index, score, *, failure="", answer="a", tokens=(5, 7), calls=1, usd=0.0):
    wf = Workflow(problem_id=problem, round=1, sample_index=index, adapter="base", prompt=f"P{problem}",
                  completion=f"{problem}-c{index}", code="class Workflow: ...", generate_s=0.1)
    ex = Execution(workflow=wf, answer=answer, failure=failure, error="", llm_calls=calls, prompt_tokens=tokens[0],
                   completion_tokens=tokens[1], execute_s=1.0, cost_usd=usd)
    return ScoredSample(ex, score=score, evaluate_s=0.5)


def test_round_data_carries_costs_and_leaves_infrastructure_failures_unscored():
    samples = [sample("x", 0, 1.0, tokens=(100, 0), calls=2, usd=0.02),
               sample("x", 1, 1.0, tokens=(300, 100), calls=4, usd=0.04),
               sample("x", 2, 0.0, failure="crash", answer="", tokens=(0, 0), calls=0),
               sample("x", 3, None, failure="llm_error", tokens=(10**6, 0), calls=99)]  # infrastructure: unscored
    got = candidates_of(samples, "tokens")
    assert [(c.completion, c.cost, c.answered) for c in got] == [("x-c0", 100, True), ("x-c1", 400, True),
                                                                 ("x-c2", 0, False)]
    assert [c.cost for c in candidates_of(samples, "calls")] == [2, 4, 0]
    assert [c.cost for c in candidates_of(samples, "usd")] == pytest.approx([0.02, 0.04, 0.0])
    # λ = 0.4 in tokens: x0 1 + 0.4·0.75 = 1.3, x1 1.0, x2 0: the unscored sample's million tokens count for nothing
    pairs, _ = learner_items(1, samples, config(cost_weight=0.4, cost_unit="tokens", num_pairs=100))
    assert {(p.chosen, p.rejected) for p in pairs} == {("x-c0", "x-c1"), ("x-c0", "x-c2"), ("x-c1", "x-c2")}
    assert all(p.score_chosen > p.score_rejected for p in pairs)
    assert {round(p.score_chosen, 9) for p in pairs if p.chosen == "x-c0"} == {round(1.3 / 1.4, 9)}


def test_the_config_refuses_what_cannot_work():
    with pytest.raises(ConfigError, match="train.cost_weight: must be a number >= 0"):
        TrainConfig(cost_weight=-0.1)
    with pytest.raises(ConfigError, match="train.cost_unit"):
        from flowpo.config import load_config
        load_config("examples/local.yaml", ["train.cost_unit=euros"])
    assert "every workflow would cost $0" in inconsistency(config(cost_weight=0.5))  # usd, prices 0
    assert inconsistency(config(cost_weight=0.5, cost_unit="tokens")) == ""
    priced = config(cost_weight=0.5)
    priced.executor_llm.prompt_usd_per_mtok = 0.15
    assert inconsistency(priced) == ""
