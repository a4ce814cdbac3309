"""CUPED covariates, ratio metrics and planning over real HTTP against a real Ray Serve.

One experiment is created through the control plane on the deployed demo models; feedback
carries a pre-experiment covariate and two metrics (revenue, sessions); the report's
CUPED and ratio-metric numbers are checked against a direct computation on what was sent
(statsmodels OLS for theta, the delta method's closed form), the plan endpoint and the CLI
answer, bad inputs get a 422 naming the field, and the sums survive a state restart.
"""

from __future__ import annotations

import math
import time
from typing import Any

import httpx
import numpy as np
import pytest
import statsmodels.api as sm
from typer.testing import CliRunner

from .conftest import CONTROL_TOKEN

pytestmark = pytest.mark.e2e

AUTH = {"Authorization": f"Bearer {CONTROL_TOKEN}"}
ROW = [[0.0] * 64]
NAME = "varred"
SENT: dict[str, list[dict[str, float]]] = {}


def spec(client: httpx.Client) -> dict[str, Any]:
    arms = client.get("/experiments/ts").json()["arms"]
    return {
        "name": NAME,
        "reward": "continuous",
        "policy": {"name": "fixed"},
        "metrics": ["revenue", "sessions"],
        "ratio_metrics": [
            {"name": "revenue_per_session", "numerator": "revenue", "denominator": "sessions"}
        ],
        "arms": [
            {"name": "a", "model_uri": arms[0]["model_uri"], "weight": 0.5},
            {"name": "b", "model_uri": arms[1]["model_uri"], "weight": 0.5},
        ],
        "reason": "issue 17 e2e",
    }


