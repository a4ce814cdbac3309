"""The experiment store on a real SQLite file and a real PostgreSQL server.

Exactly-once feedback, additive counts, revisions and audit, on both databases: every test
runs once per backend (ids ``sqlite`` and ``postgresql``; the latter skips where PostgreSQL is
not installed).
"""

from __future__ import annotations

import json
import threading

import pytest

from bandits import ArmStats
from serve_app.store import ArmCounts, ExperimentStore, FeedbackRecord, metadata


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    """A fresh, empty store URL on the requested backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'sub' / 'store.db'}"
        return
    url = request.getfixturevalue("postgres_url")
    yield url
    # One server for the session: drop every table so the next test starts empty.
    cleaner = ExperimentStore(url)
    try:
        metadata.drop_all(cleaner.engine)
    finally:
        cleaner.close()


@pytest.fixture
def store(store_url):
    store = ExperimentStore(store_url)
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


def test_concurrent_record_accepts_each_key_exactly_once(store):
    """4 writers, overlapping keys: every key is accepted by exactly one call, none is lost."""
    threads_n, per_thread, keys_n = 4, 30, 40
    barrier = threading.Barrier(threads_n)
    results: dict[int, list[tuple[str, bool]]] = {}
    errors: list[BaseException] = []

    def writer(index: int) -> None:
        # Each thread walks the same 40 keys from a different offset, in batches of 3, so
        # every key is offered by several threads at nearly the same time.
        store_of_thread = ExperimentStore(store.url)
        mine: list[tuple[str, bool]] = []
        try:
            barrier.wait()
            for start in range(0, per_thread, 3):
                keys = [f"k{(index * 10 + i) % keys_n}" for i in range(start, start + 3)]
                batch = [record(key, arm=f"arm{i % 2}") for i, key in enumerate(keys)]
                counts = {("exp", 1, "arm0"): ArmCounts(pulls=1)}
                mine.extend(zip(keys, store_of_thread.record(counts, batch), strict=True))
        except BaseException as error:  # reported by the main thread below
            errors.append(error)
        finally:
            results[index] = mine
            store_of_thread.close()

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    offered = [pair for index in range(threads_n) for pair in results[index]]
    accepted = [key for key, ok in offered if ok]
    assert sorted(accepted) == sorted(set(accepted)), "a key was accepted twice"
    assert set(accepted) == {key for key, _ in offered}, "an offered key was never accepted"
    stored = [row["decision_key"] for row in store.rewards("exp")]
    assert sorted(stored) == sorted(accepted)
    stats, _ = store.load_stats("exp")
    assert sum(arm.feedback for arm in stats.values()) == len(accepted)
    assert stats["arm0"].pulls == threads_n * (per_thread // 3)


def test_ensure_experiment_revisions_and_audit_trail(store):
    config = {"arms": ["a", "b"], "policy": {"name": "thompson"}}
    assert store.ensure_experiment("exp", config, actor="alice") == 1
    # Same config, other key order: same JSON, no new revision, no audit entry.
    assert store.ensure_experiment("exp", dict(reversed(config.items())), actor="bob") == 1
    assert store.ensure_experiment("exp", {**config, "seed": 1}, actor="carol") == 2
    assert store.ensure_experiment("exp", config, actor="dave") == 3
    assert store.ensure_experiment("other", config, actor="erin") == 1
    row = store.experiment_row("exp")
    assert row is not None
    assert row["revision"] == 3
    assert row["status"] == "running"
    assert json.loads(row["config"]) == config
    assert row["updated_at"] >= row["created_at"]
    assert store.experiment_row("missing") is None
    log = store.audit_log("exp")
    assert [entry["action"] for entry in log] == ["create", "config_change", "config_change"]
    assert [entry["actor"] for entry in log] == ["alice", "carol", "dave"]
    assert [json.loads(entry["detail"]) for entry in log] == [
        {"revision": 1},
        {"revision": 2},
        {"revision": 3},
    ]
    assert [entry["at"] for entry in log] == sorted(entry["at"] for entry in log)
    assert [entry["actor"] for entry in store.audit_log("other")] == ["erin"]


def test_large_feedback_batch_in_one_call(store):
    batch = [
        record(f"key-{i:05d}", arm="ab"[i % 2], reward=(i % 4) / 4, learned=i % 10 != 0)
        for i in range(2000)
    ]
    # A duplicate inside the batch and one already stored are both refused.
    assert store.record({}, [record("key-00003")]) == [True]
    accepted = store.record({("exp", 1, "a"): ArmCounts(pulls=2000)}, [*batch, batch[7]])
    assert accepted == [i != 3 for i in range(2000)] + [False]
    rows = store.rewards("exp")
    assert len(rows) == 2000
    stats, _ = store.load_stats("exp")
    learned = [r for i, r in enumerate(batch) if r.learned and i != 3] + [record("key-00003")]
    assert sum(arm.feedback for arm in stats.values()) == len(learned)
    for arm in "ab":
        rewards = [r.reward for r in learned if r.arm == arm]
        assert stats[arm].feedback == len(rewards)
        assert stats[arm].reward_sum == pytest.approx(sum(rewards))
    assert stats["a"].pulls == 2000


def test_rewards_keep_exact_float_values(store):
    values = [0.1, 1 / 3, 2**-40, 0.123456789012345678, 1e-300, 12345.678901234567, 0.0, 1.0]
    store.record(
        {},
        [record(f"f{i}", arm="c", reward=value) for i, value in enumerate(values)],
    )
    stored = {row["decision_key"]: row for row in store.rewards("exp")}
    for i, value in enumerate(values):
        row = stored[f"f{i}"]
        assert row["reward"] == value  # bit-exact: double precision on both databases
        assert row["propensity"] == 0.5
        assert row["issued_at"] == 100.0
    stats, _ = store.load_stats("exp")
    total = 0.0
    for value in values:
        total += value
    assert stats["c"].reward_sum == pytest.approx(total, rel=1e-15)


def test_arms_are_registered_with_their_models(store):
    config = {"arms": [{"name": "a", "model_uri": "models:/m/1"}, {"name": "b", "model_uri": "/p"}]}
    store.ensure_experiment("exp", config, actor="test")
    arms = {row["arm"]: row["model_uri"] for row in store.arms("exp")}
    assert arms == {"a": "models:/m/1", "b": "/p"}
    moved = {"arms": [{"name": "a", "model_uri": "models:/m/2"}]}
    store.ensure_experiment("exp", moved, actor="test")
    assert {row["arm"]: row["model_uri"] for row in store.arms("exp")}["a"] == "models:/m/2"


def test_assignments_keep_the_first_arm(store):
    assert store.assign("exp", "unit-1", "a", 0.5, 1) == ("a", 0.5)
    assert store.assign("exp", "unit-1", "b", 0.9, 2) == ("a", 0.5)
    assert store.assign("exp", "unit-2", "b", 0.25, 2) == ("b", 0.25)


def test_feedback_metrics_are_summed_exactly_once_per_arm(store):
    first = FeedbackRecord("k1", "exp", 1, "a", 1.0, 0.5, 100.0, True, {"refund": 2.0})
    again = FeedbackRecord("k1", "exp", 1, "a", 1.0, 0.5, 100.0, True, {"refund": 2.0})
    other = FeedbackRecord("k2", "exp", 2, "a", 0.0, 0.5, 100.0, True, {"refund": 3.0, "x": 1})
    fallback = FeedbackRecord("k3", "exp", 2, "b", 0.0, 1.0, 100.0, False, {"refund": 9.0})
    assert store.record({}, [first]) == [True]
    assert store.record({}, [again, other, fallback]) == [False, True, True]
    metrics = store.load_metrics("exp")
    assert metrics == {"a": {"refund": ArmStats(0, 2, 5.0, 13.0), "x": ArmStats(0, 1, 1.0, 1.0)}}


def test_lifecycle_row_defaults_updates_and_audits_in_one_go(store):
    store.ensure_experiment("exp", {"draft": True}, actor="test")
    assert store.experiment_row("exp")["status"] == "draft"
    assert store.lifecycle("exp")["excluded"] == {}
    store.set_lifecycle("exp", started_at=5.0, period_started_at=5.0)
    store.set_lifecycle(
        "exp",
        excluded={"b": "error rate"},
        audit=("guardrail_rollback", {"arm": "b"}, "lifecycle"),
    )
    row = store.lifecycle("exp")
    assert (row["started_at"], row["excluded"]) == (5.0, {"b": "error rate"})
    assert store.audit_log("exp")[-1]["action"] == "guardrail_rollback"


def test_period_counts_timeline_and_drift_references(store):
    store.record({("exp", 1, "a"): ArmCounts(pulls=3), ("exp", 2, "a"): ArmCounts(pulls=4)}, [])
    assert store.load_period("exp", 2) == {"a": ArmCounts(pulls=4)}
    assert [period["a"].pulls for period in store.period_stats("exp")] == [3, 4]
    rows = [
        {"experiment": "exp", "at": at, "arm": "a", "pulls": at, "feedback": 0,
         "reward_sum": 0.0, "weight": 1.0}
        for at in (2.0, 1.0)
    ]  # fmt: skip
    store.add_timeline(rows)
    assert [row["at"] for row in store.timeline("exp")] == [1.0, 2.0]
    store.save_drift_reference("exp", "", "{first}")
    store.save_drift_reference("exp", "", "{second}")
    assert store.drift_references("exp") == {"": "{first}"}
