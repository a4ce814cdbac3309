"""Routing over real HTTP: Thompson sampling learns, a fixed split holds its shares."""

from __future__ import annotations

import math
import time
from collections import Counter

import pytest

from .waiting import wait_for

pytestmark = pytest.mark.e2e

ROW = [[0.0] * 64]


def predict(client, experiment: str, unit_id: str | None = None) -> dict:
    body = {"features": ROW, "experiment": experiment}
    if unit_id is not None:
        body["unit_id"] = unit_id
    response = client.post("/predict", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def summary(client, name: str) -> dict:
    response = client.get(f"/experiments/{name}")
    assert response.status_code == 200, response.text
    return response.json()


def test_predict_response_shape(client):
    body = predict(client, "ts")
    assert set(body) == {
        "predictions",
        "arm",
        "decision_id",
        "propensity",
        "experiment",
        "fallback",
        "forced",
        "model_version",
    }
    assert body["experiment"] == "ts"
    assert body["arm"] in {"logreg", "forest"}
    assert len(body["predictions"]) == 1
    assert isinstance(body["predictions"][0], int)
    assert 0.0 < body["propensity"] <= 1.0
    assert body["fallback"] is False


def test_default_experiment_is_the_first(client):
    response = client.post("/predict", json={"features": ROW})
    assert response.json()["experiment"] == "ts"


def test_batch_of_rows_gets_one_prediction_per_row(client):
    from serve_app.models.demo import digits_split

    _, x_test, _, y_test = digits_split()
    response = client.post("/predict", json={"features": x_test[:20].tolist(), "experiment": "ts"})
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert len(predictions) == 20
    assert sum(p == y for p, y in zip(predictions, y_test[:20], strict=True)) >= 16


def test_thompson_sends_most_later_traffic_to_the_rewarded_arm(client):
    """Feedback rewards forest only; after learning, forest gets most requests."""
    for _ in range(150):
        decision = predict(client, "ts")
        reward = 1.0 if decision["arm"] == "forest" else 0.0
        response = client.post(
            "/feedback", json={"decision_id": decision["decision_id"], "reward": reward}
        )
        assert response.status_code == 200, response.text
    time.sleep(0.2)  # one sync interval for the router to take the merged posterior
    later = Counter(predict(client, "ts")["arm"] for _ in range(100))
    assert later["forest"] >= 90, later
    state = summary(client, "ts")
    arms = {arm["name"]: arm for arm in state["arms"]}
    assert arms["forest"]["prob_best"] > 0.99
    assert arms["forest"]["weight"] > 0.95
    assert arms["forest"]["reward_mean"] == 1.0
    assert arms["logreg"]["reward_mean"] == 0.0
    assert arms["forest"]["feedback"] + arms["logreg"]["feedback"] >= 150
    assert math.isclose(sum(arm["weight"] for arm in state["arms"]), 1.0, abs_tol=1e-9)


def test_fixed_split_stays_within_its_shares(client):
    n = 600
    arms = Counter(predict(client, "split")["arm"] for _ in range(n))
    # 0.7 / 0.3 split: binomial standard deviation sqrt(n p (1-p)) ~ 11.2; allow 4 sigma.
    sigma = math.sqrt(n * 0.7 * 0.3)
    assert abs(arms["logreg"] - 0.7 * n) <= 4 * sigma, arms
    state = summary(client, "split")
    weights = {arm["name"]: arm["weight"] for arm in state["arms"]}
    assert weights == pytest.approx({"logreg": 0.7, "forest": 0.3}, abs=1e-12)


def test_fixed_split_keeps_a_unit_on_one_arm(client):
    for unit in ("alice", "bob", "carol", "dave"):
        seen = {predict(client, "split", unit_id=unit)["arm"] for _ in range(15)}
        assert len(seen) == 1, (unit, seen)
    units = Counter(predict(client, "split", unit_id=f"user-{i}")["arm"] for i in range(400))
    sigma = math.sqrt(400 * 0.7 * 0.3)
    assert abs(units["logreg"] - 280) <= 4 * sigma, units


def test_requests_are_counted_after_a_sync(client):
    before = {arm["name"]: arm["requests"] for arm in summary(client, "short")["arms"]}
    for _ in range(10):
        predict(client, "short")

    def counted() -> bool:
        after = summary(client, "short")["arms"]
        return sum(arm["requests"] for arm in after) - sum(before.values()) == 10

    assert wait_for(counted)


def test_experiment_list_and_health(client):
    listing = client.get("/experiments").json()["experiments"]
    # the configured experiments, in config order (tests may create more at runtime)
    assert [e["name"] for e in listing][:9] == [
        "ts",
        "sticky",
        "split",
        "short",
        "revenue",
        "flaky",
        "control",
        "canary",
        "durable",
    ]
    for experiment in listing:
        assert {"name", "policy", "status", "arms"} <= set(experiment)
        for arm in experiment["arms"]:
            assert {"name", "requests", "feedback", "reward_mean", "weight", "prob_best"} <= set(
                arm
            )
    health = client.get("/healthz").json()
    assert health["status"] == "ok"
    assert health["state_reachable"] is True
    docs = client.get("/docs")
    assert docs.status_code == 200
    schema = client.get("/openapi.json").json()
    assert {"/predict", "/feedback", "/experiments", "/experiments/{name}"} <= set(schema["paths"])


def test_continuous_rewards(client):
    """A continuous arm needs 2 rewards for a posterior; the 0.1 floor makes 2 of 400 draws
    all but certain (P(fewer) < 1e-15), so the loop stops once each arm has them."""
    rewarded = {"logreg": 0, "mlp": 0}
    for sent in range(400):
        if sent >= 40 and min(rewarded.values()) >= 2:
            break
        decision = predict(client, "revenue")
        reward = 25.5 if decision["arm"] == "mlp" else -3.0
        response = client.post(
            "/feedback", json={"decision_id": decision["decision_id"], "reward": reward}
        )
        assert response.status_code == 200, response.text
        rewarded[decision["arm"]] += 1
    assert min(rewarded.values()) >= 2, rewarded
    arms = {arm["name"]: arm for arm in summary(client, "revenue")["arms"]}
    assert arms["mlp"]["reward_mean"] == 25.5
    assert arms["logreg"]["reward_mean"] == -3.0
    # floor 0.1 keeps the loser at >= 10 % of the traffic
    assert arms["logreg"]["weight"] >= 0.1 - 1e-12
    assert arms["mlp"]["prob_best"] > 0.99


def test_stored_assignments_keep_a_unit_on_its_first_arm(client, app_args):
    """epsilon 0.5 would move a unit around; stored assignments keep it on its first arm."""
    from serve_app.state.store import ExperimentStore

    for unit in ("ann", "ben", "cat"):
        arms = {predict(client, "sticky", unit_id=unit)["arm"] for _ in range(12)}
        assert len(arms) == 1, (unit, arms)
    spread = Counter(predict(client, "sticky", unit_id=f"unit-{i}")["arm"] for i in range(60))
    assert len(spread) == 2, spread  # new units still go to both arms
    store = ExperimentStore(f"sqlite:///{app_args['data_dir']}/experiments.db")
    stored = store.assign("sticky", "ann", "not-this-arm", 0.0, 1)
    store.close()
    assert stored[0] == predict(client, "sticky", unit_id="ann")["arm"]
