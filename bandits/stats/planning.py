"""Planning for the rules the product actually stops with: how many users, how many days.

:mod:`bandits.stats.power` sizes a fixed-horizon test, read once. The product instead watches
the experiment and stops as soon as its stopping rule fires (``stopping.rule`` in the config):

* ``sequential``: the always-valid :func:`~bandits.stats.sequential_test` of each challenger
  against the control rejects at ``alpha / (arms - 1)`` (Bonferroni). :func:`plan_sequential`
  computes its power and stopping-time distribution numerically (below).
* ``bayesian``: the arm most likely best has ``P(best) >= prob_best`` and expected loss
  ``E[max_j mu_j - mu_best] <= expected_loss``. :func:`plan_bayesian` simulates it.

Both wait for ``min_samples_per_arm`` in every arm, split the traffic equally over ``arms``
arms (control included), give one challenger the effect and the others none, and return one
:class:`StoppingPlan`: the samples per arm by which the rule has found the right winner with
the target power, the median and 90th percentile of the samples at the stop, the average
samples used when every experiment ends at the stop or at that horizon, and the days these
take at ``daily_traffic`` users a day. ``StoppingPlan.summary()`` words it for a CLI.

Example:
    >>> p = plan_sequential(0.10, 0.20, daily_traffic=4000)  # 10 % -> 12 % conversion
    >>> round(p.n_per_arm, -2), round(p.days, 1), round(p.median_n_per_arm, -2)
    (7500.0, 3.7, 4600.0)
    >>> b = plan_bayesian(0.10, 0.20, daily_traffic=4000)  # faster, at a price
    >>> round(b.n_per_arm, -2), round(b.median_n_per_arm, -2), round(b.wrong_winner, 3)
    (1900.0, 400.0, 0.055)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import special as spspecial

from bandits._checks import check_int, check_real
from bandits.stats._effect import check_alternative
from bandits.stats.power import _Design, sample_size
from bandits.stats.sequential import boundary_curve, sequential_rho

__all__ = ["StoppingPlan", "plan_bayesian", "plan_sequential"]

Floats = npt.NDArray[np.float64]

_OVERSHOOT = 0.5826
"""``-zeta(1/2) / sqrt(2 pi)``: Siegmund's correction between discrete and continuous looks."""

_LOOK_RATIO = 1.01
"""Consecutive looks of the numeric sequential computation are 1 % apart."""

_NODES_PER_SD = 2.5
"""Integration nodes per standard deviation of one step between looks."""

_MAX_EXTENSIONS = 6
"""The horizon search grows the simulated range 4x at most this many times."""


