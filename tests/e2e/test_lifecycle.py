"""The automated lifecycle end to end: traffic and feedback over HTTP until the app promotes a
winner, rolls a harmful arm back, walks a canary up its ramp, and starts a draft; each outcome
is checked in the audit log, the report and the MLflow run (and registry alias)."""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from .conftest import CONTROL_TOKEN
from .waiting import wait_for

pytestmark = pytest.mark.e2e

ROW = [[0.0] * 64]
AUTH = {"Authorization": f"Bearer {CONTROL_TOKEN}"}


def drive(
    client: httpx.Client,
    experiment: str,
    rewards: dict[str, float],
    *,
    metrics: dict[str, float] | None = None,
    until: Any,
    max_requests: int = 1500,
    seed: int = 0,
    decisions: list[tuple[int, str]] | None = None,
) -> int:
    """Send predictions and Bernoulli feedback (rate per arm; ``metrics``: a Bernoulli
    ``refund`` rate per arm) until ``until(summary)`` holds. Returns the requests sent;
    ``decisions`` collects (revision, arm) of every answer."""
    rng = np.random.default_rng(seed)
    for sent in range(1, max_requests + 1):
        decision = client.post("/predict", json={"features": ROW, "experiment": experiment})
        assert decision.status_code == 200, decision.text
        body = decision.json()
        if decisions is not None and body["propensity"] < 1.0:  # routed by the split
            decisions.append((revision_of(body["decision_id"]), body["arm"]))
        feedback: dict[str, Any] = {
            "decision_id": body["decision_id"],
            "reward": float(rng.random() < rewards[body["arm"]]),
        }
        if metrics is not None:
            feedback["metrics"] = {"refund": float(rng.random() < metrics[body["arm"]])}
        answer = client.post("/feedback", json=feedback)
        assert answer.status_code == 200, answer.text
        if sent % 20 == 0 and until(client.get(f"/experiments/{experiment}").json()):
            return sent
    raise AssertionError(f"{experiment}: condition not met after {max_requests} requests")


def revision_of(decision_id: str) -> int:
    import base64
    import json

    body = decision_id.split(".")[2]
    return int(json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))["r"])


def audit_actions(client: httpx.Client, experiment: str) -> list[dict[str, Any]]:
    entries = client.get(f"/experiments/{experiment}/audit", headers=AUTH).json()
    return [entry for entry in entries if entry["actor"] == "lifecycle"]


def mlflow_client(demo_store: dict[str, Any]) -> MlflowClient:
    uri = demo_store["tracking_uri"]
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def mlflow_run(demo_store: dict[str, Any], run_id: str) -> Any:
    return mlflow_client(demo_store).get_run(run_id)


def test_stopping_rule_promotes_the_winner(client, demo_store):
    def concluded(summary: dict[str, Any]) -> bool:
        return summary["status"] == "concluded"

    drive(client, "auto-promote", {"logreg": 0.3, "forest": 0.9}, until=concluded)
    summary = client.get("/experiments/auto-promote").json()
    assert (summary["outcome"], summary["winner"]) == ("promoted", "forest")
    assert {arm["name"]: arm["weight"] for arm in summary["arms"]} == {
        "logreg": 0.0,
        "forest": 1.0,
    }
    promote = [e for e in audit_actions(client, "auto-promote") if e["action"] == "promote"]
    assert len(promote) == 1
    assert "stopping rule" in promote[0]["detail"]

    run_entry = wait_for(
        lambda: [e for e in audit_actions(client, "auto-promote") if e["action"] == "mlflow_run"]
    )
    report = client.get("/experiments/auto-promote/report", headers=AUTH).json()
    run_id = report["mlflow_run_id"]
    assert run_id
    assert run_id in run_entry[0]["detail"]
    assert report["outcome"] == "promoted"
    assert report["stopping"]["met"] is True
    assert report["stopping"]["winner"] == "forest"
    assert any(entry["action"] == "promote" for entry in report["audit"])
    forest = next(row for row in report["comparisons"] if row["arm"] == "forest")
    assert forest["frequentist"]["estimate"] > 0
    assert forest["bayesian"]["chance_to_win"] > 0.95

    run = mlflow_run(demo_store, run_id)
    assert run.data.tags["bandit_serve.outcome"] == "promoted"
    assert run.data.tags["bandit_serve.winner"] == "forest"
    champion = mlflow_client(demo_store).get_model_version_by_alias("digits-forest", "champion")
    assert demo_store["uris"]["forest"].endswith(f"/{champion.version}")


