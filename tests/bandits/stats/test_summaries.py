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
