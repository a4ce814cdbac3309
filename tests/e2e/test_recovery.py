"""Nothing acknowledged is lost: killed replicas, a killed state actor, a restarted app.

Loads are bounded (a few threads for a few seconds) and target 127.0.0.1 only.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import httpx
import pytest

from .conftest import APP_NAME, deploy, stored_rewards
from .waiting import synced

pytestmark = pytest.mark.e2e

ROW = [[0.0] * 64]


def replica_actor(deployment: str) -> Any:
    """The Ray actor of the (first) replica of one deployment of the e2e app."""
    import ray

    for actor in ray.util.list_named_actors(all_namespaces=True):
        if APP_NAME in actor["name"] and f"#{deployment}#" in actor["name"]:
            return ray.get_actor(actor["name"], namespace=actor["namespace"])
    raise LookupError(f"no replica of {deployment}")


def wait_running(deployment: str, timeout_s: float = 90.0) -> None:
    from ray import serve

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        app = serve.status().applications.get(APP_NAME)
        states = app.deployments[deployment].replica_states if app else {}
        if states.get("RUNNING", 0) >= 1 and set(states) == {"RUNNING"}:
            return
        time.sleep(0.5)
    raise TimeoutError(f"{deployment} did not recover within {timeout_s} s")


def run_load(url: str, seconds: float, feedback: bool, threads: int = 4) -> dict[str, list]:
    """Predict (+ feedback) in a few threads for a bounded time; record every outcome."""
    results: dict[str, list] = {"predict": [], "feedback": []}
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=url, timeout=30) as client:
            while time.monotonic() < stop_at:
                response = client.post("/predict", json={"features": ROW, "experiment": "durable"})
                with lock:
                    results["predict"].append(response.status_code)
                if not feedback or response.status_code != 200:
                    continue
                decision_id = response.json()["decision_id"]
                reward = float(rng.random() < 0.5)
                answer = client.post(
                    "/feedback", json={"decision_id": decision_id, "reward": reward}
                )
                with lock:
                    results["feedback"].append((decision_id, reward, answer.status_code))

    pool = [threading.Thread(target=worker, args=(seed,)) for seed in range(threads)]
    for thread in pool:
        thread.start()
    return {"threads": pool, **results}  # type: ignore[dict-item]


def join(load: dict[str, Any]) -> None:
    for thread in load["threads"]:
        thread.join(timeout=120)
        assert not thread.is_alive()


def test_killing_a_model_replica_fails_no_request(app_url):
    import ray

    load = run_load(app_url, seconds=10.0, feedback=False)
    time.sleep(1.5)
    ray.kill(replica_actor("model-ts-forest"), no_restart=True)
    seen = set()
    with httpx.Client(base_url=app_url, timeout=30) as client:
        deadline = time.monotonic() + 20.0
        while "unavailable" not in seen and time.monotonic() < deadline:
            seen.add(client.get("/healthz").json()["circuits"]["durable"]["forest"])
            time.sleep(0.2)
    join(load)
    # the router stopped choosing the dead arm: its circuit opened on the failed calls, and
    # it is held open while Serve reports no running replica
    assert "unavailable" in seen, seen
    assert len(load["predict"]) > 20
    assert set(load["predict"]) == {200}, load["predict"]
    wait_running("model-ts-forest")


def test_killing_the_state_actor_loses_no_acknowledged_feedback(app_url, app_args):
    import ray

    load = run_load(app_url, seconds=8.0, feedback=True)
    time.sleep(2.0)
    ray.kill(replica_actor("experiment-state"), no_restart=True)
    join(load)
    wait_running("experiment-state")
    # predictions never wait for the state: all answered during the outage
    assert set(load["predict"]) == {200}
    outcomes = load["feedback"]
    # 409 on a first attempt: Serve retried a commit whose reply the dying actor never sent,
    # and the retry found the reward already stored; it is acknowledged as stored.
    acknowledged = [(d, r) for d, r, status in outcomes if status in (200, 409)]
    assert len(acknowledged) > 10
    assert {status for *_, status in outcomes} <= {200, 409, 503}
    # a client retries what got 503: it is either stored now or was stored before (409)
    with httpx.Client(base_url=app_url, timeout=30) as client:
        for decision_id, reward, status in outcomes:
            if status == 503:
                retry = client.post(
                    "/feedback", json={"decision_id": decision_id, "reward": reward}
                )
                assert retry.status_code in (200, 409), retry.text
        summary = client.get("/experiments/durable").json()
    stored = stored_rewards(f"sqlite:///{app_args['data_dir']}/experiments.db", "durable")
    acknowledged_keys = {_nonce(decision_id) for decision_id, _ in acknowledged}
    assert acknowledged_keys <= set(stored), "an acknowledged reward is missing from the store"
    # the posterior the server shows is exactly the stored rewards
    for arm in summary["arms"]:
        rows = [row for row in stored.values() if row["arm"] == arm["name"] and row["learned"]]
        assert arm["feedback"] == len(rows)
        assert arm["reward_sum"] == pytest.approx(sum(row["reward"] for row in rows), abs=1e-9)


def _nonce(decision_id: str) -> str:
    import base64
    import json

    body = decision_id.split(".")[2]
    return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))["n"]


def without_drift(listing: dict) -> dict:
    """Experiments without their drift windows, which live in memory by design (refilled
    by new traffic after a restart; see serve_app/drift.py)."""
    return {"experiments": [{**e, "drift": None} for e in listing["experiments"]]}


def test_restarting_the_app_restores_every_experiment(app_url, app_args):
    from ray import serve

    with httpx.Client(base_url=app_url, timeout=30) as client:
        sticky = {"features": ROW, "experiment": "sticky", "unit_id": "restart-unit"}
        sticky_arm = client.post("/predict", json=sticky).json()["arm"]
        used = client.post("/predict", json={"features": ROW, "experiment": "durable"}).json()
        unused = client.post("/predict", json={"features": ROW, "experiment": "durable"}).json()
        assert (
            client.post("/feedback", json={"decision_id": used["decision_id"], "reward": 1})
        ).status_code == 200
        synced(client)
        before = client.get("/experiments").json()
    serve.delete(APP_NAME)
    deploy(app_args, app_url)
    with httpx.Client(base_url=app_url, timeout=30) as client:
        after = client.get("/experiments").json()
        assert without_drift(after) == without_drift(before)
        replay = client.post("/feedback", json={"decision_id": used["decision_id"], "reward": 1})
        assert replay.status_code == 200  # exactly once, across the restart: a replay
        assert replay.json()["replayed"] is True
        other = client.post("/feedback", json={"decision_id": used["decision_id"], "reward": 0})
        assert other.status_code == 409
        late = client.post("/feedback", json={"decision_id": unused["decision_id"], "reward": 0})
        assert late.status_code == 200  # the signing secret survived the restart
        arms = {client.post("/predict", json=sticky).json()["arm"] for _ in range(8)}
        assert arms == {sticky_arm}  # stored assignments outlive the routers' caches
