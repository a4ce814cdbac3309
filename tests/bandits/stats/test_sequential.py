from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

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
