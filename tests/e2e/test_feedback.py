"""Feedback over real HTTP: acknowledged once, forged/duplicate/expired ids change nothing."""

from __future__ import annotations

import base64
import json
import time

import pytest

pytestmark = pytest.mark.e2e

ROW = [[0.0] * 64]


def decide(client, experiment: str = "split") -> dict:
    response = client.post("/predict", json={"features": ROW, "experiment": experiment})
    assert response.status_code == 200, response.text
    return response.json()


def feedback_counts(client, experiment: str = "split") -> dict[str, tuple[int, float]]:
    arms = client.get(f"/experiments/{experiment}").json()["arms"]
    return {arm["name"]: (arm["feedback"], arm["reward_sum"]) for arm in arms}


def send(client, decision_id: str, reward: float = 1.0):
    return client.post("/feedback", json={"decision_id": decision_id, "reward": reward})


def test_feedback_is_accepted_once_then_409(client):
    decision = decide(client)
    before = feedback_counts(client)
    first = send(client, decision["decision_id"])
    assert first.status_code == 200, first.text
    assert first.json() == {
        "status": "recorded",
        "experiment": "split",
        "arm": decision["arm"],
        "reward": 1.0,
        "learned": True,
        "replayed": False,
    }
    after = feedback_counts(client)
    assert after[decision["arm"]][0] == before[decision["arm"]][0] + 1  # applied before the 200
    second = send(client, decision["decision_id"], reward=0.0)
    assert second.status_code == 409
    assert second.json()["field"] == "decision_id"
    assert feedback_counts(client) == after


def test_concurrent_duplicates_are_accepted_exactly_once(client):
    """8 clients send the same feedback at once: one stores it, seven are told it was a
    replay; 8 others send a different reward for one decision: one wins, the rest get 409."""
    import concurrent.futures

    decision = decide(client)
    before = feedback_counts(client)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: send(client, decision["decision_id"]), range(8)))
    assert [answer.status_code for answer in answers] == [200] * 8
    assert sorted(answer.json()["replayed"] for answer in answers) == [False] + [True] * 7
    after = feedback_counts(client)
    assert after[decision["arm"]][0] == before[decision["arm"]][0] + 1
    other = decide(client)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        rewards = [float(i % 2) for i in range(8)]
        statuses = list(
            pool.map(lambda r: send(client, other["decision_id"], r).status_code, rewards)
        )
    assert sorted(statuses) == [200] * 4 + [409] * 4  # the stored reward's 4 copies pass


def tamper(decision_id: str, **changes) -> str:
    version, key_id, body, signature = decision_id.split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    payload.update(changes)
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return f"{version}.{key_id}.{base64.urlsafe_b64encode(raw).rstrip(b'=').decode()}.{signature}"


def test_forged_and_malformed_ids_are_rejected_and_change_nothing(client):
    decision = decide(client)
    other = "forest" if decision["arm"] == "logreg" else "logreg"
    before = feedback_counts(client)
    cases = {
        tamper(decision["decision_id"], a=other): 403,  # credit the other arm
        tamper(decision["decision_id"], t=time.time() + 1e6): 403,  # postpone expiry
        decision["decision_id"][:-4] + "AAAA": 403,  # bad signature
        "v1.e30.AAAA": 403,  # a first-version id this app never signed
        "v2.k-unknown.e30.AAAA": 403,  # a key this app does not hold
        "not-a-decision": 400,
        "v9.a.b": 400,
    }
    for decision_id, status in cases.items():
        response = send(client, decision_id)
        assert response.status_code == status, (decision_id, response.text)
        assert response.json()["field"] == "decision_id"
    assert feedback_counts(client) == before
    # the genuine id still works afterwards
    assert send(client, decision["decision_id"]).status_code == 200


def test_expired_decision_is_rejected(client):
    decision = decide(client, "short")  # feedback_window_s: 1
    before = feedback_counts(client, "short")
    time.sleep(1.3)
    response = send(client, decision["decision_id"])
    assert response.status_code == 410, response.text
    assert "accepts feedback for 1 s" in response.json()["message"]
    assert feedback_counts(client, "short") == before


@pytest.mark.parametrize(
    ("reward", "field"),
    [(1.5, "reward"), (-0.1, "reward"), ("yes", "reward"), (None, "reward")],
)
def test_binary_reward_out_of_range_is_422(client, reward, field):
    decision = decide(client)
    response = client.post(
        "/feedback", json={"decision_id": decision["decision_id"], "reward": reward}
    )
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    # the decision is still unused
    assert send(client, decision["decision_id"]).status_code == 200


def test_nan_reward_is_422(client):
    decision = decide(client)
    response = client.post(
        "/feedback",
        content=f'{{"decision_id": "{decision["decision_id"]}", "reward": NaN}}',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["field"] == "reward"
