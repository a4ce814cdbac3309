from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, special, stats

from bandits.stats import (
    ProportionStats,
    SampleStats,
    sequential_rho,
    sequential_test,
    welch_ttest,
)


def test_rho_formula() -> None:
    a, n_star = 0.05, 5000
    expected = math.sqrt((-2 * math.log(a) + math.log(-2 * math.log(a) + 1)) / n_star)
    assert sequential_rho(a, n_star) == pytest.approx(expected, rel=1e-14)
    with pytest.raises(ValueError, match="tuning"):
        sequential_rho(0.05, 0)


def test_closed_form_and_p_value_inverts_ci() -> None:
    a, b = ProportionStats(3000, 300), ProportionStats(3100, 380)
    r = sequential_test(a, b, tuning=4000, alpha=0.05, relative=False)
    t = welch_ttest(a, b, relative=False)
    n, rho = 6100, sequential_rho(0.05, 4000)
    s2 = n * t.se**2
    half = math.sqrt(s2) * math.sqrt(
        2 * (n * rho**2 + 1) / (n * rho) ** 2 * math.log(math.sqrt(n * rho**2 + 1) / 0.05)
    )
    assert r.ci == pytest.approx((t.estimate - half, t.estimate + half), rel=1e-12)
    # With rho fixed by the design alpha, the boundary at level p_value just touches 0.
    assert 0 < r.p_value < 1
    at_p = math.sqrt(s2) * math.sqrt(
        2 * (n * rho**2 + 1) / (n * rho) ** 2 * math.log(math.sqrt(n * rho**2 + 1) / r.p_value)
    )
    assert at_p == pytest.approx(t.estimate, rel=1e-12)


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("relative", [True, False])
def test_confidence_sequence_contains_fixed_horizon_ci(seed: int, relative: bool) -> None:
    rng = np.random.default_rng(seed)
    n_a, n_b = (int(x) for x in rng.integers(20, 20_000, size=2))
    a = SampleStats.from_values(rng.normal(10, 3, n_a))
    b = SampleStats.from_values(rng.normal(10.2, 4, n_b))
    alpha = float(rng.choice([0.01, 0.05, 0.2]))
    tuning = float(rng.choice([100, 5000, 1e6]))
    seq = sequential_test(a, b, tuning=tuning, alpha=alpha, relative=relative)
    fixed = welch_ttest(a, b, alpha=alpha, relative=relative)
    assert seq.estimate == fixed.estimate
    assert seq.ci[0] < fixed.ci[0]
    assert fixed.ci[1] < seq.ci[1]
    assert seq.p_value >= fixed.p_value


def test_degenerate_and_validation() -> None:
    r = sequential_test(ProportionStats(0, 0), ProportionStats(0, 0))
    assert (r.estimate, r.se, r.ci, r.p_value) == (0.0, 0.0, (0.0, 0.0), 1.0)
    a = SampleStats.from_values([1.0, 2.0])
    with pytest.raises(ValueError, match="alpha"):
        sequential_test(a, a, alpha=0)
    with pytest.raises(ValueError, match="tuning"):
        sequential_test(a, a, tuning=-5)


@pytest.mark.slow
def test_continuous_monitoring_aa_false_positive_rate() -> None:
    """A/A, a look every 100 per arm up to 5,000: sequential stays <= alpha, naive does not."""
    reps, batch, looks, alpha = 300, 100, 50, 0.05
    rng = np.random.default_rng(2024)
    x = rng.normal(1.0, 1.0, size=(2, reps, batch * looks))
    ends = np.arange(batch, batch * looks + 1, batch)
    sums = np.cumsum(x, axis=2)[:, :, ends - 1]
    squares = np.cumsum(x * x, axis=2)[:, :, ends - 1]
    # Naive: the fixed-horizon Welch test at every look (vectorised; spot-checked with scipy).
    var = (squares - sums**2 / ends) / (ends - 1)
    se2 = var[0] / ends + var[1] / ends
    dof = se2**2 / ((var[0] / ends) ** 2 / (ends - 1) + (var[1] / ends) ** 2 / (ends - 1))
    naive_p = 2 * stats.t.sf(np.abs((sums[1] - sums[0]) / ends / np.sqrt(se2)), dof)
    ref = stats.ttest_ind(x[1, 7, :1200], x[0, 7, :1200], equal_var=False).pvalue
    assert naive_p[7, 11] == pytest.approx(ref, rel=1e-9)
    seq_hits = 0
    for rep in range(reps):
        for look, n in enumerate(ends):
            a = SampleStats(int(n), float(sums[0, rep, look]), float(squares[0, rep, look]))
            b = SampleStats(int(n), float(sums[1, rep, look]), float(squares[1, rep, look]))
            if sequential_test(a, b, alpha=alpha).p_value <= alpha:
                seq_hits += 1
                break
    naive_rate = float((naive_p <= alpha).any(axis=1).mean())
    slack = 3 * math.sqrt(alpha * (1 - alpha) / reps)
    assert seq_hits / reps <= alpha + slack
    assert naive_rate > 2 * alpha


