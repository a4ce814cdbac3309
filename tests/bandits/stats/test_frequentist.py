from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from bandits.stats import (
    ProportionStats,
    SampleStats,
    adjust_pvalues,
    chi_square_test,
    welch_ttest,
)


def _samples(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.normal(10.0, 3.0, size=int(rng.integers(5, 80)))
    b = rng.normal(10.8, 5.0, size=int(rng.integers(5, 80)))
    return a, b


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_absolute_welch_equals_scipy(seed: int, alternative: str) -> None:
    a, b = _samples(seed)
    r = welch_ttest(
        SampleStats.from_values(a),
        SampleStats.from_values(b),
        relative=False,
        alternative=alternative,
        alpha=0.1,
    )
    ref = stats.ttest_ind(b, a, equal_var=False, alternative=alternative)
    assert r.estimate == pytest.approx(b.mean() - a.mean(), abs=1e-9)
    assert r.estimate / r.se == pytest.approx(ref.statistic, abs=1e-9)
    assert r.p_value == pytest.approx(ref.pvalue, abs=1e-9)
    assert r.dof == pytest.approx(ref.df, abs=1e-9)
    lo, hi = ref.confidence_interval(0.9)
    assert r.ci[0] == pytest.approx(lo, abs=1e-9)
    assert r.ci[1] == pytest.approx(hi, abs=1e-9)


@pytest.mark.parametrize("seed", range(3))
def test_absolute_welch_equals_statsmodels(seed: int) -> None:
    weightstats = pytest.importorskip("statsmodels.stats.weightstats")
    a, b = _samples(seed)
    cm = weightstats.CompareMeans(weightstats.DescrStatsW(b), weightstats.DescrStatsW(a))
    t, p, dof = cm.ttest_ind(usevar="unequal")
    lo, hi = cm.tconfint_diff(alpha=0.05, usevar="unequal")
    r = welch_ttest(SampleStats.from_values(a), SampleStats.from_values(b), relative=False)
    assert (r.estimate / r.se, r.p_value, r.dof) == pytest.approx((t, p, dof), abs=1e-9)
    assert r.ci == pytest.approx((lo, hi), abs=1e-9)


def test_relative_welch_delta_method_closed_form() -> None:
    a, b = SampleStats.from_values([4.0, 6.0, 5.0, 7.0]), SampleStats.from_values([8.0, 5.0, 9.0])
    ma, mb, va, vb = a.mean, b.mean, a.variance, b.variance
    r = welch_ttest(a, b)
    var = vb / (3 * ma**2) + mb**2 * va / (4 * ma**4)
    dof = (va / 4 + vb / 3) ** 2 / ((va / 4) ** 2 / 3 + (vb / 3) ** 2 / 2)
    assert r.estimate == pytest.approx((mb - ma) / ma, rel=1e-12)
    assert r.se == pytest.approx(math.sqrt(var), rel=1e-12)
    assert r.dof == pytest.approx(dof, rel=1e-12)
    t = stats.t(dof)
    assert r.p_value == pytest.approx(2 * t.sf(r.estimate / r.se), rel=1e-12)
    assert r.ci[1] - r.estimate == pytest.approx(t.ppf(0.975) * r.se, rel=1e-12)


def test_relative_welch_uses_abs_of_negative_control_mean() -> None:
    a = SampleStats.from_values([-4.0, -6.0, -5.0])
    b = SampleStats.from_values([-2.0, -3.0, -1.0])
    r = welch_ttest(a, b)
    assert r.estimate == pytest.approx(0.6)  # (-2 - -5) / 5: higher is still positive


def test_proportions_use_bernoulli_variance() -> None:
    a, b = ProportionStats(1000, 100), ProportionStats(800, 120)
    r = welch_ttest(a, b, relative=False)
    se = math.sqrt(0.1 * 0.9 / 1000 + 0.15 * 0.85 / 800)
    assert r.se == pytest.approx(se, rel=1e-12)
    assert r.estimate == pytest.approx(0.05, rel=1e-12)


@pytest.mark.parametrize(
    ("a", "b", "relative"),
    [
        (SampleStats(1, 1.0, 1.0), SampleStats(5, 5.0, 7.0), False),  # n < 2
        (SampleStats(3, 3.0, 3.0), SampleStats(3, 6.0, 12.0), False),  # zero variance
        (SampleStats(3, 0.0, 2.0), SampleStats(3, 3.0, 5.0), True),  # control mean 0
        (ProportionStats(10, 0), ProportionStats(10, 0), True),
    ],
)
def test_degenerate_welch_returns_no_evidence(
    a: SampleStats, b: SampleStats, relative: bool
) -> None:
    r = welch_ttest(a, b, relative=relative)
    assert (r.estimate, r.se, r.ci, r.p_value, r.dof) == (0.0, 0.0, (0.0, 0.0), 1.0, 0.0)


def test_welch_validation() -> None:
    a = SampleStats.from_values([1.0, 2.0])
    with pytest.raises(ValueError, match="alpha"):
        welch_ttest(a, a, alpha=1.0)
    with pytest.raises(ValueError, match="alternative"):
        welch_ttest(a, a, alternative="bigger")
    with pytest.raises(ValueError, match="same kind"):
        welch_ttest(a, ProportionStats(2, 1))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("sa", "na", "sb", "nb"),
    [(100, 1000, 130, 1000), (3, 17, 9, 21), (0, 5, 5, 5), (40, 90, 7, 12)],
)
def test_chi_square_equals_scipy_and_z_squared(sa: int, na: int, sb: int, nb: int) -> None:
    r = chi_square_test(ProportionStats(na, sa), ProportionStats(nb, sb))
    stat, p, dof, _ = stats.chi2_contingency([[sa, na - sa], [sb, nb - sb]], correction=False)
    assert dof == 1
    assert r.statistic == pytest.approx(stat, rel=1e-12)
    assert r.p_value == pytest.approx(p, abs=1e-12)
    # Equivalent: the pooled two-proportion z-test.
    pooled = (sa + sb) / (na + nb)
    z = (sb / nb - sa / na) / math.sqrt(pooled * (1 - pooled) * (1 / na + 1 / nb))
    assert r.statistic == pytest.approx(z**2, rel=1e-12)


