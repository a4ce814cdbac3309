"""What a hostile client, a browser on another site or a careless value could break, over real
HTTP against real Ray Serve: one regression test per finding of the hardening review."""

from __future__ import annotations

import concurrent.futures
import os
import stat
import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from .conftest import (
    CONTROL_TOKEN,
    DATA_TOKEN,
    GUARDED_HOST,
    GUARDED_ORIGIN,
    QA_TOKEN,
)
from .waiting import synced, wait_for

pytestmark = pytest.mark.e2e

ROW = [[0.0] * 64]
CONTROL = {"Authorization": f"Bearer {CONTROL_TOKEN}"}
QA = {"Authorization": f"Bearer {QA_TOKEN}"}


def predict(client, experiment: str, **body) -> dict:
    response = client.post("/predict", json={"features": ROW, "experiment": experiment, **body})
    assert response.status_code == 200, response.text
    return response.json()


def arms(client, experiment: str) -> dict[str, dict]:
    return {arm["name"]: arm for arm in client.get(f"/experiments/{experiment}").json()["arms"]}


# --------------------------------------------------------------------------- finding 1


def test_values_that_would_overflow_a_sum_are_refused_and_change_nothing(client):
    decision = predict(client, "hostile")
    synced(client)
    before = arms(client, "hostile")
    huge = client.post(
        "/feedback",
        json={"decision_id": decision["decision_id"], "reward": 1, "metrics": {"revenue": 1e200}},
    )
    assert huge.status_code == 422, huge.text
    assert huge.json()["field"] == "metrics.revenue"
    assert "1e+15" in huge.json()["message"]
    revenue = predict(client, "revenue")
    reward = client.post("/feedback", json={"decision_id": revenue["decision_id"], "reward": 1e200})
    assert (reward.status_code, reward.json()["field"]) == (422, "reward")
    assert arms(client, "hostile") == before
    # the decision is still unused: a sane value is stored
    ok = client.post(
        "/feedback",
        json={"decision_id": decision["decision_id"], "reward": 1, "metrics": {"revenue": 12.5}},
    )
    assert ok.status_code == 200, ok.text


def test_one_bad_feedback_never_fails_the_group_commit_it_would_have_joined(client):
    good = [predict(client, "split")["decision_id"] for _ in range(10)]
    bad = predict(client, "hostile")["decision_id"]
    before = sum(arm["feedback"] for arm in arms(client, "split").values())
    bodies = [{"decision_id": d, "reward": 1.0} for d in good]
    bodies.insert(5, {"decision_id": bad, "reward": 1.0, "metrics": {"revenue": -1e300}})
    with concurrent.futures.ThreadPoolExecutor(11) as pool:
        statuses = list(pool.map(lambda b: client.post("/feedback", json=b).status_code, bodies))
    assert statuses == [200] * 5 + [422] + [200] * 5
    after = sum(arm["feedback"] for arm in arms(client, "split").values())
    assert after == before + 10


# --------------------------------------------------------------------------- finding 2


def wait_closed(client, experiment: str, arm: str) -> None:
    """Until this router has seen the arm's replica running (the first seconds after a
    deploy), its circuit may be held open."""
    wait_for(
        lambda: client.get("/healthz").json()["circuits"][experiment][arm] == "closed",
        15,
        f"the circuit of {experiment}/{arm} closed",
    )


def test_forcing_an_arm_needs_the_control_or_qa_token(client):
    wait_closed(client, "split", "forest")
    for headers, body in (({"X-Bandit-Arm": "forest"}, {}), ({}, {"arm": "forest"})):
        response = client.post(
            "/predict", json={"features": ROW, "experiment": "split", **body}, headers=headers
        )
        assert response.status_code == 401, response.text
    wrong = client.post(
        "/predict",
        json={"features": ROW, "experiment": "split", "arm": "forest"},
        headers={"Authorization": "Bearer not-a-token"},
    )
    assert wrong.status_code == 403
    for headers in (QA, CONTROL):
        assert predict_forced(client, "split", "forest", headers)["forced"] is True


