"""Regression: impossible sufficient statistics reach no test (they used to give p = 0.0).

A mean metric with ``sum_squares < sum**2 / n`` (a negative variance) used to flow into Welch's
test as a zero variance and come out "significant" with p = 0.0. Every summary now refuses
such sums, so every function that takes summaries raises a ValueError naming the problem.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from bandits.arm_stats import ArmStats
from bandits.stats import (
    CupedStats,
    ProportionStats,
    RatioStats,
    SampleStats,
    bayesian_effect,
    chi_square_test,
    cuped_effect,
    period_weighted_means,
    prob_best,
    sequential_test,
    welch_ttest,
)

GOOD = SampleStats.from_values([1.0, 2.0, 4.0, 3.0])
GOOD_P = ProportionStats(10, 4)


def _bad_sample() -> SampleStats:
    return SampleStats(2, 1396.87, 52377.98)


def _bad_arm() -> SampleStats:
    return SampleStats.from_arm_stats(
        ArmStats(pulls=2, feedback=2, reward_sum=1396.87, reward_sum_squares=52377.98)
    )


CALLS: list[tuple[str, Callable[[], Any], str]] = [
    ("welch", lambda: welch_ttest(GOOD, _bad_sample()), "sum_squares"),
    ("welch-arm", lambda: welch_ttest(_bad_arm(), GOOD, relative=False), "sum_squares"),
    ("welch-p", lambda: welch_ttest(GOOD_P, ProportionStats(10, 11)), "successes"),
    ("welch-p-neg", lambda: welch_ttest(ProportionStats(10, -1), GOOD_P), "successes"),
    ("bayes", lambda: bayesian_effect(_bad_sample(), GOOD), "sum_squares"),
    ("bayes-p", lambda: bayesian_effect(GOOD_P, ProportionStats(3, 4)), "successes"),
    ("prob-best", lambda: prob_best({"a": GOOD, "b": _bad_sample()}), "sum_squares"),
    ("prob-best-p", lambda: prob_best({"a": ProportionStats(5, 6)}), "successes"),
    ("sequential", lambda: sequential_test(GOOD, _bad_sample()), "sum_squares"),
    ("sequential-1", lambda: sequential_test(_bad_arm(), GOOD, alternative="less"), "sum_sq"),
    ("sequential-p", lambda: sequential_test(GOOD_P, ProportionStats(2, 2.5)), "successes"),
    ("chi-square", lambda: chi_square_test(ProportionStats(4, 5), GOOD_P), "successes"),
    ("periods", lambda: period_weighted_means([{"a": _bad_sample()}]), "sum_squares"),
    (
        "ratio",
        lambda: welch_ttest(
            RatioStats(2, 1.0, 2.0, 0.1, 2.0, 1.0), RatioStats(2, 1.0, 2.0, 1.0, 2.0, 1.0)
        ),
        "numerator_sum_squares",
    ),
    (
        "ratio-cross",
        lambda: sequential_test(
            RatioStats(3, 3.0, 3.0, 5.0, 5.0, 9.0), RatioStats(2, 1.0, 2.0, 1.0, 2.0, 1.0)
        ),
        "cross_sum",
    ),
    (
        "cuped",
        lambda: cuped_effect(
            CupedStats(2, 1396.87, 52377.98, 1.0, 1.0, 1.0), CupedStats(2, 1.0, 1.0, 1.0, 1.0, 1.0)
        ),
        "sum_squares",
    ),
    (
        "cuped-cross",
        lambda: cuped_effect(
            CupedStats(3, 3.0, 5.0, 3.0, 5.0, -9.0), CupedStats(2, 1.0, 1.0, 1.0, 1.0, 1.0)
        ),
        "cross_sum",
    ),
]


@pytest.mark.parametrize(
    ("call", "name"), [(c, n) for _, c, n in CALLS], ids=[i for i, _, _ in CALLS]
)
def test_impossible_statistics_raise_naming_the_problem(call: Callable[[], Any], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        call()


def test_the_reported_case_no_longer_reports_significance() -> None:
    # The numbers: n=2, sum=1396.87, sum_squares=52377.98 against a normal arm.
    with pytest.raises(ValueError, match=r"975622\.898") as info:
        welch_ttest(SampleStats(50, 35_000.0, 24_600_000.0), SampleStats(2, 1396.87, 52377.98))
    assert "a variance cannot be negative" in str(info.value)