@dataclass(frozen=True, slots=True)
class StoppingPlan:
    """A planned experiment under a stopping rule; :func:`plan_sequential` and
    :func:`plan_bayesian` return one.

    Sizes are per arm (``n_total`` is all arms); ``inf`` marks a quantile the rule does not
    reach by the horizon, never NaN. Days are ``None`` without ``daily_traffic``.

    Attributes:
        rule: ``"sequential"`` or ``"bayesian"``.
        arms: Arms in the experiment, control included; traffic is split equally.
        effect: Effect of the one challenger that differs, relative to the baseline when
            ``relative``.
        relative: Whether ``effect`` is relative.
        n_per_arm: The horizon: samples per arm by which the rule stops with the right winner
            with probability ``power``.
        power: ``P(the rule stops with the right winner by n_per_arm)``.
        wrong_winner: ``P(it stops with a wrong winner by n_per_arm)``.
        median_n_per_arm: Median samples per arm at the stop.
        p90_n_per_arm: 90th percentile of the samples per arm at the stop.
        expected_n_per_arm: ``E[min(T, n_per_arm)]``: the average samples per arm when every
            experiment runs until the rule fires or the horizon, whichever is first.
        fixed_n_per_arm: Samples per arm of the fixed-horizon two-sided Welch test with the
            same power at the rule's level (sequential: ``alpha / (arms - 1)``, doubled when
            one-sided; Bayesian: ``2 (1 - prob_best) / (arms - 1)``, whose rejection in the
            right direction is the two-arm ``P(best) >= prob_best``), for comparison.
        daily_traffic: Users per day entering the experiment (all arms), or ``None``.
        method: How the figures were computed.
    """

    rule: Literal["sequential", "bayesian"]
    arms: int
    effect: float
    relative: bool
    n_per_arm: float
    power: float
    wrong_winner: float
    median_n_per_arm: float
    p90_n_per_arm: float
    expected_n_per_arm: float
    fixed_n_per_arm: float
    daily_traffic: float | None
    method: str

    @property
    def n_total(self) -> float:
        """Samples over all arms at the horizon."""
        return self.arms * self.n_per_arm

    def _days(self, n_per_arm: float) -> float | None:
        if self.daily_traffic is None:
            return None
        return self.arms * n_per_arm / self.daily_traffic

    @property
    def days(self) -> float | None:
        """Days to the horizon at ``daily_traffic``."""
        return self._days(self.n_per_arm)

    @property
    def median_days(self) -> float | None:
        """Median days to the stop at ``daily_traffic``."""
        return self._days(self.median_n_per_arm)

    @property
    def expected_days(self) -> float | None:
        """Average days per experiment (stop or horizon) at ``daily_traffic``."""
        return self._days(self.expected_n_per_arm)

    def summary(self) -> str:
        """One paragraph for a CLI: users and days to detect the effect with the power.

        Example:
            >>> p = plan_sequential(0.10, 0.20, daily_traffic=4000)
            >>> print(p.summary())  # doctest: +NORMALIZE_WHITESPACE
            sequential rule, 2 arms: to detect a +20.00% relative effect with power 80%,
            7,489 per arm (14,977 in all), 3.7 days at 4,000 a day; half stop by 4,632
            (2.3 days), fewer than 90% by the horizon; 4,736 per arm on average (2.4 days);
            wrong winner 0.5%; a fixed-horizon test needs 4,616 per arm.
        """

        def n(x: float) -> str:
            return f"{math.ceil(x):,}"

        def d(x: float | None) -> str:
            return "" if x is None else f" ({x:.1f} days)"

        size = f"{self.effect:+.2%} relative" if self.relative else f"{self.effect:+.6g}"
        days = self.days
        at = "" if days is None else f", {days:.1f} days at {self.daily_traffic:,.0f} a day"
        p90 = (
            f"90% by {n(self.p90_n_per_arm)}{d(self._days(self.p90_n_per_arm))}"
            if math.isfinite(self.p90_n_per_arm)
            else "fewer than 90% by the horizon"
        )
        median = (
            f"half stop by {n(self.median_n_per_arm)}{d(self.median_days)}"
            if math.isfinite(self.median_n_per_arm)
            else "fewer than half stop by the horizon"
        )
        return (
            f"{self.rule} rule, {self.arms} arms: to detect a {size} effect with power "
            f"{self.power:.0%}, {n(self.n_per_arm)} per arm ({n(self.n_total)} in all){at}; "
            f"{median}, {p90}; {n(self.expected_n_per_arm)} per arm on "
            f"average{d(self.expected_days)}; wrong winner {self.wrong_winner:.1%}; a "
            f"fixed-horizon test needs {n(self.fixed_n_per_arm)} per arm."
        )


@dataclass(frozen=True, slots=True)
class _Curve:
    """``P(stopped with the right / a wrong winner by n)`` at increasing per-arm sizes ``n``.

    Between the sizes the stopping probabilities are interpolated linearly in ``n`` (the
    product checks far more often than the grid is spaced).
    """

    n: Floats
    right: Floats
    wrong: Floats

    def at(self, horizon: float) -> tuple[float, float]:
        return (
            float(np.interp(horizon, self.n, self.right)),
            float(np.interp(horizon, self.n, self.wrong)),
        )

    def horizon(self, power: float) -> float | None:
        """Smallest ``n`` with ``right(n) >= power``, or ``None`` beyond the grid."""
        hit = np.nonzero(self.right >= power)[0]
        if hit.size == 0:
            return None
        k = int(hit[0])
        if k == 0:
            return float(self.n[0])
        f0, f1 = self.right[k - 1], self.right[k]
        return float(self.n[k - 1] + (power - f0) / (f1 - f0) * (self.n[k] - self.n[k - 1]))

    def quantile(self, q: float, horizon: float) -> float:
        """Samples per arm by which a share ``q`` has stopped (``inf`` if not by horizon)."""
        stopped = self.right + self.wrong
        if float(np.interp(horizon, self.n, stopped)) < q:
            return math.inf
        k = int(np.nonzero(stopped >= q)[0][0])
        if k == 0:
            return float(self.n[0])
        f0, f1 = stopped[k - 1], stopped[k]
        return float(self.n[k - 1] + (q - f0) / (f1 - f0) * (self.n[k] - self.n[k - 1]))

    def expected(self, horizon: float) -> float:
        """``E[min(T, horizon)] = n0 + int_{n0}^{horizon} P(T > t) dt`` (``T >= n0``)."""
        keep = self.n < horizon
        grid = np.append(self.n[keep], horizon)
        survival = 1.0 - np.interp(grid, self.n, self.right + self.wrong)
        area = float(np.sum(np.diff(grid) * (survival[1:] + survival[:-1]) / 2))
        return float(self.n[0]) + area


def _check_common(
    arms: int, min_samples: int, power: float, daily: float | None, n_per_arm: float | None
) -> tuple[int, int, float, float | None, float | None]:
    k = check_int("arms", arms, ge=2)
    m = check_int("min_samples_per_arm", min_samples, ge=2)
    target = check_real("power", power, gt=0, lt=1)
    traffic = None if daily is None else check_real("daily_traffic", daily, gt=0)
    horizon = None if n_per_arm is None else check_real("n_per_arm", n_per_arm, ge=m)
    return k, m, target, traffic, horizon


