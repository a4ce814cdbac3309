"""Sample ratio mismatch (SRM): is the traffic split what the router was told to do?

An SRM (say 50.8 % / 49.2 % on a configured 50/50 over 100k users) means assignment or logging
is broken, and every other statistic of the experiment is suspect. For a bandit the weights
change over time, so :func:`srm_test_periods` sums the expected counts over the periods in
which each set of weights was in force.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats as sps

from bandits._checks import check_real

__all__ = ["SRMResult", "TrafficPeriod", "srm_test", "srm_test_periods"]


@dataclass(frozen=True, slots=True)
class SRMResult:
    """Result of :func:`srm_test` / :func:`srm_test_periods`.

    Attributes:
        statistic: Pearson's ``sum((O - E)**2 / E)`` over arms with ``E > 0``; ``inf`` when an
            arm with expected count 0 received traffic.
        p_value: ``P(chi2_dof >= statistic)``; a small value (e.g. ``< 0.001``) flags an SRM.
        dof: Arms with positive expected count, minus one.
        expected: Expected count per arm, in the input order.
        reason: Why the result is a special case (``None`` for an ordinary test).
    """

    statistic: float
    p_value: float
    dof: int
    expected: tuple[float, ...]
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class TrafficPeriod:
    """Assignment counts during a period and the routing weights in force during it.

    Attributes:
        counts: Assignments per arm in the period.
        weights: Routing weights per arm (any non-negative scale; normalised per period).
    """

    counts: tuple[float, ...]
    weights: tuple[float, ...]

    def __post_init__(self) -> None:
        counts = tuple(check_real(f"counts[{i}]", c, ge=0) for i, c in enumerate(self.counts))
        weights = tuple(check_real(f"weights[{i}]", w, ge=0) for i, w in enumerate(self.weights))
        if len(counts) != len(weights):
            raise ValueError(
                f"counts and weights must have one entry per arm, got {len(counts)} and "
                f"{len(weights)}"
            )
        if sum(weights) <= 0:
            raise ValueError("weights must have a positive sum")
        object.__setattr__(self, "counts", counts)
        object.__setattr__(self, "weights", weights)

    @property
    def expected(self) -> tuple[float, ...]:
        """``N_t w_k / sum(w)``: expected counts under the weights."""
        total, wsum = math.fsum(self.counts), math.fsum(self.weights)
        return tuple(total * w / wsum for w in self.weights)


def srm_test(observed_counts: Sequence[float], expected_weights: Sequence[float]) -> SRMResult:
    """Chi-square goodness-of-fit test of observed assignments against the configured weights.

    With ``N = sum(O)`` and ``E_k = N w_k / sum(w)``::

        statistic = sum_{k: w_k > 0} (O_k - E_k)**2 / E_k,   dof = #{k: w_k > 0} - 1

    It equals ``scipy.stats.chisquare(O, E)`` over the arms with ``w_k > 0``. Special cases,
    explained in ``reason``: an arm with weight 0 that received traffic gives ``p_value = 0``
    (``statistic = inf``): that is a mismatch by definition; no traffic, or a single arm with
    positive weight, gives ``p_value = 1``.

    Args:
        observed_counts: Assignments per arm, each ``>= 0``.
        expected_weights: Configured weights per arm, each ``>= 0``, positive sum.

    Raises:
        ValueError: Lengths differ, a count or weight is negative, or all weights are 0.

    Example:
        >>> r = srm_test([50_800, 49_200], [0.5, 0.5])
        >>> round(r.statistic, 2), r.dof, f"{r.p_value:.1e}"
        (25.6, 1, '4.2e-07')
        >>> srm_test([100, 3], [1, 0]).reason
        'arm 1 has weight 0 but 3.0 observations'
    """
    period = TrafficPeriod(tuple(observed_counts), tuple(expected_weights))
    return _chi_square(period.counts, period.expected)


def srm_test_periods(periods: Sequence[TrafficPeriod]) -> SRMResult:
    """SRM test for changing weights (a bandit): expected counts summed over periods.

    With ``N_t`` the assignments in period ``t`` and ``w_tk`` the weights in force::

        O_k = sum_t O_tk,   E_k = sum_t N_t w_tk / sum_j w_tj

    then the statistic, dof and special cases of :func:`srm_test`. With the same weights in
    every period it equals :func:`srm_test` on the totals. When the weights do change, the
    pooled statistic is conservative (the sum of per-period multinomials varies less than one
    multinomial with the same means), so a small p-value is still a real mismatch.

    Raises:
        ValueError: No periods, or periods with different numbers of arms.

    Example:
        >>> r = srm_test_periods([TrafficPeriod((500, 500), (0.5, 0.5)),
        ...                       TrafficPeriod((200, 800), (0.2, 0.8))])
        >>> r.expected, r.p_value
        ((700.0, 1300.0), 1.0)
    """
    if not periods:
        raise ValueError("srm_test_periods needs at least one period")
    k = len(periods[0].counts)
    for i, period in enumerate(periods):
        if not isinstance(period, TrafficPeriod):
            raise ValueError(f"periods[{i}] must be a TrafficPeriod, got {period!r}")
        if len(period.counts) != k:
            raise ValueError(f"periods[{i}] has {len(period.counts)} arms, periods[0] has {k}")
    observed = tuple(math.fsum(p.counts[j] for p in periods) for j in range(k))
    expected = tuple(math.fsum(p.expected[j] for p in periods) for j in range(k))
    return _chi_square(observed, expected)


def _chi_square(observed: tuple[float, ...], expected: tuple[float, ...]) -> SRMResult:
    used = [(o, e) for o, e in zip(observed, expected, strict=True) if e > 0.0]
    for j, (o, e) in enumerate(zip(observed, expected, strict=True)):
        if e == 0.0 and o > 0.0:
            return SRMResult(
                math.inf,
                0.0,
                max(len(used) - 1, 0),
                expected,
                f"arm {j} has weight 0 but {o} observations",
            )
    if not used:
        return SRMResult(0.0, 1.0, 0, expected, "no observations")
    dof = len(used) - 1
    if dof == 0:
        return SRMResult(0.0, 1.0, 0, expected, "only one arm has positive weight")
    statistic = math.fsum((o - e) ** 2 / e for o, e in used)
    return SRMResult(statistic, float(sps.chi2.sf(statistic, dof)), dof, expected)
