"""Fallback, circuit breaking, forced arms and shadow traffic over real HTTP."""

from __future__ import annotations

import time

import pytest

from .conftest import QA_TOKEN

pytestmark = pytest.mark.e2e

ROW = [[0.0] * 64]


def summary(client, name: str) -> dict:
    return client.get(f"/experiments/{name}").json()


def arms_of(client, name: str) -> dict[str, dict]:
    return {arm["name"]: arm for arm in summary(client, name)["arms"]}


def post_predict(client, experiment: str, **extra):
    return client.post("/predict", json={"features": ROW, "experiment": experiment, **extra})


def test_failing_arm_falls_back_then_its_circuit_opens(client):
    """'broken' always raises: the default arm answers, then the breaker stops routing there."""
    bodies: list[dict] = []
    direct_run = 0
    while len(bodies) < 150 and direct_run < 10:
        response = post_predict(client, "flaky")
        assert response.status_code == 200, response.text  # no client request fails
        body = response.json()
        bodies.append(body)
        # once the circuit is open, every answer comes straight from logreg, with the
        # propensity renormalised over the healthy arms (0.5 / 0.5 = 1)
        opened = not body["fallback"] and body["propensity"] == 1.0
        direct_run = direct_run + 1 if opened else 0
    assert direct_run == 10, [(b["fallback"], b["propensity"]) for b in bodies]
    assert {body["arm"] for body in bodies} == {"logreg"}
    fallbacks = [body for body in bodies if body["fallback"]]
    assert len(fallbacks) >= 3  # failure_threshold
    circuits = client.get("/healthz").json()["circuits"]["flaky"]
    assert circuits["broken"] in {"open", "half-open"}
    assert circuits["logreg"] == "closed"
    # feedback on a fallback answer is stored but not learned
    response = client.post(
        "/feedback", json={"decision_id": fallbacks[0]["decision_id"], "reward": 1.0}
    )
    assert response.status_code == 200
    assert response.json()["learned"] is False
    time.sleep(0.2)
    arms = arms_of(client, "flaky")
    assert arms["broken"]["errors"] >= 3
    assert arms["broken"]["fallbacks"] == arms["broken"]["errors"]
    assert arms["broken"]["feedback"] == 0


def test_open_circuit_is_probed_after_the_cooldown(client):
    for _ in range(5):
        post_predict(client, "flaky")
    errors_before = arms_of(client, "flaky")["broken"]["errors"]
    time.sleep(2.2)  # cooldown_s: 2
    for _ in range(20):
        assert post_predict(client, "flaky").status_code == 200
    time.sleep(0.2)
    # the half-open probe hit the broken arm once more (then opened again)
    assert arms_of(client, "flaky")["broken"]["errors"] > errors_before


QA = {"Authorization": f"Bearer {QA_TOKEN}"}


def test_forced_arm_by_header_and_field(client):
    before = arms_of(client, "split")
    by_header = client.post(
        "/predict",
        json={"features": ROW, "experiment": "split"},
        headers={"X-Bandit-Arm": "forest", **QA},
    ).json()
    by_field = client.post(
        "/predict", json={"features": ROW, "experiment": "split", "arm": "forest"}, headers=QA
    ).json()
    for body in (by_header, by_field):
        assert body["arm"] == "forest"
        assert body["forced"] is True
        assert body["propensity"] == 1.0
    feedback = client.post("/feedback", json={"decision_id": by_field["decision_id"], "reward": 1})
    assert feedback.json()["learned"] is False
    time.sleep(0.2)
    after = arms_of(client, "split")
    assert after["forest"]["forced"] == before["forest"]["forced"] + 2
    assert after["forest"]["requests"] == before["forest"]["requests"]  # not a policy decision
    assert after["forest"]["feedback"] == before["forest"]["feedback"]  # kept out of learning


def test_forcing_an_unknown_arm_is_422(client):
    response = client.post(
        "/predict", json={"features": ROW, "experiment": "split", "arm": "svm"}, headers=QA
    )
    assert response.status_code == 422
    assert response.json()["field"] == "arm"
    assert "arms: logreg, forest" in response.json()["message"]


def test_shadow_traffic_is_mirrored_and_measured(client):
    from serve_app.models.demo import digits_split

    _, x_test, _, _ = digits_split()

    def mirrored() -> dict:
        return summary(client, "revenue")["shadows"][0]

    def send(rows) -> None:
        for index in rows:
            body = {"features": x_test[index : index + 1].tolist(), "experiment": "revenue"}
            response = client.post("/predict", json=body)
            assert response.status_code == 200
            assert response.json()["arm"] in {"logreg", "mlp"}  # never the shadow

    def settle(expected: int) -> dict:
        deadline = time.monotonic() + 10
        while mirrored()["requests"] < expected and time.monotonic() < deadline:
            time.sleep(0.2)
        return mirrored()

    # warm-up: an earlier test killed and restarted the shared forest replica
    initial = mirrored()["requests"]
    send(range(5))
    before = settle(initial + 5)
    send(range(5, 35))
    after = settle(before["requests"] + 30)
    assert after["name"] == "forest-shadow"
    assert after["requests"] - before["requests"] == 30  # percent: 100
    assert after["errors"] == before["errors"]
    assert after["mean_latency_ms"] > 0
    # three ~97 %-accurate digit models agree on most hold-out rows
    agreed = after["agree_rows"] - before["agree_rows"]
    assert after["rows"] - before["rows"] == 30
    assert 0.85 <= agreed / 30 <= 1.0
