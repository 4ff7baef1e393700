"""flowpo/stats.py on fixed inputs, every interval computed by hand in the comments."""
import math

import pytest

from flowpo.stats import Interval, cell_means, mean_interval, paired_difference, pass_rate, t_cdf, t_quantile

T2 = 4.302653  # t_{0.975, 2}, from a t table
T1 = 12.706205  # t_{0.975, 1}


@pytest.mark.parametrize("df, expected", [(1, 12.7062), (2, 4.3027), (3, 3.1824), (9, 2.2622), (30, 2.0423),
                                          (120, 1.9799), (10**6, 1.9600)])
def test_t_quantile_matches_the_table(df, expected):
    assert t_quantile(0.975, df) == pytest.approx(expected, abs=1e-4)


def test_t_is_symmetric_and_its_cdf_inverts_the_quantile():
    assert t_quantile(0.025, 4) == pytest.approx(-t_quantile(0.975, 4), abs=1e-9)
    assert t_cdf(0.0, 5) == 0.5
    assert t_cdf(t_quantile(0.9, 7), 7) == pytest.approx(0.9, abs=1e-9)
    with pytest.raises(ValueError, match="0 < p < 1"):
        t_quantile(1.0, 3)


def test_mean_interval_by_hand():
    # values 0.25, 0.25, 0: mean 1/6; deviations 1/12, 1/12, -1/6; sum of squares 1/24; s² = 1/48,
    # s = 0.144338; s/√3 = 1/12; half width = 4.302653 / 12 = 0.358554
    i = mean_interval([0.25, 0.25, 0.0])
    assert (i.mean, i.n) == (pytest.approx(1 / 6), 3)
    assert (i.low, i.high) == (pytest.approx(1 / 6 - T2 / 12, abs=1e-6), pytest.approx(1 / 6 + T2 / 12, abs=1e-6))
    clipped = mean_interval([0.25, 0.25, 0.0], bounds=(0.0, 1.0))
    assert (clipped.low, clipped.high) == (0.0, pytest.approx(0.525221, abs=1e-6))


def test_one_value_has_no_interval_and_none_has_no_mean():
    one = mean_interval([0.5])
    assert one.mean == 0.5 and math.isnan(one.low) and math.isnan(one.high) and not one.excludes_zero()
    assert math.isnan(mean_interval([]).mean) and mean_interval([]).n == 0
    assert Interval(0.1, 0.05, 0.2, 3).excludes_zero() and Interval(-0.3, -0.5, -0.1, 3).excludes_zero()
    assert not Interval(0.1, -0.05, 0.2, 3).excludes_zero()


def test_cell_means_leave_out_unscored_runs():
    cells = cell_means([(0, "A", 1.0), (0, "A", 0.0), (0, "B", None), (0, "C", None), (0, "C", 1.0), (1, "A", 0.5)])
    assert cells == {(0, "A"): 0.5, (0, "C"): 1.0, (1, "A"): 0.5}  # (0, B) had no score at all


BEFORE = {(0, "A"): 0.0, (0, "B"): 0.5, (0, "C"): 0.0, (1, "A"): 0.5, (1, "B"): 0.0, (1, "C"): 0.0}
AFTER = {(0, "A"): 1.0, (0, "B"): 0.5, (0, "C"): 0.5, (1, "A"): 0.5, (1, "B"): 1.0, (1, "C"): 0.0}


def test_pass_rate_averages_seeds_per_problem_then_takes_t_over_problems():
    # per problem over seeds: A (0 + .5)/2 = .25, B .25, C 0 → as in test_mean_interval_by_hand, clipped to [0, 1]
    rate = pass_rate(BEFORE)
    assert (rate.mean, rate.low, rate.high, rate.n) == (pytest.approx(1 / 6), 0.0, pytest.approx(0.525221, abs=1e-6), 3)


def test_paired_difference_by_hand():
    # cell differences: seed 0: A +1, B 0, C +.5; seed 1: A 0, B +1, C 0
    # per problem: A .5, B .5, C .25 → mean 5/12 = .416667; deviations 1/12, 1/12, -1/6 → s/√3 = 1/12;
    # half width 4.302653 / 12 = .358554 → [.058113, .775221]: excludes zero
    d = paired_difference(BEFORE, AFTER)
    assert d.over_problems.mean == pytest.approx(5 / 12)
    assert (d.over_problems.low, d.over_problems.high) == (pytest.approx(0.058113, abs=1e-6),
                                                           pytest.approx(0.775221, abs=1e-6))
    assert d.over_problems.excludes_zero() and d.over_problems.n == 3
    # per seed: seed 0 (1 + 0 + .5)/3 = .5, seed 1 1/3; mean 5/12; s = (1/6)/√2, s/√2 = 1/12;
    # half width 12.706205 / 12 = 1.058850 → [-.642184, 1.475517], clipped to 1
    assert d.per_seed == {0: pytest.approx(0.5), 1: pytest.approx(1 / 3)}
    assert (d.over_seeds.low, d.over_seeds.high, d.over_seeds.n) == (pytest.approx(5 / 12 - T1 / 12, abs=1e-6), 1.0, 2)
    assert (d.cells, d.unpaired) == (6, 0)


def test_cells_scored_on_one_side_only_are_left_out_and_counted():
    after = {cell: v for cell, v in AFTER.items() if cell != (0, "C")}
    after[(2, "A")] = 1.0  # a seed the base model was not evaluated in
    d = paired_difference(BEFORE, after)
    # cells left: seed 0 A +1, B 0; seed 1 A 0, B +1, C 0 → per problem A .5, B .5, C 0
    assert (d.cells, d.unpaired) == (5, 2)
    assert d.over_problems.mean == pytest.approx(1 / 3)
    assert set(d.per_seed) == {0, 1}
