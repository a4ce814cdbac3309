"""Always-valid inference: a test that may be looked at after every observation.

Re-running a fixed-horizon t-test at every look and stopping at the first ``p < alpha`` inflates
the false positive rate far above ``alpha``. The normal-mixture confidence sequence of Howard,
Ramdas, McAuliffe and Sekhon (2021, "Time-uniform, nonparametric, nonasymptotic confidence
sequences", eq. 14 and the tuning of eq. 161 in arXiv:2103.06476v7), as used by GrowthBook's
gbstats, covers the true effect at *all* sample sizes simultaneously with probability
``1 - alpha`` (asymptotically).

One-sided tests (``alternative="greater"`` or ``"less"``) use the one-sided normal mixture of
the same paper (Proposition 6; ``OneSidedNormalMixture`` in Howard's ``confseq`` library): the
mixing distribution is a half-normal on the side of the alternative, so the test spends all of
``alpha`` there and is strictly more powerful in that direction than the two-sided test.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import optimize
from scipy import special as spspecial

from bandits._checks import check_real
from bandits.stats._effect import Alternative, check_alpha, check_alternative, check_pair, effect
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


def sequential_rho(alpha: float, tuning: float, *, one_sided: bool = False) -> float:
    """Mixing scale ``rho`` that makes the boundary tightest near ``tuning`` observations.

    Howard et al. eq. 161: ``rho**2 = (-2 ln(a) + ln(1 - 2 ln(a))) / tuning`` with ``a =
    alpha`` for the two-sided mixture and ``a = 2 alpha`` for the one-sided one (as ``confseq``
    and gbstats tune it; the one-sided test then needs ``alpha < 0.5``). Any ``rho > 0`` gives
    a valid test; the choice only moves where it is tightest.

    Raises:
        ValueError: ``alpha`` is not in ``(0, 1)`` (``(0, 0.5)`` one-sided) or ``tuning <= 0``.

    Example:
        >>> round(sequential_rho(0.05, 5000), 6)
        0.03984
        >>> round(sequential_rho(0.05, 5000, one_sided=True), 6)  # = two-sided at alpha 0.1
        0.035578
    """
    a = check_alpha(alpha)
    t = check_real("tuning", tuning, gt=0)
    if one_sided:
        a = check_real("alpha (one-sided)", a, gt=0, lt=0.5) * 2
    return math.sqrt((-2 * math.log(a) + math.log(1 - 2 * math.log(a))) / t)


def two_sided_boundary(n: float, rho: float, alpha: float) -> float:
    """Two-sided mixture boundary on the standardised sum ``S = n d / sqrt(s2)``.

    ``|S| >= sqrt(2 (n rho**2 + 1) / rho**2 ln(sqrt(n rho**2 + 1) / alpha))`` rejects.
    """
    nr2 = n * rho * rho
    return math.sqrt(2 * (nr2 + 1) / (rho * rho) * math.log(math.sqrt(nr2 + 1) / alpha))


def one_sided_log_mixture(s: float, n: float, rho: float) -> float:
    """``ln M+`` of the one-sided (half-normal) mixture at standardised sum ``s``, time ``n``.

    With ``theta ~ N(0, rho**2)`` restricted to ``theta >= 0`` (density doubled)::

        M+ = int_0^inf exp(theta s - theta**2 n / 2) 2 phi(theta / rho) / rho dtheta
           = 2 / sqrt(1 + n rho**2) exp(rho**2 s**2 / (2 (1 + n rho**2)))
             Phi(rho s / sqrt(1 + n rho**2))

    (complete the square in ``theta``). ``M+ <= 1`` for ``s <= 0``.
    """
    nr2 = n * rho * rho
    x = rho * s / math.sqrt(1 + nr2)
    if x <= 0.0:
        return 0.0  # only the sign matters to the callers: M+ <= 1, no evidence
    log_phi = math.log(0.5 * math.erfc(-x / math.sqrt(2.0)))
    return math.log(2.0) - 0.5 * math.log1p(nr2) + 0.5 * x * x + log_phi


def one_sided_boundary(n: float, rho: float, alpha: float) -> float:
    """One-sided mixture boundary on ``S``: the root of ``ln M+(s, n) = ln(1 / alpha)``.

    ``M+`` increases in ``s`` and lies between ``(1 / sqrt(1 + n rho**2)) exp(...)`` and twice
    that, so the root lies between the two-sided boundaries at ``2 alpha`` and ``alpha``.
    """
    target = -math.log(alpha)
    hi = two_sided_boundary(n, rho, alpha)
    lo = two_sided_boundary(n, rho, 2 * alpha) if math.sqrt(1 + n * rho * rho) > 2 * alpha else 0.0
    root = optimize.brentq(
        lambda s: one_sided_log_mixture(s, n, rho) - target, lo, hi, xtol=1e-13, rtol=1e-13
    )
    return float(root)


def boundary_curve(
    n: npt.NDArray[np.float64], rho: float, alpha: float, *, one_sided: bool
) -> npt.NDArray[np.float64]:
    """:func:`two_sided_boundary` or :func:`one_sided_boundary` at many ``n`` (vectorised).

    The one-sided root is found by 80 steps of bisection between the same brackets, to
    ``2**-80`` of the bracket: equal to the scalar root to rounding.
    """
    nr2 = n * rho * rho

    def two(a: float) -> npt.NDArray[np.float64]:
        out = np.sqrt(2 * (nr2 + 1) / (rho * rho) * np.log(np.sqrt(nr2 + 1) / a))
        return np.asarray(out, dtype=np.float64)

    hi = two(alpha)
    if not one_sided:
        return hi
    lo = np.where(np.sqrt(nr2 + 1) > 2 * alpha, two(2 * alpha), 0.0)
    target = -math.log(alpha)
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        x = rho * mid / np.sqrt(1 + nr2)
        log_m = math.log(2.0) - 0.5 * np.log1p(nr2) + 0.5 * x * x + spspecial.log_ndtr(x)
        above = log_m >= target
        hi = np.where(above, mid, hi)
        lo = np.where(above, lo, mid)
    return np.asarray(0.5 * (lo + hi), dtype=np.float64)


def sequential_test(
    control: MetricStats,
    treatment: MetricStats,
    *,
    tuning: float = 5000,
    alpha: float = 0.05,
    relative: bool = True,
    alternative: str = "two-sided",
) -> SequentialResult:
    """Always-valid test and confidence sequence of the treatment effect.

    With ``d``, ``se`` the effect estimate and standard error of
    :func:`~bandits.stats.welch_ttest`, ``N = nA + nB``, ``s2 = N se**2`` the per-observation
    variance, ``S = N d / sqrt(s2)`` the standardised sum and ``rho`` from
    :func:`sequential_rho` (``tuning = n*``, the total sample size at which the interval is
    tightest)::

        two-sided (normal mixture, theta ~ N(0, rho**2)):
            halfwidth = sqrt(s2) sqrt(2 (N rho**2 + 1) / (N rho)**2
                                      * ln(sqrt(N rho**2 + 1) / alpha))
            ci        = d -/+ halfwidth
            p_value   = min(1, sqrt(N rho**2 + 1) exp(-N**2 rho**2 d**2 / (2 s2 (N rho**2 + 1))))
        one-sided (half-normal mixture, theta >= 0; rho tuned at 2 alpha):
            M+(S)     = 2 / sqrt(1 + N rho**2) exp(rho**2 S**2 / (2 (1 + N rho**2)))
                        Phi(rho S / sqrt(1 + N rho**2))
            u         = the root of M+(u) = 1 / alpha,   halfwidth = u sqrt(s2) / N
            "greater": ci = [d - halfwidth, inf),  p_value = min(1, 1 / M+(S))
            "less":    ci = (-inf, d + halfwidth], p_value = min(1, 1 / M+(-S))

    Each p-value is the reciprocal of a nonnegative (super)martingale under the null (the
    mixture likelihood ratio, mSPRT), so by Ville's inequality it is valid at every ``N`` at
    once: stopping when ``p_value <= alpha`` at *any* look keeps the false positive rate below
    ``alpha``; one-sided, for every effect on the null side (``<= 0`` for "greater"), since
    each ``exp(theta S - theta**2 N / 2)`` with ``theta >= 0`` is then a supermartingale. The
    p-value is the level at which the boundary (with ``rho`` kept at the design ``alpha``'s
    value) just touches 0. To report a monotone sequence keep the running minimum of
    ``p_value`` and the running intersection of ``ci`` across looks. The interval is always
    wider than the fixed-horizon Normal interval (``2 ln(1/alpha) >= z_{1-alpha/2}**2``): that
    is the price of peeking. The one-sided ``u`` lies between the two-sided boundaries at
    ``2 alpha`` and ``alpha``, so it is tighter than the two-sided test at the same level.

    Degenerate data (see :func:`~bandits.stats.welch_ttest`) return ``NO_EVIDENCE``: estimate
    0, se 0, ci ``(0, 0)``, p-value 1.

    Args:
        control: Summary of arm A.
        treatment: Summary of arm B, of the same kind.
        tuning: ``n*``, total sample size (both arms) where the boundary is tightest, ``> 0``.
        alpha: Error rate, in ``(0, 1)``; ``(0, 0.5)`` for a one-sided test.
        relative: Test the relative lift instead of the absolute difference.
        alternative: ``"two-sided"``, ``"greater"`` (B > A) or ``"less"`` (B < A).

    Raises:
        ValueError: ``tuning``, ``alpha`` or ``alternative`` is out of range, or the arms are
            of different kinds.

    Example:
        >>> from bandits.stats import ProportionStats
        >>> r = sequential_test(ProportionStats(5000, 500), ProportionStats(5000, 580))
        >>> round(r.estimate, 4), [round(x, 4) for x in r.ci], round(r.p_value, 4)
        (0.16, [-0.0448, 0.3648], 0.2783)
        >>> g = sequential_test(ProportionStats(5000, 500), ProportionStats(5000, 580),
        ...                     alternative="greater")
        >>> round(g.ci[0], 4), g.ci[1], round(g.p_value, 4)
        (-0.0268, inf, 0.1317)
    """
    check_pair(control, treatment)
    a = check_alpha(alpha)
    alt: Alternative = check_alternative(alternative)
    rho = sequential_rho(a, tuning, one_sided=alt != "two-sided")
    eff = effect(control, treatment, relative=relative)
    if eff is None:
        return NO_EVIDENCE
    n = control.n + treatment.n
    s2 = n * eff.variance
    d = eff.estimate
    se = math.sqrt(eff.variance)
    if alt == "two-sided":
        nr2 = n * rho**2
        halfwidth = math.sqrt(
            s2 * 2 * (nr2 + 1) / (n * rho) ** 2 * math.log(math.sqrt(nr2 + 1) / a)
        )
        log_p = 0.5 * math.log(nr2 + 1) - n * nr2 * d**2 / (2 * s2 * (nr2 + 1))
        return SequentialResult(
            estimate=d, se=se, ci=(d - halfwidth, d + halfwidth), p_value=math.exp(min(log_p, 0.0))
        )
    sign = 1.0 if alt == "greater" else -1.0
    standardised = sign * n * d / math.sqrt(s2)
    p_value = math.exp(-max(one_sided_log_mixture(standardised, n, rho), 0.0))
    halfwidth = one_sided_boundary(n, rho, a) * math.sqrt(s2) / n
    ci = (d - halfwidth, math.inf) if alt == "greater" else (-math.inf, d + halfwidth)
    return SequentialResult(estimate=d, se=se, ci=ci, p_value=p_value)
