"""Reference profiles: kinds, bins, samples, JSON round trip, validation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bandits.drift import ColumnProfile, ReferenceProfile


def _mixed(n: int = 3000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = np.column_stack(
        [
            rng.normal(size=n),  # continuous
            rng.integers(0, 5, size=n),  # categorical (integer, 5 values)
            rng.integers(0, 100, size=n),  # integer but too many values: continuous
            np.round(rng.random(size=n) * 16) / 16,  # pixel-like k/16: continuous
            np.zeros(n),  # constant (an always-blank pixel): categorical {0}
        ]
    )
    return x, rng.integers(0, 10, size=n)


def test_kinds_are_detected() -> None:
    x, y = _mixed()
    p = ReferenceProfile.from_data(x, y)
    assert [c.kind for c in p.features] == [
        "continuous", "categorical", "continuous", "continuous", "categorical",
    ]  # fmt: skip
    assert p.feature_names == ("f0", "f1", "f2", "f3", "f4")
    assert p.features[1].categories == (0, 1, 2, 3, 4)
    assert p.features[4].categories == (0,)
    assert p.prediction is not None
    assert p.prediction.kind == "categorical"
    assert p.prediction.categories == tuple(range(10))
    assert p.n_rows == p.features[0].n == 3000


def test_forced_kinds_and_names() -> None:
    x, _ = _mixed()
    names = ["a", "b", "c", "d", "e"]
    p = ReferenceProfile.from_data(x, feature_names=names, categorical=["a", 3])
    assert [c.kind for c in p.features] == [
        "categorical", "continuous", "continuous", "categorical", "continuous",
    ]  # fmt: skip
    assert p.prediction is None
    with pytest.raises(ValueError, match="'z' is not a feature name"):
        ReferenceProfile.from_data(x, feature_names=names, categorical=["z"])
    with pytest.raises(ValueError, match="index 9"):
        ReferenceProfile.from_data(x, categorical=[9])
    with pytest.raises(ValueError, match="5 names"):
        ReferenceProfile.from_data(x, feature_names=["a"])


def test_continuous_bins_are_equal_mass_and_sample_is_bounded() -> None:
    x, _ = _mixed()
    c = ReferenceProfile.from_data(x, bins=10, sample_size=500).features[0]
    assert len(c.edges) == 9
    assert len(c.counts) == 10
    assert all(abs(count - 300) <= 1 for count in c.counts)
    assert len(c.sample) == 500
    assert list(c.sample) == sorted(c.sample)
    assert set(c.sample) <= set(x[:, 0].tolist())
    np.testing.assert_array_equal(c.bin_counts(x[:, 0]), c.counts)


def test_tied_quantiles_merge_bins() -> None:
    c = ColumnProfile.from_values("px", [0.0] * 80 + [0.5] * 10 + [1.0] * 10, bins=10)
    assert c.edges == (0.0, 0.5)
    assert c.counts == (80, 10, 10)
    assert c.bin_counts([-1.0, 0.0, 0.25, 0.5, 2.0, np.nan]).tolist() == [2, 2, 1]


def test_categorical_other_bin_and_label_types() -> None:
    c = ColumnProfile.from_values("label", ["cat", "dog", "dog", "cat", "cat"])
    assert c.categories == ("cat", "dog")
    assert c.counts == (3, 2, 0)
    assert c.bin_counts(["dog", "eel", "cat"]).tolist() == [1, 1, 1]
    ints = ColumnProfile.from_values("y", np.array([1.0, 2.0, 2.0, np.nan]))
    assert ints.categories == (1, 2)
    assert ints.n == 3
    assert ints.bin_counts([np.int64(2), 2.0, 1, 7]).tolist() == [1, 2, 1]


def test_seeded_samples_are_reproducible() -> None:
    x, y = _mixed()
    a = ReferenceProfile.from_data(x, y, sample_size=100, seed=3)
    assert a == ReferenceProfile.from_data(x, y, sample_size=100, seed=3)
    assert a != ReferenceProfile.from_data(x, y, sample_size=100, seed=4)


def test_json_round_trip_is_exact() -> None:
    x, _ = _mixed()
    p = ReferenceProfile.from_data(x, np.array(["a", "b", "c"] * 1000), sample_size=200)
    text = p.to_json()
    assert ReferenceProfile.from_json(text) == p
    assert ReferenceProfile.from_dict(json.loads(text)) == p
    assert json.loads(text)["format"] == 1


def test_continuous_predictions() -> None:
    x, _ = _mixed()
    p = ReferenceProfile.from_data(x, x[:, 0] * 2.5)
    assert p.prediction is not None
    assert p.prediction.kind == "continuous"
    assert ReferenceProfile.from_json(p.to_json()) == p


@pytest.mark.parametrize(
    ("data", "match"),
    [({"format": 2}, "format must be 1"), ([], "format must be 1"),
     ({"format": 1, "n_rows": 3}, "not a reference profile"),
     ({"format": 1, "n_rows": 3, "features": [{"name": "x", "kind": "nope", "n": 1,
       "counts": [1]}]}, "kind must be"),
     ({"format": 1, "n_rows": 3, "features": [{"name": "x", "kind": "continuous", "n": 2,
       "counts": [1, 1], "edges": [0.5], "sample": []}]}, "needs a sample"),
     ({"format": 1, "n_rows": 3, "features": [{"name": "x", "kind": "categorical", "n": 3,
       "counts": [1, 1], "categories": [0]}]}, "counts sum to 2")],
)  # fmt: skip
def test_malformed_dicts_are_rejected(data: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ReferenceProfile.from_dict(data)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("features", "predictions", "match"),
    [(np.zeros(5), None, r"shape \(n, d\)"), (np.zeros((0, 3)), None, r"shape \(n, d\)"),
     (np.zeros((4, 2)), np.zeros(3), r"predictions must have shape \(4,\)"),
     (np.zeros((4, 2)), np.zeros((4, 2)), r"predictions must have shape \(4,\)")],
)  # fmt: skip
def test_bad_shapes(features: np.ndarray, predictions: np.ndarray | None, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ReferenceProfile.from_data(features, predictions)


def test_bad_parameters_and_empty_columns() -> None:
    with pytest.raises(ValueError, match="bins must be an integer >= 1"):
        ColumnProfile.from_values("x", [1.0], bins=0)
    with pytest.raises(ValueError, match="no finite values"):
        ColumnProfile.from_values("x", [np.nan, np.inf], kind="continuous")
    with pytest.raises(ValueError, match="non-numeric"):
        ColumnProfile.from_values("x", ["a", "b"], kind="continuous")
