"""Planning: sample size, power and minimum detectable effect of a two-arm test.

All three describe the same two-sided z-test that :func:`~bandits.stats.welch_ttest` computes
at large ``n``, with the variance that test uses, evaluated at the design (control mean
``baseline``, treatment mean ``baseline + delta``), so they are mutually consistent:
``power(sample_size(x)) >= x.power`` and ``power(mde(n)) == target``.

* Absolute effect: the unpooled variance of ``mB - mA``, ``v1/n + v2/(ratio n)``.
* Relative effect (``relative=True``): the delta-method variance of ``(mB - mA) / |mA|``,
  ``(v2/(ratio n) + (mB/mA)**2 v1/n) / mA**2``, which grows with the lift itself. It equals
  GrowthBook's power calculator for mean metrics (``frequentistVariance`` at the alternative).

The metric is a proportion when ``sd`` is ``None`` (per-observation variance ``p (1 - p)`` in
each arm, with ``p`` the baseline in control and ``baseline + delta`` in treatment, as the
test estimates it) and a mean with standard deviation ``sd`` in both arms otherwise.

For the tests the product *stops* with (the always-valid sequential test and the Bayesian
rule) see :mod:`bandits.stats.planning`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import optimize
from scipy import stats as sps

from bandits._checks import check_real

__all__ = ["PowerAnalysis", "mde", "power", "sample_size"]


@dataclass(frozen=True, slots=True)
class PowerAnalysis:
    """A consistent design: sizes, effect, power and level; every function returns one.

    Attributes:
        n_control: Observations in control (fractional: round up with :func:`math.ceil`).
        n_treatment: Observations in treatment, ``ratio * n_control``.
        effect: Effect to detect, relative to the baseline when ``relative`` was set.
        power: ``P(reject | effect)`` of the two-sided test.
        alpha: Significance level.
    """

    n_control: float
    n_treatment: float
    effect: float
    power: float
    alpha: float


class _Design:
    """Validated inputs shared by the three functions (and :mod:`bandits.stats.planning`)."""

    def __init__(
        self, baseline: float, sd: float | None, relative: bool, alpha: float, ratio: float
    ) -> None:
        self.proportion = sd is None
        if sd is None:
            self.baseline = check_real("baseline", baseline, gt=0, lt=1)
            self.sd = 0.0
        else:
            self.baseline = check_real("baseline", baseline)
            self.sd = check_real("sd", sd, gt=0)
        if relative and self.baseline == 0.0:
            raise ValueError("baseline must be nonzero for a relative effect, got 0.0")
        self.relative = relative
        self.scale = abs(self.baseline) if relative else 1.0
        self.alpha = check_real("alpha", alpha, gt=0, lt=1)
        self.ratio = check_real("ratio", ratio, gt=0)
        self.z_alpha = float(sps.norm.isf(self.alpha / 2))

    def delta(self, effect: float) -> float:
        delta = check_real("effect", effect) * self.scale
        if delta == 0.0:
            raise ValueError("effect must be nonzero")
        if self.proportion and not 0.0 <= self.baseline + delta <= 1.0:
            raise ValueError(
                f"baseline + effect must be a proportion in [0, 1], got {self.baseline + delta!r}"
            )
        return delta

    def variances(self, delta: float) -> tuple[float, float]:
        """Per-observation variances ``(v1, v2)`` of control and treatment."""
        if not self.proportion:
            return self.sd**2, self.sd**2
        p1, p2 = self.baseline, self.baseline + delta
        return p1 * (1 - p1), p2 * (1 - p2)

    def unit_variance(self, delta: float) -> float:
        """``n_control`` times the variance of the estimate, in absolute units.

        Absolute: ``v1 + v2 / ratio``. Relative: the delta method's
        ``(mB/mA)**2 v1 + v2 / ratio`` (``mA**2`` times the variance of the relative lift).
        """
        v1, v2 = self.variances(delta)
        if self.relative:
            v1 *= ((self.baseline + delta) / self.baseline) ** 2
        return v1 + v2 / self.ratio

    def quadratic(self) -> tuple[float, float, float]:
        """``(A, B, C)`` with ``unit_variance(delta) == A + B delta + C delta**2``."""
        r = self.ratio
        if self.proportion:
            p = self.baseline
            v1 = p * (1 - p)
            a, b, c = v1 + v1 / r, (1 - 2 * p) / r, -1 / r
        else:
            v1 = self.sd**2
            a, b, c = v1 * (1 + 1 / r), 0.0, 0.0
        if self.relative:  # v1 (1 + delta/m)**2 replaces v1
            m = self.baseline
            b += 2 * v1 / m
            c += v1 / m**2
        return a, b, c

    def power(self, delta: float, n: float) -> float:
        d = abs(delta) / math.sqrt(self.unit_variance(delta) / n)
        return float(sps.norm.sf(self.z_alpha - d) + sps.norm.cdf(-self.z_alpha - d))

    def check_power(self, target: float) -> float:
        return check_real("power", target, gt=self.alpha, lt=1)

    def result(self, n: float, delta: float) -> PowerAnalysis:
        return PowerAnalysis(
            n_control=n,
            n_treatment=self.ratio * n,
            effect=delta / self.scale,
            power=self.power(delta, n),
            alpha=self.alpha,
        )


def power(
    baseline: float,
    effect: float,
    n_control: float,
    *,
    sd: float | None = None,
    relative: bool = False,
    alpha: float = 0.05,
    ratio: float = 1.0,
) -> PowerAnalysis:
    """Power of the two-sided test to detect ``effect`` with ``n_control`` (and ``ratio`` x).

    With ``delta`` the absolute effect, ``mA = baseline``, ``mB = baseline + delta``, ``v1``,
    ``v2`` the per-observation variances of control and treatment and ``d = |delta| / se``::

        absolute:  se = sqrt(v1/n + v2/(ratio n))
        relative:  se = sqrt((mB/mA)**2 v1/n + v2/(ratio n))   (delta method, times |mA|)
        power = Phi(d - z_{1-alpha/2}) + Phi(-d - z_{1-alpha/2})

    (both rejection regions, exactly as ``statsmodels.stats.power.NormalIndPower`` for an
    absolute effect; a relative one is the variance of ``welch_ttest(..., relative=True)``).

    Args:
        baseline: Control mean (a proportion in ``(0, 1)`` when ``sd`` is ``None``).
        effect: Nonzero effect, absolute or (``relative``) a fraction of ``|baseline|``.
        n_control: Observations in control, ``> 0``.
        sd: Per-observation standard deviation of a mean metric; ``None`` for a proportion.
        relative: ``effect`` is relative to the baseline.
        alpha: Significance level, in ``(0, 1)``.
        ratio: ``n_treatment / n_control``, ``> 0``.

    Raises:
        ValueError: An argument is out of range, or a proportion's ``baseline + delta`` leaves
            ``[0, 1]``.

    Example:
        >>> round(power(0.10, 0.02, 3839).power, 4)
        0.8001
        >>> round(power(5.0, 0.04, 1000, sd=2.0, relative=True).power, 4)  # delta = 0.2
        0.5917
        >>> round(power(5.0, 0.2, 1000, sd=2.0).power, 4)  # absolute: no lift in the variance
        0.6088
    """
    design = _Design(baseline, sd, relative, alpha, ratio)
    n = check_real("n_control", n_control, gt=0)
    return design.result(n, design.delta(effect))


def sample_size(
    baseline: float,
    effect: float,
    *,
    sd: float | None = None,
    relative: bool = False,
    alpha: float = 0.05,
    power: float = 0.8,
    ratio: float = 1.0,
) -> PowerAnalysis:
    """Observations per arm to detect ``effect`` with the given power (closed form).

    ::

        n_control = (z_{1-alpha/2} + z_{power})**2 V / delta**2
        V = v1 + v2 / ratio                  (absolute)
        V = (mB/mA)**2 v1 + v2 / ratio       (relative, delta method; mB = mA + delta)

    This ignores the opposite rejection region (at most ``Phi(-z_{1-alpha/2})``), so the
    returned ``power`` is the target or a hair above it. Round ``n_control`` up for planning.

    Args:
        baseline: Control mean (a proportion in ``(0, 1)`` when ``sd`` is ``None``).
        effect: Nonzero effect, absolute or (``relative``) a fraction of ``|baseline|``.
        sd: Per-observation standard deviation of a mean metric; ``None`` for a proportion.
        relative: ``effect`` is relative to the baseline.
        alpha: Significance level, in ``(0, 1)``.
        power: Target power, in ``(alpha, 1)``.
        ratio: ``n_treatment / n_control``, ``> 0``.

    Raises:
        ValueError: An argument is out of range.

    Example:
        >>> r = sample_size(0.10, 0.02)  # 10 % -> 12 % conversion
        >>> math.ceil(r.n_control), round(r.power, 4)
        (3839, 0.8)
    """
    design = _Design(baseline, sd, relative, alpha, ratio)
    target = design.check_power(power)
    delta = design.delta(effect)
    z = design.z_alpha + float(sps.norm.ppf(target))
    return design.result(z**2 * design.unit_variance(delta) / delta**2, delta)


def mde(
    baseline: float,
    n_control: float,
    *,
    sd: float | None = None,
    relative: bool = False,
    alpha: float = 0.05,
    power: float = 0.8,
    ratio: float = 1.0,
) -> PowerAnalysis:
    """Minimum detectable (positive) effect: the ``effect`` with ``power(effect) == power``.

    Starts from the closed form, which ignores the opposite rejection region (``z =
    z_{1-alpha/2} + z_{power}``): ``n delta**2 = z**2 V(delta)`` with ``V`` of
    :func:`sample_size`, a quadratic in ``delta`` because ``V = A + B delta + C delta**2``::

        (n - z**2 C) delta**2 - z**2 B delta - z**2 A = 0,   positive root
        absolute mean:        A = sd**2 (1 + 1/ratio),  B = C = 0
        absolute proportion:  A = p (1 - p) (1 + 1/ratio),  B = (1 - 2p)/ratio,  C = -1/ratio
        relative:             add 2 v1 / mA to B and v1 / mA**2 to C

    and refines it (Brent's method) so that the two-sided power of :func:`power` is exactly
    the target; it equals ``NormalIndPower().solve_power(effect_size=None, ...)`` times the
    standard deviation for absolute means. A relative lift's variance grows with the lift, so
    with too few observations (``n <= z**2 C``) no lift reaches the power.

    Args:
        baseline: Control mean (a proportion in ``(0, 1)`` when ``sd`` is ``None``).
        n_control: Observations in control, ``> 0``.
        sd: Per-observation standard deviation of a mean metric; ``None`` for a proportion.
        relative: Return the effect as a fraction of ``|baseline|``.
        alpha: Significance level, in ``(0, 1)``.
        power: Target power, in ``(alpha, 1)``.
        ratio: ``n_treatment / n_control``, ``> 0``.

    Raises:
        ValueError: An argument is out of range, no effect reaches the power (a relative
            lift with too few observations), or (proportions) none that keeps
            ``baseline + delta <= 1``.

    Example:
        >>> round(mde(0.10, 3839).effect, 4)
        0.02
        >>> round(mde(10.0, 500, sd=4.0, relative=True).effect, 6)
        0.073527
    """
    design = _Design(baseline, sd, relative, alpha, ratio)
    target = design.check_power(power)
    n = check_real("n_control", n_control, gt=0)
    z2 = (design.z_alpha + float(sps.norm.ppf(target))) ** 2
    qa, qb, qc = design.quadratic()
    lead = n - z2 * qc
    if lead <= 0.0:
        raise ValueError(
            f"no relative effect reaches power {target} at n_control={n}: the variance of the "
            f"lift grows with the lift; increase n_control above {z2 * qc!r}"
        )
    upper = (z2 * qb + math.sqrt((z2 * qb) ** 2 + 4 * lead * z2 * qa)) / (2 * lead)
    if design.proportion and design.baseline + upper > 1.0:
        raise ValueError(
            f"no effect with baseline + effect <= 1 reaches power {target} at "
            f"n_control={n}; increase n_control"
        )

    def gap(x: float) -> float:
        return design.power(x, n) - target

    # The closed form reaches at least the target (it ignores a rejection region) and power
    # falls to alpha < target as delta -> 0, so the root is bracketed; the 1e-6 margin keeps
    # the bracket's sign when the ignored region rounds to nothing.
    hi = upper * (1 + 1e-6)
    if design.proportion:
        hi = min(hi, 1.0 - design.baseline)
    if gap(hi) < 0.0:
        hi = upper
        if gap(hi) < 0.0:  # only rounding separates the closed form from the root
            return design.result(n, upper)
    delta = optimize.brentq(gap, upper * 1e-9, hi, xtol=1e-15, rtol=1e-14)
    return design.result(n, float(delta))
