"""Live windows and the router's row sampler: bounded, ordered, mergeable, serialisable."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bandits.drift import DriftWindows, LiveWindow, RowSampler


def test_window_keeps_the_last_rows_in_order_across_wraps() -> None:
    w = LiveWindow(width=2, size=5)
    seen: list[list[float]] = []
    rng = np.random.default_rng(0)
    for k in [0, 1, 3, 2, 4, 7, 1, 5]:
        rows = rng.normal(size=(k, 2))
        w.add(rows)
        seen.extend(rows.tolist())
        assert w.values().tolist() == seen[-5:]
        assert w.n == min(len(seen), 5)
    assert w.count == len(seen)


def test_window_memory_is_bounded() -> None:
    w = LiveWindow(width=64, size=100)
    for _ in range(50):
        w.add(np.ones((64, 64)))
    assert w.values().shape == (100, 64)
    assert w.count == 3200


def test_seen_counts_unsampled_rows_and_must_cover_the_sample() -> None:
    w = LiveWindow(width=1, size=10)
    w.add([1.0, 2.0], seen=50)
    assert (w.n, w.count) == (2, 50)
    with pytest.raises(ValueError, match="seen must be an integer >= 2"):
        w.add([1.0, 2.0], seen=1)
    with pytest.raises(ValueError, match=r"shape \(k, 1\)"):
        w.add([[1.0, 2.0]])


def test_string_predictions_switch_to_object_storage() -> None:
    w = LiveWindow(width=1, size=3)
    w.add([1, 2])
    w.add(["cat"])
    w.add(["dog"])
    assert w.column(0).tolist() == [2.0, "cat", "dog"]


def test_extend_is_append_and_to_dict_round_trips() -> None:
    a, b = LiveWindow(2, 4), LiveWindow(2, 4)
    a.add([[1, 1], [2, 2], [3, 3]])
    b.add([[4, 4], [5, 5]], seen=7)
    a.extend(b)
    assert a.values()[:, 0].tolist() == [2.0, 3.0, 4.0, 5.0]
    assert a.count == 10
    again = LiveWindow.from_dict(json.loads(json.dumps(a.to_dict())))
    np.testing.assert_array_equal(again.values(), a.values())
    assert again.count == 10
    with pytest.raises(ValueError, match="width 1"):
        a.extend(LiveWindow(1, 4))
    a.clear()
    assert (a.n, a.count, a.values().shape) == (0, 0, (0, 2))


def test_drift_windows_share_features_and_split_predictions() -> None:
    w = DriftWindows(n_features=3, size=4)
    w.add("a", np.zeros((3, 3)), [0, 1, 2])
    w.add("b", np.ones((2, 3)), ["x", "y"], seen=20)
    w.add("c", np.ones((1, 3)))  # features only
    assert w.features.values()[:, 0].tolist() == [0.0, 1.0, 1.0, 1.0]
    assert w.features.count == 24
    assert sorted(w.predictions) == ["a", "b"]
    assert w.predictions["b"].count == 20
    again = DriftWindows.from_dict(json.loads(json.dumps(w.to_dict())))
    np.testing.assert_array_equal(again.features.values(), w.features.values())
    assert again.predictions["b"].column(0).tolist() == ["x", "y"]
    assert again.predictions["a"].count == 3


def test_sampler_is_uniform_and_bounded() -> None:
    # 10 rows per interval, capacity 2: each row is kept with probability 0.2.
    kept = np.zeros(10)
    for seed in range(2000):
        s = RowSampler(n_features=1, capacity=2, seed=seed)
        for i in range(10):
            s.offer("a", [[float(i)]], [i])
        assert len(s) == 2
        batch = s.drain()["a"]
        assert batch.seen == 10
        assert batch.rows[:, 0].tolist() == [float(p) for p in batch.predictions]
        kept[batch.rows[:, 0].astype(int)] += 1
    freq = kept / 2000
    assert np.all(np.abs(freq - 0.2) < 0.035), freq


def test_sampler_feeds_windows_and_counts_every_row() -> None:
    s = RowSampler(n_features=2, capacity=4, seed=1)
    s.offer("a", np.zeros((10, 2)), np.zeros(10, dtype=int))
    s.offer("b", [0.5, 0.5], ["z"])  # a single flat row
    windows = DriftWindows(n_features=2, size=100)
    windows.add_batch(s.drain())
    assert windows.features.n == 4
    assert windows.features.count == 11
    assert sum(w.count for w in windows.predictions.values()) == 11
    assert len(s) == 0
    with pytest.raises(ValueError, match="2 predictions for 1 rows"):
        s.offer("a", [[0.0, 0.0]], [1, 2])
    with pytest.raises(ValueError, match=r"shape \(k, 2\)"):
        s.offer("a", [[0.0, 0.0, 0.0]], [1])
