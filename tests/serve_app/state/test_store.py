"""The experiment store on a real SQLite file and a real PostgreSQL server.

Exactly-once feedback with replay semantics, idempotent sync batches, additive counts,
revisions and audit, a restore that survives rows it cannot load, and schema migration, on
both databases: every test runs once per backend (ids ``sqlite`` and ``postgresql``).
"""

from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from bandits import ArmStats
from serve_app.experiment.records import (
    ArmCounts,
    Delta,
    FeedbackOutcome,
    FeedbackRecord,
    PairSums,
    ShadowCounts,
)
from serve_app.state.schema import arm_stats_table, arms_table, metadata, rewards_table
from serve_app.state.store import ExperimentStore

STORED, REPLAYED, CONFLICT = (
    FeedbackOutcome.STORED,
    FeedbackOutcome.REPLAYED,
    FeedbackOutcome.CONFLICT,
)


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


def record(
    key: str,
    arm: str = "a",
    reward: float = 1.0,
    learned: bool = True,
    metrics: tuple[tuple[str, float], ...] = (),
    commit: str = "",
    revision: int = 1,
) -> FeedbackRecord:
    return FeedbackRecord(key, "exp", revision, arm, reward, 0.5, 100.0, learned, metrics, commit)


def rows(store: ExperimentStore, table: sa.Table) -> list[dict]:
    with store.engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(sa.select(table))]


def counts_of(pulls: int, key=("exp", 1, "a"), **other: int) -> Delta:
    return Delta(arms={key: ArmCounts(pulls=pulls, **other)})


def loaded(store: ExperimentStore):
    store.ensure_experiment("exp", {}, actor="test")
    stored = store.load_experiment("exp")
    assert stored is not None
    return stored


def test_revision_bumps_only_when_config_changes(store):
    assert store.ensure_experiment("exp", {"x": 1}, actor="test") == 1
    assert store.ensure_experiment("exp", {"x": 1}, actor="test") == 1
    assert store.ensure_experiment("exp", {"x": 2}, actor="test") == 2
    actions = [row["action"] for row in store.audit_log("exp")]
    assert actions == ["create", "config_change"]


def test_feedback_is_exactly_once_within_and_across_batches(store):
    outcomes, delta = store.commit_feedback([record("k1"), record("k2", reward=0.0), record("k1")])
    assert outcomes == [STORED, STORED, REPLAYED]  # the same feedback twice in one batch
    assert delta.rewards == {("exp", 1, "a"): ArmStats(0, 2, 1.0, 1.0)}
    outcomes, _ = store.commit_feedback([record("k2", reward=1.0), record("k3", arm="b")])
    assert outcomes == [CONFLICT, STORED]  # another reward for k2
    stats = loaded(store).stats
    assert stats["a"] == ArmStats(pulls=0, feedback=2, reward_sum=1.0, reward_sum_squares=1.0)
    assert stats["b"] == ArmStats(pulls=0, feedback=1, reward_sum=1.0, reward_sum_squares=1.0)
    assert {row["decision_key"] for row in rows(store, rewards_table)} == {"k1", "k2", "k3"}


def test_a_retry_is_told_from_a_replay_and_from_a_conflict(store):
    first = record("k1", metrics=(("refund", 2.0),), commit="request-1")
    assert store.commit_feedback([first])[0] == [STORED]
    # the router's own retry of the same request: stored (by its first attempt)
    assert store.commit_feedback([first])[0] == [STORED]
    # a client sends the same feedback again (a new request): replayed, nothing added
    again = record("k1", metrics=(("refund", 2.0),), commit="request-2")
    outcomes, delta = store.commit_feedback([again])
    assert (outcomes, delta.is_empty()) == ([REPLAYED], True)
    # other metrics or another reward: a conflict
    assert store.commit_feedback([record("k1", metrics=(("refund", 3.0),))])[0] == [CONFLICT]
    assert store.commit_feedback([record("k1", reward=0.0, metrics=(("refund", 2.0),))])[0] == [
        CONFLICT
    ]
    stored = loaded(store)
    assert stored.stats["a"].feedback == 1
    assert stored.metrics["a"]["refund"] == ArmStats(0, 1, 2.0, 4.0)


def test_unlearned_feedback_is_stored_but_not_counted(store):
    outcomes, delta = store.commit_feedback([record("k1", learned=False)])
    assert outcomes == [STORED]
    assert delta.is_empty()
    assert loaded(store).stats == {}
    assert rows(store, rewards_table)[0]["learned"] is False


