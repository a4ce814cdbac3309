"""Bad input gets a 4xx naming the field, never a 5xx."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.e2e

GOOD_ROW = [0.0] * 64


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (b'{"features": [[1, 2]', 422, "body"),  # malformed JSON
        (b"[]", 422, "body"),
        (b'{"features": "abc"}', 422, "features"),
        (b'{"features": [1, 2, 3]}', 422, "features[0]"),
        (b'{"features": []}', 422, "features"),
        (b'{"features": [[]]}', 422, "features[0]"),
        (b'{"features": [["a"] ]}', 422, "features[0][0]"),
        (b'{"features": [[NaN]]}', 422, "features[0][0]"),
        (b'{"features": [[Infinity]]}', 422, "features[0][0]"),
        (b'{"features": [[1e999]]}', 422, "features[0][0]"),
        (b'{"feature": [[1]]}', 422, "features"),
        (b'{"features": [[1]], "unit_id": 5}', 422, "unit_id"),
        (b'{"features": [[1]], "unit_id": ""}', 422, "unit_id"),
        (b'{"features": [[1]], "extra": 1}', 422, "extra"),
        (b'{"features": [[1]], "experiment": "nope"}', 404, "experiment"),
        (b'{"features": [[1, 2]], "experiment": "ts"}', 422, "features[0]"),
    ],
)
def test_predict_rejects(client, body, status, field):
    response = client.post("/predict", content=body, headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    assert response.json()["field"] == field, response.json()


def test_ragged_rows(client):
    response = client.post("/predict", json={"features": [GOOD_ROW, GOOD_ROW[:10]]})
    assert response.status_code == 422
    assert response.json()["field"] == "features[1]"


def test_oversized_batch_is_413(client):
    response = client.post("/predict", json={"features": [GOOD_ROW] * 65})  # limit 64
    assert response.status_code == 413
    assert response.json()["field"] == "features"
    assert "at most 64" in response.json()["message"]


def test_oversized_body_is_413(client):
    response = client.post(
        "/predict", content=b" " * (5 * 1024 * 1024), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["field"] == "body"


@pytest.mark.parametrize(
    "body",
    [
        b"{}",
        b'{"decision_id": 12, "reward": 1}',
        b'{"decision_id": "", "reward": 1}',
        b'{"reward": 1}',
        b"garbage",
    ],
)
def test_feedback_rejects(client, body):
    response = client.post("/feedback", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert response.json()["field"] in {"decision_id", "reward", "body"}


def test_unknown_experiment_summary_is_404(client):
    response = client.get("/experiments/nope")
    assert response.status_code == 404
    assert "known: ts, sticky, split, short, revenue" in response.json()["message"]


def test_wrong_method_is_4xx(client):
    assert client.get("/predict").status_code == 405
