from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.linear_model import Ridge

from bandits.contextual import RidgeStats, fit_ridge


def _integer_data(seed: int, n: int = 30, d: int = 4) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(-3, 4, size=(n, d)).astype(float), rng.integers(0, 2, n).astype(float)


def test_batch_equals_the_sum_of_rank_one_terms_exactly_for_integer_data() -> None:
    x, y = _integer_data(0)
    total = RidgeStats.zeros(4)
    for row, r in zip(x, y, strict=True):
        total = total + RidgeStats.from_observation(row, r)
    assert total == RidgeStats.from_observations(x, y)
    assert total.n == 30
    np.testing.assert_array_equal(total.xtx, x.T @ x)
    np.testing.assert_array_equal(total.xty, x.T @ y)
    assert total.yty == float(y @ y)


def test_addition_commutes_exactly_and_associates_for_integer_data() -> None:
    parts = [RidgeStats.from_observations(*_integer_data(s, n=10)) for s in range(3)]
    a, b, c = parts
    assert a + b == b + a
    assert (a + b) + c == a + (b + c) == (c + a) + b


def test_float_data_merges_to_rounding_and_commutes_exactly() -> None:
    rng = np.random.default_rng(1)
    parts = [RidgeStats.from_observations(rng.normal(size=(20, 5)), rng.random(20)) for _ in "abc"]
    a, b, c = parts
    assert a + b == b + a
    left, right = (a + b) + c, a + (b + c)
    np.testing.assert_allclose(left.xtx, right.xtx, rtol=1e-13)
    np.testing.assert_allclose(left.xty, right.xty, rtol=1e-13)


def test_xtx_is_exactly_symmetric() -> None:
    rng = np.random.default_rng(2)
    stats = RidgeStats.from_observations(rng.normal(size=(101, 17)), rng.random(101))
    np.testing.assert_array_equal(stats.xtx, stats.xtx.T)


def test_json_round_trip_is_exact() -> None:
    rng = np.random.default_rng(3)
    stats = RidgeStats.from_observations(rng.normal(size=(9, 3)), rng.normal(size=9))
    assert RidgeStats.from_dict(json.loads(json.dumps(stats.to_dict()))) == stats


def test_arrays_are_read_only_copies() -> None:
    xtx = np.eye(2)
    stats = RidgeStats(n=1, xtx=xtx, xty=np.zeros(2), yty=0.0)
    xtx[0, 0] = 5.0
    assert stats.xtx[0, 0] == 1.0
    with pytest.raises(ValueError, match="read-only"):
        stats.xty[0] = 1.0


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"n": -1}, "n must be an integer >= 0"),
        ({"yty": -1.0}, r"yty must be in \[0, inf\)"),
        ({"xty": np.zeros(3)}, r"xtx must have shape \(3, 3\)"),
        ({"xtx": np.array([[1.0, 2.0], [0.0, 1.0]])}, "symmetric"),
        ({"xtx": np.array([[-1.0, 0.0], [0.0, 1.0]])}, "non-negative diagonal"),
        ({"xtx": np.array([[np.inf, 0.0], [0.0, 1.0]])}, "finite"),
        ({"xty": np.zeros(0)}, "non-empty vector"),
    ],
)
def test_validation_names_the_field(kwargs: dict[str, object], fragment: str) -> None:
    base: dict[str, object] = {"n": 1, "xtx": np.eye(2), "xty": np.zeros(2), "yty": 0.0}
    with pytest.raises(ValueError, match=fragment):
        RidgeStats(**{**base, **kwargs})  # type: ignore[arg-type]


def test_dimension_mismatch_and_bad_dicts_raise() -> None:
    with pytest.raises(ValueError, match="dimensions 2 and 3"):
        RidgeStats.zeros(2) + RidgeStats.zeros(3)
    with pytest.raises(ValueError, match="exactly the keys"):
        RidgeStats.from_dict({"n": 0})
    with pytest.raises(ValueError, match="finite"):
        RidgeStats.from_observation([1.0, np.nan], 1.0)


def test_fit_matches_sklearn_ridge_without_intercept() -> None:
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(50, 6)), rng.normal(size=50)
    fit = fit_ridge(RidgeStats.from_observations(x, y), ridge=2.5)
    reference = Ridge(alpha=2.5, fit_intercept=False, solver="cholesky").fit(x, y)
    np.testing.assert_allclose(fit.coef, reference.coef_, rtol=1e-10)
    np.testing.assert_allclose(fit.inverse, np.linalg.inv(x.T @ x + 2.5 * np.eye(6)), rtol=1e-10)
    # Penalised residual: |y - X mu|^2 + lambda |mu|^2.
    expected = np.sum((y - x @ fit.coef) ** 2) + 2.5 * fit.coef @ fit.coef
    assert fit.residual == pytest.approx(expected, rel=1e-10)


def test_fit_without_data_is_the_prior() -> None:
    fit = fit_ridge(RidgeStats.zeros(3), ridge=4.0)
    np.testing.assert_array_equal(fit.coef, np.zeros(3))
    np.testing.assert_allclose(fit.inverse, np.eye(3) / 4.0)
    assert fit.residual == 0.0
    with pytest.raises(ValueError, match=r"ridge must be in \(0, inf\)"):
        fit_ridge(RidgeStats.zeros(3), ridge=0.0)
