"""The one statistics module: Student t, rate intervals inside [0, 1], paired differences, ratios, words."""

from __future__ import annotations

import math

import numpy as np
import pytest

from experiments import stats
from experiments.stats import Interval
from sim.kpis import KPI_NAMES, KPIS


@pytest.mark.parametrize(("df", "quantile"), [(1, 12.706), (2, 4.303), (4, 2.776), (10, 2.228), (19, 2.093), (30, 2.042), (120, 1.980)])
def test_t_quantiles_match_the_printed_table(df, quantile):
    assert stats.t_quantile(df) == pytest.approx(quantile, abs=5e-4)
    assert stats.t_p_value(stats.t_quantile(df), df) == pytest.approx(0.05, abs=1e-9)


def test_t_p_values_on_known_points():
    assert stats.t_p_value(2.0, 10) == pytest.approx(0.07339, abs=1e-5)
    assert stats.t_p_value(0.0, 5) == pytest.approx(1.0)
    assert stats.t_p_value(-2.0, 10) == stats.t_p_value(2.0, 10)
    assert 0 < stats.t_p_value(40.0, 19) < 1e-18  # a tiny tail is computed, not rounded to 0
    assert stats.t_p_value(5.0, 10_000_000) == pytest.approx(math.erfc(5.0 / math.sqrt(2)), rel=1e-4)  # many dof: the normal


def test_level_interval_is_the_t_interval_over_batch_values_around_the_seeds_mean():
    rng = np.random.default_rng(0)
    batches = rng.normal(100.0, 5.0, (2, stats.BATCHES))
    seeds = [101.0, 99.5]
    iv = stats.level_interval(seeds, batches)
    hw = stats.t_quantile(19) * batches.std(ddof=1) / math.sqrt(20)
    assert iv.mean == pytest.approx(100.25) and iv.half_width == pytest.approx(hw) and iv.replicates == 20
    total = stats.kpi_interval("blocked_actions", [50.0, 70.0], rng.poisson(6, (2, stats.BATCHES)), 2000)
    assert total.mean == 60 and total.half_width > 10  # batch totals scaled to a whole run


def test_rate_intervals_stay_inside_zero_and_one():
    rng = np.random.default_rng(1)
    for p in (0.0005, 0.002, 0.02, 0.5, 0.98, 0.9995):
        for _ in range(20):
            batches = rng.binomial(200, p, (2, stats.BATCHES)) / 200
            iv = stats.rate_interval(batches.mean(axis=1), batches, 4000)
            assert 0.0 <= iv.low <= iv.mean <= iv.high <= 1.0, (p, iv)
    # the t interval on the same numbers would cross zero (the complaint rate, 1.95 % +- 3.43 %)
    batches = np.array([[0.0] * 9 + [0.2], [0.0] * 10])
    t = stats.level_interval([0.02, 0.0], batches)
    r = stats.rate_interval([0.02, 0.0], batches, 2000)
    assert t.low < 0 <= r.low < r.mean < r.high < 1


def test_rate_interval_equals_the_t_interval_far_from_the_bounds():
    rng = np.random.default_rng(2)
    batches = rng.normal(0.5, 0.01, (3, stats.BATCHES))
    seeds = batches.mean(axis=1)
    r, t = stats.rate_interval(seeds, batches, 30_000), stats.level_interval(seeds, batches)
    assert r.low == pytest.approx(t.low, abs=2e-4) and r.high == pytest.approx(t.high, abs=2e-4)


def test_a_rate_with_no_spread_falls_back_to_the_binomial_count():
    iv = stats.rate_interval([0.0, 0.0], np.zeros((2, stats.BATCHES)), 2000)
    assert iv.low == 0.0 and iv.high == pytest.approx(stats.wilson(0.0, 2000, stats.t_quantile(19))[1]) and 0.001 < iv.high < 0.003


def test_paired_difference_agrees_with_its_p_value_and_beats_the_unpaired_interval():
    rng = np.random.default_rng(3)
    for shift in (0.0, 0.02, 0.05, 0.1, 0.3):
        a = rng.normal(10.0, 1.0, (2, stats.BATCHES))
        b = a + shift + rng.normal(0, 0.1, a.shape)
        d = stats.paired_difference(b.mean(axis=1), a.mean(axis=1), b, a)
        assert d.p_value is not None and (d.p_value < 0.05) == d.significant, (shift, d)
        assert d.mean == pytest.approx(float((b - a).mean()))
        u = stats.unpaired_difference(b.mean(axis=1), a.mean(axis=1), b, a)
        assert u.half_width > 5 * d.half_width and u.mean == d.mean
    same = stats.paired_difference([1.0, 2.0], [1.0, 2.0], np.ones((2, 10)), np.ones((2, 10)))
    assert (same.mean, same.low, same.high, same.p_value) == (0.0, 0.0, 0.0, 1.0)


def test_ratio_interval_is_the_delta_method_over_paired_batches():
    rng = np.random.default_rng(4)
    den = rng.normal(2.0, 0.05, (2, stats.BATCHES))
    num = 0.25 * den + rng.normal(0, 0.01, den.shape)
    iv = stats.ratio_interval(num.mean(axis=1), den.mean(axis=1), num, den)
    assert iv.low < 0.25 < iv.high and iv.half_width < 0.01
    assert stats.ratio_interval([1.0], [0.0], [[1.0]], [[0.0]]).mean != stats.ratio_interval([1.0], [0.0], [[1.0]], [[0.0]]).mean  # NaN


def test_batch_means_group_debtors_by_id():
    ids = np.arange(25)
    values = ids.astype(float)
    m = stats.batch_means(values, ids)
    assert m[3] == pytest.approx(np.mean([3, 13, 23])) and len(m) == stats.BATCHES
    only_even = stats.batch_means(values, ids, ids % 2 == 0)
    assert math.isnan(only_even[3]) and only_even[2] == pytest.approx(12.0)  # batch 3 holds odd ids only


def test_kpi_kinds_name_real_kpis_and_every_share_is_a_rate():
    assert set(KPI_NAMES) >= stats.RATE_KPIS | stats.TOTAL_KPIS
    percent = {k.name for k in KPIS if k.fmt.endswith("%")}
    assert percent - stats.RATE_KPIS == {"cost_to_collect"}  # a ratio that can exceed 1, not a share


def test_words_and_formats():
    note = stats.method_note(2)
    assert "2 seeds x 10 debtor batches = 20 replicates" in note and "19 degrees of freedom" in note and "Wilson" in note
    assert "paired per debtor" in stats.method_note(5, paired=True) and "50 replicates" in stats.method_note(5, paired=True)
    assert stats.format_interval(Interval(8.3, 6.9, 9.71), ",.2f", signed=True) == "+8.30 [+6.90, +9.71]"
    assert stats.format_interval(Interval(1236.4, float("nan"), float("nan")), ",.2f") == "1,236.40"
    assert Interval(1.0, 0.5, 1.5).half_width == 0.5 and Interval(-1, -2, -0.1).significant and not Interval(0.1, -0.1, 0.3).significant
    assert stats.format_p(3e-320) == "< 1e-300" and stats.format_p(0.0123) == "0.012"
    iv = Interval(2.5, 2.0, 3.0, 20, "paired batch means, t", 0.001)
    assert Interval.from_dict(iv.as_dict()) == iv
    assert math.isnan(Interval.from_dict({"mean": 1.0, "ci_low": None, "ci_high": None}).low)  # as JSON writes NaN