# One-sided: the half-normal mixture.


def _half_normal_mixture(s: float, n: float, rho: float) -> float:
    """M+(s, n) = int_0^inf exp(theta s - theta**2 n / 2) 2 phi(theta / rho) / rho dtheta."""
    value, _ = integrate.quad(
        lambda th: math.exp(th * s - th * th * n / 2) * 2 * stats.norm.pdf(th / rho) / rho,
        0,
        np.inf,
        epsabs=0,
        epsrel=1e-12,
        limit=200,
    )
    return float(value)


@pytest.mark.parametrize("alternative", ["greater", "less"])
@pytest.mark.parametrize(("seed", "relative"), [(0, True), (1, False), (2, True)])
def test_one_sided_p_value_and_bound_are_the_half_normal_mixture(
    alternative: str, seed: int, relative: bool
) -> None:
    rng = np.random.default_rng(seed)
    a = SampleStats.from_values(rng.normal(10, 3, int(rng.integers(200, 3000))))
    b = SampleStats.from_values(rng.normal(10.3, 3, int(rng.integers(200, 3000))))
    alpha, tuning = 0.05, 2000.0
    r = sequential_test(
        a, b, alpha=alpha, tuning=tuning, relative=relative, alternative=alternative
    )
    t = welch_ttest(a, b, relative=relative)
    n = a.n + b.n
    s2 = n * t.se**2
    rho = sequential_rho(alpha, tuning, one_sided=True)
    sign = 1 if alternative == "greater" else -1
    s = sign * n * t.estimate / math.sqrt(s2)
    assert r.p_value == pytest.approx(min(1.0, 1 / _half_normal_mixture(s, n, rho)), rel=1e-8)
    # The bound is where the mixture reaches 1/alpha: the test of "effect = bound" at level alpha.
    if alternative == "greater":
        lower, upper = r.ci
        assert upper == math.inf
        s_bound = n * (t.estimate - lower) / math.sqrt(s2)
    else:
        lower, upper = r.ci
        assert lower == -math.inf
        s_bound = n * (upper - t.estimate) / math.sqrt(s2)
    assert _half_normal_mixture(s_bound, n, rho) == pytest.approx(1 / alpha, rel=1e-8)
    assert (r.p_value <= alpha) == (lower > 0 if alternative == "greater" else upper < 0)


@pytest.mark.parametrize("seed", range(10))
def test_one_sided_bound_is_between_the_gbstats_closed_form_and_two_sided_2alpha(seed: int) -> None:
    """gbstats' one-sided halfwidth uses a closed-form upper bound of the same boundary
    (sqrt(s2 2 (N rho**2 + 1)/(N rho)**2 ln(1 + sqrt(N rho**2 + 1) / (2 alpha)))); the exact
    root is tighter, but never tighter than the two-sided boundary at 2 alpha."""
    rng = np.random.default_rng(seed)
    a = ProportionStats(int(rng.integers(50, 50_000)), 0)
    a = ProportionStats(a.n, int(a.n * rng.uniform(0.05, 0.5)))
    b = ProportionStats(a.n, int(a.n * rng.uniform(0.05, 0.5)))
    alpha = float(rng.choice([0.01, 0.05, 0.2]))
    tuning = float(rng.choice([100, 5000, 1e6]))
    r = sequential_test(a, b, alpha=alpha, tuning=tuning, alternative="greater")
    t = welch_ttest(a, b)
    n, rho = a.n + b.n, sequential_rho(alpha, tuning, one_sided=True)
    s2 = n * t.se**2
    half = t.estimate - r.ci[0]
    nr2 = n * rho**2
    gb = math.sqrt(
        s2 * 2 * (nr2 + 1) / (n * rho) ** 2 * math.log(1 + math.sqrt(nr2 + 1) / (2 * alpha))
    )
    two_2a = math.sqrt(
        s2 * 2 * (nr2 + 1) / (n * rho) ** 2 * math.log(math.sqrt(nr2 + 1) / (2 * alpha))
    )
    assert two_2a < half < gb


