"""Drift end to end: rows from the training distribution raise no alert; shifted rows raise
the alert flag in the API, the report and the metrics, with the features named."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest

from serve_app.models.demo import digits_split

from .test_metrics import scrape, value

pytestmark = pytest.mark.e2e


def send(client, rows: np.ndarray, batch: int = 60) -> None:
    for start in range(0, len(rows), batch):
        body = {"features": rows[start : start + batch].tolist(), "experiment": "drifty"}
        answer = client.post("/predict", json=body)
        assert answer.status_code == 200, answer.text


def drift_after(client, rows_seen: int, timeout_s: float = 20.0) -> dict[str, Any]:
    """The drift view once it has tested a window holding ``rows_seen`` rows."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        drift = client.get("/experiments/drifty/drift").json()
        if drift["count"] >= rows_seen and drift["features"] and drift["n"] == 300:
            time.sleep(0.7)  # one more evaluation of the full window
            return client.get("/experiments/drifty/drift").json()
        time.sleep(0.2)
    raise AssertionError(f"drift never tested {rows_seen} rows: {drift}")


def test_reference_rows_raise_no_alert_and_a_shift_does(client):
    _, holdout, _, _ = digits_split(0)
    send(client, holdout)
    calm = drift_after(client, len(holdout))
    assert calm["reference"] == "model"  # the demo models are stored with a profile
    assert calm["alert"] is False, calm["reasons"]
    assert len(calm["features"]) == 64
    assert calm["thresholds"]["correction"] == "holm"
    assert value(scrape(client), "bandit_experiment_drift_alert", experiment="drifty") == 0.0

    shifted = np.clip(holdout[:300] + 0.35, 0.0, 1.0)
    send(client, shifted)
    alarmed = drift_after(client, len(holdout) + 300)
    assert alarmed["alert"] is True
    assert len(alarmed["drifted_features"]) >= 5
    drifted = [f for f in alarmed["features"] if f["drifted"]]
    assert all(f["psi"] >= 0.2 and f["p_adjusted"] <= 0.01 for f in drifted)

    summary = client.get("/experiments/drifty").json()
    assert summary["drift"]["alert"] is True
    samples = scrape(client)
    assert value(samples, "bandit_experiment_drift_alert", experiment="drifty") == 1.0
    name = drifted[0]["name"]
    assert value(samples, "bandit_feature_drift_psi", experiment="drifty", feature=name) >= 0.2
    report = client.get("/experiments/drifty/report").json()
    assert report["drift"]["alert"] is True


def test_drift_of_an_untracked_experiment_is_404(client):
    answer = client.get("/experiments/split/drift")
    assert answer.status_code == 404
    assert "does not track drift" in answer.json()["message"]
