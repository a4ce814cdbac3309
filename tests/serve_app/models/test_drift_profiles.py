"""Drift profiles stored with MLflow models: logged at training, found from any model URI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import mlflow.artifacts
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from bandits.drift import DriftWindows, ReferenceProfile, detect_drift
from serve_app.models.demo import DIGITS_MODELS, digits_split
from serve_app.models.profiles import (
    ARTIFACT_PATH,
    build_profile,
    load_profile,
    log_profile,
    save_profile,
)
from serve_app.models.registry import mlflow_uris


@pytest.mark.parametrize("arm", sorted(DIGITS_MODELS))
def test_every_demo_model_has_a_profile(demo_store: dict[str, Any], arm: str) -> None:
    profile = load_profile(demo_store["uris"][arm], demo_store["tracking_uri"])
    assert profile is not None
    x_train = digits_split(0)[0]
    assert profile.n_features == 64
    assert profile.n_rows == len(x_train)
    assert profile.prediction is not None
    assert profile.prediction.kind == "categorical"
    assert set(profile.prediction.categories) == set(range(10))
    assert profile.features[20] == ReferenceProfile.from_data(x_train).features[20]


def test_profile_reachable_by_every_uri_form(demo_store: dict[str, Any], tmp_path: Path) -> None:
    tracking_uri = demo_store["tracking_uri"]
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    expected = load_profile("models:/digits-forest/1", tracking_uri)
    assert expected is not None
    run_id = client.get_model_version("digits-forest", "1").run_id
    client.set_registered_model_alias("digits-forest", "drift-test", "1")
    for uri in ("models:/digits-forest/latest", "models:/digits-forest@drift-test",
                f"runs:/{run_id}/model"):  # fmt: skip
        assert load_profile(uri, tracking_uri) == expected, uri
    with mlflow_uris(tracking_uri):
        local = mlflow.artifacts.download_artifacts(
            artifact_uri="models:/digits-forest/1", dst_path=str(tmp_path / "copy")
        )
    assert load_profile(local) is None  # a bare model directory has no profile
    save_profile(expected, local)
    assert load_profile(local) == expected
    assert load_profile(Path(local).as_uri()) == expected


def test_missing_profiles_give_none(demo_store: dict[str, Any], tmp_path: Path) -> None:
    tracking_uri = demo_store["tracking_uri"]
    assert load_profile("models:/digits-logreg/99", tracking_uri) is None
    assert load_profile("models:/no-such-model/1", tracking_uri) is None
    assert load_profile(str(tmp_path / "nowhere")) is None
    assert load_profile("s3://no-such-bucket-for-tests/model") is None
    (tmp_path / "drift_profile.json").write_text("{not json")
    assert load_profile(str(tmp_path)) is None


def test_log_profile_needs_a_run_and_writes_the_artifact(tmp_path: Path) -> None:
    profile = build_profile(np.random.default_rng(0).normal(size=(50, 3)), [[1]] * 50)
    assert profile.prediction is not None
    assert build_profile(np.zeros((4, 2)), np.zeros((4, 3))).prediction is None
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with mlflow_uris(tracking_uri):
        with pytest.raises(RuntimeError, match="active MLflow run"):
            log_profile(profile)
        experiment = mlflow.create_experiment("drift", artifact_location=(tmp_path / "a").as_uri())
        with mlflow.start_run(experiment_id=experiment) as run:
            log_profile(profile)
    assert load_profile(f"runs:/{run.info.run_id}/model", tracking_uri) == profile
    client = MlflowClient(tracking_uri=tracking_uri)
    assert [f.path for f in client.list_artifacts(run.info.run_id, "drift")] == [ARTIFACT_PATH]


def test_profiles_detect_drifted_digits(demo_store: dict[str, Any]) -> None:
    """Hold-out rows pass; shifted rows alarm on features, noise images on predictions."""
    from serve_app.models.loading import load_model, predict_labels

    tracking_uri = demo_store["tracking_uri"]
    uri = demo_store["uris"]["logreg"]
    profile = load_profile(uri, tracking_uri)
    model = load_model(uri, tracking_uri)
    x_test = digits_split(0)[1][:400]
    windows = DriftWindows(64, size=400)
    windows.add("logreg", x_test, predict_labels(model, x_test))
    report = detect_drift(profile, windows, arm_references={"logreg": profile})
    assert not report.alert, report.reasons
    shifted = x_test + 0.3
    windows.add("logreg", shifted, predict_labels(model, shifted))
    report = detect_drift(profile, windows, arm_references={"logreg": profile})
    assert report.alert
    assert len(report.drifted_features) > 30
    # A uniform brightness shift barely moves a linear model's labels; noise images do.
    assert report.arms["logreg"].test == "chi2"
    noise = np.random.default_rng(0).random(x_test.shape)
    windows.add("logreg", noise, predict_labels(model, noise))
    report = detect_drift(profile, windows, arm_references={"logreg": profile})
    assert report.arms["logreg"].drifted