def test_sync_batches_are_applied_once_per_router(store):
    assert store.commit_sync("r1", 1, counts_of(5, errors=1)) is True
    assert store.commit_sync("r1", 1, counts_of(5, errors=1)) is False  # resent: not added
    assert store.commit_sync("r1", 2, counts_of(2)) is True
    assert store.commit_sync("r1", 1, counts_of(100)) is False  # older than the last applied
    assert store.commit_sync("r2", 1, counts_of(3, key=("exp", 2, "a"))) is True
    assert store.last_sync("r1") == 2
    assert store.last_sync("nobody") is None
    stored = loaded(store)
    assert stored.counts["a"] == ArmCounts(pulls=10, errors=1)
    assert stored.stats["a"].pulls == 10
    assert store.prune_sync_log(older_than=float("inf")) == 2
    assert store.last_sync("r1") is None


def test_counts_add_across_periods_and_the_current_one_stays_apart(store):
    store.commit_sync("r", 1, counts_of(5, errors=1, forced=2, forced_errors=1))
    store.commit_sync("r", 2, counts_of(2))
    store.commit_sync("r", 3, counts_of(3, key=("exp", 2, "a")))
    store.ensure_experiment("exp", {}, actor="test")
    store.ensure_experiment("exp", {"new": True}, actor="test")  # revision 2
    stored = store.load_experiment("exp")
    assert stored.revision == 2
    assert stored.counts["a"] == ArmCounts(pulls=10, errors=1, forced=2, forced_errors=1)
    assert stored.period_counts["a"] == ArmCounts(pulls=3)
    assert [period["a"].pulls for period in store.period_stats("exp")] == [7, 3]


def test_data_survives_reopening(store):
    store.commit_sync("r", 1, counts_of(4))
    store.commit_feedback([record("k1", reward=0.25)])
    reopened = ExperimentStore(store.url)
    assert loaded(reopened).stats["a"] == ArmStats(4, 1, 0.25, 0.0625)
    assert reopened.commit_feedback([record("k1")])[0] == [CONFLICT]
    assert reopened.commit_sync("r", 1, counts_of(4)) is False
    reopened.close()


