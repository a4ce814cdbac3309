from __future__ import annotations

import numpy as np
import pytest

from bandits.arm_stats import ArmStats
from bandits.stats import ProportionStats, SampleStats


def test_sample_stats_match_numpy() -> None:
    x = np.random.default_rng(0).normal(3.0, 2.0, size=57)
    s = SampleStats.from_values(x)
    assert s.n == 57
    assert s.mean == pytest.approx(x.mean(), rel=1e-12)
    assert s.variance == pytest.approx(x.var(ddof=1), rel=1e-10)


def test_sample_stats_add_and_from_arm_stats() -> None:
    a, b = SampleStats.from_values([1.0, 2.0]), SampleStats.from_values([3.0])
    assert a + b == b + a == SampleStats.from_values([1.0, 2.0, 3.0])
    arm = ArmStats.from_rewards([1.0, 2.0, 4.0], pulls=10)
    assert SampleStats.from_arm_stats(arm) == SampleStats(3, 7.0, 21.0)


def test_degenerate_summaries_are_zero_not_nan() -> None:
    assert SampleStats(0, 0.0, 0.0).mean == 0.0
    assert SampleStats(1, 5.0, 25.0).variance == 0.0
    assert SampleStats(3, 6.0, 12.0).variance == 0.0  # constant 2.0
    assert ProportionStats(0, 0).mean == ProportionStats(0, 0).variance == 0.0


def test_proportion_stats() -> None:
    p = ProportionStats(8, 2)
    assert (p.mean, p.variance) == (0.25, 0.1875)
    assert p + ProportionStats(2, 1) == ProportionStats(10, 3)
    assert ProportionStats.from_arm_stats(ArmStats.from_rewards([1, 1, 0])) == ProportionStats(3, 2)


@pytest.mark.parametrize(
    ("make", "name"),
    [
        (lambda: SampleStats(-1, 0.0, 0.0), "n"),
        (lambda: SampleStats(1, float("nan"), 0.0), "sum"),
        (lambda: SampleStats(1, 1.0, -1.0), "sum_squares"),
        (lambda: ProportionStats(2, 3), "successes"),
        (lambda: ProportionStats(2, -1), "successes"),
    ],
)
def test_validation_names_the_field(make: object, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        make()  # type: ignore[operator]


def test_from_arm_stats_rejects_non_binary_rewards() -> None:
    with pytest.raises(ValueError, match="successes"):
        ProportionStats.from_arm_stats(ArmStats.from_rewards([2.0, 3.0]))


# Impossible sufficient statistics: refused at construction, whatever path builds them.

IMPOSSIBLE = (2, 1396.87, 52377.98)  # sum**2 / n = 975,622.9 > sum_squares: variance < 0


def test_negative_variance_is_refused_with_the_problem_named() -> None:
    with pytest.raises(ValueError, match=r"sum_squares must be >= sum\*\*2 / n"):
        SampleStats(*IMPOSSIBLE)
    with pytest.raises(ValueError, match="variance cannot be negative"):
        SampleStats.from_arm_stats(
            ArmStats(pulls=2, feedback=2, reward_sum=1396.87, reward_sum_squares=52377.98)
        )
    with pytest.raises(ValueError, match="sum_squares"):
        SampleStats(1, 3.0, 8.0)  # one observation: sum_squares must be sum**2
    with pytest.raises(ValueError, match="n=0"):
        SampleStats(0, 1.0, 1.0)


def test_rounding_of_a_zero_variance_is_accepted() -> None:
    # Constant data summed naively in float: sum_squares can land a few ulps below sum**2/n.
    x = np.full(100_000, 0.1)
    total, squares = float(np.cumsum(x)[-1]), float(np.cumsum(x * x)[-1])
    s = SampleStats(x.size, total, squares)
    assert s.variance == pytest.approx(0.0, abs=1e-12)
    assert SampleStats(3, 3.0, 3.0 * (1 - 1e-12)).variance == 0.0  # within 1e-9 relative
    assert SampleStats(1, -2.5, 6.25).variance == 0.0
    assert SampleStats(0, 0.0, 0.0) + SampleStats(2, 1.0, 0.5) == SampleStats(2, 1.0, 0.5)


@pytest.mark.parametrize("successes", [-0.5, 10.5, 11])
def test_impossible_proportions_are_refused(successes: float) -> None:
    with pytest.raises(ValueError, match=r"successes must be in \[0, 10\]"):
        ProportionStats(10, successes)