def test_one_sided_rho_and_validation() -> None:
    assert sequential_rho(0.05, 5000, one_sided=True) == sequential_rho(0.1, 5000)
    a = SampleStats.from_values([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="one-sided"):
        sequential_test(a, a, alpha=0.6, alternative="greater")
    with pytest.raises(ValueError, match="alternative"):
        sequential_test(a, a, alternative="bigger")
    r = sequential_test(ProportionStats(0, 0), ProportionStats(0, 0), alternative="less")
    assert (r.estimate, r.se, r.ci, r.p_value) == (0.0, 0.0, (0.0, 0.0), 1.0)


def test_gbstats_published_sequential_power_from_the_confidence_sequence() -> None:
    """GrowthBook's power calculator (stats.test.ts, "calculates sequential power correctly"):
    mean 10, variance 3910, +5 %, 400k users over 3 variations, tuning 5000 gives 0.20596, the
    power of a final look with the confidence sequence's halfwidth. Our sequential_test at the
    design's exact summaries has that halfwidth (N = the pair's total, rho at alpha)."""
    var, n = 3909.9997749994377, 400_000 // 3  # 133,333: moves the power by 3e-6
    exact = [SampleStats(n, n * m, (n - 1) * var + n * m * m) for m in (10.0, 10.5)]
    r = sequential_test(exact[0], exact[1], tuning=5000, alpha=0.05)
    z = stats.norm.isf(0.025)
    d = 0.05 / ((r.ci[1] - r.ci[0]) / 2 / z)  # the effect over the "sequential se"
    assert stats.norm.sf(z - d) + stats.norm.cdf(-z - d) == pytest.approx(0.20596, abs=1e-5)


def _paths(rng: np.random.Generator, reps: int, shift: float) -> tuple[np.ndarray, ...]:
    """Cumulative sums of N(1, 1) data per arm (treatment shifted), a look every 100 per arm
    up to 5,000; each batch drawn exactly through its sufficient statistics (the batch mean
    and the independent chi-square within-batch sum of squares)."""
    batch, looks = 100, 50
    ends = np.arange(batch, batch * looks + 1, batch)
    mu = np.array([1.0, 1.0 + shift])[:, None, None]
    means = rng.normal(mu, 1 / math.sqrt(batch), size=(2, reps, looks))
    within = rng.chisquare(batch - 1, size=(2, reps, looks))
    sums = np.cumsum(batch * means, axis=2)
    squares = np.cumsum(within + batch * means**2, axis=2)
    return sums, squares, ends


def _vectorised_p(sums: np.ndarray, squares: np.ndarray, ends: np.ndarray, alt: str) -> np.ndarray:
    """sequential_test's absolute p-values at every (path, look), from its docstring formulas
    (the half-normal one checked by quadrature above); spot-checked against the function."""
    var = (squares - sums**2 / ends) / (ends - 1)
    se2 = (var[0] + var[1]) / ends
    d = (sums[1] - sums[0]) / ends
    n = 2 * ends
    s = n * d / np.sqrt(n * se2)
    if alt == "two-sided":
        rho2 = sequential_rho(0.05, 5000) ** 2
        nr2 = n * rho2
        return np.minimum(1.0, np.sqrt(nr2 + 1) * np.exp(-rho2 * s * s / (2 * (nr2 + 1))))
    rho = sequential_rho(0.05, 5000, one_sided=True)
    s = s if alt == "greater" else -s
    nr2 = n * rho**2
    x = rho * s / np.sqrt(1 + nr2)
    log_m = math.log(2) - 0.5 * np.log1p(nr2) + 0.5 * x * x + special.log_ndtr(x)
    return np.where(x > 0, np.exp(-np.maximum(log_m, 0.0)), 1.0)


@pytest.mark.slow
def test_one_sided_continuous_monitoring_type_one_error_and_power() -> None:
    """A look every 100 per arm up to 5,000, 10,000 paths: under the null (and on its far side)
    the one-sided test rejects at most alpha of the time; with an effect it rejects more often
    than the two-sided test at the same alpha. Measured (seed 99): type I 0.015 two-sided,
    0.017 "greater", 0.017 "less"; 0.003 at effect -0.02 sd for "greater"; power at +0.04 sd
    0.340 one-sided against 0.246 two-sided."""
    reps, alpha = 10_000, 0.05
    slack = 3 * math.sqrt(alpha * (1 - alpha) / reps)
    rng = np.random.default_rng(99)
    rates = {}
    for name, shift in (("null", 0.0), ("beyond", -0.02), ("effect", 0.04)):
        sums, squares, ends = _paths(rng, reps, shift)
        for alt in ("two-sided", "greater", "less"):
            p = _vectorised_p(sums, squares, ends, alt)
            for rep, look in ((0, 0), (7, 11), (reps - 1, 49), (123, 30)):  # spot checks
                a = SampleStats(
                    int(ends[look]), float(sums[0, rep, look]), float(squares[0, rep, look])
                )
                b = SampleStats(
                    int(ends[look]), float(sums[1, rep, look]), float(squares[1, rep, look])
                )
                ref = sequential_test(a, b, relative=False, alternative=alt).p_value
                assert p[rep, look] == pytest.approx(ref, rel=1e-9, abs=1e-300)
            rejected = p <= alpha
            first = np.where(rejected.any(axis=1), rejected.argmax(axis=1), -1)
            d_at = (sums[1] - sums[0])[np.arange(reps), np.maximum(first, 0)]
            rates[name, alt] = float(((first >= 0) & (d_at > 0)).mean()), float((first >= 0).mean())
    for alt in ("two-sided", "greater", "less"):
        assert rates["null", alt][1] <= alpha + slack  # continuous monitoring, type I
    assert rates["beyond", "greater"][1] <= alpha + slack  # composite null: effect < 0
    # Power toward the effect: one-sided beats two-sided (rejections with estimate > 0).
    assert rates["effect", "greater"][0] > rates["effect", "two-sided"][0] + 0.05
    assert rates["effect", "less"][1] <= alpha + slack  # wrong-way test: it stays quiet
