"""Faults under load (8 clients predicting and sending feedback, bounded in time): SIGKILL of an
arm's replica and of the experiment-state replica, on SQLite and on PostgreSQL. Every
acknowledged reward is in the store exactly once, no reward is counted twice, and request
counts match what was answered. Figures: run with ``-s`` (docs/reliability.md quotes them).
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import httpx
import pytest

from .conftest import (
    APP_NAME,
    DATA_TOKEN,
    GUARDED_APP,
    GUARDED_HOST,
    logged_decisions,
    stored_rewards,
)
from .faults import Load, nonce, record_figures
from .waiting import synced

pytestmark = pytest.mark.e2e


def replica_pid(app: str, deployment: str) -> int:
    """The process id of the (first) replica of one deployment."""
    import ray

    for actor in ray.util.list_named_actors(all_namespaces=True):
        if f"{app}#{deployment}#" in actor["name"]:
            handle = ray.get_actor(actor["name"], namespace=actor["namespace"])
            return int(ray.get(handle.__ray_call__.remote(lambda _self: os.getpid())))
    raise LookupError(f"no replica of {deployment} in {app}")


def wait_running(app: str, deployment: str, timeout_s: float = 90.0) -> None:
    from ray import serve

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = serve.status().applications.get(app)
        states = status.deployments[deployment].replica_states if status else {}
        if states.get("RUNNING", 0) >= 1 and set(states) == {"RUNNING"}:
            return
        time.sleep(0.5)
    raise TimeoutError(f"{deployment} did not recover within {timeout_s} s")


def settled_summary(client: httpx.Client, experiment: str) -> dict[str, Any]:
    synced(client)  # the router resent what the state had not acknowledged
    return client.get(f"/experiments/{experiment}").json()


def check(load: Load, summary: dict[str, Any], stored: dict[str, dict[str, Any]]) -> dict:
    """The invariants every fault must keep; returns the figures."""
    counted = sum(arm["requests"] for arm in summary["arms"])
    figures = load.figures(stored, counted)
    acknowledged = [f for f in load.feedback if f.acknowledged]
    # never a 200 that is not stored
    missing = [f.decision_id for f in acknowledged if nonce(f.decision_id) not in stored]
    assert not missing, f"{len(missing)} acknowledged rewards are not in the store"
    # each stored once, with the reward that was acknowledged
    for sent in acknowledged:
        assert stored[nonce(sent.decision_id)]["reward"] == sent.reward
    # the posterior the server shows is exactly the stored, learned rewards
    for arm in summary["arms"]:
        rows = [r for r in stored.values() if r["arm"] == arm["name"] and r["learned"]]
        assert arm["feedback"] == len(rows), arm["name"]
        assert arm["reward_sum"] == pytest.approx(sum(r["reward"] for r in rows), abs=1e-9)
    # request counts: every answered decision counted once (routers resend unacknowledged
    # batches as they were; the state applies each batch once)
    assert figures["counts_counted"] == figures["counts_sent"], figures
    return figures


def test_sigkill_of_an_arm_replica_fails_no_request(app_url, app_args):
    with httpx.Client(base_url=app_url, timeout=30) as client:
        synced(client)
        before, since = client.get("/experiments/durable").json(), time.time()
    load = Load(app_url, "durable", threads=8, seconds=8.0).start()
    time.sleep(2.0)
    os.kill(replica_pid(APP_NAME, "model-ts-forest"), signal.SIGKILL)
    load.join()
    wait_running(APP_NAME, "model-ts-forest")
    with httpx.Client(base_url=app_url, timeout=30) as client:
        summary = settled_summary(client, "durable")
    stored = stored_rewards(f"sqlite:///{app_args['data_dir']}/experiments.db", "durable")
    figures = check(load, _since(summary, before), _new(stored, since))
    record_figures("arm replica SIGKILL (SQLite)", figures)
    assert figures["requests_failed"] == 0, figures  # the default arm answered meanwhile
    assert figures["requests_answered"] > 50
    assert figures["feedback_acknowledged"] == figures["feedback_sent"]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_sigkill_of_the_state_replica_loses_nothing_acknowledged(backend, request):
    if backend == "sqlite":
        url, app, experiment = request.getfixturevalue("app_url"), APP_NAME, "durable"
        store_url = f"sqlite:///{request.getfixturevalue('app_args')['data_dir']}/experiments.db"
        headers: dict[str, str] = {}
    else:
        guarded = request.getfixturevalue("guarded")
        url, app, experiment = guarded["url"], GUARDED_APP, "pg-durable"
        store_url = guarded["args"]["store_url"]
        headers = {"authorization": f"Bearer {DATA_TOKEN}", "host": GUARDED_HOST}
    with httpx.Client(base_url=url, timeout=30, headers=headers) as client:
        synced(client)
        before, since = client.get(f"/experiments/{experiment}").json(), time.time()
        load = Load(url, experiment, threads=8, seconds=8.0, headers=headers).start()
        time.sleep(2.5)
        os.kill(replica_pid(app, "experiment-state"), signal.SIGKILL)
        load.join()
        wait_running(app, "experiment-state")
        summary = settled_summary(client, experiment)
    stored = stored_rewards(store_url, experiment)
    figures = check(load, _since(summary, before), _new(stored, since))
    record_figures(f"state replica SIGKILL ({backend})", figures)
    # predictions never wait for the state: all answered during the outage
    assert figures["requests_failed"] == 0, figures
    # every feedback was acknowledged in the end (503s were retried), and none was answered
    # 503 after its commit (the router retries its own commit across the restart)
    assert figures["feedback_acknowledged"] == figures["feedback_sent"], figures
    assert figures["false_503"] == 0, figures
    assert {s for f in load.feedback for s in f.statuses} <= {200, 503}
    # the decision log kept the row of every acknowledged feedback: the decision the router
    # logged (its features) and the reward the feedback committed with it
    logged = logged_decisions(store_url, experiment)
    acknowledged = [f for f in load.feedback if f.acknowledged]
    rows = [logged.get(nonce(f.decision_id)) for f in acknowledged]
    assert all(row is not None for row in rows), "acknowledged feedback lost its logged decision"
    assert [row["reward"] for row in rows] == [f.reward for f in acknowledged]
    assert all(row["features"] is not None for row in rows)


def _since(summary: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    """The summary with what earlier tests left subtracted (one shared app)."""
    earlier = {arm["name"]: arm for arm in before["arms"]}
    arms = []
    for arm in summary["arms"]:
        old = earlier.get(arm["name"], {})
        arms.append(
            {
                **arm,
                "requests": arm["requests"] - old.get("requests", 0),
                "feedback": arm["feedback"] - old.get("feedback", 0),
                "reward_sum": arm["reward_sum"] - old.get("reward_sum", 0.0),
            }
        )
    return {**summary, "arms": arms}


def _new(stored: dict[str, dict[str, Any]], since: float) -> dict[str, dict[str, Any]]:
    """The stored rewards received from ``since`` on."""
    return {key: row for key, row in stored.items() if row["received_at"] >= since}
