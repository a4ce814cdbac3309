"""Fixed-horizon frequentist tests: Welch's t-test, the 2x2 chi-square test, p-value adjustment.

These are valid when the sample size is fixed in advance and the result is read once; for a
dashboard that is watched continuously use :func:`bandits.stats.sequential_test`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import special as spspecial
from scipy import stats as sps

from bandits._checks import check_real
from bandits.stats._effect import (
    Alternative,
    check_alpha,
    check_alternative,
    check_pair,
    effect,
)
from bandits.stats.summaries import MetricStats, ProportionStats

__all__ = [
    "AdjustedPValues",
    "ChiSquareResult",
    "TTestResult",
    "adjust_pvalues",
    "chi_square_test",
    "welch_ttest",
]


@dataclass(frozen=True, slots=True)
class TTestResult:
    """Result of :func:`welch_ttest` (and the shape of :func:`sequential_test`'s).

    Attributes:
        estimate: ``mB - mA``, or ``(mB - mA) / |mA|`` when relative.
        se: Standard error of ``estimate``.
        ci: ``1 - alpha`` confidence interval; one-sided alternatives have an infinite end.
        p_value: p-value under the chosen alternative.
        dof: Welch-Satterthwaite degrees of freedom.
    """

    estimate: float
    se: float
    ci: tuple[float, float]
    p_value: float
    dof: float


NO_EVIDENCE = TTestResult(estimate=0.0, se=0.0, ci=(0.0, 0.0), p_value=1.0, dof=0.0)
"""Documented default for degenerate data: no effect, no evidence."""


def welch_ttest(
    control: MetricStats,
    treatment: MetricStats,
    *,
    relative: bool = True,
    alpha: float = 0.05,
    alternative: str = "two-sided",
) -> TTestResult:
    """Welch's unequal-variance t-test of ``treatment`` against ``control``.

    With ``m``, ``v``, ``n`` the mean, per-observation variance (``n - 1`` sample variance for
    :class:`SampleStats`, ``p (1 - p)`` for :class:`ProportionStats`, the per-unit delta-method
    variance of the ratio ``sum(x) / sum(y)`` for :class:`RatioStats`) and size of each arm::

        absolute:  d = mB - mA,           se**2 = vA/nA + vB/nB
        relative:  d = (mB - mA) / |mA|,  se**2 = vB/(nB mA**2) + mB**2 vA/(nA mA**4)
        dof = (vA/nA + vB/nB)**2 / ((vA/nA)**2/(nA - 1) + (vB/nB)**2/(nB - 1))
        t = d / se;  p = 2 T_dof(-|t|) (two-sided), T_dof(-t) (greater), T_dof(t) (less)
        ci = d -/+ t_{dof, 1 - alpha/2} se (two-sided); one-sided: [d - t_{1-alpha} se, inf)
             for "greater", (-inf, d + t_{1-alpha} se] for "less"

    The relative variance is the delta method's. The absolute test equals
    ``scipy.stats.ttest_ind(b, a, equal_var=False)`` on raw samples.

    Degenerate data (an arm with ``n < 2``, zero variance in both arms, a ratio whose
    denominator sums to 0, or a relative effect with a control mean of 0) returns
    ``NO_EVIDENCE``: estimate 0, se 0, ci ``(0, 0)``, p-value 1, dof 0, never NaN. Impossible
    sums (a negative variance) never get this far: the summaries refuse them.

    Args:
        control: Summary of arm A.
        treatment: Summary of arm B, of the same kind.
        relative: Test the relative lift instead of the absolute difference.
        alpha: Significance level of the confidence interval, in ``(0, 1)``.
        alternative: ``"two-sided"``, ``"greater"`` (B > A) or ``"less"`` (B < A).

    Raises:
        ValueError: ``alpha`` or ``alternative`` is out of range, or the arms are of different
            kinds.

    Example:
        >>> from bandits.stats import SampleStats
        >>> a = SampleStats.from_values([1.0, 2.0, 3.0, 4.0])
        >>> b = SampleStats.from_values([2.0, 4.0, 6.0, 8.0])
        >>> r = welch_ttest(a, b, relative=False)
        >>> round(r.estimate, 6), round(r.p_value, 6), round(r.dof, 6)
        (2.5, 0.151581, 4.411765)
        >>> round(welch_ttest(a, b).estimate, 6)  # relative lift: +100 %
        1.0
        >>> from bandits.stats import RatioStats  # revenue per session, units are users
        >>> ra = RatioStats.from_values([2.0, 0.0, 6.0, 1.0], [1.0, 1.0, 2.0, 1.0])
        >>> rb = RatioStats.from_values([4.0, 3.0, 5.0, 2.0], [2.0, 1.0, 1.0, 1.0])
        >>> round(welch_ttest(ra, rb, relative=False).estimate, 6)  # 14/5 - 9/5
        1.0
    """
    check_pair(control, treatment)
    a = check_alpha(alpha)
    alt = check_alternative(alternative)
    eff = effect(control, treatment, relative=relative)
    if eff is None:
        return NO_EVIDENCE
    se = math.sqrt(eff.variance)
    p_value, ci = p_value_and_interval(eff.estimate, se, eff.dof, a, alt)
    return TTestResult(eff.estimate, se, ci, p_value, eff.dof)


def p_value_and_interval(
    estimate: float, se: float, dof: float, alpha: float, alt: Alternative
) -> tuple[float, tuple[float, float]]:
    """p-value and interval of ``t = estimate / se`` against Student's t with ``dof``."""
    t = estimate / se

    # The special functions behind scipy.stats.t's sf and ppf, without building a frozen
    # distribution per call (which costs more than the whole test).
    def sf(x: float) -> float:
        return float(spspecial.stdtr(dof, -x))

    def ppf(q: float) -> float:
        return float(spspecial.stdtrit(dof, q))

    if alt == "two-sided":
        q = float(ppf(1 - alpha / 2))
        return min(1.0, 2 * float(sf(abs(t)))), (estimate - q * se, estimate + q * se)
    q = float(ppf(1 - alpha))
    if alt == "greater":
        return float(sf(t)), (estimate - q * se, math.inf)
    return float(sf(-t)), (-math.inf, estimate + q * se)


@dataclass(frozen=True, slots=True)
class ChiSquareResult:
    """Result of :func:`chi_square_test`.

    Attributes:
        statistic: Pearson's chi-square statistic (1 degree of freedom).
        p_value: ``P(chi2_1 >= statistic)``.
    """

    statistic: float
    p_value: float


def chi_square_test(control: ProportionStats, treatment: ProportionStats) -> ChiSquareResult:
    """Pearson's chi-square test of equal proportions on the 2x2 table, no continuity correction.

    With table ``[[sA, nA - sA], [sB, nB - sB]] = [[a, b], [c, d]]`` and ``N = a + b + c + d``::

        chi2 = N (a d - b c)**2 / ((a + b)(c + d)(a + c)(b + d)),   p = P(chi2_1 >= chi2)

    It equals ``scipy.stats.chi2_contingency(table, correction=False)`` and the square of the
    pooled two-proportion z statistic.

    A table with an empty row or column (an arm without trials, or no successes or no failures
    at all) returns statistic 0 and p-value 1: there is nothing to compare.

    Raises:
        ValueError: An argument is not :class:`ProportionStats`.

    Example:
        >>> r = chi_square_test(ProportionStats(1000, 100), ProportionStats(1000, 130))
        >>> round(r.statistic, 6), round(r.p_value, 6)
        (4.421518, 0.035488)
    """
    for name, s in (("control", control), ("treatment", treatment)):
        if not isinstance(s, ProportionStats):
            raise ValueError(f"{name} must be ProportionStats, got {s!r}")
    a, c = control.successes, treatment.successes
    b, d = control.n - a, treatment.n - c
    margins = (a + b) * (c + d) * (a + c) * (b + d)
    if margins <= 0:
        return ChiSquareResult(0.0, 1.0)
    statistic = (a + b + c + d) * (a * d - b * c) ** 2 / margins
    return ChiSquareResult(statistic, float(sps.chi2.sf(statistic, 1)))


AdjustMethod = Literal["holm", "bh"]
"""``"holm"`` (family-wise error rate) or ``"bh"`` (Benjamini-Hochberg false discovery rate)."""


@dataclass(frozen=True, slots=True)
class AdjustedPValues:
    """Result of :func:`adjust_pvalues`, in the input order.

    Attributes:
        p_values: Adjusted p-values.
        reject: ``adjusted <= alpha``.
    """

    p_values: tuple[float, ...]
    reject: tuple[bool, ...]


def adjust_pvalues(
    p_values: Sequence[float], method: AdjustMethod = "holm", *, alpha: float = 0.05
) -> AdjustedPValues:
    """Adjust p-values for multiple comparisons (e.g. every treatment arm against control).

    With ``p_(1) <= ... <= p_(m)`` sorted ascending (1-based ``i``)::

        holm:  q_(i) = max_{j <= i} min(1, (m - j + 1) p_(j))      (step-down, controls FWER)
        bh:    q_(i) = min_{j >= i} min(1, m p_(j) / j)            (step-up, controls FDR)

    Both equal ``statsmodels.stats.multitest.multipletests`` with ``"holm"`` / ``"fdr_bh"``.
    An empty input gives an empty result.

    Args:
        p_values: Raw p-values, each in ``[0, 1]``.
        method: ``"holm"`` or ``"bh"``.
        alpha: Level for ``reject``, in ``(0, 1)``.

    Raises:
        ValueError: A p-value is outside ``[0, 1]``, or ``method`` is unknown.

    Example:
        >>> r = adjust_pvalues([0.01, 0.04, 0.03, 0.005], "holm")
        >>> [round(p, 6) for p in r.p_values], r.reject
        ([0.03, 0.06, 0.06, 0.02], (True, False, False, True))
        >>> [round(p, 6) for p in adjust_pvalues([0.01, 0.04, 0.03, 0.005], "bh").p_values]
        [0.02, 0.04, 0.04, 0.02]
    """
    a = check_alpha(alpha)
    ps = np.array([check_real(f"p_values[{i}]", p, ge=0, le=1) for i, p in enumerate(p_values)])
    m = ps.size
    if m == 0:
        return AdjustedPValues((), ())
    order = np.argsort(ps, kind="stable")
    sorted_p = ps[order]
    ranks = np.arange(1, m + 1)
    if method == "holm":
        adjusted = np.maximum.accumulate(np.minimum(1.0, (m - ranks + 1) * sorted_p))
    elif method == "bh":
        adjusted = np.minimum.accumulate(np.minimum(1.0, m * sorted_p / ranks)[::-1])[::-1]
    else:
        raise ValueError(f"method must be 'holm' or 'bh', got {method!r}")
    out = np.empty(m)
    out[order] = adjusted
    return AdjustedPValues(tuple(float(q) for q in out), tuple(bool(q <= a) for q in out))