def test_chi_square_published_example() -> None:
    # Agresti-style 2x2 table: 189/11034 vs 104/11037 (aspirin and heart attacks);
    # X^2 = 25.01 (Agresti, Categorical Data Analysis, Table 2.3 data).
    r = chi_square_test(ProportionStats(11034, 189), ProportionStats(11037, 104))
    assert r.statistic == pytest.approx(25.01, abs=0.01)


def test_chi_square_degenerate_and_validation() -> None:
    assert chi_square_test(ProportionStats(10, 0), ProportionStats(5, 0)) == (
        chi_square_test(ProportionStats(0, 0), ProportionStats(5, 2))
    )
    r = chi_square_test(ProportionStats(10, 0), ProportionStats(5, 0))
    assert (r.statistic, r.p_value) == (0.0, 1.0)
    with pytest.raises(ValueError, match="control"):
        chi_square_test(SampleStats(2, 1.0, 1.0), ProportionStats(2, 1))  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(("method", "sm_method"), [("holm", "holm"), ("bh", "fdr_bh")])
def test_adjust_pvalues_equals_statsmodels(seed: int, method: str, sm_method: str) -> None:
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    rng = np.random.default_rng(seed)
    p = rng.uniform(0, 0.2, size=int(rng.integers(1, 12))) ** rng.uniform(0.5, 2)
    p[: len(p) // 3] = p[0]  # ties
    reject, adjusted, _, _ = multitest.multipletests(p, alpha=0.05, method=sm_method)
    r = adjust_pvalues(list(p), method)  # type: ignore[arg-type]
    assert r.p_values == pytest.approx(tuple(adjusted), abs=1e-12)
    assert r.reject == tuple(bool(x) for x in reject)


def test_adjust_pvalues_closed_form_and_edges() -> None:
    # Holm on (0.01, 0.02, 0.03): 3*0.01, max(0.03, 2*0.02), max(0.04, 0.03).
    assert adjust_pvalues([0.03, 0.01, 0.02], "holm").p_values == pytest.approx((0.04, 0.03, 0.04))
    assert adjust_pvalues([0.03, 0.01, 0.02], "bh").p_values == pytest.approx((0.03, 0.03, 0.03))
    assert adjust_pvalues([], "bh").p_values == ()
    assert adjust_pvalues([0.9, 0.8], "holm").p_values == (1.0, 1.0)
    with pytest.raises(ValueError, match=r"p_values\[1\]"):
        adjust_pvalues([0.1, 1.5])
    with pytest.raises(ValueError, match="method"):
        adjust_pvalues([0.1], "bonferroni")  # type: ignore[arg-type]
