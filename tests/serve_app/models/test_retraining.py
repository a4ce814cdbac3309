"""The retraining function's side of the closed loop, on a real MLflow store: the demo's
function trains on logged rows and registers a version that beats the champion on drifted
inputs (or, with label noise, does not); the app writes the lineage on the version and its run;
a function that fails or returns something else is refused with a reason."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from serve_app.models.demo import digits_split
from serve_app.models.retraining import (
    LINEAGE_PREFIX,
    LoggedRows,
    RetrainError,
    RetrainRequest,
    run_retraining,
    tag_conclusion,
)

SHIFT = 1.5  # every pixel brighter by 1.5 (of 0..1): the champion's accuracy falls to ~0.4
NAME = "retrain-digits"


@pytest.fixture(scope="module")
def champion(demo_store: dict[str, Any]) -> dict[str, Any]:
    """Version 1 of ``retrain-digits``: a copy of the demo logistic regression."""
    from serve_app.models.registry import mlflow_uris

    tracking = demo_store["tracking_uri"]
    client = MlflowClient(tracking, tracking)
    with mlflow_uris(tracking):
        version = client.copy_model_version(demo_store["uris"]["logreg"], NAME)
    return {"uri": f"models:/{NAME}/{version.version}", "tracking": tracking, "client": client}


def logged_rows(features: np.ndarray, labels: np.ndarray) -> LoggedRows:
    records = [
        {
            "decision_key": f"k{i:05d}",
            "features": [row.tolist()],
            "predictions": [0],
            "label": int(label),
            "arm": "current",
            "reward": 0.0,
            "propensity": 1.0,
            "issued_at": 1000.0 + i,
        }
        for i, (row, label) in enumerate(zip(features, labels, strict=True))
    ]
    return LoggedRows.from_log(records)


def request_for(champion: dict[str, Any], rows: LoggedRows, **params: Any) -> RetrainRequest:
    return RetrainRequest(
        experiment="loop",
        trigger="concept_drift",
        champion_uri=champion["uri"],
        tracking_uri=champion["tracking"],
        rows=rows,
        params=params,
        lineage={"trigger": "concept_drift", "parent_model_uri": champion["uri"], **rows.lineage()},
    )


def accuracy(uri: str, tracking: str, features: np.ndarray, labels: np.ndarray) -> float:
    from serve_app.models.loading import load_model

    model = load_model(uri, tracking)
    return float(np.mean(np.asarray(model.predict(features)).astype(int) == labels))


def test_the_demo_function_learns_the_drifted_inputs_and_the_lineage_is_written(champion):
    _, x_test, _, y_test = digits_split(0)
    drifted = x_test + SHIFT
    train, held_out = slice(0, 400), slice(400, None)
    rows = logged_rows(drifted[train], y_test[train])
    result = run_retraining("serve_app.models.demo:retrain_digits", request_for(champion, rows))
    uri = result["model_uri"]
    assert uri.startswith(f"models:/{NAME}/")
    assert uri != champion["uri"]
    before = accuracy(champion["uri"], champion["tracking"], drifted[held_out], y_test[held_out])
    after = accuracy(uri, champion["tracking"], drifted[held_out], y_test[held_out])
    assert before < 0.6, before  # measured 0.41
    assert after > 0.9, after  # measured 0.96

    name, version = uri.removeprefix("models:/").split("/")
    client: MlflowClient = champion["client"]
    registered = client.get_model_version(name, version)
    tags = registered.tags
    assert tags[f"{LINEAGE_PREFIX}rows"] == "400"
    assert tags[f"{LINEAGE_PREFIX}rows_sha256"] == rows.digest()
    assert tags[f"{LINEAGE_PREFIX}rows_from"] == "1000.000"
    assert tags[f"{LINEAGE_PREFIX}parent_model_uri"] == champion["uri"]
    run = client.get_run(registered.run_id)
    assert run.data.tags[f"{LINEAGE_PREFIX}trigger"] == "concept_drift"

    tag_conclusion(champion["tracking"], uri, "conclusion-run-id", "won")
    tags = client.get_model_version(name, version).tags
    assert tags[f"{LINEAGE_PREFIX}conclusion_run"] == "conclusion-run-id"
    assert client.get_run(registered.run_id).data.tags[f"{LINEAGE_PREFIX}outcome"] == "won"


def test_label_noise_makes_the_worse_model_the_rollback_demo_needs(champion):
    _, x_test, _, y_test = digits_split(0)
    drifted = x_test + 0.8  # milder drift: the champion still gets ~0.83
    rows = logged_rows(drifted[:400], y_test[:400])
    noisy = request_for(champion, rows, label_noise=0.8, seed=1)
    uri = run_retraining("serve_app.models.demo:retrain_digits", noisy)["model_uri"]
    before = accuracy(champion["uri"], champion["tracking"], drifted[400:], y_test[400:])
    after = accuracy(uri, champion["tracking"], drifted[400:], y_test[400:])
    assert after < before - 0.15, (before, after)


def test_the_same_rows_hash_the_same_and_a_change_does_not():
    features, labels = np.arange(12.0).reshape(4, 3), np.array([1, 2, 3, 4])
    first, second = logged_rows(features, labels), logged_rows(features, labels)
    assert first.digest() == second.digest()
    changed = labels.copy()
    changed[2] = 9
    assert logged_rows(features, changed).digest() != first.digest()
    assert first.lineage()["rows"] == "4"
    assert first.lineage()["rows_to"] == "1003.000"


FUNCTIONS = """
def not_a_uri(request):
    return "a model"


def the_champion(request):
    return request.champion_uri


def raises(request):
    raise ValueError("no labels in the rows")
"""


def test_a_function_that_fails_or_returns_no_new_version_is_refused(
    champion, tmp_path, monkeypatch
):
    (tmp_path / "retrain_functions.py").write_text(FUNCTIONS)
    monkeypatch.syspath_prepend(str(tmp_path))
    rows = logged_rows(np.zeros((3, 64)), np.array([1, 2, 3]))
    request = request_for(champion, rows)
    with pytest.raises(RetrainError, match="cannot import"):
        run_retraining("no_such_module_here:train", request)
    with pytest.raises(RetrainError, match="has no function"):
        run_retraining("serve_app.models.demo:no_such_function", request)
    with pytest.raises(RetrainError, match="returned 'a model'"):
        run_retraining("retrain_functions:not_a_uri", request)
    with pytest.raises(RetrainError, match="the champion"):
        run_retraining("retrain_functions:the_champion", request)
    with pytest.raises(RetrainError, match="raised ValueError"):
        run_retraining("retrain_functions:raises", request)