def test_concurrent_commits_accept_each_key_exactly_once(store):
    """4 writers, overlapping keys: every key is stored by exactly one call, none is lost."""
    threads_n, per_thread, keys_n = 4, 30, 40
    barrier = threading.Barrier(threads_n)
    results: dict[int, list[tuple[str, FeedbackOutcome]]] = {}
    errors: list[BaseException] = []

    def writer(index: int) -> None:
        # Each thread walks the same 40 keys from a different offset, in batches of 3, so
        # every key is offered by several threads at nearly the same time, each with its
        # own request id: one stores it, the others see a replay.
        store_of_thread = ExperimentStore(store.url)
        mine: list[tuple[str, FeedbackOutcome]] = []
        try:
            barrier.wait()
            for start in range(0, per_thread, 3):
                keys = [f"k{(index * 10 + i) % keys_n}" for i in range(start, start + 3)]
                batch = [record(k, arm=f"arm{int(k[1:]) % 2}", commit=f"t{index}") for k in keys]
                outcomes, _ = store_of_thread.commit_feedback(batch)
                mine.extend(zip(keys, outcomes, strict=True))
                store_of_thread.commit_sync(f"router-{index}", start + 1, counts_of(1))
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
    stored_now = [key for key, outcome in offered if outcome is STORED]
    assert sorted(stored_now) == sorted(set(stored_now)), "a key was stored twice"
    assert set(stored_now) == {key for key, _ in offered}, "an offered key was never stored"
    assert {outcome for _, outcome in offered} <= {STORED, REPLAYED}
    assert sorted(row["decision_key"] for row in rows(store, rewards_table)) == sorted(stored_now)
    stats = loaded(store).stats
    assert sum(arm.feedback for arm in stats.values()) == len(stored_now)
    assert stats["a"].pulls == threads_n * (per_thread // 3)


def test_ensure_experiment_revisions_and_audit_trail(store):
    config = {"arms": ["a", "b"], "policy": {"name": "thompson"}}
    assert store.ensure_experiment("exp", config, actor="alice") == 1
    # Same config, other key order: same JSON, no new revision, no audit entry.
    assert store.ensure_experiment("exp", dict(reversed(config.items())), actor="bob") == 1
    assert store.ensure_experiment("exp", {**config, "seed": 1}, actor="carol") == 2
    assert store.ensure_experiment("exp", config, actor="dave") == 3
    assert store.ensure_experiment("other", config, actor="erin") == 1
    stored = store.load_experiment("exp")
    assert (stored.revision, stored.status, stored.origin) == (3, "running", "config")
    assert json.loads(stored.config) == config
    assert store.load_experiment("missing") is None
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
    assert [entry["actor"] for entry in store.audit_log("exp", limit=2)] == ["carol", "dave"]


def test_large_feedback_batch_in_one_call(store):
    batch = [
        record(f"key-{i:05d}", arm="ab"[i % 2], reward=(i % 4) / 4, learned=i % 10 != 0)
        for i in range(2000)
    ]
    # one already stored (with the same content: a replay) and a duplicate inside the batch
    assert store.commit_feedback([record("key-00003", arm="b", reward=0.75)])[0] == [STORED]
    outcomes, _ = store.commit_feedback([*batch, batch[7]])
    assert outcomes == [REPLAYED if i == 3 else STORED for i in range(2000)] + [REPLAYED]
    assert len(rows(store, rewards_table)) == 2000
    stats = loaded(store).stats
    learned = [r for r in batch if r.learned]
    assert sum(arm.feedback for arm in stats.values()) == len(learned)
    for arm in "ab":
        rewards = [r.reward for r in learned if r.arm == arm]
        assert stats[arm].feedback == len(rewards)
        assert stats[arm].reward_sum == pytest.approx(sum(rewards))


def test_rewards_keep_exact_float_values(store):
    values = [0.1, 1 / 3, 2**-40, 0.123456789012345678, 1e-300, 12345.678901234567, 0.0, 1.0]
    store.commit_feedback(
        [record(f"f{i}", arm="c", reward=value) for i, value in enumerate(values)]
    )
    stored = {row["decision_key"]: row for row in rows(store, rewards_table)}
    for i, value in enumerate(values):
        row = stored[f"f{i}"]
        assert row["reward"] == value  # bit-exact: double precision on both databases
        assert row["propensity"] == 0.5
        assert row["issued_at"] == 100.0
    assert loaded(store).stats["c"].reward_sum == pytest.approx(sum(values), rel=1e-15)


def test_arms_are_registered_with_their_models(store):
    config = {"arms": [{"name": "a", "model_uri": "models:/m/1"}, {"name": "b", "model_uri": "/p"}]}
    store.ensure_experiment("exp", config, actor="test")
    assert {row["arm"]: row["model_uri"] for row in rows(store, arms_table)} == {
        "a": "models:/m/1",
        "b": "/p",
    }
    moved = {"arms": [{"name": "a", "model_uri": "models:/m/2"}]}
    store.ensure_experiment("exp", moved, actor="test")
    assert {row["arm"]: row["model_uri"] for row in rows(store, arms_table)}["a"] == "models:/m/2"


def test_assignments_keep_the_first_arm(store):
    assert store.assign("exp", "unit-1", "a", 0.5, 1) == ("a", 0.5)
    assert store.assign("exp", "unit-1", "b", 0.9, 2) == ("a", 0.5)
    assert store.assign("exp", "unit-2", "b", 0.25, 2) == ("b", 0.25)


def test_feedback_metrics_are_summed_exactly_once_per_arm(store):
    first = record("k1", metrics=(("refund", 2.0),))
    other = record("k2", reward=0.0, metrics=(("refund", 3.0), ("x", 1.0)), revision=2)
    fallback = record("k3", arm="b", reward=0.0, learned=False, metrics=(("refund", 9.0),))
    assert store.commit_feedback([first])[0] == [STORED]
    assert store.commit_feedback([first, other, fallback])[0] == [REPLAYED, STORED, STORED]
    assert loaded(store).metrics == {
        "a": {"refund": ArmStats(0, 2, 5.0, 13.0), "x": ArmStats(0, 1, 1.0, 1.0)}
    }


def test_shadow_counts_add(store):
    delta = Delta(shadows={("exp", "s"): ShadowCounts(requests=3, errors=1, timeouts=1, rows=2)})
    store.commit_sync("r", 1, delta)
    store.commit_sync("r", 2, delta)
    assert loaded(store).shadows == {"s": ShadowCounts(requests=6, errors=2, timeouts=2, rows=4)}


def test_a_delta_of_many_rows_adds_each_row_to_its_own(store):
    """Every table's rows go in one parameterised statement: each row must still add to its
    own key, and a row new in a later batch must be inserted beside the existing ones."""
    pair = PairSums.of([(1.0, 2.0), (3.0, 1.0)])
    first = Delta(
        arms={
            ("exp", 1, "a"): ArmCounts(pulls=3, expected=1.5),
            ("exp", 1, "b"): ArmCounts(pulls=1, errors=1, expected=2.5),
        },
        metrics={
            ("exp", 1, "a", "m"): ArmStats(0, 1, 2.0, 4.0),
            ("exp", 1, "b", "m"): ArmStats(0, 2, 1.0, 0.5),
        },
        pairs={("exp", 1, "a", "ratio"): pair, ("exp", 1, "b", "ratio"): pair},
    )
    second = Delta(
        arms={("exp", 1, "b"): ArmCounts(pulls=2), ("exp", 2, "c"): ArmCounts(pulls=7)},
        metrics={("exp", 1, "a", "m"): ArmStats(0, 1, 3.0, 9.0)},
        pairs={("exp", 1, "b", "ratio"): pair},
    )
    assert store.commit_sync("r", 1, first) is True
    assert store.commit_sync("r", 2, second) is True
    assert store.commit_sync("r", 2, second) is False  # a resent batch adds nothing
    stored = loaded(store)
    assert stored.counts == {
        "a": ArmCounts(pulls=3, expected=1.5),
        "b": ArmCounts(pulls=3, errors=1, expected=2.5),
        "c": ArmCounts(pulls=7),
    }
    assert stored.metrics == {
        "a": {"m": ArmStats(0, 2, 5.0, 13.0)},
        "b": {"m": ArmStats(0, 2, 1.0, 0.5)},
    }
    assert stored.pairs == {"a": {"ratio": pair}, "b": {"ratio": pair + pair}}


def test_lifecycle_row_defaults_updates_and_audits_in_one_go(store):
    store.ensure_experiment("exp", {"draft": True}, actor="test")
    assert store.load_experiment("exp").status == "draft"
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


def test_timeline_is_bounded_and_drift_references_keep_the_first(store):
    def sample(at: float) -> dict:
        return {"experiment": "exp", "at": at, "decisions": int(at), "arm": "a", "pulls": int(at),
                "feedback": 0, "reward_sum": 0.0, "weight": 1.0}  # fmt: skip

    store.add_timeline([sample(2.0), sample(1.0)])
    assert [row["at"] for row in store.timeline("exp")] == [1.0, 2.0]
    store.add_timeline([sample(float(at)) for at in range(3, 101)])
    spread = store.timeline("exp", limit=5)
    assert [row["at"] for row in spread] == [1.0, 26.0, 51.0, 75.0, 100.0]
    deleted = store.thin_timeline("exp", keep=50)
    times = [row["at"] for row in store.timeline("exp")]
    assert (deleted, len(times), times[0]) == (24, 76, 1.0)
    assert times[-50:] == [float(at) for at in range(51, 101)]
    store.save_drift_reference("exp", "", "{first}")
    store.save_drift_reference("exp", "", "{second}")
    assert store.drift_references("exp") == {"": "{first}"}


def test_a_row_that_cannot_be_loaded_is_left_out_and_reported(store):
    """What an earlier version could commit (an infinite sum of squares) must not keep the
    app from starting: the row is skipped and named, the rest loads."""
    store.commit_sync("r", 1, counts_of(4))
    store.commit_feedback([record("k1", arm="b")])
    with store.engine.begin() as connection:
        connection.execute(
            sa.insert(arm_stats_table).values(
                experiment="exp", period=1, arm="c", pulls=1, feedback=1, reward_sum=1.0,
                reward_sum_squares=float("inf"), errors=0, forced=0, forced_errors=0,
                fallbacks=0, expected=0.0,
            )
        )  # fmt: skip
    stored = loaded(store)
    assert set(stored.stats) == {"a", "b"}
    assert stored.stats["b"] == ArmStats(0, 1, 1.0, 1.0)
    assert len(stored.problems) == 1
    assert "arm_stats exp/1/c" in stored.problems[0]
    assert "reward_sum_squares" in stored.problems[0]


def test_an_old_schema_gets_the_new_columns(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(sa.text(
            "CREATE TABLE arm_stats (experiment VARCHAR(64), period INTEGER, arm VARCHAR(64), "
            "pulls BIGINT, feedback BIGINT, reward_sum FLOAT, reward_sum_squares FLOAT, "
            "errors BIGINT, forced BIGINT, fallbacks BIGINT, expected FLOAT, "
            "PRIMARY KEY (experiment, period, arm))"
        ))  # fmt: skip
        connection.execute(sa.text(
            "INSERT INTO arm_stats VALUES ('exp', 1, 'a', 7, 1, 1.0, 1.0, 2, 0, 0, 3.5)"
        ))  # fmt: skip
    engine.dispose()
    store = ExperimentStore(url)
    assert "arm_stats.forced_errors" in store.added_columns
    assert loaded(store).counts["a"] == ArmCounts(pulls=7, errors=2, expected=3.5)
    store.commit_sync("r", 1, counts_of(1, forced_errors=1))
    assert loaded(store).counts["a"].forced_errors == 1
    store.close()


def test_sqlite_files_are_private(tmp_path):
    path = tmp_path / "data" / "store.db"
    store = ExperimentStore(f"sqlite:///{path}")
    store.commit_feedback([record("k1")])  # writes the WAL
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    for file in [path, *Path(path.parent).glob("store.db-*")]:
        assert stat.S_IMODE(os.stat(file).st_mode) == 0o600, file
    store.close()
