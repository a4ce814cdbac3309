"""Fallback, circuit breaking, forced arms and shadow traffic over real HTTP."""

from __future__ import annotations

import time

import pytest

from .conftest import QA_TOKEN
from .waiting import synced

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
    synced(client)
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
    synced(client)
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
    synced(client)
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


def test_shadows_that_fail_time_out_or_crawl_never_touch_the_served_answer(client, demo_store):
    """'shadowed' serves logreg; its shadows are forest (agreement counted), a model that
    raises and one that takes 1 s (timeout 0.3 s). The client gets exactly logreg's own
    predictions, without waiting for any shadow, and every mirrored call is accounted for."""
    from serve_app.models.demo import digits_split
    from serve_app.models.loading import load_model, predict_labels

    _, x_test, _, _ = digits_split()
    rows = x_test[:30]

    def shadows() -> dict[str, dict]:
        return {s["name"]: s for s in summary(client, "shadowed")["shadows"]}

    before = shadows()
    served, latencies = [], []
    for row in rows:
        started = time.perf_counter()
        response = client.post(
            "/predict", json={"features": [row.tolist()], "experiment": "shadowed"}
        )
        latencies.append(time.perf_counter() - started)
        assert response.status_code == 200
        assert response.json()["arm"] == "logreg"
        served.extend(response.json()["predictions"])
    tracking_uri = demo_store["tracking_uri"]  # the store the app loaded its models from
    logreg = load_model(summary(client, "shadowed")["arms"][0]["model_uri"], tracking_uri)
    assert served == predict_labels(logreg, rows)  # exactly the served arm's own answer
    assert max(latencies) < 0.5  # never waited for the 1 s shadow
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        after = shadows()
        done = all(after[n]["requests"] - before[n]["requests"] >= 30 for n in after)
        if done:
            break
        time.sleep(0.2)
    fields = ("requests", "errors", "timeouts", "dropped", "rows", "agree_rows")
    delta = {name: {k: after[name][k] - before[name][k] for k in fields} for name in after}
    for name in delta:
        assert delta[name]["requests"] + delta[name]["dropped"] == 30, (name, delta)
        assert delta[name]["dropped"] == 0, (name, delta)  # 3 copies in flight at most here
    assert delta["broken-copy"]["errors"] == 30
    assert delta["slow-copy"]["timeouts"] == 30
    forest = load_model(after["forest-copy"]["model_uri"], tracking_uri)
    expected = sum(int(a == b) for a, b in zip(predict_labels(forest, rows), served, strict=True))
    assert (delta["forest-copy"]["rows"], delta["forest-copy"]["agree_rows"]) == (30, expected)
    assert (delta["forest-copy"]["errors"], delta["forest-copy"]["timeouts"]) == (0, 0)
