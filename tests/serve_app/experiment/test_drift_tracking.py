"""The state's drift tracking without Ray: router samples in, references, warm-up, verdicts."""

from __future__ import annotations

import numpy as np

from bandits.drift import ReferenceProfile, RowSampler
from serve_app.config import DriftConfig
from serve_app.experiment.drift import FEATURES, ExperimentDrift

SETTINGS = DriftConfig(window=400, min_samples=200, warmup_rows=400, evaluate_interval_s=1)


def feed(drift: ExperimentDrift, rows: np.ndarray, arm: str = "a", per_sync: int = 50) -> None:
    """Route ``rows`` through a router-side sampler, one sync per ``per_sync`` rows."""
    sampler = RowSampler(rows.shape[1], capacity=per_sync, seed=0)
    for start in range(0, len(rows), per_sync):
        chunk = rows[start : start + per_sync]
        sampler.offer(arm, chunk, (chunk[:, 0] > 0).astype(int))
        drift.add(sampler.drain())


def test_model_profile_is_the_reference_and_a_shift_alerts():
    rng = np.random.default_rng(0)
    train = rng.normal(size=(3000, 8))
    profile = ReferenceProfile.from_data(train, (train[:, 0] > 0).astype(int))
    drift = ExperimentDrift.create(SETTINGS, "a", {"a": profile}, stored={})
    assert drift.reference_source == "model"
    assert drift.full()["reasons"] == ["waiting for traffic"]
    feed(drift, rng.normal(size=(400, 8)))
    calm = drift.evaluate(now=1.0)
    assert calm is not None
    assert not calm.alert
    shifted = rng.normal(size=(400, 8))
    shifted[:, 3] += 1.0
    feed(drift, shifted)
    report = drift.evaluate(now=2.0)
    assert report is not None
    assert report.alert
    assert report.drifted_features == ("f3",)
    assert drift.summary()["drifted_features"] == ["f3"]
    assert drift.psi_by_feature()["f3"] >= 0.2


def test_without_a_profile_the_first_rows_become_the_reference_and_are_kept():
    rng = np.random.default_rng(1)
    drift = ExperimentDrift.create(SETTINGS, "a", {"a": None}, stored={})
    feed(drift, rng.normal(size=(300, 4)))
    saved: dict[str, str] = {}
    drift.warm_up(saved.__setitem__)
    assert saved == {}  # 300 of 400 warm-up rows
    assert drift.evaluate(now=1.0) is None
    feed(drift, rng.normal(size=(100, 4)))
    drift.warm_up(saved.__setitem__)
    assert set(saved) == {FEATURES, "a"}  # features, and arm a's predictions
    assert drift.reference_source == "warmup"
    again = ExperimentDrift.create(SETTINGS, "a", {"a": None}, stored=saved)
    assert again.features_reference == drift.features_reference  # survives a restart
    feed(again, rng.normal(size=(400, 4)))
    report = again.evaluate(now=1.0)
    assert report is not None
    assert not report.alert
    assert report.arms["a"].test == "chi2"


def test_a_sample_of_the_wrong_width_is_ignored():
    drift = ExperimentDrift.create(SETTINGS, "a", {"a": None}, stored={})
    feed(drift, np.zeros((10, 4)))
    feed(drift, np.zeros((10, 5)))
    assert drift.windows is not None
    assert drift.windows.features.count == 10