def _right_direction(delta: float, arms: int) -> None:
    if delta < 0 and arms > 2:
        raise ValueError(
            "a negative effect with more than 2 arms leaves no single best arm (the control "
            "ties the other challengers); plan a positive effect"
        )


def _finish(
    rule: Literal["sequential", "bayesian"],
    curve_for: Callable[[float], _Curve],
    start_cap: float,
    horizon: float | None,
    target: float,
    *,
    arms: int,
    effect: float,
    relative: bool,
    fixed_n: float,
    daily: float | None,
    method: str,
    hint: str,
) -> StoppingPlan:
    """Grow the computed range until it covers the horizon (given or for the target power)."""
    cap = max(start_cap, horizon or 0.0)
    for _ in range(_MAX_EXTENSIONS + 1):
        curve = curve_for(cap)
        at = horizon if horizon is not None else curve.horizon(target)
        if at is not None:
            break
        cap *= 4
    else:
        raise ValueError(
            f"the {rule} rule does not reach power {target} by {cap / 4:,.0f} per arm; {hint}"
        )
    right, wrong = curve.at(at)
    return StoppingPlan(
        rule=rule,
        arms=arms,
        effect=effect,
        relative=relative,
        n_per_arm=at,
        power=right,
        wrong_winner=wrong,
        median_n_per_arm=curve.quantile(0.5, at),
        p90_n_per_arm=curve.quantile(0.9, at),
        expected_n_per_arm=curve.expected(at),
        fixed_n_per_arm=fixed_n,
        daily_traffic=daily,
        method=method,
    )