def predict_forced(client, experiment: str, arm: str, headers: dict) -> dict:
    response = client.post(
        "/predict", json={"features": ROW, "experiment": experiment, "arm": arm}, headers=headers
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_forced_calls_can_neither_roll_an_arm_back_nor_skew_srm(client):
    """'broken' always raises. Forcing it (with the QA token) gets fallback answers, counts
    forced errors only, and once its circuit is open the arm is no longer called at all."""
    for _ in range(30):  # routed traffic first, so the guardrail has judged both real arms
        predict(client, "hostile")
    synced(client)
    srm_before = client.get("/experiments/hostile").json()["srm_p_value"]
    answers = []
    for _ in range(10):
        response = client.post(
            "/predict",
            json={"features": ROW, "experiment": "hostile", "arm": "broken"},
            headers=QA,
        )
        answers.append(response.status_code)
    synced(client)
    assert answers[:3] == [200, 200, 200]  # failure_threshold 3: the default arm answered
    assert set(answers[3:]) == {503}  # the circuit is open: 503, and broken is not called
    summary = client.get("/experiments/hostile").json()
    broken = {arm["name"]: arm for arm in summary["arms"]}["broken"]
    # three forced calls were made (and failed); the refused ones forced nothing
    assert (broken["errors"], broken["forced_errors"], broken["forced"]) == (0, 3, 3)
    assert broken["guardrail_breached"] is False
    assert summary["status"] == "running"
    assert summary["srm_p_value"] == srm_before
    time.sleep(1.0)  # several lifecycle evaluations later: still nothing rolled back
    assert client.get("/experiments/hostile").json()["status"] == "running"


@pytest.mark.parametrize("value", [1e39, -1e39, 3.5e38])
def test_values_outside_the_models_input_range_are_refused_before_any_arm(client, value):
    synced(client)
    before = arms(client, "hostile")
    row = [0.0] * 64
    row[17] = value
    response = client.post("/predict", json={"features": [row], "experiment": "hostile"})
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "features[0][17]"
    assert "float32" in response.json()["message"] or "float" in response.json()["message"]
    synced(client)
    assert arms(client, "hostile") == before  # no decision was counted, no arm was called


# --------------------------------------------------------------------------- finding 3


def test_control_endpoints_authenticate_before_they_read_the_body(client):
    anonymous = client.patch("/experiments/hostile", json={"bogus": 1})
    assert anonymous.status_code == 401, anonymous.text
    authorized = client.patch("/experiments/hostile", json={"bogus": 1}, headers=CONTROL)
    assert (authorized.status_code, authorized.json()["field"]) == (422, "bogus")
    for method, path in (
        ("PATCH", "/experiments/hostile"),
        ("POST", "/experiments"),
        ("POST", "/experiments/hostile/pause"),
        ("POST", "/feedback"),
    ):
        big = client.request(
            method,
            path,
            content=b" " * (5 * 1024 * 1024),
            headers={"content-type": "application/json"},
        )
        assert big.status_code == 413, (method, path, big.text)
    assert client.get("/experiments/hostile").json()["status"] == "running"


# --------------------------------------------------------------------------- finding 4


def test_cross_site_requests_and_dns_rebinding_are_refused(client):
    plain = client.post(
        "/predict",
        content=b'{"features": [[0]], "experiment": "split"}',
        headers={"content-type": "text/plain"},
    )
    assert plain.status_code == 415, plain.text
    form = client.post("/feedback", data={"decision_id": "x", "reward": "1"})
    assert form.status_code == 415
    rebound = client.get("/experiments", headers={"host": "attacker.example"})
    assert (rebound.status_code, rebound.json()["field"]) == (400, "host")
    cross = client.get("/experiments", headers={"origin": "https://attacker.example"})
    assert "access-control-allow-origin" not in cross.headers


def test_configured_hosts_and_origins_are_the_only_ones_served(guarded, guarded_client):
    assert guarded_client.get("/experiments").status_code == 200  # Host: bandit.test
    local = guarded_client.get("/experiments", headers={"host": "127.0.0.1:8000"})
    assert local.status_code == 200  # loopback names are always served
    other = guarded_client.get("/experiments", headers={"host": "api.bandit.test"})
    assert other.status_code == 400  # exactly the configured name, no subdomain
    allowed = guarded_client.get("/experiments", headers={"origin": GUARDED_ORIGIN})
    assert allowed.headers["access-control-allow-origin"] == GUARDED_ORIGIN
    refused = guarded_client.get("/experiments", headers={"origin": "https://attacker.example"})
    assert "access-control-allow-origin" not in refused.headers


# --------------------------------------------------------------------------- finding 5


def test_the_store_and_keys_are_private_and_ids_name_their_key(client, app_args):
    data_dir = Path(app_args["data_dir"])
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    for path in [data_dir / "experiments.db", *data_dir.glob("experiments.db-*")]:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
    keys = data_dir / "keys"
    key_files = list(keys.iterdir())
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in key_files)
    decision_id = predict(client, "split")["decision_id"]
    version, key_id, *_ = decision_id.split(".")
    assert (version, key_id) == ("v2", key_files[0].name)
    engine = sa.create_engine(f"sqlite:///{data_dir / 'experiments.db'}")
    with engine.connect() as connection:
        secrets_in_store = connection.execute(
            sa.text("SELECT count(*) FROM meta WHERE key = 'decision_secret'")
        ).scalar_one()
    engine.dispose()
    assert secrets_in_store == 0


