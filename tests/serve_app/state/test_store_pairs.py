"""CUPED and ratio-metric sums in the store: one write path, restored exactly after a restart."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from serve_app.config import ExperimentConfig
from serve_app.experiment.records import CUPED, FeedbackOutcome, FeedbackRecord, PairSums
from serve_app.state.restore import restore_one
from serve_app.state.schema import pair_stats_table
from serve_app.state.store import ExperimentStore

CONFIG = {
    "name": "exp",
    "reward": "continuous",
    "policy": {"name": "fixed"},
    "metrics": ["revenue", "sessions"],
    "ratio_metrics": [{"name": "rps", "numerator": "revenue", "denominator": "sessions"}],
    "arms": [
        {"name": "a", "model_uri": "/m/a", "weight": 0.5},
        {"name": "b", "model_uri": "/m/b", "weight": 0.5},
    ],
}
RATIO = (("rps", "revenue", "sessions"),)


@pytest.fixture
def store(tmp_path):
    store = ExperimentStore(f"sqlite:///{tmp_path / 'store.db'}")
    store.ensure_experiment("exp", ExperimentConfig.model_validate(CONFIG).model_dump(), "test")
    yield store
    store.close()


def record(key: str, arm: str, reward: float, covariate: float | None, revision: int = 1):
    metrics = (("revenue", 3.0 * reward), ("sessions", 1.0 + reward))
    return FeedbackRecord(
        key,
        "exp",
        revision,
        arm,
        reward,
        0.5,
        100.0,
        metrics=metrics,
        covariate=covariate,
        ratios=RATIO,
        commit_id=f"c-{key}",
    )


def test_pair_sums_are_written_once_and_restored_exactly(store):
    first = [record(f"k{i}", "ab"[i % 2], float(i), i / 3 if i % 4 else None) for i in range(10)]
    outcomes, delta = store.commit_feedback(first)
    assert set(outcomes) == {FeedbackOutcome.STORED}
    more = [record(f"m{i}", "a", 2.0, 1.5, revision=2) for i in range(3)]
    _, second = store.commit_feedback(more)
    stored = store.load_experiment("exp")
    assert stored is not None
    assert not stored.problems
    for arm in ("a", "b"):
        expected = {}
        for d in (delta, second):
            for (_, _, a, name), sums in d.pairs.items():
                if a == arm:
                    expected[name] = expected.get(name, PairSums()) + sums
        assert stored.pairs[arm] == expected
    assert stored.pairs["a"][CUPED].n == sum(
        1 for r in first + more if r.arm == "a" and r.covariate is not None
    )
    assert sorted(stored.periods) == [1, 2]
    # the restored live experiment holds exactly the committed sums, per period too
    live, problems = restore_one(store, "exp")
    assert live is not None
    assert not problems
    assert live.pairs == stored.pairs
    assert live.periods[2]["a"].feedback == 3
    assert live.summary()["analysis"]["cuped"][0]["units"]["a"] == stored.pairs["a"][CUPED].n


def test_a_replay_must_carry_the_same_covariate(store):
    store.commit_feedback([record("k1", "a", 1.0, 2.0)])
    again = FeedbackRecord(
        "k1", "exp", 1, "a", 1.0, 0.5, 100.0, metrics=record("x", "a", 1.0, None).metrics,
        covariate=2.0, ratios=RATIO, commit_id="other",
    )  # fmt: skip
    assert store.commit_feedback([again])[0] == [FeedbackOutcome.REPLAYED]
    changed = FeedbackRecord(
        "k1", "exp", 1, "a", 1.0, 0.5, 100.0, metrics=again.metrics, covariate=3.0,
        ratios=RATIO, commit_id="third",
    )  # fmt: skip
    outcomes, delta = store.commit_feedback([changed])
    assert outcomes == [FeedbackOutcome.CONFLICT]
    assert not delta.pairs


def test_a_corrupt_pair_row_is_reported_not_loaded(store):
    store.commit_feedback([record("k1", "a", 1.0, 2.0)])
    with store.engine.begin() as connection:
        connection.execute(
            sa.update(pair_stats_table).where(pair_stats_table.c.name == CUPED).values(n=-1)
        )
    stored = store.load_experiment("exp")
    assert stored is not None
    assert CUPED not in stored.pairs.get("a", {})
    assert any("pair_stats exp/1/a/_cuped" in problem for problem in stored.problems)
    assert json.loads(stored.config)["ratio_metrics"][0]["name"] == "rps"
