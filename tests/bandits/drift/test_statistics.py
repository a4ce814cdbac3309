"""Two-sample statistics against scipy, and PSI against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from bandits.drift import chi_square_homogeneity, ks_2samp, psi


@pytest.mark.parametrize(
    ("n", "m", "shift", "discrete"),
    [(1000, 500, 0.0, False), (1000, 2000, 0.3, False), (37, 11, 1.0, False),
     (1000, 700, 0.0, True), (800, 300, 0.1, True)],
)  # fmt: skip
def test_ks_equals_scipy_asymp(n: int, m: int, shift: float, discrete: bool) -> None:
    rng = np.random.default_rng(n + m)
    a, b = rng.normal(size=n), rng.normal(shift, size=m)
    if discrete:  # pixel-like values k/16, with many ties
        a, b = np.round(np.clip(a, -2, 2) * 4) / 16, np.round(np.clip(b, -2, 2) * 4) / 16
    r = ks_2samp(a, b)
    ref = stats.ks_2samp(a, b, method="asymp")
    assert r.statistic == pytest.approx(float(ref.statistic), abs=1e-12)
    assert r.p_value == pytest.approx(float(ref.pvalue), abs=1e-9)
    assert ks_2samp(np.sort(a), b, reference_sorted=True) == r


def test_ks_drops_non_finite_and_handles_empty() -> None:
    a = np.array([0.1, 0.5, np.nan, 0.9, np.inf])
    b = np.array([0.2, 0.3, -np.inf, 0.4])
    ref = stats.ks_2samp([0.1, 0.5, 0.9], [0.2, 0.3, 0.4], method="asymp")
    assert ks_2samp(a, b).statistic == pytest.approx(float(ref.statistic))
    assert ks_2samp([], [1.0]).p_value == 1.0
    assert ks_2samp([1.0], [np.nan]).statistic == 0.0


@pytest.mark.parametrize(
    ("ref", "live"),
    [([50, 30, 20], [30, 30, 40]), ([500, 300, 200, 0], [30, 30, 30, 10]), ([10, 0, 5], [8, 0, 9])],
)
def test_chi_square_equals_scipy_contingency(ref: list[int], live: list[int]) -> None:
    r = chi_square_homogeneity(ref, live)
    table = np.array([ref, live])
    table = table[:, table.sum(axis=0) > 0]  # scipy refuses empty columns; we drop them
    statistic, p_value, dof, _ = stats.chi2_contingency(table, correction=False)
    assert r.statistic == pytest.approx(statistic, rel=1e-12)
    assert r.p_value == pytest.approx(p_value, rel=1e-9)
    assert r.dof == dof


def test_chi_square_degenerate_cases() -> None:
    assert chi_square_homogeneity([10, 0], [5, 0]).p_value == 1.0  # one category left
    assert chi_square_homogeneity([10, 5], [0, 0]).statistic == 0.0  # no live values
    with pytest.raises(ValueError, match="same length"):
        chi_square_homogeneity([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="live_counts must be finite and >= 0"):
        chi_square_homogeneity([1, 2], [1, -2])


def test_psi_closed_form() -> None:
    # e = (.25, .25, .5), a = (.5, .25, .25): .25 ln 2 + 0 - .25 ln(.5) = 0.5 ln 2
    assert psi([25, 25, 50], [50, 25, 25]) == pytest.approx(0.5 * math.log(2), rel=1e-12)
    # Scale-free: counts, not proportions, go in.
    assert psi([1, 1, 2], [200, 100, 100]) == pytest.approx(0.5 * math.log(2), rel=1e-12)
    assert psi([3, 7], [3, 7]) == 0.0


def test_psi_smooths_empty_bins() -> None:
    # e = (1, 1e-4 floor), a = (.9, .1): -.1 ln .9 + (.1 - 1e-4) ln(.1 / 1e-4)
    expected = -0.1 * math.log(0.9) + (0.1 - 1e-4) * math.log(0.1 / 1e-4)
    assert psi([100, 0], [90, 10]) == pytest.approx(expected, rel=1e-12)
    assert psi([100, 0], [90, 10], epsilon=1e-3) < psi([100, 0], [90, 10])
    assert psi([0, 0], [1, 2]) == 0.0


def test_psi_is_symmetric_and_near_delta_squared_for_a_normal_shift() -> None:
    assert psi([10, 30, 60], [40, 40, 20]) == pytest.approx(psi([40, 40, 20], [10, 30, 60]))
    # Exact decile probabilities of N(0, 1) shifted by 0.5: PSI close to 0.5**2.
    edges = stats.norm.ppf(np.linspace(0, 1, 11)[1:-1])
    shifted = np.diff(np.concatenate([[0.0], stats.norm.cdf(edges - 0.5), [1.0]]))
    value = psi(np.full(10, 0.1) * 1e6, shifted * 1e6)
    assert 0.2 < value < 0.25


@pytest.mark.parametrize("epsilon", [0.0, 1.0, -1e-3])
def test_psi_rejects_bad_epsilon(epsilon: float) -> None:
    with pytest.raises(ValueError, match="epsilon must be in"):
        psi([1, 1], [1, 1], epsilon=epsilon)
