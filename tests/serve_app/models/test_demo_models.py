"""Demo models: training, idempotence, loading by every URI form, existence messages."""

from __future__ import annotations

import os
import time
from pathlib import Path

import mlflow
import mlflow.artifacts
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from mlflow.tracking._tracking_service import utils as tracking_utils

from serve_app.models.demo import DIGITS_MODELS, digits_split, train_demo_models
from serve_app.models.loading import load_model, model_exists, predict_labels
from serve_app.models.registry import mlflow_uris


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, dict[str, str]]:
    """Train the three demo models once into a temporary sqlite store.

    Training runs from an empty working directory so the test can prove nothing
    (``mlruns``, ``mlflow.db``) lands in the cwd.
    """
    root = tmp_path_factory.mktemp("mlflow")
    tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
    (root / "cwd").mkdir()
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root / "cwd")
        uris = train_demo_models(tracking_uri, root / "mlartifacts", seed=0)
    return tracking_uri, root, uris


@pytest.fixture(scope="module")
def holdout() -> tuple[np.ndarray, np.ndarray]:
    _, x_test, _, y_test = digits_split(0)
    return x_test, y_test


def _accuracy(labels: list, y: np.ndarray) -> float:
    return float(np.mean(np.asarray(labels) == y))


def test_digits_split_shapes_and_scaling() -> None:
    x_train, x_test, _, y_test = digits_split(0)
    assert x_train.shape == (1257, 64)
    assert x_test.shape == (540, 64)
    assert x_train.dtype == np.float64
    assert x_train.min() >= 0.0
    assert x_train.max() <= 1.0
    assert sorted(set(y_test.tolist())) == list(range(10))
    again = digits_split(0)
    np.testing.assert_array_equal(again[1], x_test)
    assert not np.array_equal(digits_split(1)[1], x_test)


def test_train_returns_registered_uris(store: tuple[str, Path, dict[str, str]]) -> None:
    _, _, uris = store
    assert uris == {arm: f"models:/{name}/1" for arm, name in DIGITS_MODELS.items()}


@pytest.mark.parametrize("arm", sorted(DIGITS_MODELS))
def test_models_load_and_are_accurate(
    store: tuple[str, Path, dict[str, str]], holdout: tuple[np.ndarray, np.ndarray], arm: str
) -> None:
    tracking_uri, _, uris = store
    x_test, y_test = holdout
    model = load_model(uris[arm], tracking_uri)
    labels = predict_labels(model, x_test)
    assert len(labels) == len(y_test)
    assert all(type(label) is int for label in labels)
    assert _accuracy(labels, y_test) >= 0.9


def test_accuracy_metric_and_signature_logged(store: tuple[str, Path, dict[str, str]]) -> None:
    tracking_uri, _, _ = store
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    for name in DIGITS_MODELS.values():
        version = client.get_model_version(name, "1")
        accuracy = client.get_run(version.run_id).data.metrics["accuracy"]
        assert 0.9 <= accuracy <= 1.0
    model = load_model("models:/digits-mlp/1", tracking_uri)
    assert model.metadata.get_input_schema() is not None


def test_artifacts_stay_in_artifact_dir(store: tuple[str, Path, dict[str, str]]) -> None:
    _, root, _ = store
    assert any((root / "mlartifacts").iterdir())
    assert list((root / "cwd").iterdir()) == []


