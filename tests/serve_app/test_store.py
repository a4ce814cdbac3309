"""The experiment store on a real SQLite file: exactly-once feedback and additive counts."""

from __future__ import annotations

import pytest

from bandits import ArmStats
from serve_app.store import ArmCounts, ExperimentStore, FeedbackRecord


@pytest.fixture
def store(tmp_path):
    store = ExperimentStore(f"sqlite:///{tmp_path / 'sub' / 'store.db'}")
    yield store
    store.close()


def record(key: str, arm: str = "a", reward: float = 1.0, learned: bool = True):
    return FeedbackRecord(key, "exp", 1, arm, reward, 0.5, 100.0, learned)


def test_revision_bumps_only_when_config_changes(store):
    assert store.ensure_experiment("exp", {"x": 1}, actor="test") == 1
    assert store.ensure_experiment("exp", {"x": 1}, actor="test") == 1
    assert store.ensure_experiment("exp", {"x": 2}, actor="test") == 2
    actions = [row["action"] for row in store.audit_log("exp")]
    assert actions == ["create", "config_change"]


def test_secret_is_generated_once(store, tmp_path):
    first = store.secret()
    assert len(first) == 32
    assert store.secret() == first
    reopened = ExperimentStore(store.url)
    assert reopened.secret() == first
    reopened.close()


def test_feedback_is_exactly_once_within_and_across_batches(store):
    accepted = store.record({}, [record("k1"), record("k2", reward=0.0), record("k1")])
    assert accepted == [True, True, False]
    assert store.record({}, [record("k2"), record("k3", arm="b")]) == [False, True]
    stats, _ = store.load_stats("exp")
    assert stats["a"] == ArmStats(pulls=0, feedback=2, reward_sum=1.0, reward_sum_squares=1.0)
    assert stats["b"] == ArmStats(pulls=0, feedback=1, reward_sum=1.0, reward_sum_squares=1.0)
    assert {row["decision_key"] for row in store.rewards("exp")} == {"k1", "k2", "k3"}


def test_unlearned_feedback_is_stored_but_not_counted(store):
    assert store.record({}, [record("k1", learned=False)]) == [True]
    stats, _ = store.load_stats("exp")
    assert stats == {}
    assert store.rewards("exp")[0]["learned"] is False


def test_counts_add_across_periods(store):
    store.record({("exp", 1, "a"): ArmCounts(pulls=5, errors=1)}, [])
    store.record({("exp", 1, "a"): ArmCounts(pulls=2)}, [])
    store.record({("exp", 2, "a"): ArmCounts(pulls=3)}, [record("k1")])
    stats, errors = store.load_stats("exp")
    assert stats["a"].pulls == 10
    assert stats["a"].feedback == 1
    assert errors == {"a": 1}


def test_data_survives_reopening(store):
    store.record({("exp", 1, "a"): ArmCounts(pulls=4)}, [record("k1", reward=0.25)])
    reopened = ExperimentStore(store.url)
    stats, _ = reopened.load_stats("exp")
    assert stats["a"] == ArmStats(4, 1, 0.25, 0.0625)
    assert reopened.record({}, [record("k1")]) == [False]
    reopened.close()
