from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats

from bandits.arm_stats import ArmStats
from bandits.posteriors import prob_best as posteriors_prob_best
from bandits.stats import (
    ProportionStats,
    SampleStats,
    bayesian_effect,
    normal_expected_loss,
    prob_best,
    welch_ttest,
)


def _quad_loss(mu: float, sd: float, sign: float) -> float:
    """E[max(0, sign * X)] for X ~ N(mu, sd**2), by numeric integration."""
    pdf = stats.norm(mu, sd).pdf
    if sign > 0:
        return float(integrate.quad(lambda x: x * pdf(x), 0, np.inf, epsabs=1e-13)[0])
    return float(integrate.quad(lambda x: -x * pdf(x), -np.inf, 0, epsabs=1e-13)[0])


@pytest.mark.parametrize(("mu", "sd"), [(0.0, 1.0), (0.3, 0.1), (-0.02, 0.05), (2.0, 0.7)])
def test_expected_loss_closed_form_matches_quadrature(mu: float, sd: float) -> None:
    assert normal_expected_loss(mu, sd) == pytest.approx(_quad_loss(mu, sd, -1), abs=1e-9)
    assert normal_expected_loss(-mu, sd) == pytest.approx(_quad_loss(mu, sd, +1), abs=1e-9)
    assert normal_expected_loss(mu, 0.0) == max(0.0, -mu)


@pytest.mark.parametrize("relative", [True, False])
def test_flat_prior_matches_welch_and_quadrature(relative: bool) -> None:
    a, b = ProportionStats(2000, 200), ProportionStats(2100, 240)
    r = bayesian_effect(a, b, relative=relative, alpha=0.1)
    t = welch_ttest(a, b, relative=relative)
    assert (r.mean, r.sd) == pytest.approx((t.estimate, t.se), rel=1e-12)
    post = stats.norm(r.mean, r.sd)
    ctw = integrate.quad(post.pdf, 0, np.inf)[0]
    assert r.chance_to_win == pytest.approx(ctw, abs=1e-9)
    assert r.ci == pytest.approx(post.interval(0.9), rel=1e-12)
    assert r.risk[0] == pytest.approx(_quad_loss(r.mean, r.sd, +1), abs=1e-9)
    assert r.risk[1] == pytest.approx(_quad_loss(r.mean, r.sd, -1), abs=1e-9)
    # E[max(0, X)] - E[max(0, -X)] = E[X].
    assert r.risk[0] - r.risk[1] == pytest.approx(r.mean, abs=1e-12)


def test_normal_prior_conjugate_update() -> None:
    a = SampleStats.from_values([5.0, 6.0, 7.0, 6.5, 5.5])
    b = SampleStats.from_values([6.0, 7.5, 7.0, 8.0])
    t = welch_ttest(a, b, relative=False)
    r = bayesian_effect(a, b, relative=False, prior_mean=0.0, prior_sd=0.5)
    # Numeric posterior: likelihood N(d; est, se) times prior N(d; 0, 0.5), normalised.
    like = stats.norm(t.estimate, t.se).pdf
    prior = stats.norm(0.0, 0.5).pdf
    z = integrate.quad(lambda d: like(d) * prior(d), -20, 20, points=[0, t.estimate])[0]
    mean = integrate.quad(lambda d: d * like(d) * prior(d), -20, 20, points=[0, t.estimate])[0] / z
    var = integrate.quad(lambda d: (d - mean) ** 2 * like(d) * prior(d), -20, 20, points=[0])[0] / z
    assert r.mean == pytest.approx(mean, abs=1e-9)
    assert r.sd == pytest.approx(math.sqrt(var), abs=1e-9)
    assert 0 < r.mean < t.estimate  # shrunk toward the prior mean


def test_degenerate_data_gives_prior_or_default() -> None:
    empty = ProportionStats(0, 0)
    r = bayesian_effect(empty, empty)
    assert (r.chance_to_win, r.mean, r.sd, r.ci, r.risk) == (0.5, 0.0, 0.0, (0.0, 0.0), (0.0, 0.0))
    p = bayesian_effect(empty, empty, prior_mean=0.1, prior_sd=0.2)
    assert (p.mean, p.sd) == (0.1, 0.2)
    assert p.chance_to_win == pytest.approx(stats.norm.cdf(0.5))


def test_bayesian_validation() -> None:
    a = ProportionStats(10, 3)
    with pytest.raises(ValueError, match="prior_mean and prior_sd"):
        bayesian_effect(a, a, prior_mean=0.0)
    with pytest.raises(ValueError, match="prior_sd"):
        bayesian_effect(a, a, prior_mean=0.0, prior_sd=0.0)
    with pytest.raises(ValueError, match="alpha"):
        bayesian_effect(a, a, alpha=0.0)


def test_prob_best_proportions_match_posteriors_module() -> None:
    arms = {
        "a": ProportionStats(200, 30),
        "b": ProportionStats(210, 40),
        "c": ProportionStats(5, 1),
    }
    r = prob_best(arms, draws=20_000, seed=3)
    ref = posteriors_prob_best(
        {k: ArmStats.from_rewards([1] * int(s.successes) + [0] * (s.n - int(s.successes)))
         for k, s in arms.items()},
        draws=20_000,
        seed=3,
    )  # fmt: skip
    for k in arms:  # same posteriors, independent Monte Carlo: 4 standard errors
        se = math.sqrt(ref[k] * (1 - ref[k]) / 20_000)
        assert abs(r.prob_best[k] - ref[k]) < 4 * math.sqrt(2) * se + 1e-9
    assert sum(r.prob_best.values()) == pytest.approx(1.0, abs=1e-12)
    assert prob_best(arms, draws=1000, seed=1) == prob_best(arms, draws=1000, seed=1)


def test_prob_best_two_gaussian_arms_closed_form() -> None:
    rng = np.random.default_rng(0)
    a = SampleStats.from_values(rng.normal(1.0, 1.0, 50))
    b = SampleStats.from_values(rng.normal(1.3, 1.0, 60))
    r = prob_best({"a": a, "b": b}, draws=200_000, seed=0)
    # P(muB > muA) = Phi(d / s) with d, s the flat-prior Gaussian effect.
    e = bayesian_effect(a, b, relative=False)
    assert r.prob_best["b"] == pytest.approx(e.chance_to_win, abs=0.005)
    # Expected loss of choosing b = E[max(0, muA - muB)] = risk of shipping treatment.
    assert r.expected_loss["b"] == pytest.approx(e.risk[1], abs=0.002)
    assert r.expected_loss["a"] == pytest.approx(e.risk[0], abs=0.002)


def test_prob_best_validation() -> None:
    with pytest.raises(ValueError, match="at least one arm"):
        prob_best({})
    with pytest.raises(ValueError, match="'x' needs n >= 2"):
        prob_best({"x": SampleStats(1, 1.0, 1.0), "y": SampleStats(3, 3.0, 5.0)})
    with pytest.raises(ValueError, match="draws"):
        prob_best({"x": ProportionStats(3, 1)}, draws=0)
