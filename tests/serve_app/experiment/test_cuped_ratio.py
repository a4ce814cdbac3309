"""CUPED and ratio metrics on the serving side: the records' pair sums, one summation path,
and the analysis checked against independent references (statsmodels OLS, numpy closed
forms of the delta method)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import statsmodels.api as sm

from serve_app.config import ExperimentConfig, RatioMetricConfig
from serve_app.experiment.analysis import cuped_comparisons, ratio_comparisons
from serve_app.experiment.records import (
    CUPED,
    FeedbackRecord,
    InvalidRecord,
    PairSums,
    feedback_delta,
)

RATIO = RatioMetricConfig(name="revenue_per_session", numerator="revenue", denominator="sessions")


def record(key: str, arm: str, reward: float, **extra) -> FeedbackRecord:
    return FeedbackRecord(key, "exp", 1, arm, reward, 0.5, 0.0, **extra)


def test_pair_sums_are_exact_and_order_free():
    rng = np.random.default_rng(0)
    x, y = rng.normal(5, 2, 50), rng.normal(-3, 1, 50)
    whole = PairSums.of(zip(x, y, strict=True))
    assert whole.n == 50
    assert whole.sum_x == pytest.approx(x.sum(), abs=1e-12)
    assert whole.sum_yy == pytest.approx((y**2).sum(), abs=1e-9)
    assert whole.sum_xy == pytest.approx((x * y).sum(), abs=1e-9)
    a = PairSums.of(zip(x[:20], y[:20], strict=True))
    b = PairSums.of(zip(x[20:], y[20:], strict=True))
    assert a + b == b + a
    assert (a + b).sum_xy == pytest.approx(whole.sum_xy, abs=1e-9)
    with pytest.raises(InvalidRecord, match="sum_x"):
        PairSums(1, math.inf, 0.0, 0.0, 0.0, 0.0)


def test_covariates_and_ratios_are_validated_where_they_enter():
    with pytest.raises(InvalidRecord) as caught:
        record("k", "a", 1.0, covariate=1e200)
    assert caught.value.field == "covariate"
    with pytest.raises(InvalidRecord) as caught:
        record("k", "a", 1.0, covariate=float("nan"))
    assert caught.value.field == "covariate"
    with pytest.raises(InvalidRecord, match="lacks its metrics"):
        record("k", "a", 1.0, metrics=(("revenue", 1.0),), ratios=(("r", "revenue", "sessions"),))


def test_feedback_delta_sums_covariate_and_ratio_pairs_once():
    records = [
        record(
            f"k{i}",
            "a" if i % 2 else "b",
            float(i),
            covariate=float(i) / 2 if i % 3 else None,
            metrics=(("revenue", 2.0 * i), ("sessions", 1.0 + i % 4)),
            ratios=(("revenue_per_session", "revenue", "sessions"),),
        )
        for i in range(12)
    ]
    delta = feedback_delta(records)
    for arm in ("a", "b"):
        mine = [r for r in records if r.arm == arm]
        with_cov = [r for r in mine if r.covariate is not None]
        cuped = delta.pairs[("exp", 1, arm, CUPED)]
        assert cuped == PairSums.of((r.reward, r.covariate) for r in with_cov)
        ratio = delta.pairs[("exp", 1, arm, "revenue_per_session")]
        assert ratio.n == len(mine)
        assert ratio.sum_xy == math.fsum(
            dict(r.metrics)["revenue"] * dict(r.metrics)["sessions"] for r in mine
        )
    # not learned: stored, never summed
    assert not feedback_delta([record("x", "a", 1.0, covariate=2.0, learned=False)]).pairs


def _sums(y: np.ndarray, x: np.ndarray) -> PairSums:
    return PairSums.of(zip(y.tolist(), x.tolist(), strict=True))


def test_cuped_matches_ols_theta_and_the_closed_form_effect():
    rng = np.random.default_rng(17)
    n_a, n_b = 400, 300
    x_a, x_b = rng.normal(10, 3, n_a), rng.normal(10, 3, n_b)
    y_a = 2.0 + 0.8 * x_a + rng.normal(0, 1, n_a)
    y_b = 2.5 + 0.8 * x_b + rng.normal(0, 1, n_b)
    pairs = {"a": {CUPED: _sums(y_a, x_a)}, "b": {CUPED: _sums(y_b, x_b)}}
    (row,) = cuped_comparisons(pairs, "a", ["b"])
    # theta: the slope of y on x over both arms pooled (statsmodels OLS)
    x, y = np.concatenate([x_a, x_b]), np.concatenate([y_a, y_b])
    ols = sm.OLS(y, sm.add_constant(x)).fit()
    assert row["theta"] == pytest.approx(ols.params[1], abs=1e-9)
    theta = ols.params[1]
    # the relative effect on the unadjusted control mean, with the delta method's variance
    m = y_b.mean() - theta * (x_b.mean() - x_a.mean())
    assert row["adjusted"]["estimate"] == pytest.approx((m - y_a.mean()) / y_a.mean(), abs=1e-9)
    assert row["unadjusted"]["estimate"] == pytest.approx(y_b.mean() / y_a.mean() - 1, abs=1e-9)
    q = m / y_a.mean()
    cov_a = np.cov(x_a, y_a, ddof=1)
    v_b = np.var(y_b - theta * x_b, ddof=1)
    control = theta**2 * cov_a[0, 0] - 2 * theta * q * cov_a[0, 1] + q**2 * cov_a[1, 1]
    se = math.sqrt(v_b / (n_b * y_a.mean() ** 2) + control / (n_a * y_a.mean() ** 2))
    assert row["adjusted"]["se"] == pytest.approx(se, rel=1e-9)
    reduction = 1 - row["adjusted"]["se"] ** 2 / row["unadjusted"]["se"] ** 2
    assert row["variance_reduction"] == pytest.approx(reduction, abs=1e-12)
    assert row["variance_reduction"] > 0.5  # x explains most of y's variance
    assert row["units"] == {"a": n_a, "b": n_b}


def test_cuped_is_absent_without_covariates_and_none_with_too_few():
    assert cuped_comparisons({}, "a", ["b"]) is None
    pairs = {"a": {CUPED: PairSums.of([(1.0, 2.0)])}}
    (row,) = cuped_comparisons(pairs, "a", ["b"])
    assert row["adjusted"] is None
    assert "fewer than 2" in row["detail"]


def test_ratio_metric_matches_the_delta_method_closed_form():
    rng = np.random.default_rng(3)
    arms = {}
    data = {}
    for arm, n, rate in (("a", 500, 2.0), ("b", 450, 2.3)):
        sessions = rng.integers(1, 6, n).astype(float)
        revenue = rng.gamma(2.0, rate / 2.0, n) * sessions
        data[arm] = (revenue, sessions)
        arms[arm] = {RATIO.name: _sums(revenue, sessions)}
    (entry,) = ratio_comparisons([RATIO], arms, "a", ["b"])
    stats = {}
    for arm, (x, y) in data.items():
        r = x.sum() / y.sum()
        v = np.var(x - r * y, ddof=1) / y.mean() ** 2  # per-unit delta-method variance
        stats[arm] = (r, v, len(x))
        assert entry["arms"][arm]["value"] == pytest.approx(r, rel=1e-12)
    (r_a, v_a, n_a), (r_b, v_b, n_b) = stats["a"], stats["b"]
    (row,) = entry["comparisons"]
    assert row["frequentist"]["estimate"] == pytest.approx(r_b / r_a - 1, abs=1e-12)
    se = math.sqrt((r_b / r_a) ** 2 * v_a / n_a + v_b / n_b) / abs(r_a)
    assert row["frequentist"]["se"] == pytest.approx(se, rel=1e-9)
    assert 0 < row["bayesian"]["chance_to_win"] < 1
    low, high = row["sequential"]["ci"]
    assert low < row["sequential"]["estimate"] < high


def test_a_ratio_metric_must_name_declared_metrics():
    base = {"name": "e", "arms": [{"name": n, "model_uri": f"/m/{n}"} for n in "ab"]}
    ok = ExperimentConfig.model_validate(
        {**base, "metrics": ["revenue", "sessions"], "ratio_metrics": [RATIO.model_dump()]}
    )
    assert ok.ratio_metrics == [RATIO]
    with pytest.raises(ValueError, match="not a declared metric"):
        ExperimentConfig.model_validate(
            {**base, "metrics": ["revenue"], "ratio_metrics": [RATIO.model_dump()]}
        )
