"""Sufficient statistics of one arm's metric, the input of every test in :mod:`bandits.stats`.

Two kinds, chosen by the metric:

* :class:`SampleStats` for a continuous metric (revenue, latency, a model score):
  ``n``, ``sum(x)``, ``sum(x**2)``; the variance is the unbiased ``n - 1`` sample variance.
* :class:`ProportionStats` for a conversion rate: ``n`` trials, ``successes``; the variance is
  the Bernoulli ``p (1 - p)``.

Both add exactly (``a + b``), like :class:`~bandits.arm_stats.ArmStats`, and never return NaN:
an empty summary has mean and variance ``0.0``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from bandits._checks import check_int, check_real
from bandits.arm_stats import ArmStats

__all__ = ["MetricStats", "ProportionStats", "SampleStats"]


@dataclass(frozen=True, slots=True)
class SampleStats:
    """Sufficient statistics of a continuous metric.

    Attributes:
        n: Number of observations.
        sum: ``sum(x)``.
        sum_squares: ``sum(x**2)``.

    Example:
        >>> s = SampleStats.from_values([1.0, 2.0, 3.0])
        >>> s
        SampleStats(n=3, sum=6.0, sum_squares=14.0)
        >>> s.mean, s.variance
        (2.0, 1.0)
        >>> s + SampleStats(1, 4.0, 16.0)
        SampleStats(n=4, sum=10.0, sum_squares=30.0)
    """

    n: int
    sum: float
    sum_squares: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "n", check_int("n", self.n, ge=0))
        object.__setattr__(self, "sum", check_real("sum", self.sum))
        object.__setattr__(self, "sum_squares", check_real("sum_squares", self.sum_squares, ge=0))

    def __add__(self, other: SampleStats) -> SampleStats:
        if not isinstance(other, SampleStats):
            return NotImplemented
        return SampleStats(
            self.n + other.n, self.sum + other.sum, self.sum_squares + other.sum_squares
        )

    @property
    def mean(self) -> float:
        """``sum(x) / n``; ``0.0`` when ``n == 0``."""
        return self.sum / self.n if self.n else 0.0

    @property
    def variance(self) -> float:
        """Unbiased sample variance ``(sum(x**2) - sum(x)**2 / n) / (n - 1)``.

        ``0.0`` when ``n < 2``; clipped at 0 because the subtraction can round below zero.
        """
        if self.n < 2:
            return 0.0
        centred = self.sum_squares - self.sum * self.sum / self.n
        return max(centred, 0.0) / (self.n - 1)

    @classmethod
    def from_values(cls, values: Iterable[float]) -> SampleStats:
        """Summarise raw observations (with correctly rounded sums, :func:`math.fsum`)."""
        xs = [float(x) for x in values]
        return cls(len(xs), math.fsum(xs), math.fsum(x * x for x in xs))

    @classmethod
    def from_arm_stats(cls, stats: ArmStats) -> SampleStats:
        """The received rewards of an arm: ``n = feedback``.

        Example:
            >>> SampleStats.from_arm_stats(ArmStats.from_rewards([0.5, 1.5], pulls=9))
            SampleStats(n=2, sum=2.0, sum_squares=2.5)
        """
        return cls(stats.feedback, stats.reward_sum, stats.reward_sum_squares)


@dataclass(frozen=True, slots=True)
class ProportionStats:
    """Sufficient statistics of a proportion (conversion rate).

    ``successes`` may be fractional (rewards in ``[0, 1]`` counted as fractional successes) but
    must lie in ``[0, n]``.

    Attributes:
        n: Number of trials.
        successes: Number of successes.

    Example:
        >>> p = ProportionStats(n=200, successes=50)
        >>> p.mean, p.variance
        (0.25, 0.1875)
        >>> ProportionStats(n=3, successes=4)
        Traceback (most recent call last):
        ...
        ValueError: successes must be in [0, 3], got 4.0
    """

    n: int
    successes: float

    def __post_init__(self) -> None:
        n = check_int("n", self.n, ge=0)
        object.__setattr__(self, "n", n)
        object.__setattr__(self, "successes", check_real("successes", self.successes, ge=0, le=n))

    def __add__(self, other: ProportionStats) -> ProportionStats:
        if not isinstance(other, ProportionStats):
            return NotImplemented
        return ProportionStats(self.n + other.n, self.successes + other.successes)

    @property
    def mean(self) -> float:
        """``p = successes / n``; ``0.0`` when ``n == 0``."""
        return self.successes / self.n if self.n else 0.0

    @property
    def variance(self) -> float:
        """Bernoulli variance ``p (1 - p)`` of one trial; ``0.0`` when ``n == 0``."""
        p = self.mean
        return p * (1.0 - p)

    @classmethod
    def from_arm_stats(cls, stats: ArmStats) -> ProportionStats:
        """The received binary rewards of an arm: ``n = feedback``, ``successes = reward_sum``.

        Raises:
            ValueError: ``reward_sum`` is not in ``[0, feedback]`` (rewards are not in [0, 1]).

        Example:
            >>> ProportionStats.from_arm_stats(ArmStats.from_rewards([1, 0, 1, 1]))
            ProportionStats(n=4, successes=3.0)
        """
        return cls(stats.feedback, stats.reward_sum)


MetricStats = SampleStats | ProportionStats
"""Either kind of summary; every two-arm test takes two of the same kind."""
