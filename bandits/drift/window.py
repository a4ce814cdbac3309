"""Bounded live samples: what the traffic looks like now.

Memory is bounded whatever the traffic:

* :class:`RowSampler` (router side): a reservoir of at most ``capacity`` rows per sync
  interval, each row with the arm that answered it and that arm's prediction; a uniform
  sample of the interval's rows (Vitter's algorithm R), drained at every sync.
* :class:`LiveWindow` (state side): the last ``size`` rows of a fixed number of columns, in
  arrival order (a ring buffer), plus ``count``, every row the samples stood for. A sliding
  window forgets: drift that is fixed stops alarming once ``size`` new rows have arrived.
* :class:`DriftWindows` (state side, one per experiment): one window for the features,
  shared by all arms, and one window of predictions per arm.

Unlike :class:`~bandits.arm_stats.ArmStats`, a window is order-dependent (it keeps the
*latest* rows), so syncs are applied in arrival order; a merge is ``a.extend(b)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from bandits._checks import check_int

__all__ = ["DriftWindows", "LiveWindow", "RowSampler", "SampledBatch"]

DEFAULT_WINDOW = 1000
"""Default rows per window; see :mod:`bandits.drift` for the delay it implies."""


class LiveWindow:
    """The last ``size`` rows of ``width`` columns, and the number of rows ever seen.

    Values are stored as float64; the first non-numeric value (a string class label)
    switches the window to object storage.

    Example:
        >>> w = LiveWindow(width=2, size=3)
        >>> w.add([[1, 10], [2, 20]])
        >>> w.add([[3, 30], [4, 40]], seen=20)  # 2 sampled rows standing for 20 requests
        >>> w.values().tolist(), w.n, w.count
        ([[2.0, 20.0], [3.0, 30.0], [4.0, 40.0]], 3, 22)
        >>> LiveWindow.from_dict(w.to_dict()).values().tolist() == w.values().tolist()
        True
    """

    __slots__ = ("_buffer", "_filled", "_next", "count", "size", "width")

    def __init__(self, width: int, size: int = DEFAULT_WINDOW) -> None:
        self.width = check_int("width", width, ge=1)
        self.size = check_int("size", size, ge=1)
        self.count = 0
        self._buffer: npt.NDArray[Any] = np.zeros((self.size, self.width), dtype=np.float64)
        self._next = 0
        self._filled = 0

    @property
    def n(self) -> int:
        """Rows held now, ``min(rows added, size)``."""
        return self._filled

    def add(self, rows: npt.ArrayLike, *, seen: int | None = None) -> None:
        """Append rows (oldest first); rows beyond ``size`` push the oldest out.

        Args:
            rows: Shape ``(k, width)``; with ``width == 1`` also a flat sequence of ``k``
                values.
            seen: Rows these stand for (a router's sample of ``seen`` requests); default
                ``k``. Only :attr:`count` uses it.

        Raises:
            ValueError: Wrong shape, or ``seen < k``.
        """
        array = self._as_rows(rows)
        k = array.shape[0]
        total = k if seen is None else check_int("seen", seen, ge=k)
        self.count += total
        if k == 0:
            return
        if array.dtype == object and self._buffer.dtype != object:
            self._buffer = self._buffer.astype(object)
        if k >= self.size:
            self._buffer[:] = array[k - self.size :]
            self._next, self._filled = 0, self.size
            return
        end = self._next + k
        if end <= self.size:
            self._buffer[self._next : end] = array
        else:
            split = self.size - self._next
            self._buffer[self._next :] = array[:split]
            self._buffer[: k - split] = array[split:]
        self._next = end % self.size
        self._filled = min(self._filled + k, self.size)

    def extend(self, other: LiveWindow) -> None:
        """Append another window's rows (as if they arrived now) and its count."""
        if other.width != self.width:
            raise ValueError(f"cannot merge a window of width {other.width} into {self.width}")
        self.add(other.values(), seen=other.count)

    def values(self) -> npt.NDArray[Any]:
        """The rows held, oldest first, shape ``(n, width)`` (a copy)."""
        if self._filled < self.size:
            return self._buffer[: self._filled].copy()
        return np.concatenate([self._buffer[self._next :], self._buffer[: self._next]])

    def column(self, j: int) -> npt.NDArray[Any]:
        """Column ``j`` of :meth:`values`."""
        return self.values()[:, j]

    def clear(self) -> None:
        """Forget the rows (a new reference, a new model version); ``count`` restarts too."""
        self.count, self._next, self._filled = 0, 0, 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (rows as lists); :meth:`from_dict` inverts it."""
        return {
            "width": self.width,
            "size": self.size,
            "count": self.count,
            "rows": self.values().tolist(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LiveWindow:
        """Inverse of :meth:`to_dict`."""
        window = cls(int(data["width"]), int(data["size"]))
        rows = list(data["rows"])
        window.add(rows if rows else np.empty((0, window.width)), seen=int(data["count"]))
        return window

    def _as_rows(self, rows: npt.ArrayLike) -> npt.NDArray[Any]:
        array = np.asarray(rows)
        if array.dtype.kind not in "biuf":
            # Strings or mixed values: keep them as Python objects, numbers stay numbers.
            array = np.asarray(rows, dtype=object)
        else:
            array = array.astype(np.float64, copy=False)
        if array.ndim == 1 and self.width == 1:
            array = array.reshape(-1, 1)
        if array.ndim == 1 and array.size == 0:
            array = array.reshape(0, self.width)
        if array.ndim != 2 or array.shape[1] != self.width:
            raise ValueError(f"rows must have shape (k, {self.width}), got {array.shape}")
        return array

    def __repr__(self) -> str:
        return f"LiveWindow(width={self.width}, size={self.size}, n={self.n}, count={self.count})"


@dataclass
class DriftWindows:
    """One experiment's live samples: the features (all arms) and each arm's predictions.

    Attributes:
        n_features: Feature columns per row.
        size: Rows per window.
        features: Window of feature rows from every arm.
        predictions: Arm -> window of that arm's predictions (width 1), created on first use.

    Example:
        >>> w = DriftWindows(n_features=2, size=100)
        >>> w.add("a", [[0.1, 0.2], [0.3, 0.4]], [1, 0])
        >>> w.add("b", [[0.5, 0.6]], ["cat"], seen=10)
        >>> w.features.n, w.features.count, w.predictions["b"].values().tolist()
        (3, 12, [['cat']])
    """

    n_features: int
    size: int = DEFAULT_WINDOW
    features: LiveWindow = field(init=False)
    predictions: dict[str, LiveWindow] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.features = LiveWindow(self.n_features, self.size)

    def add(
        self,
        arm: str,
        rows: npt.ArrayLike,
        predictions: Sequence[Any] | npt.ArrayLike | None = None,
        *,
        seen: int | None = None,
    ) -> None:
        """Record sampled rows answered by ``arm`` and (if given) its predictions for them.

        Args:
            arm: Arm that answered.
            rows: Feature rows, shape ``(k, n_features)``.
            predictions: ``k`` scalar predictions, or None to record features only.
            seen: Requests the ``k`` rows stand for (default ``k``).

        Raises:
            ValueError: Shapes disagree.
        """
        self.features.add(rows, seen=seen)
        if predictions is not None:
            self.add_predictions(arm, predictions, seen=seen)

    def add_predictions(
        self, arm: str, values: Sequence[Any] | npt.ArrayLike, *, seen: int | None = None
    ) -> None:
        """Record ``arm``'s scalar predictions (its window is created on first use)."""
        window = self.predictions.get(arm)
        if window is None:
            window = self.predictions[arm] = LiveWindow(1, self.size)
        window.add(values, seen=seen)

    def add_batch(self, batches: Mapping[str, SampledBatch]) -> None:
        """Apply a router's :meth:`RowSampler.drain` output."""
        for arm, batch in batches.items():
            self.add(arm, batch.rows, batch.predictions, seen=batch.seen)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; :meth:`from_dict` inverts it."""
        return {
            "n_features": self.n_features,
            "size": self.size,
            "features": self.features.to_dict(),
            "predictions": {arm: w.to_dict() for arm, w in self.predictions.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DriftWindows:
        """Inverse of :meth:`to_dict`."""
        windows = cls(int(data["n_features"]), int(data["size"]))
        windows.features = LiveWindow.from_dict(data["features"])
        windows.predictions = {
            str(arm): LiveWindow.from_dict(w) for arm, w in data["predictions"].items()
        }
        return windows


@dataclass(frozen=True, slots=True)
class SampledBatch:
    """One arm's share of a :class:`RowSampler` sample.

    Attributes:
        rows: Sampled feature rows, shape ``(k, n_features)``.
        predictions: The arm's prediction for each sampled row (``k`` values).
        seen: Rows the arm answered during the interval (``>= k``).
    """

    rows: npt.NDArray[np.float64]
    predictions: tuple[Any, ...]
    seen: int


class RowSampler:
    """Router side: a uniform sample of at most ``capacity`` rows per sync interval.

    Algorithm R: the ``t``-th row of the interval (1-based) replaces a random slot with
    probability ``capacity / t``, so every row of the interval is kept with the same
    probability ``min(1, capacity / rows in interval)``. Per-arm ``seen`` counts are exact.

    Example:
        >>> s = RowSampler(n_features=2, capacity=3, seed=0)
        >>> s.offer("a", [[0.0, 1.0]] * 5, [1] * 5)
        >>> s.offer("b", [[2.0, 3.0]], [0])
        >>> batch = s.drain()
        >>> sum(len(b.predictions) for b in batch.values()), {a: b.seen for a, b in batch.items()}
        (3, {'a': 5, 'b': 1})
        >>> s.drain()
        {}
    """

    __slots__ = ("_arms", "_items", "_rng", "_seen", "_t", "capacity", "n_features")

    def __init__(self, n_features: int, capacity: int = 64, *, seed: int | None = None) -> None:
        self.n_features = check_int("n_features", n_features, ge=1)
        self.capacity = check_int("capacity", capacity, ge=1)
        self._rng = np.random.default_rng(seed)
        self._items: list[tuple[str, npt.NDArray[np.float64], Any]] = []
        self._seen: dict[str, int] = {}
        self._arms: list[str] = []
        self._t = 0

    def offer(
        self, arm: str, rows: npt.ArrayLike, predictions: Sequence[Any] | npt.ArrayLike
    ) -> None:
        """Offer one request's rows and the answering arm's predictions for them.

        Raises:
            ValueError: ``rows`` is not ``(k, n_features)`` or ``predictions`` not ``k`` long.
        """
        x = np.asarray(rows, dtype=np.float64)
        if x.ndim == 1 and x.size == self.n_features:
            x = x.reshape(1, -1)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"rows must have shape (k, {self.n_features}), got {x.shape}")
        preds = list(np.asarray(predictions, dtype=object).reshape(-1))
        if len(preds) != x.shape[0]:
            raise ValueError(f"got {len(preds)} predictions for {x.shape[0]} rows")
        if arm not in self._seen:
            self._arms.append(arm)
        self._seen[arm] = self._seen.get(arm, 0) + x.shape[0]
        for row, prediction in zip(x, preds, strict=True):
            self._t += 1
            if len(self._items) < self.capacity:
                self._items.append((arm, row, prediction))
            else:
                slot = int(self._rng.integers(0, self._t))
                if slot < self.capacity:
                    self._items[slot] = (arm, row, prediction)

    def drain(self) -> dict[str, SampledBatch]:
        """The interval's sample per arm (arms in first-seen order); starts a new interval."""
        out: dict[str, SampledBatch] = {}
        for arm in self._arms:
            picked = [(row, pred) for a, row, pred in self._items if a == arm]
            rows = (
                np.stack([row for row, _ in picked])
                if picked
                else np.empty((0, self.n_features), dtype=np.float64)
            )
            out[arm] = SampledBatch(rows, tuple(p for _, p in picked), self._seen[arm])
        self._items, self._seen, self._arms, self._t = [], {}, [], 0
        return out

    def __len__(self) -> int:
        return len(self._items)
