"""Reference profiles: what the training data (and the model's predictions on it) looked like.

A :class:`ReferenceProfile` is built once, when a model is trained, and stored with it (the
serving layer logs it as JSON next to the model). It holds one :class:`ColumnProfile` per
feature and one for the predictions:

* continuous column: bin edges at the reference quantiles (``bins`` equal-mass bins; each
  edge is an observed value, tied quantiles merge), the reference count per bin (for PSI),
  and a bounded, sorted random sample of the reference values (for the two-sample KS test);
* categorical column: the reference categories and their counts, plus an "other" bin
  (count 0 in the reference) that catches categories never seen in training.

The profile is small (``sample_size`` floats per continuous column) and JSON round-trips
exactly: ``ReferenceProfile.from_dict(p.to_dict()) == p``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from bandits._checks import check_int

__all__ = ["Category", "ColumnKind", "ColumnProfile", "ReferenceProfile"]

ColumnKind = Literal["continuous", "categorical"]
"""How a column is binned and tested: KS for continuous, chi-square for categorical."""

Category = int | float | str | bool
"""A categorical value as JSON keeps it."""

PROFILE_FORMAT = 1
"""Version of the :meth:`ReferenceProfile.to_dict` layout."""

MAX_CATEGORIES = 20
"""Auto-detection: an integer-valued numeric column with at most this many values is
categorical."""


@dataclass(frozen=True, slots=True)
class ColumnProfile:
    """Reference distribution of one column (a feature or the predictions).

    Attributes:
        name: Column name.
        kind: ``"continuous"`` or ``"categorical"``.
        n: Reference values the counts were taken from.
        counts: Reference count per bin. Continuous: ``len(edges) + 1`` bins, bin ``i`` is
            ``(edges[i-1], edges[i]]`` with open ends. Categorical: one per category, then
            the "other" bin (always 0 in the reference).
        edges: Inner bin edges, ascending (continuous only).
        categories: Reference categories in bin order (categorical only).
        sample: Sorted random sample of the reference values (continuous only), for KS.

    Example:
        >>> c = ColumnProfile.from_values("x", [0.1, 0.2, 0.3, 0.4], bins=2)
        >>> c.kind, c.edges, c.counts
        ('continuous', (0.2,), (2, 2))
        >>> c.bin_counts([0.0, 0.3, 0.9, 1.0]).tolist()
        [1, 3]
        >>> ColumnProfile.from_values("label", [1, 2, 2]).bin_counts([2, 7]).tolist()
        [0, 1, 1]
    """

    name: str
    kind: ColumnKind
    n: int
    counts: tuple[int, ...]
    edges: tuple[float, ...] = ()
    categories: tuple[Category, ...] = ()
    sample: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in ("continuous", "categorical"):
            raise ValueError(f"kind must be 'continuous' or 'categorical', got {self.kind!r}")
        object.__setattr__(self, "n", check_int("n", self.n, ge=1))
        counts = tuple(check_int(f"counts[{i}]", c, ge=0) for i, c in enumerate(self.counts))
        object.__setattr__(self, "counts", counts)
        object.__setattr__(self, "edges", tuple(map(float, self.edges)))
        object.__setattr__(self, "categories", tuple(self.categories))
        object.__setattr__(self, "sample", tuple(map(float, self.sample)))
        if self.kind == "continuous":
            if len(counts) != len(self.edges) + 1:
                raise ValueError(
                    f"column {self.name!r}: a continuous column needs len(edges) + 1 = "
                    f"{len(self.edges) + 1} counts, got {len(counts)}"
                )
            if any(b <= a for a, b in zip(self.edges, self.edges[1:], strict=False)):
                raise ValueError(f"column {self.name!r}: edges must be strictly increasing")
            if not self.sample:
                raise ValueError(f"column {self.name!r}: a continuous column needs a sample")
        elif len(counts) != len(self.categories) + 1:
            raise ValueError(
                f"column {self.name!r}: a categorical column needs len(categories) + 1 = "
                f"{len(self.categories) + 1} counts, got {len(counts)}"
            )
        if sum(counts) != self.n:
            raise ValueError(f"column {self.name!r}: counts sum to {sum(counts)}, not n={self.n}")

    @classmethod
    def from_values(
        cls,
        name: str,
        values: npt.ArrayLike,
        *,
        kind: ColumnKind | None = None,
        bins: int = 10,
        sample_size: int = 1000,
        seed: int | np.random.Generator = 0,
        max_categories: int = MAX_CATEGORIES,
    ) -> ColumnProfile:
        """Profile one column of reference values.

        ``kind=None`` detects it: strings and booleans, or numbers that are all integers with
        at most ``max_categories`` distinct values (class labels, counts, flags), are
        categorical; anything else is continuous. Non-finite numbers are dropped.

        Args:
            name: Column name.
            values: Reference values, one per row.
            kind: Force ``"continuous"`` or ``"categorical"``.
            bins: Equal-mass bins of a continuous column (fewer where quantiles tie).
            sample_size: Most reference values kept for KS (a seeded random subsample).
            seed: Seed (or generator) for the subsample.
            max_categories: Auto-detection limit, see above.

        Raises:
            ValueError: No usable values, a parameter out of range, or non-numeric values
                in a continuous column.
        """
        check_int("bins", bins, ge=1)
        check_int("sample_size", sample_size, ge=1)
        check_int("max_categories", max_categories, ge=1)
        raw = np.asarray(values)
        if raw.ndim != 1:
            raw = raw.reshape(-1)
        column_kind = kind if kind is not None else _detect_kind(raw, max_categories)
        if column_kind == "categorical":
            labels = _labels(raw)
            if not labels:
                raise ValueError(f"column {name!r} has no usable values")
            uniques, counts = _count_categories(labels)
            return cls(name, "categorical", len(labels), (*counts, 0), categories=uniques)
        if column_kind != "continuous":
            raise ValueError(f"kind must be 'continuous' or 'categorical', got {kind!r}")
        x = _as_float(name, raw)
        x = x[np.isfinite(x)]
        if x.size == 0:
            raise ValueError(f"column {name!r} has no finite values")
        levels = np.linspace(0.0, 1.0, bins + 1)[1:-1]
        edges = (
            np.unique(np.quantile(x, levels, method="inverted_cdf")) if levels.size else np.empty(0)
        )
        bin_counts = np.bincount(np.searchsorted(edges, x, side="left"), minlength=edges.size + 1)
        rng = np.random.default_rng(seed)
        sample = x if x.size <= sample_size else rng.choice(x, size=sample_size, replace=False)
        return cls(
            name,
            "continuous",
            int(x.size),
            tuple(bin_counts.tolist()),
            edges=tuple(edges.tolist()),
            sample=tuple(np.sort(sample).tolist()),
        )

    @property
    def proportions(self) -> tuple[float, ...]:
        """Reference proportion per bin, ``counts / n``."""
        return tuple(c / self.n for c in self.counts)

    def bin_counts(self, values: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """Count live values into this column's bins (same layout as :attr:`counts`).

        Non-finite numbers are dropped (from either kind); in a categorical column any value
        not among :attr:`categories` counts in the "other" bin.
        """
        raw = np.asarray(values).reshape(-1)
        if self.kind == "continuous":
            x = _as_float(self.name, raw)
            x = x[np.isfinite(x)]
            idx = np.searchsorted(np.asarray(self.edges, dtype=np.float64), x, side="left")
            return np.bincount(idx, minlength=len(self.counts)).astype(np.int64)
        # 3 == 3.0 == np.int64(3) hash alike, so float class labels find their int category.
        index = {c: i for i, c in enumerate(self.categories)}
        other = len(self.categories)
        idx_list = [index.get(v, other) for v in _labels(raw)]
        return np.bincount(np.asarray(idx_list, dtype=np.int64), minlength=other + 1)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; :meth:`from_dict` inverts it."""
        out: dict[str, Any] = {"name": self.name, "kind": self.kind, "n": self.n}
        out["counts"] = list(self.counts)
        if self.kind == "continuous":
            out["edges"] = list(self.edges)
            out["sample"] = list(self.sample)
        else:
            out["categories"] = list(self.categories)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ColumnProfile:
        """Inverse of :meth:`to_dict`.

        Raises:
            ValueError: A field is missing or inconsistent.
        """
        try:
            return cls(
                name=str(data["name"]),
                kind=data["kind"],
                n=data["n"],
                counts=tuple(data["counts"]),
                edges=tuple(data.get("edges", ())),
                categories=tuple(data.get("categories", ())),
                sample=tuple(data.get("sample", ())),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a column profile: {exc!r}") from None


@dataclass(frozen=True, slots=True)
class ReferenceProfile:
    """Reference distribution of a model's input features and of its predictions.

    Attributes:
        features: One profile per feature column, in input order.
        prediction: Profile of the model's predictions on the reference rows, or None.
        n_rows: Reference rows.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> x = np.column_stack([rng.normal(size=500), rng.integers(0, 3, size=500)])
        >>> p = ReferenceProfile.from_data(x, rng.integers(0, 2, size=500), sample_size=100)
        >>> [(c.name, c.kind) for c in p.features]
        [('f0', 'continuous'), ('f1', 'categorical')]
        >>> p.prediction.categories, len(p.features[0].sample)
        ((0, 1), 100)
        >>> ReferenceProfile.from_json(p.to_json()) == p
        True
    """

    features: tuple[ColumnProfile, ...]
    prediction: ColumnProfile | None
    n_rows: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "features", tuple(self.features))
        object.__setattr__(self, "n_rows", check_int("n_rows", self.n_rows, ge=1))
        names = [c.name for c in self.features]
        if len(set(names)) != len(names):
            raise ValueError(f"feature names must be unique, got {names}")

    @property
    def n_features(self) -> int:
        """Number of feature columns."""
        return len(self.features)

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Feature column names, in input order."""
        return tuple(c.name for c in self.features)

    @classmethod
    def from_data(
        cls,
        features: npt.ArrayLike,
        predictions: npt.ArrayLike | None = None,
        *,
        feature_names: Sequence[str] | None = None,
        categorical: Collection[int | str] | None = None,
        prediction_kind: ColumnKind | None = None,
        bins: int = 10,
        sample_size: int = 1000,
        seed: int = 0,
        max_categories: int = MAX_CATEGORIES,
    ) -> ReferenceProfile:
        """Profile a reference data set (typically the training features).

        Args:
            features: Numeric array of shape ``(n, d)``.
            predictions: The model's predictions on those rows, shape ``(n,)`` (scalars:
                class labels or numbers), or None.
            feature_names: ``d`` names; default ``f0 .. f{d-1}``.
            categorical: Indices or names of the categorical features; every other feature
                is continuous. None detects each column (see
                :meth:`ColumnProfile.from_values`).
            prediction_kind: Kind of the predictions; None detects it.
            bins: Equal-mass bins per continuous column.
            sample_size: Reference values kept per continuous column for KS.
            seed: Seed of the subsamples (column ``j`` uses a generator spawned for ``j``).
            max_categories: Auto-detection limit for categorical columns.

        Raises:
            ValueError: Wrong shapes, names or parameters.
        """
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
            raise ValueError(f"features must have shape (n, d) with n, d >= 1, got {x.shape}")
        n, d = x.shape
        names = [f"f{j}" for j in range(d)] if feature_names is None else list(feature_names)
        if len(names) != d:
            raise ValueError(f"feature_names must have {d} names, got {len(names)}")
        forced: set[int] | None = None
        if categorical is not None:
            forced = set()
            for key in categorical:
                if isinstance(key, str):
                    if key not in names:
                        raise ValueError(f"categorical feature {key!r} is not a feature name")
                    forced.add(names.index(key))
                elif not 0 <= int(key) < d:
                    raise ValueError(f"categorical feature index {key} is not in [0, {d})")
                else:
                    forced.add(int(key))
        rngs = np.random.default_rng(seed).spawn(d + 1)
        columns = []
        for j in range(d):
            kind: ColumnKind | None = None
            if forced is not None:
                kind = "categorical" if j in forced else "continuous"
            columns.append(
                ColumnProfile.from_values(
                    names[j],
                    x[:, j],
                    kind=kind,
                    bins=bins,
                    sample_size=sample_size,
                    seed=rngs[j],
                    max_categories=max_categories,
                )
            )
        prediction = None
        if predictions is not None:
            preds = np.asarray(predictions)
            if preds.ndim != 1 or preds.shape[0] != n:
                raise ValueError(
                    f"predictions must have shape ({n},) (one scalar per row), got {preds.shape}"
                )
            prediction = ColumnProfile.from_values(
                "prediction",
                preds,
                kind=prediction_kind,
                bins=bins,
                sample_size=sample_size,
                seed=rngs[d],
                max_categories=max_categories,
            )
        return cls(tuple(columns), prediction, n)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (with a ``format`` version); :meth:`from_dict` inverts it."""
        return {
            "format": PROFILE_FORMAT,
            "n_rows": self.n_rows,
            "features": [c.to_dict() for c in self.features],
            "prediction": None if self.prediction is None else self.prediction.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReferenceProfile:
        """Inverse of :meth:`to_dict`.

        Raises:
            ValueError: Unknown ``format`` or a malformed field.
        """
        if not isinstance(data, Mapping) or data.get("format") != PROFILE_FORMAT:
            found = data.get("format") if isinstance(data, Mapping) else type(data).__name__
            raise ValueError(f"reference profile format must be {PROFILE_FORMAT}, got {found!r}")
        try:
            features = tuple(ColumnProfile.from_dict(c) for c in data["features"])
            raw_prediction = data.get("prediction")
            prediction = None if raw_prediction is None else ColumnProfile.from_dict(raw_prediction)
            return cls(features, prediction, data["n_rows"])
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a reference profile: {exc!r}") from None

    def to_json(self) -> str:
        """Compact JSON text of :meth:`to_dict`."""
        return json.dumps(self.to_dict(), separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> ReferenceProfile:
        """Inverse of :meth:`to_json`.

        Raises:
            ValueError: Not JSON, or not a profile.
        """
        return cls.from_dict(json.loads(text))


def _plain(value: object) -> Category:
    """A JSON scalar for a category: integral floats become ints (``3.0`` -> ``3``)."""
    if isinstance(value, bool | str | int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else value
    return str(value)


def _labels(raw: npt.NDArray[Any]) -> list[Category]:
    """Categories of a column's values, non-finite floats dropped."""
    return [_plain(v) for v in raw.tolist() if not (isinstance(v, float) and not math.isfinite(v))]


def _detect_kind(raw: npt.NDArray[Any], max_categories: int) -> ColumnKind:
    if raw.dtype.kind in "biu":
        return "categorical" if np.unique(raw).size <= max_categories else "continuous"
    if raw.dtype.kind != "f":
        return "categorical"  # strings, objects
    finite = raw[np.isfinite(raw)]
    if finite.size == 0 or not np.all(finite == np.round(finite)):
        return "continuous"
    return "categorical" if np.unique(finite).size <= max_categories else "continuous"


def _count_categories(labels: list[Category]) -> tuple[tuple[Category, ...], list[int]]:
    counts: dict[Category, int] = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    # Sort for a stable layout; mixed types sort by their text.
    order = sorted(counts, key=lambda c: (not isinstance(c, int | float), _sort_key(c)))
    return tuple(order), [counts[c] for c in order]


def _sort_key(value: Category) -> tuple[float, str]:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (float(value), "") if math.isfinite(float(value)) else (math.inf, str(value))
    return (math.inf, str(value))


def _as_float(name: str, raw: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    try:
        return np.asarray(raw, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError(f"column {name!r} is continuous but has non-numeric values") from None
