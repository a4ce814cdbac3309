"""The store's contextual learning on both databases: a logged decision's context and its
learned reward meet in either order, in the transaction that stores the second; the sums are
added to the stored ridge statistics exactly once, and forced decisions teach nothing."""

from __future__ import annotations

import time

import pytest

from bandits.contextual import RidgeStats
from serve_app.experiment.contextual import ContextModel
from serve_app.experiment.records import Delta, FeedbackRecord, LoggedDecision
from serve_app.state.schema import metadata
from serve_app.state.store import ExperimentStore

MODELS = {"ctx": ContextModel("spec-1", frozenset({"a", "b"}), 2)}


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    store = ExperimentStore(url)
    yield store
    if request.param == "postgresql":
        metadata.drop_all(store.engine)
    store.close()


def decision(key: str, arm: str, context: tuple[float, ...]) -> LoggedDecision:
    return LoggedDecision(key, "ctx", 1, arm, 0.5, time.time(), ((0.0,),), (0,), context=context)


def feedback(key: str, arm: str, reward: float, learned: bool = True) -> FeedbackRecord:
    return FeedbackRecord(key, "ctx", 1, arm, reward, 0.5, time.time(), learned, commit_id=key)


def test_both_orders_teach_once_and_persist(store):
    # k1: decision first; k2: feedback first; k3: forced (not learned)
    added = store.commit_sync_delta(
        "r", 1, Delta(), [decision("k1", "a", (1.0, 2.0)), decision("k3", "a", (1.0, 5.0))], MODELS
    )
    assert added is not None
    assert added.ridge == {}
    _, delta = store.commit_feedback(
        [feedback("k1", "a", 1.0), feedback("k2", "b", 0.5), feedback("k3", "a", 1.0, False)],
        frozenset({"ctx"}),
        MODELS,
    )
    assert delta.ridge == {("ctx", "a"): RidgeStats.from_observation([1.0, 2.0], 1.0)}
    added = store.commit_sync_delta("r", 2, Delta(), [decision("k2", "b", (1.0, -1.0))], MODELS)
    assert added is not None
    assert added.ridge == {("ctx", "b"): RidgeStats.from_observation([1.0, -1.0], 0.5)}
    # a resent batch and a replayed feedback teach nothing more
    assert (
        store.commit_sync_delta("r", 2, Delta(), [decision("k2", "b", (1.0, -1.0))], MODELS) is None
    )
    _, again = store.commit_feedback([feedback("k1", "a", 1.0)], frozenset({"ctx"}), MODELS)
    assert again.ridge == {}
    a = decision("k4", "a", (0.0, 1.0))
    store.commit_sync_delta("r", 3, Delta(), [a], MODELS)
    store.commit_feedback([feedback("k4", "a", 0.0)], frozenset({"ctx"}), MODELS)
    assert store.context_stats("ctx", "spec-1") == {
        "a": RidgeStats.from_observation([1.0, 2.0], 1.0)
        + RidgeStats.from_observation([0.0, 1.0], 0.0),
        "b": RidgeStats.from_observation([1.0, -1.0], 0.5),
    }
    assert store.context_stats("ctx", "spec-2") == {}
    # OPE reads the learned decisions only
    assert sorted(row["arm"] for row in store.policy_log("ctx", 10)) == ["a", "a", "b"]
    assert store.policy_log("ctx", 1)[0]["context"] == [0.0, 1.0]  # the newest