def plan_sequential(
    baseline: float,
    effect: float,
    *,
    sd: float | None = None,
    relative: bool = True,
    power: float = 0.8,
    alpha: float = 0.05,
    tuning: float = 5000.0,
    alternative: str = "two-sided",
    arms: int = 2,
    min_samples_per_arm: int = 100,
    daily_traffic: float | None = None,
    n_per_arm: float | None = None,
) -> StoppingPlan:
    """Power, sample size and duration of the always-valid sequential stopping rule.

    The rule the product runs: after ``min_samples_per_arm`` it checks (in effect
    continuously) :func:`~bandits.stats.sequential_test` with ``tuning`` at level ``a =
    alpha / (arms - 1)`` and stops at the first rejection, i.e. when the test's t statistic
    ``T = d / se`` leaves ``+-beta(N) = +-b(N) / sqrt(N)``, with ``b`` the mixture boundary
    of the standardised sum and ``N = 2 n`` the pair's observations::

        b(N) = sqrt(2 (N rho**2 + 1) / rho**2 ln(sqrt(N rho**2 + 1) / a))   (two-sided)

    ``T = sqrt(n) g(mA, mB)`` is a function of the two running means, with ``g = (mB - mA) /
    sqrt(v(mA) + v(mB))`` (absolute) or ``sign(mA) (mB - mA) / sqrt(v(mB) + (mB/mA)**2
    v(mA))`` (relative, the delta method), ``v(p) = p (1 - p)`` for a proportion and ``sd**2``
    for a mean. The means move as a two-dimensional Brownian motion around the design
    ``(m1, m2)``; the component that moves ``g`` is ``s = sqrt(n) grad g . e / sigma_g``
    (``e`` the deviation of the means, ``sigma_g**2 = grad g' diag(v1, v2) grad g``), a
    standard Brownian motion in time ``n`` once multiplied by ``sqrt(n)``. The rule fires
    where ``|g|`` along that direction reaches ``beta / sqrt(n)``::

        g(m + s a / sqrt(n)) = +-beta(2 n) / sqrt(n),   a = diag(v1, v2) grad g / sigma_g

    solved for ``s`` at every look (first-order reliability: exact along the direction that
    matters, the orthogonal noise ignored). For an absolute mean effect ``g`` is linear and
    this is exactly a Brownian motion with drift leaving ``+-b``; for a relative one the
    standard error grows with the estimate and the interval is lopsided, which a
    fixed-variance normal approximation gets wrong (it overstates early stops toward the
    effect and misses those the other way, frequent for a metric with a large coefficient
    of variation checked from 100 users on).

    The probability of leaving, by ``n``, is computed by recursive numerical integration of
    the density between looks spaced 1 % apart (Armitage, McPherson and Rowe 1969; Jennison
    and Turnbull 2000, ch. 19), with Siegmund's continuity correction (each boundary moved
    in by ``0.5826`` standard deviations of a step) standing in for continuous monitoring.
    The power is the probability of leaving on the side of the effect by the horizon;
    without ``n_per_arm`` the horizon is the smallest reaching ``power``. Other challengers
    (with ``arms > 2``) are ignored: they stop the experiment with a wrong winner with
    probability at most ``alpha (arms - 2) / (arms - 1)``. Checked against simulations of the
    test on raw data in ``tests/bandits/stats/test_planning.py``.

    Args:
        baseline: Control mean (a proportion in ``(0, 1)`` when ``sd`` is ``None``).
        effect: Effect of one challenger, relative to ``|baseline|`` when ``relative``; a
            negative effect needs ``arms == 2`` (the control is then the right winner).
        sd: Per-observation standard deviation of a mean metric; ``None`` for a proportion.
        relative: Whether the test (and ``effect``) is relative, as the product's (default).
        power: Target ``P(right winner by the horizon)``, in ``(0, 1)``.
        alpha: The rule's error rate before Bonferroni, in ``(0, 1)``.
        tuning: The test's ``tuning`` (total sample size of a pair where it is tightest).
        alternative: The test's alternative; one-sided must point the effect's way.
        arms: Arms, control included, ``>= 2``.
        min_samples_per_arm: Samples per arm before the first check, ``>= 2``.
        daily_traffic: Users per day over all arms, for the durations; ``> 0`` or ``None``.
        n_per_arm: A fixed horizon (per arm) to evaluate instead of solving for ``power``.

    Raises:
        ValueError: An argument is out of range, a one-sided alternative points away from the
            effect, or the power is not reached (cannot happen for a nonzero effect short of
            the search range, ``4**6`` times the first guess).

    Example:
        >>> p = plan_sequential(10.0, 0.05, sd=3909.9997749994377**0.5, arms=2)
        >>> round(p.n_per_arm, -3), round(p.fixed_n_per_arm, -3), round(p.power, 3)
        (617000.0, 258000.0, 0.8)
    """
    k, m, target, traffic, horizon = _check_common(
        arms, min_samples_per_arm, power, daily_traffic, n_per_arm
    )
    a = check_real("alpha", alpha, gt=0, lt=1) / (k - 1)
    alt = check_alternative(alternative)
    design = _Design(baseline, sd, relative, a, 1.0)
    delta = design.delta(effect)
    _right_direction(delta, k)
    if (alt == "greater" and delta < 0) or (alt == "less" and delta > 0):
        raise ValueError(f"alternative={alt!r} cannot detect an effect of {effect!r}")
    one_sided = alt != "two-sided"
    rho = sequential_rho(a, tuning, one_sided=one_sided)
    model = _monitored_statistic(design, delta, rho, a, one_sided)
    fixed = sample_size(
        baseline,
        effect,
        sd=sd,
        relative=relative,
        alpha=2 * a if one_sided else a,
        power=target,
    ).n_control

    def curve(cap: float) -> _Curve:
        return _sequential_curve(2.0 * m, 2.0 * cap, *model)

    return _finish(
        "sequential",
        curve,
        max(4 * fixed, 4.0 * m),
        horizon,
        target,
        arms=k,
        effect=delta / design.scale,
        relative=relative,
        fixed_n=fixed,
        daily=traffic,
        method=(
            f"numeric: the test's statistic as a Brownian motion leaving the mixture boundary "
            f"(alpha {a:.4g} per comparison, tuning {tuning:g}), looks 1 % apart, "
            "continuity-corrected"
        ),
        hint="increase the effect or n_per_arm",
    )


Bounds = Callable[[Floats], tuple[Floats, Floats]]


