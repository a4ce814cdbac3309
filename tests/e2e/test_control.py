"""The control plane: bearer tokens, pause/resume, weights, promote, roll back, audit log."""

from __future__ import annotations

from collections import Counter

import pytest

from .conftest import CONTROL_TOKEN

pytestmark = pytest.mark.e2e

ROW = [[0.0] * 64]
AUTH = {"Authorization": f"Bearer {CONTROL_TOKEN}"}


def arms_routed(client, experiment: str, n: int = 40) -> Counter:
    counter: Counter = Counter()
    for _ in range(n):
        body = client.post("/predict", json={"features": ROW, "experiment": experiment}).json()
        counter[body["arm"]] += 1
    return counter


def test_control_needs_a_valid_bearer_token(client):
    missing = client.post("/experiments/control/pause", json={})
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    wrong = client.post(
        "/experiments/control/pause", json={}, headers={"Authorization": "Bearer nope"}
    )
    assert wrong.status_code == 403
    assert "nope" not in wrong.text
    assert client.get("/experiments/control/audit").status_code == 401
    assert client.get("/experiments/control").json()["status"] == "running"


def test_pause_and_resume(client):
    paused = client.post("/experiments/control/pause", json={"reason": "incident 42"}, headers=AUTH)
    assert paused.status_code == 200, paused.text
    assert paused.json()["status"] == "paused"
    assert arms_routed(client, "control") == Counter({"logreg": 40})  # the default arm only
    decision = client.post("/predict", json={"features": ROW, "experiment": "control"}).json()
    assert decision["propensity"] == 1.0
    learned = client.post("/feedback", json={"decision_id": decision["decision_id"], "reward": 1})
    assert learned.json()["learned"] is False
    again = client.post("/experiments/control/pause", headers=AUTH)
    assert again.status_code == 409
    resumed = client.post("/experiments/control/resume", headers=AUTH)
    assert resumed.json()["status"] == "running"
    assert len(arms_routed(client, "control", 60)) == 2


