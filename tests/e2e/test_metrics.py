"""GET /metrics over real HTTP: parses, carries every documented series, matches the API."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from serve_app.state.prometheus import exported_names

from .conftest import CONTROL_TOKEN
from .waiting import synced

pytestmark = pytest.mark.e2e

ROW = [[0.0] * 64]
WALKTHROUGH = Path(__file__).parents[2] / "configs" / "experiments" / "digits-loop.json"


@pytest.fixture(scope="module")
def with_retraining(app_url: str) -> str:
    """An experiment with concept drift, a decision log and a retraining (the README's
    closed-loop walkthrough, which never retrains here: its 10 requests stay far below the
    concept-drift reference and the row minimum): its series exist when this file runs
    alone, not only after the closed-loop tests have made their experiments."""
    config = json.loads(WALKTHROUGH.read_text())
    config["name"] = "metrics-loop"
    config["retrain"] |= {"min_rows": 10_000, "max_rows": 10_000}
    config["arms"][0]["placement"] = "router"  # the small pool of the pool tests stays theirs
    headers = {"Authorization": f"Bearer {CONTROL_TOKEN}"}
    with httpx.Client(base_url=app_url, timeout=60) as client:
        created = client.post("/experiments", json=config, headers=headers)
    assert created.status_code == 201, created.text
    return config["name"]


def scrape(client) -> dict[str, list]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples: dict[str, list] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples


def value(samples, name: str, **labels) -> float:
    matches = [s.value for s in samples[name] if all(s.labels[k] == v for k, v in labels.items())]
    assert len(matches) == 1, (name, labels, matches)
    return matches[0]


def test_metrics_carry_every_documented_series(client, with_retraining):
    for experiment in ("split", "revenue", "ts", "drifty", with_retraining):
        for _ in range(10):
            body = {"features": ROW, "experiment": experiment}
            assert client.post("/predict", json=body).status_code == 200
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        samples = scrape(client)
        if exported_names() <= set(samples):
            break
        time.sleep(0.3)
    assert exported_names() <= set(samples), exported_names() - set(samples)


def test_metrics_agree_with_the_experiment_summary(client):
    for _ in range(20):
        client.post("/predict", json={"features": ROW, "experiment": "split"})
    synced(client)
    summary = client.get("/experiments/split").json()
    samples = scrape(client)
    for arm in summary["arms"]:
        labels = {"experiment": "split", "arm": arm["name"]}
        assert value(samples, "bandit_arm_requests_total", **labels) >= arm["requests"]
        assert value(samples, "bandit_arm_weight", **labels) == pytest.approx(arm["weight"])
        assert value(samples, "bandit_arm_prob_best", **labels) == pytest.approx(arm["prob_best"])
        count = value(samples, "bandit_arm_latency_seconds_count", **labels)
        assert count > 0
    assert value(samples, "bandit_experiment_status", experiment="split", status="running") == 1
    # a 0.7 / 0.3 split routed as configured: no sample-ratio mismatch
    assert summary["srm_p_value"] is not None
    assert summary["srm_p_value"] > 1e-4
    srm = value(samples, "bandit_experiment_srm_p_value", experiment="split")
    assert 0.0 <= srm <= 1.0


def test_every_router_answers_the_same_metrics(app_url):
    # one router replica here; the numbers come from the state deployment either way
    with httpx.Client(base_url=app_url, timeout=30) as client:
        first = {k: v for k, v in scrape(client).items() if "latency" not in k}
        second = {k: v for k, v in scrape(client).items() if "latency" not in k}
    assert set(first) == set(second)
