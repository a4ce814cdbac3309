"""Accuracy of the quadrature behind linear Thompson sampling's propensities.

References: the closed form for K = 2, the bivariate normal orthant probability (scipy's
Genz integration) for K = 3, and a large Monte Carlo run. The quadrature's largest error
against the closed forms is about 4e-9; a seeded Monte Carlo estimate with 1,000 draws (the
alternative the issue mentions) is off by about 1e-2.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from scipy.special import ndtr

from bandits.contextual import prob_max_normal


def _random_cases(seed: int, n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    mean = rng.normal(size=(n, k))
    # Standard deviations over four orders of magnitude, plus rows of similar scales.
    sd = np.exp(rng.uniform(-6.0, 3.0, size=(n, k)))
    sd[::3] = np.exp(rng.normal(0.0, 0.3, size=sd[::3].shape))
    return mean, sd


def _orthant_k3(mean: np.ndarray, sd: np.ndarray) -> float:
    """P(S_0 > S_1, S_0 > S_2) = P(D_1 < 0, D_2 < 0), D_j = S_j - S_0 bivariate normal."""
    v = sd**2
    cov = np.array([[v[0] + v[1], v[0]], [v[0], v[0] + v[2]]])
    mvn = stats.multivariate_normal(
        mean=[mean[1] - mean[0], mean[2] - mean[0]], cov=cov, abseps=1e-13, releps=1e-13
    )
    return float(mvn.cdf([0.0, 0.0]))


def test_two_arms_match_the_closed_form() -> None:
    mean, sd = _random_cases(0, 4000, 2)
    p = prob_max_normal(mean, sd)
    exact = ndtr((mean[:, 0] - mean[:, 1]) / np.hypot(sd[:, 0], sd[:, 1]))
    assert np.abs(p[:, 0] - exact).max() < 2e-8


def test_three_arms_match_the_bivariate_normal_orthant() -> None:
    mean, sd = _random_cases(1, 150, 3)
    p = prob_max_normal(mean, sd)
    errors = [abs(p[i, 0] - _orthant_k3(mean[i], sd[i])) for i in range(len(mean))]
    assert max(errors) < 2e-8


@pytest.mark.parametrize("k", [3, 5])
def test_agrees_with_a_large_monte_carlo_run(k: int) -> None:
    mean, sd = _random_cases(2 + k, 4, k)
    rng = np.random.default_rng(11)
    draws = 400_000
    for m, s in zip(mean, sd, strict=True):
        winners = np.argmax(m + s * rng.standard_normal((draws, k)), axis=1)
        freq = np.bincount(winners, minlength=k) / draws
        p = prob_max_normal(m, s)
        se = np.sqrt(np.maximum(p * (1 - p), 1e-12) / draws)
        assert np.all(np.abs(freq - p) < 5 * se + 1e-6)


def test_bounded_monte_carlo_is_far_less_accurate_than_the_quadrature() -> None:
    """The alternative design: 1,000 seeded draws per context."""
    mean, sd = _random_cases(3, 200, 2)
    exact = ndtr((mean[:, 0] - mean[:, 1]) / np.hypot(sd[:, 0], sd[:, 1]))
    rng = np.random.default_rng(0)
    draws = mean[:, None, :] + sd[:, None, :] * rng.standard_normal((200, 1000, 2))
    mc = (draws[:, :, 0] > draws[:, :, 1]).mean(axis=1)
    quad = prob_max_normal(mean, sd)[:, 0]
    assert np.abs(mc - exact).max() > 100 * np.abs(quad - exact).max()


def test_rows_sum_to_one_and_one_row_equals_the_batch() -> None:
    mean, sd = _random_cases(4, 300, 4)
    p = prob_max_normal(mean, sd)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-12)
    assert (p >= 0).all()
    single = np.array([prob_max_normal(m, s) for m, s in zip(mean, sd, strict=True)])
    np.testing.assert_allclose(single, p, atol=1e-13)


def test_large_batches_are_chunked_consistently() -> None:
    mean, sd = _random_cases(5, 5000, 3)
    p = prob_max_normal(mean, sd)
    np.testing.assert_allclose(p[4500:], prob_max_normal(mean[4500:], sd[4500:]), atol=1e-14)


def test_degenerate_scores() -> None:
    # Zero context: every score is exactly 0 with sd 0 -> an even tie.
    np.testing.assert_allclose(prob_max_normal(np.zeros(3), np.zeros(3)), 1 / 3, atol=1e-12)
    # A point mass far above a wide arm wins; two equal point masses tie.
    np.testing.assert_allclose(
        prob_max_normal([10.0, 0.0, 10.0], [0.0, 1.0, 0.0]), [0.5, 0.0, 0.5], atol=1e-12
    )
    # Large means (float resolution of the breakpoints).
    np.testing.assert_allclose(prob_max_normal([1e6, 1e6], [1e-9, 1e-9]), [0.5, 0.5], atol=1e-9)
    assert prob_max_normal([0.3], [2.0]).tolist() == [1.0]


def test_extreme_scale_ratios_stay_accurate() -> None:
    mean = np.array([0.0, 1e-3, 0.0])
    sd = np.array([1.0, 1e-4, 1e4])
    p = prob_max_normal(mean, sd)
    assert p[0] == pytest.approx(_orthant_k3(mean, sd), abs=1e-8)
    assert p[2] == pytest.approx(0.5, abs=1e-3)


@pytest.mark.parametrize(
    ("mean", "sd", "fragment"),
    [
        ([0.0, 1.0], [1.0], "same shape|must both have shape"),
        ([[[0.0]]], [[[1.0]]], "must both have shape"),
        ([0.0, np.nan], [1.0, 1.0], "finite"),
        ([0.0, 1.0], [1.0, -1.0], ">= 0"),
    ],
)
def test_invalid_inputs(mean: object, sd: object, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        prob_max_normal(mean, sd)  # type: ignore[arg-type]
