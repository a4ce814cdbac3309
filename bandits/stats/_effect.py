"""The two-arm effect estimate shared by the frequentist, Bayesian and sequential tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bandits._checks import check_real
from bandits.stats.summaries import MetricStats, ProportionStats, RatioStats, SampleStats

Alternative = Literal["two-sided", "greater", "less"]
"""Alternative hypothesis about ``treatment - control``."""


@dataclass(frozen=True, slots=True)
class Effect:
    """Point estimate, its variance and the Welch-Satterthwaite degrees of freedom."""

    estimate: float
    variance: float
    dof: float


def check_alpha(alpha: float) -> float:
    """``alpha`` must be in ``(0, 1)``."""
    return check_real("alpha", alpha, gt=0, lt=1)


def check_alternative(alternative: str) -> Alternative:
    """``alternative`` must be one of ``two-sided``, ``greater``, ``less``."""
    if alternative == "two-sided":
        return "two-sided"
    if alternative == "greater":
        return "greater"
    if alternative == "less":
        return "less"
    raise ValueError(f"alternative must be 'two-sided', 'greater' or 'less', got {alternative!r}")


def check_pair(control: MetricStats, treatment: MetricStats) -> None:
    """Both arms must be summaries of the same kind."""
    for name, s in (("control", control), ("treatment", treatment)):
        if not isinstance(s, SampleStats | ProportionStats | RatioStats):
            raise ValueError(
                f"{name} must be SampleStats, ProportionStats or RatioStats, got {s!r}"
            )
    if type(control) is not type(treatment):
        raise ValueError(
            "control and treatment must be the same kind of summary, got "
            f"{type(control).__name__} and {type(treatment).__name__}"
        )


def effect(control: MetricStats, treatment: MetricStats, *, relative: bool) -> Effect | None:
    """Effect of ``treatment`` over ``control``, or ``None`` when the data are degenerate.

    Absolute: ``d = mB - mA``, ``var = vA/nA + vB/nB``.
    Relative (delta method): ``d = (mB - mA) / |mA|``,
    ``var = vB / (nB mA**2) + mB**2 vA / (nA mA**4)``.
    Degrees of freedom (Welch-Satterthwaite on the absolute scale, as gbstats does for both):
    ``(vA/nA + vB/nB)**2 / ((vA/nA)**2 / (nA-1) + (vB/nB)**2 / (nB-1))``.

    ``m`` and ``v`` are each summary's ``mean`` and per-unit ``variance``: for
    :class:`RatioStats` the ratio and its delta-method variance, so the same formulas apply.

    Degenerate: an arm with ``n < 2``, zero variance in both arms, a ratio arm whose
    denominator sums to 0, or ``relative`` with a control mean of 0.
    """
    check_pair(control, treatment)
    n_a, n_b = control.n, treatment.n
    if n_a < 2 or n_b < 2:
        return None
    for s in (control, treatment):
        if isinstance(s, RatioStats) and s.denominator_sum == 0.0:
            return None
    m_a, m_b = control.mean, treatment.mean
    va_n, vb_n = control.variance / n_a, treatment.variance / n_b
    if va_n + vb_n <= 0.0:
        return None
    dof = (va_n + vb_n) ** 2 / (va_n**2 / (n_a - 1) + vb_n**2 / (n_b - 1))
    if not relative:
        return Effect(m_b - m_a, va_n + vb_n, dof)
    if m_a == 0.0:
        return None
    variance = vb_n / m_a**2 + m_b**2 * va_n / m_a**4
    if variance <= 0.0:
        return None
    return Effect((m_b - m_a) / abs(m_a), variance, dof)
