"""CUPED: variance reduction with a pre-experiment covariate (Deng, Xu, Kohavi, Walker 2013).

A metric ``y`` is noisy mostly because units differ, and those differences were already there
before the experiment: last month's spend ``x`` of the same user predicts this month's. The
covariate cannot be moved by the treatment (it was measured before assignment), so
subtracting ``theta (x - mean(x))`` from every ``y`` keeps each arm's expected mean and removes
the share ``rho**2`` of the variance that ``x`` explains (``rho`` = corr(x, y)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from bandits.stats._effect import Alternative, check_alpha, check_alternative
from bandits.stats.frequentist import NO_EVIDENCE, TTestResult, p_value_and_interval, welch_ttest
from bandits.stats.summaries import CupedStats

__all__ = ["CupedResult", "cuped_effect"]


@dataclass(frozen=True, slots=True)
class CupedResult:
    """Result of :func:`cuped_effect`: the adjusted test beside the plain one.

    Attributes:
        adjusted: CUPED-adjusted effect, standard error, interval and p-value.
        unadjusted: :func:`~bandits.stats.welch_ttest` of the metric alone, same settings.
        theta: Regression slope ``cov(x, y) / var(x)`` of the pooled arms (0: no adjustment).
        variance_reduction: ``1 - adjusted.se**2 / unadjusted.se**2``, the share of the
            effect's variance removed (about ``corr(x, y)**2``); 0 when either is degenerate,
            negative if the covariate made things worse.
    """

    adjusted: TTestResult
    unadjusted: TTestResult
    theta: float
    variance_reduction: float


def _theta(pooled: CupedStats) -> float:
    var_x = pooled.covariate.variance
    return pooled.covariance / var_x if pooled.n >= 2 and var_x > 0.0 else 0.0


def cuped_effect(
    control: CupedStats,
    treatment: CupedStats,
    *,
    relative: bool = True,
    alpha: float = 0.05,
    alternative: str = "two-sided",
) -> CupedResult:
    """CUPED-adjusted Welch test of ``treatment`` against ``control``, next to the plain one.

    ``theta`` is estimated once from both arms together (``P = control + treatment``), so both
    arms are adjusted by the same line, and per arm ``k`` with means ``yk``, ``xk``, ``n - 1``
    sample (co)variances ``s_yy``, ``s_xx``, ``s_xy`` and size ``nk``::

        theta = cov_P(x, y) / var_P(x)
        vk    = s_yy - 2 theta s_xy + theta**2 s_xx           (variance of y - theta x)
        absolute:  d = (yB - yA) - theta (xB - xA),    se**2 = vA/nA + vB/nB
        relative:  m = yB - theta (xB - xA),           d = (m - yA) / |yA|
                   se**2 = vB / (nB yA**2)
                         + (theta**2 s_xx - 2 theta (m/yA) s_xy + (m/yA)**2 s_yy)_A / (nA yA**2)

    The relative lift is on the *unadjusted* control mean ``yA`` (what the metric is), and its
    variance is the delta method's for ``(yB - theta xB + theta xA) / yA - 1`` with the four
    means independent across arms: the control's ``yA`` and ``xA`` appear in the numerator
    and the denominator, hence the control's own quadratic form. The
    absolute effect is the difference of the adjusted means ``yk - theta (xk - xP)`` (the
    pooled mean cancels), i.e. Welch's test of ``y - theta x``. Degrees of freedom: Welch-
    Satterthwaite with ``vA``, ``vB``; the p-value and interval are as
    :func:`~bandits.stats.welch_ttest` (``theta`` is treated as known, which costs one degree
    of freedom at most). The absolute estimate is close to the treatment coefficient of the
    OLS ``y ~ treatment + (x - mean(x))``, which fits the within-arm slope instead.

    Degenerate data: the plain test's rules (see :func:`~bandits.stats.welch_ttest`) for both
    results; a covariate without variance gives ``theta = 0`` (no adjustment); a zero
    adjusted variance gives ``NO_EVIDENCE`` for the adjusted test. Never NaN.

    Args:
        control: Metric and covariate summary of arm A.
        treatment: Metric and covariate summary of arm B.
        relative: Test the lift relative to the unadjusted control mean.
        alpha: Significance level of the intervals, in ``(0, 1)``.
        alternative: ``"two-sided"``, ``"greater"`` (B > A) or ``"less"`` (B < A).

    Raises:
        ValueError: ``alpha`` or ``alternative`` is out of range, or an arm is not
            :class:`CupedStats`.

    Example:
        >>> a = CupedStats.from_values([12.0, 7.0, 10.0, 5.0], [10.0, 6.0, 9.0, 4.0])
        >>> b = CupedStats.from_values([13.0, 9.0, 12.0, 8.0], [9.0, 5.0, 8.0, 5.0])
        >>> r = cuped_effect(a, b, relative=False)
        >>> round(r.unadjusted.estimate, 4), round(r.adjusted.estimate, 4), round(r.theta, 4)
        (2.0, 2.5278, 1.0556)
        >>> round(r.unadjusted.p_value, 4), round(r.adjusted.p_value, 6)
        (0.349, 0.000169)
        >>> round(r.variance_reduction, 4)
        0.9759
    """
    for name, s in (("control", control), ("treatment", treatment)):
        if not isinstance(s, CupedStats):
            raise ValueError(f"{name} must be CupedStats, got {s!r}")
    a = check_alpha(alpha)
    alt = check_alternative(alternative)
    unadjusted = welch_ttest(
        control.metric, treatment.metric, relative=relative, alpha=a, alternative=alt
    )
    theta = _theta(control + treatment)
    adjusted = _adjusted(control, treatment, theta, relative, a, alt)
    reduction = 0.0
    if unadjusted.se > 0.0 and adjusted.se > 0.0:
        reduction = 1.0 - adjusted.se**2 / unadjusted.se**2
    return CupedResult(adjusted, unadjusted, theta, reduction)


def _adjusted_variance(s: CupedStats, theta: float) -> float:
    """Per-unit variance of ``y - theta x`` in one arm, ``>= 0``."""
    var = s.metric.variance - 2 * theta * s.covariance + theta**2 * s.covariate.variance
    return max(var, 0.0)


def _adjusted(
    control: CupedStats,
    treatment: CupedStats,
    theta: float,
    relative: bool,
    alpha: float,
    alt: Alternative,
) -> TTestResult:
    n_a, n_b = control.n, treatment.n
    if n_a < 2 or n_b < 2:
        return NO_EVIDENCE
    va_n = _adjusted_variance(control, theta) / n_a
    vb_n = _adjusted_variance(treatment, theta) / n_b
    if va_n + vb_n <= 0.0:
        return NO_EVIDENCE
    dof = (va_n + vb_n) ** 2 / (va_n**2 / (n_a - 1) + vb_n**2 / (n_b - 1))
    y_a, y_b = control.metric.mean, treatment.metric.mean
    x_a, x_b = control.covariate.mean, treatment.covariate.mean
    m = y_b - theta * (x_b - x_a)  # treatment mean adjusted to the control's covariate
    if not relative:
        estimate, variance = m - y_a, va_n + vb_n
    else:
        if y_a == 0.0:
            return NO_EVIDENCE
        q = m / y_a
        control_part = (
            theta**2 * control.covariate.variance
            - 2 * theta * q * control.covariance
            + q**2 * control.metric.variance
        )
        variance = vb_n / y_a**2 + max(control_part, 0.0) / (n_a * y_a**2)
        estimate = (m - y_a) / abs(y_a)
        if variance <= 0.0:
            return NO_EVIDENCE
    se = math.sqrt(variance)
    p_value, ci = p_value_and_interval(estimate, se, dof, alpha, alt)
    return TTestResult(estimate, se, ci, p_value, dof)
