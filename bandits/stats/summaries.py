"""Sufficient statistics of one arm's metric, the input of every test in :mod:`bandits.stats`.

Four kinds, chosen by the metric:

* :class:`SampleStats` for a continuous metric (revenue, latency, a model score):
  ``n``, ``sum(x)``, ``sum(x**2)``; the variance is the unbiased ``n - 1`` sample variance.
* :class:`ProportionStats` for a conversion rate: ``n`` trials, ``successes``; the variance is
  the Bernoulli ``p (1 - p)``.
* :class:`RatioStats` for a ratio metric ``sum(x) / sum(y)`` over units (revenue per session
  when sessions per user vary): the delta-method variance of the ratio of means.
* :class:`CupedStats` for a metric ``y`` with a pre-experiment covariate ``x`` per unit, the
  input of :func:`~bandits.stats.cuped_effect` (variance reduction).

All add exactly (``a + b``), like :class:`~bandits.arm_stats.ArmStats`, and never return NaN:
an empty summary has mean and variance ``0.0``. Impossible sums are refused at construction
with a :class:`ValueError` naming the problem: a sum of squares below ``sum**2 / n`` (a
negative variance), successes outside ``[0, n]``, a cross sum that breaks Cauchy-Schwarz, or
nonzero sums over ``n = 0`` units. Float rounding is allowed for: the checks accept a relative
shortfall of ``1e-9 + n * 2**-52`` (the worst-case error of a running float sum).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from bandits._checks import check_int, check_real
from bandits.arm_stats import ArmStats

__all__ = ["CupedStats", "MetricStats", "ProportionStats", "RatioStats", "SampleStats"]

_REL_TOL = 1e-9
"""Relative rounding allowance of the consistency checks (plus ``n`` ulps, see below)."""


def _tolerance(n: int, scale: float) -> float:
    # A running float sum of n terms is off by at most ~n ulps of its magnitude; 1e-9 on top
    # absorbs sums shipped through JSON or a database with a few digits less.
    return (_REL_TOL + n * 2.0**-52) * scale + 1e-300


def _check_empty(n: int, **sums: float) -> None:
    if n == 0 and any(v != 0.0 for v in sums.values()):
        got = ", ".join(f"{k}={v!r}" for k, v in sums.items())
        raise ValueError(f"an empty summary (n=0) must have all sums 0, got {got}")


def _centred(n: int, total: float, squares: float, sum_name: str, squares_name: str) -> float:
    """``squares - total**2 / n`` (``n`` times the biased variance), validated and clipped at 0.

    Raises ``ValueError`` when it is negative beyond rounding: no data have such sums.
    """
    if n == 0:
        return 0.0
    floor = total * total / n
    centred = squares - floor
    if centred < -_tolerance(n, max(floor, squares)):
        raise ValueError(
            f"{squares_name} must be >= {sum_name}**2 / n (a variance cannot be negative), got "
            f"n={n}, {sum_name}={total!r}, {squares_name}={squares!r} < {floor!r}"
        )
    return max(centred, 0.0)


def _centred_cross(
    n: int,
    sum_x: float,
    sum_y: float,
    cross: float,
    centred_xx: float,
    centred_yy: float,
    squares_x: float,
    squares_y: float,
    names: tuple[str, str, str],
) -> float:
    """``cross - sum_x sum_y / n``, validated against Cauchy-Schwarz ``c_xy**2 <= c_xx c_yy``."""
    if n == 0:
        return 0.0
    c_xy = cross - sum_x * sum_y / n
    limit = math.sqrt(centred_xx * centred_yy)
    if abs(c_xy) > limit + _tolerance(n, math.sqrt(squares_x * squares_y)):
        x, y, xy = names
        raise ValueError(
            f"{xy} is impossible given {x} and {y} (a correlation beyond [-1, 1]): got "
            f"|{xy} - sum_x sum_y / n| = {abs(c_xy)!r} > {limit!r} = "
            "sqrt(centred sums of squares)"
        )
    return max(-limit, min(limit, c_xy))


@dataclass(frozen=True, slots=True)
class SampleStats:
    """Sufficient statistics of a continuous metric.

    ``sum_squares`` must be at least ``sum**2 / n`` (up to rounding, see the module docstring):
    anything less would be a negative variance, which no data produce.

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
        >>> SampleStats(2, 1396.87, 52377.98)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: sum_squares must be >= sum**2 / n (a variance cannot be negative), got n=2, ...
    """

    n: int
    sum: float
    sum_squares: float

    def __post_init__(self) -> None:
        n = check_int("n", self.n, ge=0)
        total = check_real("sum", self.sum)
        squares = check_real("sum_squares", self.sum_squares, ge=0)
        _check_empty(n, sum=total, sum_squares=squares)
        _centred(n, total, squares, "sum", "sum_squares")
        object.__setattr__(self, "n", n)
        object.__setattr__(self, "sum", total)
        object.__setattr__(self, "sum_squares", squares)

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

        Raises:
            ValueError: The sums are impossible (see the class docstring).

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


@dataclass(frozen=True, slots=True)
class RatioStats:
    """Sufficient statistics of a ratio metric ``sum(x) / sum(y)`` over ``n`` units.

    A unit (a user, the unit of randomisation) contributes a numerator ``x`` (revenue) and a
    denominator ``y`` (sessions); the metric is the ratio of means ``r = xbar / ybar``. Units
    are independent, sessions within a unit are not, so the variance is the delta method's
    over units, with ``s_xx``, ``s_yy``, ``s_xy`` the ``n - 1`` sample (co)variances::

        variance = s_xx / ybar**2 - 2 xbar s_xy / ybar**3 + xbar**2 s_yy / ybar**4
                 = var(x - r y) / ybar**2,       Var(r) ~ variance / n

    (``variance`` is per unit, like :attr:`SampleStats.variance`, so every test divides it by
    ``n``). A summary whose ``denominator_sum`` is 0 has ``mean`` and ``variance`` 0 and is
    degenerate for every test.

    Attributes:
        n: Number of units.
        numerator_sum: ``sum(x)``.
        denominator_sum: ``sum(y)``.
        numerator_sum_squares: ``sum(x**2)``.
        denominator_sum_squares: ``sum(y**2)``.
        cross_sum: ``sum(x * y)``.

    Example:
        >>> r = RatioStats.from_values([2.0, 0.0, 6.0], [1.0, 1.0, 2.0])  # revenue, sessions
        >>> r.mean, r.variance  # var(x - 2 y) / ybar**2 = 4 / (4/3)**2
        (2.0, 2.25)
        >>> both = r + RatioStats(1, 1.0, 1.0, 1.0, 1.0, 1.0)
        >>> both.n, both.numerator_sum, both.denominator_sum, both.cross_sum
        (4, 9.0, 5.0, 15.0)
    """

    n: int
    numerator_sum: float
    denominator_sum: float
    numerator_sum_squares: float
    denominator_sum_squares: float
    cross_sum: float

    def __post_init__(self) -> None:
        n = check_int("n", self.n, ge=0)
        sx = check_real("numerator_sum", self.numerator_sum)
        sy = check_real("denominator_sum", self.denominator_sum)
        sxx = check_real("numerator_sum_squares", self.numerator_sum_squares, ge=0)
        syy = check_real("denominator_sum_squares", self.denominator_sum_squares, ge=0)
        sxy = check_real("cross_sum", self.cross_sum)
        _check_empty(
            n,
            numerator_sum=sx,
            denominator_sum=sy,
            numerator_sum_squares=sxx,
            denominator_sum_squares=syy,
            cross_sum=sxy,
        )
        cxx = _centred(n, sx, sxx, "numerator_sum", "numerator_sum_squares")
        cyy = _centred(n, sy, syy, "denominator_sum", "denominator_sum_squares")
        names = ("numerator_sum_squares", "denominator_sum_squares", "cross_sum")
        _centred_cross(n, sx, sy, sxy, cxx, cyy, sxx, syy, names)
        for name, value in (
            ("n", n),
            ("numerator_sum", sx),
            ("denominator_sum", sy),
            ("numerator_sum_squares", sxx),
            ("denominator_sum_squares", syy),
            ("cross_sum", sxy),
        ):
            object.__setattr__(self, name, value)

    def __add__(self, other: RatioStats) -> RatioStats:
        if not isinstance(other, RatioStats):
            return NotImplemented
        return RatioStats(
            self.n + other.n,
            self.numerator_sum + other.numerator_sum,
            self.denominator_sum + other.denominator_sum,
            self.numerator_sum_squares + other.numerator_sum_squares,
            self.denominator_sum_squares + other.denominator_sum_squares,
            self.cross_sum + other.cross_sum,
        )

    @property
    def numerator(self) -> SampleStats:
        """The numerator alone, as a :class:`SampleStats`."""
        return SampleStats(self.n, self.numerator_sum, self.numerator_sum_squares)

    @property
    def denominator(self) -> SampleStats:
        """The denominator alone, as a :class:`SampleStats`."""
        return SampleStats(self.n, self.denominator_sum, self.denominator_sum_squares)

    @property
    def covariance(self) -> float:
        """Sample covariance ``(sum(x y) - sum(x) sum(y) / n) / (n - 1)``; 0 when ``n < 2``."""
        if self.n < 2:
            return 0.0
        return (self.cross_sum - self.numerator_sum * self.denominator_sum / self.n) / (self.n - 1)

    @property
    def mean(self) -> float:
        """``r = sum(x) / sum(y)``; ``0.0`` when ``sum(y) == 0``."""
        if self.denominator_sum == 0.0:
            return 0.0
        return self.numerator_sum / self.denominator_sum

    @property
    def variance(self) -> float:
        """Per-unit delta-method variance of ``r`` (see the class docstring), clipped at 0.

        ``0.0`` when ``n < 2`` or ``sum(y) == 0``.
        """
        if self.n < 2 or self.denominator_sum == 0.0:
            return 0.0
        ybar = self.denominator_sum / self.n
        r = self.mean
        s_xx, s_yy = self.numerator.variance, self.denominator.variance
        var = (s_xx - 2 * r * self.covariance + r * r * s_yy) / (ybar * ybar)
        return max(var, 0.0)

    @classmethod
    def from_values(cls, numerators: Iterable[float], denominators: Iterable[float]) -> RatioStats:
        """Summarise per-unit ``(x, y)`` pairs (correctly rounded sums, :func:`math.fsum`).

        Raises:
            ValueError: The two sequences differ in length.
        """
        xs = [float(x) for x in numerators]
        ys = [float(y) for y in denominators]
        if len(xs) != len(ys):
            raise ValueError(
                f"numerators and denominators must have one entry per unit, got {len(xs)} and "
                f"{len(ys)}"
            )
        return cls(
            len(xs),
            math.fsum(xs),
            math.fsum(ys),
            math.fsum(x * x for x in xs),
            math.fsum(y * y for y in ys),
            math.fsum(x * y for x, y in zip(xs, ys, strict=True)),
        )


@dataclass(frozen=True, slots=True)
class CupedStats:
    """Sufficient statistics of a metric ``y`` and a pre-experiment covariate ``x`` per unit.

    The input of :func:`~bandits.stats.cuped_effect`. The covariate is measured before
    assignment (last month's spend of the same user), so the treatment cannot move it and
    adjusting for it removes variance without bias.

    Attributes:
        n: Number of units.
        sum: ``sum(y)``, the metric.
        sum_squares: ``sum(y**2)``.
        covariate_sum: ``sum(x)``.
        covariate_sum_squares: ``sum(x**2)``.
        cross_sum: ``sum(x * y)``.

    Example:
        >>> c = CupedStats.from_values([3.0, 5.0, 4.0], [1.0, 3.0, 2.0])  # metric, covariate
        >>> c.metric, c.covariance
        (SampleStats(n=3, sum=12.0, sum_squares=50.0), 1.0)
    """

    n: int
    sum: float
    sum_squares: float
    covariate_sum: float
    covariate_sum_squares: float
    cross_sum: float

    def __post_init__(self) -> None:
        n = check_int("n", self.n, ge=0)
        sy = check_real("sum", self.sum)
        syy = check_real("sum_squares", self.sum_squares, ge=0)
        sx = check_real("covariate_sum", self.covariate_sum)
        sxx = check_real("covariate_sum_squares", self.covariate_sum_squares, ge=0)
        sxy = check_real("cross_sum", self.cross_sum)
        _check_empty(
            n,
            sum=sy,
            sum_squares=syy,
            covariate_sum=sx,
            covariate_sum_squares=sxx,
            cross_sum=sxy,
        )
        cyy = _centred(n, sy, syy, "sum", "sum_squares")
        cxx = _centred(n, sx, sxx, "covariate_sum", "covariate_sum_squares")
        names = ("sum_squares", "covariate_sum_squares", "cross_sum")
        _centred_cross(n, sy, sx, sxy, cyy, cxx, syy, sxx, names)
        for name, value in (
            ("n", n),
            ("sum", sy),
            ("sum_squares", syy),
            ("covariate_sum", sx),
            ("covariate_sum_squares", sxx),
            ("cross_sum", sxy),
        ):
            object.__setattr__(self, name, value)

    def __add__(self, other: CupedStats) -> CupedStats:
        if not isinstance(other, CupedStats):
            return NotImplemented
        return CupedStats(
            self.n + other.n,
            self.sum + other.sum,
            self.sum_squares + other.sum_squares,
            self.covariate_sum + other.covariate_sum,
            self.covariate_sum_squares + other.covariate_sum_squares,
            self.cross_sum + other.cross_sum,
        )

    @property
    def metric(self) -> SampleStats:
        """The metric ``y`` alone (what an unadjusted test uses)."""
        return SampleStats(self.n, self.sum, self.sum_squares)

    @property
    def covariate(self) -> SampleStats:
        """The covariate ``x`` alone."""
        return SampleStats(self.n, self.covariate_sum, self.covariate_sum_squares)

    @property
    def covariance(self) -> float:
        """Sample covariance of ``x`` and ``y`` (``n - 1``); 0 when ``n < 2``."""
        if self.n < 2:
            return 0.0
        return (self.cross_sum - self.sum * self.covariate_sum / self.n) / (self.n - 1)

    @classmethod
    def from_values(cls, metric: Iterable[float], covariate: Iterable[float]) -> CupedStats:
        """Summarise per-unit ``(y, x)`` pairs (correctly rounded sums, :func:`math.fsum`).

        Raises:
            ValueError: The two sequences differ in length.
        """
        ys = [float(y) for y in metric]
        xs = [float(x) for x in covariate]
        if len(xs) != len(ys):
            raise ValueError(
                f"metric and covariate must have one entry per unit, got {len(ys)} and {len(xs)}"
            )
        return cls(
            len(ys),
            math.fsum(ys),
            math.fsum(y * y for y in ys),
            math.fsum(xs),
            math.fsum(x * x for x in xs),
            math.fsum(x * y for x, y in zip(xs, ys, strict=True)),
        )


MetricStats = SampleStats | ProportionStats | RatioStats
"""Any per-arm summary a two-arm test takes; every test takes two of the same kind."""