def _monitored_statistic(
    design: _Design, delta: float, rho: float, alpha: float, one_sided: bool
) -> tuple[float, Bounds]:
    """``(drift, bounds)`` of a unit-variance Brownian motion ``X(N)`` whose leaving
    ``(lower(N), upper(N)) = bounds(N)`` is the test's rejection, oriented so that the upper
    side is the right winner's (see :func:`plan_sequential`: ``X = sqrt(N) s``, the drift
    is in the bounds)."""
    v1, v2 = design.variances(delta)
    m1, m2 = design.baseline, design.baseline + delta
    sd2 = design.sd**2
    proportion, relative = design.proportion, design.relative

    def g(m_a: Floats, m_b: Floats) -> Floats:
        """The test's ``T / sqrt(n)`` at arm means ``m_a``, ``m_b`` (NaN outside the domain)."""
        ok = (m_a > 0) & (m_a < 1) & (m_b > 0) & (m_b < 1) if proportion else np.isfinite(m_a)
        if relative:
            ok &= m_a * m1 > 0
        m_a, m_b = np.where(ok, m_a, m1), np.where(ok, m_b, m2)  # placeholders where not ok
        var_a = m_a * (1 - m_a) if proportion else np.full_like(m_a, sd2)
        var_b = m_b * (1 - m_b) if proportion else np.full_like(m_b, sd2)
        if relative:
            out = np.sign(m_a) * (m_b - m_a) / np.sqrt(var_b + (m_b / m_a) ** 2 * var_a)
        else:
            out = (m_b - m_a) / np.sqrt(var_a + var_b)
        return np.asarray(np.where(ok, out, np.nan), dtype=np.float64)

    h = 1e-6 * (abs(m1) + math.sqrt(v1))
    grad_a = float(
        g(np.array([m1 + h]), np.array([m2]))[0] - g(np.array([m1 - h]), np.array([m2]))[0]
    ) / (2 * h)
    grad_b = float(
        g(np.array([m1]), np.array([m2 + h]))[0] - g(np.array([m1]), np.array([m2 - h]))[0]
    ) / (2 * h)
    spread = math.sqrt(grad_a**2 * v1 + grad_b**2 * v2)
    dir_a, dir_b = v1 * grad_a / spread, v2 * grad_b / spread
    offsets = np.linspace(-10.5, 10.5, 421)  # deviations s in sd of T, beyond the grid's 9

    def beta(n_pair: Floats) -> Floats:
        t = boundary_curve(n_pair, rho, alpha, one_sided=one_sided) / np.sqrt(n_pair)
        return np.asarray(t, dtype=np.float64)

    def bounds(n_pair: Floats) -> tuple[Floats, Floats]:
        root_n = np.sqrt(n_pair / 2)[:, None]
        tau = (beta(n_pair) / root_n[:, 0])[:, None]  # reject where |g| >= tau

        def at(s: Floats) -> Floats:
            return g(m1 + s * dir_a / root_n, m2 + s * dir_b / root_n)

        values = at(np.broadcast_to(offsets, (n_pair.size, offsets.size)))
        anchor = np.nanargmin(np.where(np.isnan(values), np.inf, np.abs(values)), axis=1)
        idx = np.arange(offsets.size)[None, :]
        above = np.nan_to_num(values, nan=0.0) >= tau
        below = np.nan_to_num(values, nan=0.0) <= -tau
        up_hit = np.where(above & (idx >= anchor[:, None]), idx, offsets.size).min(axis=1)
        low_hit = np.where(below & (idx <= anchor[:, None]), idx, -1).max(axis=1)
        up = _refine(at, tau, up_hit, offsets, rising=True)
        low = _refine(at, -tau, low_hit, offsets, rising=False)
        if one_sided:  # validated to point the effect's way: only that side rejects
            if delta > 0:
                low = np.full_like(low, -np.inf)
            else:
                up = np.full_like(up, np.inf)
        root_pair = np.sqrt(n_pair)
        if delta < 0:  # the right winner (the control) is on the lower side: flip
            return -root_pair * low, -root_pair * up
        return root_pair * up, root_pair * low

    return 0.0, bounds


def _refine(
    at: Callable[[Floats], Floats],
    target: Floats,
    hit: npt.NDArray[np.int64],
    offsets: Floats,
    *,
    rising: bool,
) -> Floats:
    """Bisect the crossing of ``target`` between grid index ``hit`` and its inner neighbour
    (``inf`` / ``-inf`` where the grid has none; the grid's end where it starts beyond)."""
    size = offsets.size
    missing = hit >= size if rising else hit < 0
    inner = np.clip(hit - 1 if rising else hit + 1, 0, size - 1)
    outer = np.clip(hit, 0, size - 1)
    lo, hi = offsets[inner].copy(), offsets[outer].copy()
    for _ in range(30):
        mid = 0.5 * (lo + hi)
        value = np.nan_to_num(at(mid[:, None])[:, 0], nan=0.0)
        past = value >= target[:, 0] if rising else value <= target[:, 0]
        hi = np.where(past, mid, hi)
        lo = np.where(past, lo, mid)
    out = 0.5 * (lo + hi)
    edge = hit == (0 if rising else size - 1)  # already past at the grid's end
    out = np.where(edge, offsets[outer], out)
    return np.where(missing, np.inf if rising else -np.inf, out)


def _simpson(lo: float, hi: float, h: float) -> tuple[Floats, Floats]:
    """Simpson's rule nodes and weights on ``[lo, hi]`` with spacing at most ``h``."""
    m = max(math.ceil((hi - lo) / h), 8)
    m += m % 2
    z = np.linspace(lo, hi, m + 1)
    w = np.full(m + 1, 2.0)
    w[1::2] = 4.0
    w[0] = w[-1] = 1.0
    return z, w * (hi - lo) / (3 * m)


