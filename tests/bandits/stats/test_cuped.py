from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from bandits.stats import CupedStats, cuped_effect, welch_ttest


def _arm(
    rng: np.random.Generator, n: int, effect: float, rho: float
) -> tuple[np.ndarray, np.ndarray]:
    """Metric y and pre-period covariate x with corr(x, y) = rho, sd 2, means 10 (+ effect)."""
    x = rng.normal(0.0, 1.0, n)
    e = rng.normal(0.0, 1.0, n)
    y = 10.0 + effect + 2.0 * (rho * x + math.sqrt(1 - rho * rho) * e)
    return y, 5.0 + 2.0 * x


def test_summary_matches_numpy_and_adds() -> None:
    rng = np.random.default_rng(0)
    y, x = _arm(rng, 50, 0.0, 0.6)
    c = CupedStats.from_values(y, x)
    assert c.metric.mean == pytest.approx(y.mean(), rel=1e-13)
    assert c.covariate.variance == pytest.approx(x.var(ddof=1), rel=1e-10)
    assert c.covariance == pytest.approx(np.cov(x, y)[0, 1], rel=1e-10)
    a, b = CupedStats.from_values(y[:20], x[:20]), CupedStats.from_values(y[20:], x[20:])
    assert a + b == b + a
    assert (a + b).cross_sum == pytest.approx(c.cross_sum, rel=1e-12)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_absolute_cuped_is_welch_on_the_adjusted_metric(seed: int, alternative: str) -> None:
    """With theta from the pooled data, the adjusted absolute test is scipy's Welch test of
    y - theta x (the pooled mean of x shifts both arms alike)."""
    rng = np.random.default_rng(seed)
    ya, xa = _arm(rng, int(rng.integers(20, 300)), 0.0, 0.7)
    yb, xb = _arm(rng, int(rng.integers(20, 300)), 0.3, 0.7)
    r = cuped_effect(
        CupedStats.from_values(ya, xa),
        CupedStats.from_values(yb, xb),
        relative=False,
        alternative=alternative,
        alpha=0.1,
    )
    x, y = np.concatenate([xa, xb]), np.concatenate([ya, yb])
    theta = np.cov(x, y)[0, 1] / x.var(ddof=1)
    assert r.theta == pytest.approx(theta, rel=1e-10)
    xbar = x.mean()
    ref = stats.ttest_ind(
        yb - theta * (xb - xbar), ya - theta * (xa - xbar), equal_var=False, alternative=alternative
    )
    assert r.adjusted.estimate / r.adjusted.se == pytest.approx(ref.statistic, rel=1e-9)
    assert r.adjusted.p_value == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-14)
    assert r.adjusted.dof == pytest.approx(ref.df, rel=1e-9)
    assert r.adjusted.ci == pytest.approx(ref.confidence_interval(0.9), rel=1e-9)
    plain = welch_ttest(
        CupedStats.from_values(ya, xa).metric,
        CupedStats.from_values(yb, xb).metric,
        relative=False,
        alternative=alternative,
        alpha=0.1,
    )
    assert r.unadjusted == plain
    assert r.variance_reduction == pytest.approx(1 - r.adjusted.se**2 / plain.se**2, rel=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_absolute_cuped_agrees_with_statsmodels_ols(seed: int) -> None:
    """OLS y ~ 1 + treatment + (x - mean(x)) fits the within-arm slope instead of the pooled
    one; under randomisation the two estimates (and standard errors) nearly coincide."""
    sm = pytest.importorskip("statsmodels.api")
    rng = np.random.default_rng(100 + seed)
    ya, xa = _arm(rng, 400, 0.0, 0.6)
    yb, xb = _arm(rng, 450, 0.25, 0.6)
    r = cuped_effect(CupedStats.from_values(ya, xa), CupedStats.from_values(yb, xb), relative=False)
    x, y = np.concatenate([xa, xb]), np.concatenate([ya, yb])
    treat = np.concatenate([np.zeros(xa.size), np.ones(xb.size)])
    design = sm.add_constant(np.column_stack([treat, x - x.mean()]))
    fit = sm.OLS(y, design).fit(cov_type="HC2")
    assert r.adjusted.estimate == pytest.approx(float(fit.params[1]), abs=0.05 * r.adjusted.se)
    assert r.adjusted.se == pytest.approx(float(fit.bse[1]), rel=0.02)
    assert r.theta == pytest.approx(float(fit.params[2]), rel=0.05)


def _numeric_delta_se(
    ya: np.ndarray, xa: np.ndarray, yb: np.ndarray, xb: np.ndarray, theta: float
) -> float:
    """Delta method by central differences on g = (yB - theta xB + theta xA) / yA - 1 with each
    arm's sample covariance of (mean y, mean x)."""

    def g(v: np.ndarray) -> float:
        return float((v[2] - theta * v[3] + theta * v[1]) / v[0] - 1)

    point = np.array([ya.mean(), xa.mean(), yb.mean(), xb.mean()])
    cov = np.zeros((4, 4))
    cov[:2, :2] = np.cov(ya, xa) / ya.size
    cov[2:, 2:] = np.cov(yb, xb) / yb.size
    grad = np.empty(4)
    for i in range(4):
        h = 1e-6 * abs(point[i])
        up, down = point.copy(), point.copy()
        up[i] += h
        down[i] -= h
        grad[i] = (g(up) - g(down)) / (2 * h)
    return math.sqrt(float(grad @ cov @ grad))


@pytest.mark.parametrize("seed", range(3))
def test_relative_cuped_se_is_the_delta_method_on_the_unadjusted_control_mean(seed: int) -> None:
    rng = np.random.default_rng(50 + seed)
    ya, xa = _arm(rng, 300, 0.0, 0.8)
    yb, xb = _arm(rng, 280, 0.5, 0.8)
    r = cuped_effect(CupedStats.from_values(ya, xa), CupedStats.from_values(yb, xb))
    theta = r.theta
    expected = (yb.mean() - theta * (xb.mean() - xa.mean()) - ya.mean()) / ya.mean()
    assert r.adjusted.estimate == pytest.approx(expected, rel=1e-10)
    assert r.adjusted.se == pytest.approx(_numeric_delta_se(ya, xa, yb, xb, theta), rel=1e-6)
    assert r.unadjusted.estimate == pytest.approx(yb.mean() / ya.mean() - 1, rel=1e-12)


@pytest.mark.slow
def test_cuped_coverage_and_variance_reduction_in_simulation() -> None:
    """1,500 seeded experiments (200 + 200 users, corr(x, y) = 0.7): the adjusted 95 %
    intervals cover the true effect 95 % of the time, absolute and relative, the reported
    variance reduction averages rho**2 = 0.49, and the adjusted estimates really are that
    much less variable than the plain ones."""
    rng = np.random.default_rng(2025)
    reps, n, rho, effect = 1500, 200, 0.7, 0.4
    covered = {False: 0, True: 0}
    reductions, adjusted, plain = [], [], []
    for _ in range(reps):
        a = CupedStats.from_values(*_arm(rng, n, 0.0, rho))
        b = CupedStats.from_values(*_arm(rng, n, effect, rho))
        for relative, truth in ((False, effect), (True, effect / 10.0)):
            r = cuped_effect(a, b, relative=relative)
            covered[relative] += r.adjusted.ci[0] <= truth <= r.adjusted.ci[1]
            if not relative:
                reductions.append(r.variance_reduction)
                adjusted.append(r.adjusted.estimate)
                plain.append(r.unadjusted.estimate)
    slack = 3 * math.sqrt(0.95 * 0.05 / reps)
    assert abs(covered[False] / reps - 0.95) < slack
    assert abs(covered[True] / reps - 0.95) < slack
    assert float(np.mean(reductions)) == pytest.approx(rho**2, abs=0.01)
    measured = 1 - float(np.var(adjusted)) / float(np.var(plain))
    assert measured == pytest.approx(rho**2, abs=0.05)
    assert float(np.mean(adjusted)) == pytest.approx(
        effect, abs=3 * math.sqrt(np.var(adjusted) / reps)
    )


def test_cuped_degenerate_and_validation() -> None:
    y = [3.0, 5.0, 4.0, 6.0]
    flat = CupedStats.from_values(y, [1.0] * 4)  # covariate without variance: no adjustment
    other = CupedStats.from_values([5.0, 7.0, 6.0, 9.0], [1.0] * 4)
    r = cuped_effect(flat, other)
    assert r.theta == 0.0
    assert r.adjusted == r.unadjusted
    assert r.variance_reduction == 0.0
    tiny = CupedStats.from_values([1.0], [2.0])
    d = cuped_effect(tiny, other, relative=False)
    assert (d.adjusted.p_value, d.unadjusted.p_value, d.variance_reduction) == (1.0, 1.0, 0.0)
    zero_mean = CupedStats.from_values([-1.0, 1.0, 0.0], [0.0, 1.0, 2.0])
    assert cuped_effect(zero_mean, other).adjusted.p_value == 1.0  # relative to a zero mean
    exact = CupedStats.from_values([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])  # y - theta x constant
    e = cuped_effect(
        exact, CupedStats.from_values([2.0, 3.0, 4.0], [1.0, 2.0, 3.0]), relative=False
    )
    assert (e.adjusted.se, e.adjusted.p_value) == (0.0, 1.0)  # documented NO_EVIDENCE
    with pytest.raises(ValueError, match="CupedStats"):
        cuped_effect(flat.metric, other)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="alternative"):
        cuped_effect(flat, other, alternative="up")
    with pytest.raises(ValueError, match="one entry per unit"):
        CupedStats.from_values([1.0, 2.0], [1.0])