def test_global_mlflow_state_restored(
    store: tuple[str, Path, dict[str, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tracking_uri, _, _ = store
    other = f"sqlite:///{tmp_path / 'other.db'}"
    monkeypatch.setattr(tracking_utils, "_tracking_uri", other)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", other)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    load_model("models:/digits-logreg/1", tracking_uri)
    assert model_exists("models:/digits-logreg/1", tracking_uri) is None
    assert mlflow.get_tracking_uri() == other
    assert os.environ["MLFLOW_TRACKING_URI"] == other
    assert "MLFLOW_REGISTRY_URI" not in os.environ


def test_second_call_trains_nothing(store: tuple[str, Path, dict[str, str]]) -> None:
    tracking_uri, root, uris = store
    started = time.perf_counter()
    again = train_demo_models(tracking_uri, root / "mlartifacts", seed=0)
    elapsed = time.perf_counter() - started
    assert again == uris
    assert elapsed < 3.0
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    assert len(client.search_model_versions("name='digits-logreg'")) == 1


def test_alias_uri(store: tuple[str, Path, dict[str, str]], holdout) -> None:
    tracking_uri, _, _ = store
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    client.set_registered_model_alias("digits-forest", "champion", "1")
    assert model_exists("models:/digits-forest@champion", tracking_uri) is None
    model = load_model("models:/digits-forest@champion", tracking_uri)
    x_test, y_test = holdout
    assert _accuracy(predict_labels(model, x_test), y_test) >= 0.9
    message = model_exists("models:/digits-forest@nope", tracking_uri)
    assert message is not None
    assert "alias 'nope'" in message


def test_runs_uri(store: tuple[str, Path, dict[str, str]], holdout) -> None:
    tracking_uri, _, _ = store
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    run_id = client.get_model_version("digits-mlp", "1").run_id
    uri = f"runs:/{run_id}/model"
    assert model_exists(uri, tracking_uri) is None
    x_test, y_test = holdout
    labels = predict_labels(load_model(uri, tracking_uri), x_test[:50])
    assert _accuracy(labels, y_test[:50]) >= 0.9
    assert "does not exist" in (model_exists("runs:/0123456789abcdef/model", tracking_uri) or "")


def test_local_path(store: tuple[str, Path, dict[str, str]], tmp_path: Path, holdout) -> None:
    tracking_uri, _, _ = store
    with mlflow_uris(tracking_uri):
        local = mlflow.artifacts.download_artifacts(
            artifact_uri="models:/digits-logreg/1", dst_path=str(tmp_path / "copy")
        )
    assert model_exists(local, None) is None
    assert model_exists(Path(local).as_uri(), None) is None
    x_test, y_test = holdout
    labels = predict_labels(load_model(local), x_test)
    assert _accuracy(labels, y_test) >= 0.9


def test_missing_version_message(store: tuple[str, Path, dict[str, str]]) -> None:
    tracking_uri, _, _ = store
    message = model_exists("models:/digits-logreg/3", tracking_uri)
    assert message == f"registered model 'digits-logreg' has no version 3 in {tracking_uri}"


def test_missing_registered_model_message(store: tuple[str, Path, dict[str, str]]) -> None:
    tracking_uri, _, _ = store
    message = model_exists("models:/no-such-model/1", tracking_uri)
    assert message == f"registered model 'no-such-model' does not exist in {tracking_uri}"


def test_missing_path_messages(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    assert model_exists(str(missing), None) == f"model path '{missing}' does not exist"
    assert model_exists(str(tmp_path), None) == f"model path '{tmp_path}' has no MLmodel file"


def test_model_exists_never_raises(tmp_path: Path) -> None:
    message = model_exists("s3://no-such-bucket-for-tests/model", None)
    assert isinstance(message, str)
    assert "\n" not in message


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        (np.array([1, 2], dtype=np.int64), [1, 2]),
        (np.array([0.5, 1.5], dtype=np.float32), [0.5, 1.5]),
        (pd.Series([3, 4]), [3, 4]),
        (pd.DataFrame({"label": [5, 6]}), [5, 6]),
        (pd.DataFrame({"a": [1, 2], "b": [0.5, 0.25]}), [[1, 0.5], [2, 0.25]]),
        ([np.int64(7), np.float64(0.5)], [7, 0.5]),
        (np.array([[0.1, 0.9]]), [[0.1, 0.9]]),
    ],
)
def test_predict_labels_returns_plain_python(output: object, expected: list) -> None:
    class Stub:
        def predict(self, features: np.ndarray) -> object:
            return output

    labels = predict_labels(Stub(), np.zeros((2, 64)))
    assert labels == expected
    for value in labels:
        flat = value if isinstance(value, list) else [value]
        assert all(type(v) in (int, float) for v in flat)