def test_weights_change_starts_a_new_revision(client):
    revision = client.get("/experiments/control").json()["revision"]
    changed = client.put(
        "/experiments/control/weights",
        json={"weights": {"logreg": 0.0, "forest": 1.0}, "reason": "ramp"},
        headers=AUTH,
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["revision"] == revision + 1
    assert {a["name"]: a["weight"] for a in changed.json()["arms"]} == {
        "logreg": 0.0,
        "forest": 1.0,
    }
    assert arms_routed(client, "control") == Counter({"forest": 40})
    bad_sum = client.put(
        "/experiments/control/weights",
        json={"weights": {"logreg": 0.5, "forest": 0.6}},
        headers=AUTH,
    )
    assert bad_sum.status_code == 422
    assert "add up to 1" in bad_sum.json()["message"]
    bad_arms = client.put(
        "/experiments/control/weights", json={"weights": {"svm": 1.0}}, headers=AUTH
    )
    assert bad_arms.status_code == 422
    bandit = client.put(
        "/experiments/ts/weights", json={"weights": {"logreg": 1, "forest": 0}}, headers=AUTH
    )
    assert bandit.status_code == 422
    assert "only a fixed split takes weights" in bandit.json()["message"]


def test_promote_concludes_with_the_winner(client):
    promoted = client.post(
        "/experiments/control/promote", json={"arm": "forest", "reason": "won"}, headers=AUTH
    )
    assert promoted.status_code == 200, promoted.text
    body = promoted.json()
    assert (body["status"], body["outcome"], body["winner"]) == ("concluded", "promoted", "forest")
    assert arms_routed(client, "control") == Counter({"forest": 40})
    assert client.post("/experiments/control/rollback", headers=AUTH).status_code == 409
    unknown = client.post("/experiments/nope/promote", json={"arm": "x"}, headers=AUTH)
    assert unknown.status_code == 404


def test_rollback_sends_everything_to_the_control_arm(client):
    rolled = client.post("/experiments/canary/rollback", json={"reason": "p95"}, headers=AUTH)
    assert rolled.status_code == 200, rolled.text
    assert rolled.json()["outcome"] == "rolled_back"
    assert arms_routed(client, "canary") == Counter({"logreg": 40})


def test_audit_log_records_who_did_what_without_the_secret(client, app_args):
    from serve_app.config import parse_config
    from serve_app.state.keys import load_keyring
    from serve_app.state.store import ExperimentStore

    config = parse_config(app_args)
    store = ExperimentStore(config.store_url)
    fingerprint = load_keyring(config, store).fingerprint
    store.close()

    response = client.get("/experiments/control/audit", headers=AUTH)
    assert response.status_code == 200
    entries = response.json()
    actions = [entry["action"] for entry in entries]
    for action in ("create", "pause", "resume", "set_weights", "promote"):
        assert action in actions, actions
    # the conclusion's MLflow record is written by the app itself
    recorded = {entry["actor"] for entry in entries if entry["action"] == "mlflow_run"}
    assert recorded <= {"lifecycle"}
    changes = [entry for entry in entries if entry["action"] not in ("create", "mlflow_run")]
    assert {entry["actor"] for entry in changes} == {fingerprint(CONTROL_TOKEN)}
    assert CONTROL_TOKEN not in response.text
    assert "incident 42" in next(e["detail"] for e in entries if e["action"] == "pause")


def test_update_changes_policy_parameters_in_a_new_revision(client):
    revision = client.get("/experiments/sticky").json()["revision"]
    updated = client.patch(
        "/experiments/sticky",
        json={"policy_params": {"floor": 0.25}, "description": "floor up", "reason": "explore"},
        headers=AUTH,
    )
    assert updated.status_code == 200, updated.text
    body = updated.json()
    assert body["revision"] == revision + 1
    assert body["policy_params"] == {"floor": 0.25}
    assert body["description"] == "floor up"
    assert min(arm["weight"] for arm in body["arms"]) >= 0.25 - 1e-12
    bad = client.patch("/experiments/sticky", json={"policy_params": {"floor": 0.9}}, headers=AUTH)
    assert bad.status_code == 422
    assert "floor" in bad.json()["message"]
    typo = client.patch("/experiments/sticky", json={"polcy_params": {}}, headers=AUTH)
    assert typo.status_code == 422
    assert client.patch("/experiments/sticky", json={}).status_code == 401


def test_create_an_experiment_at_runtime(client):
    spec = {
        "name": "created",
        "policy": {"name": "fixed"},
        "arms": [
            {
                "name": "a",
                "model_uri": client.get("/experiments/ts").json()["arms"][0]["model_uri"],
                "weight": 0.5,
            },
            {
                "name": "b",
                "model_uri": client.get("/experiments/ts").json()["arms"][1]["model_uri"],
                "weight": 0.5,
            },
        ],
        "reason": "new test",
    }
    assert client.post("/experiments", json=spec).status_code == 401
    created = client.post("/experiments", json=spec, headers=AUTH)
    assert created.status_code == 201, created.text
    assert created.json()["revision"] == 1
    counts = arms_routed(client, "created", 60)
    assert set(counts) == {"a", "b"}
    duplicate = client.post("/experiments", json=spec, headers=AUTH)
    assert duplicate.status_code == 409
    unknown_model = {**spec, "name": "created2"}
    unknown_model["arms"] = [
        {**spec["arms"][0], "model_uri": "models:/never-deployed/1"},
        spec["arms"][1],
    ]
    refused = client.post("/experiments", json=unknown_model, headers=AUTH)
    assert refused.status_code == 422
    message = refused.json()["message"]  # any model URI loads at runtime; this one cannot
    assert message.startswith("arms[0] (a):"), message
    assert "'never-deployed' does not exist" in message
    assert client.get("/experiments/created2").status_code == 404  # nothing half-created
    invalid = client.post("/experiments", json={**spec, "name": "bad name"}, headers=AUTH)
    assert invalid.status_code == 422
    audit = client.get("/experiments/created/audit", headers=AUTH).json()
    assert [entry["action"] for entry in audit] == ["create"]