def test_guardrail_breach_rolls_the_arm_back(client, demo_store):
    def rolled_back(summary: dict[str, Any]) -> bool:
        return summary["status"] == "concluded"

    drive(
        client,
        "guarded",
        {"logreg": 0.5, "forest": 0.5},
        metrics={"logreg": 0.05, "forest": 0.6},
        until=rolled_back,
        seed=1,
    )
    summary = client.get("/experiments/guarded").json()
    assert (summary["outcome"], summary["winner"]) == ("rolled_back", "logreg")
    forest = next(arm for arm in summary["arms"] if arm["name"] == "forest")
    assert forest["excluded"] is True
    assert "refund" in forest["exclusion_reason"]
    actions = [entry["action"] for entry in audit_actions(client, "guarded")]
    assert actions[:2] == ["guardrail_rollback", "rollback"]
    wait_for(lambda: client.get("/experiments/guarded").json()["mlflow_run_id"])

    report = client.get("/experiments/guarded/report", headers=AUTH).json()
    breach = [g for g in report["guardrails"] if g["breached"]]
    assert [(g["arm"], g["rule"]) for g in breach] == [("forest", "metric:refund")]
    assert {entry["action"] for entry in report["audit"]} >= {"guardrail_rollback", "rollback"}
    run = mlflow_run(demo_store, report["mlflow_run_id"])
    assert run.data.tags["bandit_serve.outcome"] == "rolled_back"
    for _ in range(10):  # all traffic back on the control
        decision = client.post("/predict", json={"features": ROW, "experiment": "guarded"})
        assert decision.json()["arm"] == "logreg"


def test_ramp_walks_the_canary_to_promotion(client):
    first = client.get("/experiments/ramped").json()
    assert {arm["name"]: arm["weight"] for arm in first["arms"]} == pytest.approx(
        {"logreg": 0.9, "forest": 0.1}
    )
    decisions: list[tuple[int, str]] = []
    drive(
        client,
        "ramped",
        {"logreg": 0.5, "forest": 0.5},
        until=lambda summary: summary["status"] == "concluded",
        decisions=decisions,
    )
    summary = client.get("/experiments/ramped").json()
    assert (summary["outcome"], summary["winner"]) == ("promoted", "forest")
    steps = [e for e in audit_actions(client, "ramped") if e["action"] == "set_weights"]
    assert len(steps) == 1  # 10 -> 50; the step to 100 % is the promotion
    assert "ramp forest to 50%" in steps[0]["detail"]
    # requests per step: each step held until the canary had its 15 routed requests, and the
    # canary got its step's share (within 4 standard deviations)
    first_revision = decisions[0][0]
    for revision, share in ((first_revision, 0.1), (first_revision + 1, 0.5)):
        arms = [arm for r, arm in decisions if r == revision]
        canary = arms.count("forest")
        assert canary >= 15, (revision, canary, len(arms))
        spread = 4 * (share * (1 - share) / len(arms)) ** 0.5
        assert abs(canary / len(arms) - share) <= spread, (revision, canary, len(arms))
    actions = [entry["action"] for entry in audit_actions(client, "ramped")]
    assert actions.index("promote") > actions.index("set_weights")


def test_a_draft_routes_to_the_control_until_started(client):
    summary = client.get("/experiments/drafted").json()
    assert summary["status"] == "draft"
    decision = client.post("/predict", json={"features": ROW, "experiment": "drafted"}).json()
    assert (decision["arm"], decision["propensity"]) == ("logreg", 1.0)
    started = client.post("/experiments/drafted/start", json={"reason": "go"}, headers=AUTH)
    assert started.status_code == 200, started.text
    assert started.json()["status"] == "running"
    assert started.json()["started_at"] is not None
    again = client.post("/experiments/drafted/start", headers=AUTH)
    assert again.status_code == 409
    arms = {
        client.post("/predict", json={"features": ROW, "experiment": "drafted"}).json()["arm"]
        for _ in range(40)
    }
    assert arms == {"logreg", "forest"}
    stopped = client.post("/experiments/drafted/stop", json={"reason": "done"}, headers=AUTH)
    assert (stopped.json()["status"], stopped.json()["outcome"]) == ("concluded", "stopped")
