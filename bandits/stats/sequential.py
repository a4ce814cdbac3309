"""Always-valid inference: a test that may be looked at after every observation.

Re-running a fixed-horizon t-test at every look and stopping at the first ``p < alpha`` inflates
the false positive rate far above ``alpha``. The normal-mixture confidence sequence of Howard,
Ramdas, McAuliffe and Sekhon (2021, "Time-uniform, nonparametric, nonasymptotic confidence
sequences", eq. 14 and the tuning of eq. 161 in arXiv:2103.06476v7), as used by GrowthBook's
gbstats, covers the true effect at *all* sample sizes simultaneously with probability
``1 - alpha`` (asymptotically).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from bandits._checks import check_real
from bandits.stats._effect import check_alpha, check_pair, effect
from bandits.stats.summaries import MetricStats

__all__ = ["SequentialResult", "sequential_rho", "sequential_test"]


@dataclass(frozen=True, slots=True)
class SequentialResult:
    """Result of :func:`sequential_test`.

    Attributes:
        estimate: Effect estimate, as :func:`~bandits.stats.welch_ttest`'s.
        se: Its standard error.
        ci: ``1 - alpha`` confidence sequence at the current sample size.
        p_value: Always-valid p-value at the current sample size.
    """

    estimate: float
    se: float
    ci: tuple[float, float]
    p_value: float


NO_EVIDENCE = SequentialResult(estimate=0.0, se=0.0, ci=(0.0, 0.0), p_value=1.0)
"""Documented default for degenerate data: no effect, no evidence."""


def sequential_rho(alpha: float, tuning: float) -> float:
    """Mixing scale ``rho`` that makes the boundary tightest near ``tuning`` observations.

    Howard et al. eq. 161: ``rho**2 = (-2 ln(alpha) + ln(1 - 2 ln(alpha))) / tuning``.

    Example:
        >>> round(sequential_rho(0.05, 5000), 6)
        0.03984
    """
    a = check_alpha(alpha)
    t = check_real("tuning", tuning, gt=0)
    return math.sqrt((-2 * math.log(a) + math.log(1 - 2 * math.log(a))) / t)


def sequential_test(
    control: MetricStats,
    treatment: MetricStats,
    *,
    tuning: float = 5000,
    alpha: float = 0.05,
    relative: bool = True,
) -> SequentialResult:
    """Two-sided always-valid test and confidence sequence of the treatment effect.

    With ``d``, ``se`` the effect estimate and standard error of
    :func:`~bandits.stats.welch_ttest`, ``N = nA + nB``, ``s2 = N se**2`` the per-observation
    variance and ``rho`` from :func:`sequential_rho` (``tuning = n*``, the total sample size at
    which the interval is tightest)::

        halfwidth = sqrt(s2) sqrt(2 (N rho**2 + 1) / (N rho)**2
                                  * ln(sqrt(N rho**2 + 1) / alpha))
        ci        = d -/+ halfwidth
        p_value   = min(1, sqrt(N rho**2 + 1) exp(-N**2 rho**2 d**2 / (2 s2 (N rho**2 + 1))))

    The p-value is the level at which the boundary (with ``rho`` kept at the design
    ``alpha``'s value) just touches 0: the reciprocal of the normal mixture likelihood ratio
    (mSPRT). Both are valid at every ``N`` at once: stopping when
    ``p_value <= alpha`` at *any* look keeps the false positive rate below ``alpha``. To report
    a monotone sequence keep the running minimum of ``p_value`` and the running intersection
    of ``ci`` across looks. The interval is always wider than the fixed-horizon Normal interval
    (``2 ln(1/alpha) >= z_{1-alpha/2}**2``): that is the price of peeking.

    Degenerate data (see :func:`~bandits.stats.welch_ttest`) return ``NO_EVIDENCE``: estimate
    0, se 0, ci ``(0, 0)``, p-value 1.

    Args:
        control: Summary of arm A.
        treatment: Summary of arm B, of the same kind.
        tuning: ``n*``, total sample size (both arms) where the boundary is tightest, ``> 0``.
        alpha: Error rate, in ``(0, 1)``.
        relative: Test the relative lift instead of the absolute difference.

    Raises:
        ValueError: ``tuning`` or ``alpha`` is out of range, or the arms are of different kinds.

    Example:
        >>> from bandits.stats import ProportionStats
        >>> r = sequential_test(ProportionStats(5000, 500), ProportionStats(5000, 580))
        >>> round(r.estimate, 4), [round(x, 4) for x in r.ci], round(r.p_value, 4)
        (0.16, [-0.0448, 0.3648], 0.2783)
    """
    check_pair(control, treatment)
    a = check_alpha(alpha)
    rho = sequential_rho(a, tuning)
    eff = effect(control, treatment, relative=relative)
    if eff is None:
        return NO_EVIDENCE
    n = control.n + treatment.n
    s2 = n * eff.variance
    nr2 = n * rho**2
    halfwidth = math.sqrt(s2 * 2 * (nr2 + 1) / (n * rho) ** 2 * math.log(math.sqrt(nr2 + 1) / a))
    d = eff.estimate
    log_p = 0.5 * math.log(nr2 + 1) - n * nr2 * d**2 / (2 * s2 * (nr2 + 1))
    return SequentialResult(
        estimate=d,
        se=math.sqrt(eff.variance),
        ci=(d - halfwidth, d + halfwidth),
        p_value=math.exp(min(log_p, 0.0)),
    )