def test_a_short_token_stops_the_app_without_showing_it(app_args):
    from serve_app.app import build_app
    from serve_app.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        build_app({**app_args, "auth": {"control_token": "short-secret-123"}})
    assert "control_token" in str(caught.value)
    assert "short-secret-123" not in str(caught.value)


# --------------------------------------------------------------------------- finding 6


def test_only_declared_metrics_are_accepted(client):
    decision = predict(client, "hostile")
    response = client.post(
        "/feedback",
        json={"decision_id": decision["decision_id"], "reward": 1, "metrics": {"clicks": 1}},
    )
    assert response.status_code == 422
    body = response.json()
    assert body["field"] == "metrics.clicks"
    assert "'clicks' is not declared" in body["message"]
    assert "declared: revenue" in body["message"]


# --------------------------------------------------------------------------- finding 8


def test_the_audit_log_is_only_in_reports_for_the_control_token(client):
    public = client.get("/experiments/split/report").json()
    assert public["audit"] is None
    private = client.get("/experiments/split/report", headers=CONTROL).json()
    assert [entry["action"] for entry in private["audit"]][:1] == ["create"]


# --------------------------------------------------------------------------- finding 9


def test_reports_are_bounded_and_a_flood_does_not_stall_feedback(client, app_url):
    bounded = client.get("/experiments/split/report", params={"timeline_points": 3}).json()
    assert len({row["at"] for row in bounded["timeline"]}) <= 3
    assert client.get("/experiments/split/report", params={"timeline_points": 1}).status_code == 422
    decisions = [predict(client, "split")["decision_id"] for _ in range(40)]

    def timed_feedback(decision_id: str) -> float:
        started = time.perf_counter()
        response = client.post("/feedback", json={"decision_id": decision_id, "reward": 1})
        assert response.status_code == 200, response.text
        return time.perf_counter() - started

    quiet = sorted(timed_feedback(d) for d in decisions[:20])
    stop = time.monotonic() + 6.0

    def flood() -> int:
        sent = 0
        with httpx.Client(base_url=app_url, timeout=30) as flooder:
            while time.monotonic() < stop:
                assert flooder.get("/experiments/split/report").status_code == 200
                sent += 1
        return sent

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        floods = [pool.submit(flood) for _ in range(6)]
        time.sleep(0.5)
        loaded = sorted(timed_feedback(d) for d in decisions[20:])
        sent = sum(future.result() for future in floods)
    assert sent > 50
    # cached and built off the state's loop: feedback stays about as fast as when quiet (the
    # 1.5x ratio itself is measured by `python -m bench --only state`; here with slack for
    # the flood's six clients, which share the proxy, the router and these two cores with the
    # feedback: a report built on the state's loop stalled feedback for seconds)
    assert loaded[-1] < 1.5 * quiet[-1] + 0.5, (quiet, loaded)