def _sequential_curve(n0: float, cap: float, drift: float, bounds: Bounds) -> _Curve:
    """Probabilities that ``X(N) = W(N) + drift N`` (``drift >= 0``, ``W`` a standard Brownian
    motion), watched continuously on ``[n0, cap]``, has left ``bounds(N)`` by each ``N``.

    Returns them per *arm* (``N / 2``): ``right`` through the upper bound, ``wrong`` the lower.
    """
    steps = max(math.ceil(math.log(cap / n0) / math.log(_LOOK_RATIO)), 1)
    ns = n0 * (cap / n0) ** (np.arange(steps + 1) / steps)
    upper, lower = bounds(ns)
    gaps = np.diff(ns)
    up = np.zeros(steps + 1)
    low = np.zeros(steps + 1)
    mean0, sd0 = drift * ns[0], math.sqrt(ns[0])
    up[0] = spspecial.ndtr((mean0 - upper[0]) / sd0)
    low[0] = spspecial.ndtr((lower[0] - mean0) / sd0)

    def grid(k: float, top: float, bottom: float, step_sd: float) -> tuple[Floats, Floats]:
        # Where the unabsorbed density lives: inside the bounds and within 9 sd of the
        # unconditional N(drift N, N) (beyond it the mass is below 1e-18).
        centre, spread = drift * k, 9 * math.sqrt(k)
        lo, hi = max(bottom, centre - spread), min(top, centre + spread)
        if hi <= lo:  # (nearly) everything has left: keep a sliver
            lo, hi = hi - step_sd, hi
        return _simpson(lo, hi, step_sd / _NODES_PER_SD)

    z, w = grid(ns[0], upper[0], lower[0], math.sqrt(gaps[0]))
    density = np.exp(-0.5 * ((z - mean0) / sd0) ** 2) / (sd0 * math.sqrt(2 * math.pi))
    for j in range(1, steps + 1):
        step_sd = math.sqrt(gaps[j - 1])
        # Siegmund: watching at these looks misses crossings in between; moving each bound
        # in by 0.5826 step sd makes the looks behave like continuous watching.
        top = upper[j] - _OVERSHOOT * step_sd
        bottom = lower[j] + _OVERSHOOT * step_sd
        if top < bottom:  # the bounds met: everything left, split between the two sides
            top = bottom = 0.5 * (top + bottom)
        mass = w * density
        moved = z + drift * gaps[j - 1]
        up[j] = float(mass @ spspecial.ndtr((moved - top) / step_sd))
        low[j] = float(mass @ spspecial.ndtr((bottom - moved) / step_sd))
        if j == steps:
            break
        z, w = grid(ns[j], top, bottom, min(step_sd, math.sqrt(gaps[j])))
        kernel = np.exp(-0.5 * ((z[:, None] - moved[None, :]) / step_sd) ** 2)
        density = kernel @ mass / (step_sd * math.sqrt(2 * math.pi))
    return _Curve(ns / 2, np.cumsum(up), np.cumsum(low))