def wait_feedback(client: httpx.Client, total: int, timeout_s: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        summary = client.get(f"/experiments/{NAME}").json()
        if sum(arm["feedback"] for arm in summary["arms"]) >= total:
            return summary
        time.sleep(0.2)
    raise TimeoutError("feedback did not reach the summary")


@pytest.fixture(scope="module")
def sent(app_url: str) -> dict[str, list[dict[str, float]]]:
    """Create the experiment and send 80 feedbacks; what was sent, per arm."""
    rng = np.random.default_rng(17)
    with httpx.Client(base_url=app_url, timeout=30) as client:
        created = client.post("/experiments", json=spec(client), headers=AUTH)
        assert created.status_code == 201, created.text
        for _ in range(80):
            answer = client.post("/predict", json={"features": ROW, "experiment": NAME})
            assert answer.status_code == 200, answer.text
            body = answer.json()
            x = float(np.round(rng.normal(10, 3), 6))
            lift = 0.5 if body["arm"] == "b" else 0.0
            y = float(np.round(2.0 + lift + 0.8 * x + rng.normal(0, 1), 6))
            sessions = float(rng.integers(1, 5))
            revenue = float(np.round(sessions * rng.gamma(2.0, 1.0 + lift), 6))
            feedback = client.post(
                "/feedback",
                json={
                    "decision_id": body["decision_id"],
                    "reward": y,
                    "covariate": x,
                    "metrics": {"revenue": revenue, "sessions": sessions},
                },
            )
            assert feedback.status_code == 200, feedback.text
            SENT.setdefault(body["arm"], []).append(
                {"x": x, "y": y, "revenue": revenue, "sessions": sessions}
            )
        wait_feedback(client, 80)
    assert set(SENT) == {"a", "b"}
    return SENT


def _arrays(rows: list[dict[str, float]], *keys: str) -> list[np.ndarray]:
    return [np.array([row[key] for row in rows]) for key in keys]


def test_report_shows_cuped_and_ratio_metrics_as_computed_from_what_was_sent(
    client, sent
):  # fmt: skip
    report = client.get(f"/experiments/{NAME}/report").json()
    assert report["estimator"]["estimator"] == "pooled"
    (cuped,) = report["cuped"]
    x_a, y_a = _arrays(sent["a"], "x", "y")
    x_b, y_b = _arrays(sent["b"], "x", "y")
    assert cuped["units"] == {"a": len(x_a), "b": len(x_b)}
    x, y = np.concatenate([x_a, x_b]), np.concatenate([y_a, y_b])
    theta = sm.OLS(y, sm.add_constant(x)).fit().params[1]
    assert cuped["theta"] == pytest.approx(theta, abs=1e-6)
    m = y_b.mean() - theta * (x_b.mean() - x_a.mean())
    assert cuped["adjusted"]["estimate"] == pytest.approx(m / y_a.mean() - 1, abs=1e-6)
    assert cuped["unadjusted"]["estimate"] == pytest.approx(y_b.mean() / y_a.mean() - 1, abs=1e-6)
    assert cuped["variance_reduction"] > 0.3  # x explains most of y
    assert cuped["adjusted"]["se"] < cuped["unadjusted"]["se"]

    (ratio,) = report["ratio_metrics"]
    stats = {}
    for arm in ("a", "b"):
        num, den = _arrays(sent[arm], "revenue", "sessions")
        r = num.sum() / den.sum()
        stats[arm] = (r, np.var(num - r * den, ddof=1) / den.mean() ** 2, len(num))
        assert ratio["arms"][arm]["value"] == pytest.approx(r, rel=1e-9)
        assert ratio["arms"][arm]["units"] == len(num)
    (r_a, v_a, n_a), (r_b, v_b, n_b) = stats["a"], stats["b"]
    (row,) = ratio["comparisons"]
    assert row["frequentist"]["estimate"] == pytest.approx(r_b / r_a - 1, abs=1e-9)
    se = math.sqrt((r_b / r_a) ** 2 * v_a / n_a + v_b / n_b) / r_a
    assert row["frequentist"]["se"] == pytest.approx(se, rel=1e-6)
    analysis = client.get(f"/experiments/{NAME}").json()["analysis"]
    assert analysis["cuped"] == report["cuped"]
    assert analysis["estimator"] == "pooled"


def test_bad_covariates_and_plan_queries_get_422_naming_the_field(client, sent):
    decision = client.post("/predict", json={"features": ROW, "experiment": NAME}).json()
    for covariate in (1e200, "ten"):
        answer = client.post(
            "/feedback",
            json={"decision_id": decision["decision_id"], "reward": 1.0, "covariate": covariate},
        )
        assert answer.status_code == 422, answer.text
        assert answer.json()["field"] == "covariate"
    for params, field in (
        ({"mde": 0.1, "power": 2}, "query.power"),
        ({}, "query.mde"),
        ({"mde": -1}, "query.mde"),
        ({"mde": 0.1, "alternative": "sideways"}, "query.alternative"),
        ({"mde": 0.1, "sd": 0}, "query.sd"),
    ):
        answer = client.get(f"/experiments/{NAME}/plan", params=params)
        assert answer.status_code == 422, (params, answer.text)
        assert answer.json()["field"] == field
    assert client.get("/experiments/nope/plan", params={"mde": 0.1}).status_code == 404


def test_plan_endpoint_and_cli_answer_from_the_experiment_traffic(client, app_url, sent):
    from serve_app.cli.commands import app
    from serve_app.experiment.planning import Traffic, make_plan

    started = time.monotonic()
    answer = client.get(f"/experiments/{NAME}/plan", params={"mde": 0.1})
    assert time.monotonic() - started < 5.0
    assert answer.status_code == 200, answer.text
    plan = answer.json()
    _, y_a = _arrays(sent["a"], "x", "y")
    inputs = plan["inputs"]
    assert inputs["baseline"] == pytest.approx(y_a.mean(), abs=1e-9)
    assert inputs["sd"] == pytest.approx(np.std(y_a, ddof=1), rel=1e-9)
    assert inputs["daily_traffic"] > 0
    assert inputs["arms"] == 2
    local = make_plan(
        Traffic(inputs["baseline"], inputs["sd"], inputs["daily_traffic"], 2, 0),
        "continuous",
        mde=0.1,
        rule="fixed",
    )
    assert plan["rules"]["fixed"]["n_per_arm"] == local["rules"]["fixed"]["n_per_arm"]
    assert set(plan["rules"]) == {"fixed", "sequential", "bayesian"}
    assert plan["summary"].startswith("To detect a 10% relative lift with 80% power")
    result = CliRunner().invoke(
        app, ["plan", NAME, "--url", app_url, "--mde", "0.1", "--rule", "fixed"],
        env={"COLUMNS": "200"},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "users per arm" in result.output
    assert "decisions/day" in result.output


def test_covariate_and_ratio_sums_survive_a_state_restart(client, sent):
    import ray

    from .test_recovery import replica_actor, wait_running

    before = client.get(f"/experiments/{NAME}").json()["analysis"]
    ray.kill(replica_actor("experiment-state"), no_restart=True)
    wait_running("experiment-state")
    deadline = time.monotonic() + 30
    while True:
        answer = client.get(f"/experiments/{NAME}")
        if answer.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    after = answer.json()["analysis"]
    assert after["cuped"] == before["cuped"]
    assert after["ratio_metrics"] == before["ratio_metrics"]


def test_a_ramp_whose_rates_drift_is_decided_period_weighted(client):
    """Simpson: the canary is 10 points worse in each period, but got most of its traffic in
    the period where every arm converted well; pooled it looks far better."""
    arms = client.get("/experiments/ts").json()["arms"]
    config = {
        "name": "simpson",
        "policy": {"name": "fixed"},
        "arms": [
            {"name": "control", "model_uri": arms[0]["model_uri"], "weight": 0.9},
            {"name": "canary", "model_uri": arms[1]["model_uri"], "weight": 0.1},
        ],
        "stopping": {"rule": "sequential", "min_samples_per_arm": 5, "action": "recommend"},
        "reason": "issue 17 Simpson e2e",
    }
    assert client.post("/experiments", json=config, headers=AUTH).status_code == 201
    # 10 points worse in each period (well beyond the rounding of a few dozen samples)
    rates = [{"control": 0.40, "canary": 0.30}, {"control": 0.80, "canary": 0.70}]
    # what was sent per revision (the period the decision id carries) and arm
    sent: dict[int, dict[str, list[float]]] = {}
    for ramped in (False, True):
        if ramped:
            changed = client.put(
                "/experiments/simpson/weights",
                json={"weights": {"control": 0.1, "canary": 0.9}, "reason": "ramp"},
                headers=AUTH,
            )
            assert changed.status_code == 200, changed.text
            time.sleep(0.5)  # the routers route on the new weights after their next sync
        for _ in range(120):
            body = client.post("/predict", json={"features": ROW, "experiment": "simpson"}).json()
            arm = body["arm"]
            # the rates follow the period the decision was routed in (a router may still route
            # on the old weights for a moment after the change)
            revision = _revision(body["decision_id"])
            got = sent.setdefault(revision, {"control": [], "canary": []})[arm]
            rate = rates[min(sorted(sent).index(revision), 1)][arm]
            # deterministic rates: a success whenever rate * n passes the next whole number
            reward = float(int(rate * (len(got) + 1)) > sum(got))
            answer = client.post(
                "/feedback", json={"decision_id": body["decision_id"], "reward": reward}
            )
            assert answer.status_code == 200, answer.text
            got.append(reward)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        report = client.get("/experiments/simpson/report").json()
        if sum(arm["feedback"] for arm in report["arms"]) == 240:
            break
        time.sleep(0.3)
    pooled = {arm["name"]: arm["reward_mean"] for arm in report["arms"]}
    assert pooled["canary"] > pooled["control"]  # the pooled means point the wrong way
    # the period-weighted means, computed from what was sent
    periods = [p for _, p in sorted(sent.items()) if all(p.values())]
    assert len(periods) == 2
    totals = [sum(len(v) for v in period.values()) for period in periods]
    weighted = {
        arm: sum(t * np.mean(p[arm]) for t, p in zip(totals, periods, strict=True)) / sum(totals)
        for arm in ("control", "canary")
    }
    assert weighted["canary"] < weighted["control"]
    assert report["estimator"]["estimator"] == "period_weighted"
    (row,) = report["comparisons"]
    expected = weighted["canary"] / weighted["control"] - 1
    assert row["frequentist"]["estimate"] == pytest.approx(expected, abs=1e-9)
    stopping = report["stopping"]
    assert stopping["estimator"] == "period_weighted"
    assert stopping["winner"] != "canary"
    summary = client.get("/experiments/simpson").json()
    assert summary["analysis"]["estimator"] == "period_weighted"


def _revision(decision_id: str) -> int:
    """The revision (period) a decision id carries."""
    import base64
    import json

    body = decision_id.split(".")[2]
    return int(json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))["r"])