def state_gauge(client, name: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == name:
                return sample.value
    raise AssertionError(f"{name} is not in /metrics")


def test_a_client_choosing_timeline_lengths_cannot_grow_the_report_cache(client):
    """The state kept every (experiment, audit, timeline_points) report it built, for ever:
    a data-token client could make it hold thousands. It keeps at most 64."""
    lengths = range(2, 2 + 80)
    for points in lengths:
        response = client.get("/experiments/split/report", params={"timeline_points": points})
        assert response.status_code == 200, response.text
        assert len({row["at"] for row in response.json()["timeline"]}) <= points
    assert state_gauge(client, "bandit_state_reports_kept") <= 64
    # a burst for one report is one build, shared (the router's copy, then the state's)
    builds = state_gauge(client, "bandit_state_report_builds_total")
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(
            pool.map(lambda _: client.get("/experiments/split/report").status_code, range(40))
        )
    assert answers == [200] * 40
    assert state_gauge(client, "bandit_state_report_builds_total") <= builds + 1


# --------------------------------------------------------------------------- finding 10


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/predict", {"features": [["0.5"] * 64], "experiment": "split"}, "features[0][0]"),
        ("/predict", {"features": [[True] * 64], "experiment": "split"}, "features[0][0]"),
        ("/predict", {"features": ROW, "experiment": "split", "unit_id": 5}, "unit_id"),
        ("/feedback", {"decision_id": "v2.k.x.y", "reward": True}, "reward"),
        ("/feedback", {"decision_id": "v2.k.x.y", "reward": "1"}, "reward"),
        ("/feedback", {"decision_id": 12, "reward": 1}, "decision_id"),
    ],
)
def test_types_are_strict(client, path, body, field):
    response = client.post(path, json=body)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field


# --------------------------------------------------------------------------- finding 11


def test_metrics_and_docs_follow_the_data_planes_protection(guarded, guarded_client):
    anonymous = {"authorization": "", "host": GUARDED_HOST}
    for path in ("/metrics", "/docs", "/openapi.json", "/experiments"):
        response = guarded_client.get(path, headers=anonymous)
        assert response.status_code == 401, (path, response.text)
    assert guarded_client.get("/metrics").status_code == 200  # the data token
    assert guarded_client.get("/openapi.json").status_code == 200
    health = guarded_client.get("/healthz", headers=anonymous).json()
    assert "experiments" not in health  # the open health check names nothing


def test_the_open_app_keeps_metrics_and_docs_open(client):
    assert client.get("/metrics").status_code == 200
    assert client.get("/openapi.json").status_code == 200


def test_guarded_app_keeps_data_and_control_apart(guarded_client):
    control = {"authorization": f"Bearer {CONTROL_TOKEN}", "host": GUARDED_HOST}
    data = {"authorization": f"Bearer {DATA_TOKEN}", "host": GUARDED_HOST}
    assert guarded_client.post("/experiments/pg-split/pause", headers=data).status_code == 403
    assert guarded_client.get("/experiments/pg-split/audit", headers=control).status_code == 200
    report = guarded_client.get("/experiments/pg-split/report", headers=control).json()
    assert report["audit"] is not None  # the control token also reads the data plane