def plan_bayesian(
    baseline: float,
    effect: float,
    *,
    sd: float | None = None,
    relative: bool = True,
    power: float = 0.8,
    prob_best: float = 0.95,
    expected_loss: float = 0.001,
    arms: int = 2,
    min_samples_per_arm: int = 100,
    daily_traffic: float | None = None,
    n_per_arm: float | None = None,
    check_every: int | None = None,
    reps: int = 1000,
    looks: int = 120,
    seed: int = 0,
) -> StoppingPlan:
    """Power, sample size and duration of the Bayesian stopping rule, by seeded simulation.

    The rule the product runs: after ``min_samples_per_arm`` it stops when the arm most
    likely best has ``P(best) >= prob_best`` and expected loss ``E[max_j mu_j - mu_best] <=
    expected_loss`` (in metric units). ``reps`` experiments are simulated with their data
    drawn in batches between checks (vectorised; proportions binomial, means Normal with
    standard deviation ``sd``), and the posteriors are those of
    :func:`~bandits.stats.prob_best`: ``Beta(1 + s, 1 + n - s)`` (as a Normal with its mean
    and variance) or ``N(mean, sd**2 / n)``. With two arms, ``delta = mB - mA`` and ``s**2 =
    vA + vB`` (posterior variances)::

        P(B best) = Phi(delta / s),   loss(B) = s phi(delta/s) - delta Phi(-delta/s)

    and with more, the same one-dimensional integrals over ``z ~ N(0, 1)`` by 24-point
    Gauss-Hermite quadrature (``mu_j = m_j + s_j z``; accurate when the arms' posterior
    spreads are alike, as with equal traffic)::

        P(j best) = E_z[prod_{i != j} Phi((m_j + s_j z - m_i) / s_i)]
        E[max_i mu_i] = sum_j E_z[(m_j + s_j z) prod_{i != j} Phi((m_j + s_j z - m_i) / s_i)]

    (what :func:`~bandits.stats.prob_best` estimates by Monte Carlo, without its noise). The
    right winner is the arm with the effect (the control for a negative effect with two
    arms).

    The product checks every second, in effect after every observation, and a rule with a
    fixed threshold fires more often the more often it is checked. By default
    (``check_every=None``) the simulation checks at ``looks`` sizes spaced geometrically and
    stands in for the checks in between with Siegmund's correction: at a check ``g`` samples
    per arm after the previous one, the leader's margin counts ``0.5826 (sqrt(g) - 1) /
    sqrt(n)`` posterior standard deviations more (the expected overshoot of a continuously
    watched margin). ``check_every`` models a rule evaluated every that many samples per arm
    instead (exactly where the checks are that far apart, corrected likewise beyond). Stops
    between the simulated checks are interpolated linearly. The figures carry Monte Carlo
    error (``sqrt(p (1 - p) / reps)`` on the power).

    Args:
        baseline: Control mean (a proportion in ``(0, 1)`` when ``sd`` is ``None``).
        effect: Effect of one challenger, relative to ``|baseline|`` when ``relative``.
        sd: Per-observation standard deviation of a mean metric; ``None`` for a proportion.
        relative: ``effect`` is relative to the baseline.
        power: Target ``P(right winner by the horizon)``, in ``(0, 1)``.
        prob_best: The rule's ``P(best)`` threshold, in ``(0.5, 1)``.
        expected_loss: The rule's expected-loss threshold in metric units, ``> 0``.
        arms: Arms, control included, ``>= 2``.
        min_samples_per_arm: Samples per arm before the first check, ``>= 2``.
        daily_traffic: Users per day over all arms, for the durations; ``> 0`` or ``None``.
        n_per_arm: A fixed horizon (per arm) to evaluate instead of solving for ``power``.
        check_every: Samples per arm between checks, ``>= 1``; ``None``: continuous.
        reps: Simulated experiments, ``>= 100``.
        looks: Simulated checks per range (geometric part), ``>= 10``.
        seed: Seed of the generator; the same inputs give the same plan.

    Raises:
        ValueError: An argument is out of range, or the power is not reached within the
            search range (``4**6`` times the first guess: the loss threshold is too strict).

    Example:
        >>> p = plan_bayesian(0.10, 0.20, prob_best=0.99, expected_loss=0.0005)
        >>> round(p.n_per_arm, -2), round(p.median_n_per_arm, -2), round(p.wrong_winner, 3)
        (3600.0, 1500.0, 0.01)
    """
    k, m, target, traffic, horizon = _check_common(
        arms, min_samples_per_arm, power, daily_traffic, n_per_arm
    )
    threshold = check_real("prob_best", prob_best, gt=0.5, lt=1)
    max_loss = check_real("expected_loss", expected_loss, gt=0)
    every = 1 if check_every is None else check_int("check_every", check_every, ge=1)
    n_reps = check_int("reps", reps, ge=100)
    n_looks = check_int("looks", looks, ge=10)
    level = 2 * (1 - threshold) / (k - 1)
    design = _Design(baseline, sd, relative, level, 1.0)
    delta = design.delta(effect)
    _right_direction(delta, k)
    fixed = sample_size(baseline, effect, sd=sd, relative=relative, alpha=level, power=target)
    means = np.full(k, design.baseline)
    means[1] += delta
    best = 1 if delta > 0 else 0

    def curve(cap: float) -> _Curve:
        rng = np.random.default_rng(seed)
        sizes = _check_sizes(float(m), cap, n_looks, every)
        gaps = np.diff(sizes, prepend=sizes[0])
        # Siegmund's correction per check, in posterior sds of the margin (0 where the
        # simulated checks are the real ones).
        shift = _OVERSHOOT * (np.sqrt(gaps) - math.sqrt(every)) / np.sqrt(sizes)
        shift[0] = 0.0
        stop, winner = _simulate_bayesian(
            rng, sizes, shift, means, design.sd, design.proportion, threshold, max_loss, n_reps
        )
        stopped = stop[:, None] <= np.arange(sizes.size)[None, :]
        right = (stopped & (winner == best)[:, None]).mean(axis=0)
        wrong = (stopped & (winner != best)[:, None]).mean(axis=0)
        return _Curve(sizes, right, wrong)

    checks = "continuous checks" if check_every is None else f"a check every {every} per arm"
    return _finish(
        "bayesian",
        curve,
        max(4 * fixed.n_control, 4.0 * m),
        horizon,
        target,
        arms=k,
        effect=delta / design.scale,
        relative=relative,
        fixed_n=fixed.n_control,
        daily=traffic,
        method=(
            f"simulation: {n_reps} experiments (seed {seed}), {checks}, P(best) >= "
            f"{threshold:g} and expected loss <= {max_loss:g}"
        ),
        hint="raise expected_loss, lower prob_best or increase the effect",
    )


