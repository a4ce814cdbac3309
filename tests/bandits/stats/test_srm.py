from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from bandits.stats import TrafficPeriod, srm_test, srm_test_periods


@pytest.mark.parametrize(
    ("counts", "weights"),
    [([50_800, 49_200], [0.5, 0.5]), ([120, 80, 95], [1, 1, 1]), ([700, 180, 120], [7, 2, 1])],
)
def test_srm_equals_scipy_chisquare(counts: list[int], weights: list[float]) -> None:
    r = srm_test(counts, weights)
    expected = np.array(weights) / sum(weights) * sum(counts)
    ref = stats.chisquare(counts, expected)
    assert r.statistic == pytest.approx(ref.statistic, rel=1e-12)
    assert r.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    assert r.dof == len(counts) - 1
    assert r.expected == pytest.approx(tuple(expected), rel=1e-15)
    assert r.reason is None


def test_zero_weight_arms_do_not_count() -> None:
    r = srm_test([480, 0, 520], [0.5, 0.0, 0.5])
    ref = stats.chisquare([480, 520], [500, 500])
    assert (r.statistic, r.dof) == (pytest.approx(ref.statistic), 1)
    assert r.p_value == pytest.approx(ref.pvalue, rel=1e-12)


def test_traffic_to_a_zero_weight_arm_is_a_mismatch() -> None:
    r = srm_test([480, 3, 520], [0.5, 0.0, 0.5])
    assert (r.p_value, r.statistic, r.dof) == (0.0, math.inf, 1)
    assert r.reason == "arm 1 has weight 0 but 3.0 observations"


def test_special_cases() -> None:
    assert srm_test([0, 0], [1, 1]).p_value == 1.0
    assert srm_test([0, 0], [1, 1]).reason == "no observations"
    single = srm_test([10, 0], [1, 0])
    assert (single.p_value, single.dof) == (1.0, 0)


@pytest.mark.parametrize(
    ("counts", "weights", "name"),
    [([1, 2], [1], "one entry per arm"), ([1, -2], [1, 1], r"counts\[1\]"),
     ([1, 2], [0, 0], "positive sum"), ([1, 2], [1, -1], r"weights\[1\]")],
)  # fmt: skip
def test_validation(counts: list[float], weights: list[float], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        srm_test(counts, weights)


def test_periods_sum_expected_counts() -> None:
    periods = [
        TrafficPeriod((520, 480), (0.5, 0.5)),
        TrafficPeriod((150, 850), (0.2, 0.8)),
        TrafficPeriod((90, 410), (1, 4)),
    ]
    r = srm_test_periods(periods)
    expected = (500 + 200 + 100, 500 + 800 + 400)
    assert r.expected == pytest.approx(expected, rel=1e-15)
    ref = stats.chisquare([760, 1740], expected)
    assert r.statistic == pytest.approx(ref.statistic, rel=1e-12)
    assert r.p_value == pytest.approx(ref.pvalue, rel=1e-9)


def test_periods_with_constant_weights_equal_pooled_test() -> None:
    periods = [TrafficPeriod((30, 70), (3, 7)), TrafficPeriod((260, 740), (0.3, 0.7))]
    assert srm_test_periods(periods) == srm_test([290, 810], [0.3, 0.7])


def test_bandit_split_passes_periods_test_but_fails_naive_test() -> None:
    # A bandit moved from 50/50 to 10/90: a naive test against the final weights flags SRM.
    periods = [TrafficPeriod((5_020, 4_980), (1, 1)), TrafficPeriod((1_010, 8_990), (1, 9))]
    assert srm_test_periods(periods).p_value > 0.05
    assert srm_test([6_030, 13_970], [1, 9]).p_value < 1e-12


def test_periods_validation() -> None:
    with pytest.raises(ValueError, match="at least one period"):
        srm_test_periods([])
    with pytest.raises(ValueError, match=r"periods\[1\] has 3 arms"):
        srm_test_periods([TrafficPeriod((1, 2), (1, 1)), TrafficPeriod((1, 2, 3), (1, 1, 1))])