def _check_sizes(first: float, cap: float, looks: int, every: int) -> Floats:
    """Per-arm sizes of the simulated checks: every ``every`` from ``first`` while that is
    sparser than the geometric spacing, then geometric (``looks`` over ``[first, cap]``)."""
    ratio = (cap / first) ** (1 / (looks - 1))
    switch = min(max(first, every / (ratio - 1)), cap)
    exact = np.arange(first, switch + 0.5, every)
    rest = max(math.ceil(math.log(cap / exact[-1]) / math.log(ratio)), 0)
    tail = exact[-1] * (cap / exact[-1]) ** (np.arange(1, rest + 1) / max(rest, 1))
    sizes = np.unique(np.round(np.concatenate([exact, tail])))
    return np.asarray(sizes, dtype=np.float64)


def _simulate_bayesian(
    rng: np.random.Generator,
    sizes: Floats,
    shift: Floats,
    means: Floats,
    sd: float,
    proportion: bool,
    threshold: float,
    max_loss: float,
    reps: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Index of the check at which each experiment stops (``len(sizes)`` if never) and its
    winner (``-1`` if never); ``shift`` moves the leader's margin (see plan_bayesian)."""
    arms = means.size
    batch = np.diff(sizes, prepend=0.0)
    if proportion:
        counts = rng.binomial(batch.astype(np.int64)[None, :, None], means[None, None, :],
                              size=(reps, sizes.size, arms))  # fmt: skip
        sums = np.cumsum(counts, axis=1, dtype=np.float64)
        a, b = 1 + sums, 1 + sizes[None, :, None] - sums
        post_mean = a / (a + b)
        post_var = a * b / ((a + b) ** 2 * (a + b + 1))
    else:
        noise = rng.standard_normal((reps, sizes.size, arms)) * np.sqrt(batch)[None, :, None]
        sums = np.cumsum(noise * sd, axis=1) + sizes[None, :, None] * means[None, None, :]
        post_mean = sums / sizes[None, :, None]
        post_var = np.broadcast_to(sd * sd / sizes[None, :, None], post_mean.shape)
    if arms == 2:
        diff = post_mean[..., 1] - post_mean[..., 0]
        spread = np.sqrt(post_var[..., 0] + post_var[..., 1])
        z = np.abs(diff) / spread + shift[None, :]
        p_best = spspecial.ndtr(z)
        loss = spread * (np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi) - z * spspecial.ndtr(-z))
        leader = (diff > 0).astype(np.int64)
    else:
        p_best = np.zeros(post_mean.shape[:2])
        loss = np.full(post_mean.shape[:2], np.inf)
        leader = np.zeros(post_mean.shape[:2], dtype=np.int64)
        active = np.arange(reps)
        for j in range(sizes.size):  # only experiments that have not stopped yet
            mu, sds = post_mean[active, j], np.sqrt(post_var[active, j])
            rows = np.arange(active.size)
            order = np.argsort(mu, axis=1)
            first, second = order[:, -1], order[:, -2]
            margin_sd = np.hypot(sds[rows, first], sds[rows, second])
            mu = mu.copy()
            mu[rows, first] += shift[j] * margin_sd
            probs, top = _best_and_max(mu, sds)
            lead = probs.argmax(axis=1)
            leader[active, j] = lead
            p_best[active, j] = probs[rows, lead]
            loss[active, j] = top - mu[rows, lead]
            done = (p_best[active, j] >= threshold) & (loss[active, j] <= max_loss)
            active = active[~done]
            if active.size == 0:
                break
    fire = (p_best >= threshold) & (loss <= max_loss)
    any_fire = fire.any(axis=1)
    stop = np.where(any_fire, fire.argmax(axis=1), sizes.size)
    winner = np.where(any_fire, leader[np.arange(reps), np.minimum(stop, sizes.size - 1)], -1)
    return stop.astype(np.int64), winner.astype(np.int64)


_NODES, _WEIGHTS = np.polynomial.hermite_e.hermegauss(24)
_WEIGHTS = _WEIGHTS / math.sqrt(2 * math.pi)


def _best_and_max(mean: Floats, sd: Floats) -> tuple[Floats, Floats]:
    """``P(j best)`` per arm and ``E[max_j mu_j]`` for independent ``mu_j ~ N(mean, sd**2)``.

    ``mean`` and ``sd`` are ``(reps, arms)``; Gauss-Hermite quadrature over the best arm's
    own standard Normal deviate (see :func:`plan_bayesian`).
    """
    arms = mean.shape[1]
    x = mean[:, :, None] + sd[:, :, None] * _NODES[None, None, :]  # (reps, j, q)
    others = np.ones_like(x)
    for i in range(arms):
        factor = spspecial.ndtr((x - mean[:, i, None, None]) / sd[:, i, None, None])
        factor[:, i, :] = 1.0  # arm j is not compared with itself
        others *= factor
    probs = others @ _WEIGHTS
    top = (x * others) @ _WEIGHTS
    return np.asarray(probs), np.asarray(top.sum(axis=1))
