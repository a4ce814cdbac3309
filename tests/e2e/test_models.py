"""New model versions without a redeploy, over HTTP: an experiment on a version registered after
the app started, routed and learned on, promoted; the registry alias moves and serving follows;
a version that cannot load is refused with nothing left behind; the pool evicts beyond its
limit and reloads on demand; a router-placed arm answers with no deployment of its own."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from mlflow.tracking import MlflowClient

from .conftest import APP_NAME, CONTROL_TOKEN, QA_TOKEN
from .waiting import synced, wait_for

pytestmark = pytest.mark.e2e

ROW = [[0.0] * 64]
CONTROL = {"Authorization": f"Bearer {CONTROL_TOKEN}"}
QA = {"Authorization": f"Bearer {QA_TOKEN}"}
ALIAS = "e2e-stable"


def pool_stats() -> dict[str, Any]:
    from ray import serve

    handle = serve.get_deployment_handle("model-pool", app_name=APP_NAME)
    return handle.stats.remote().result(timeout_s=30)


def new_logreg_version(tracking_uri: str) -> tuple[MlflowClient, str]:
    """A copy of digits-logreg version 1 registered now (after the app started): its number."""
    from serve_app.models.registry import mlflow_uris

    client = MlflowClient(tracking_uri, tracking_uri)
    with mlflow_uris(tracking_uri):
        copy = client.copy_model_version("models:/digits-logreg/1", "digits-logreg")
    return client, str(copy.version)


@pytest.fixture(scope="module")
def registry(demo_store: dict[str, Any]) -> dict[str, Any]:
    """A second version of digits-logreg registered now (after the app started), and an
    alias on version 1."""
    client, version = new_logreg_version(demo_store["tracking_uri"])
    client.set_registered_model_alias("digits-logreg", ALIAS, "1")
    return {"client": client, "new_version": version}


def pool_arm(name: str, uri: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "model_uri": uri, "placement": "pool", **extra}


def create(client: httpx.Client, name: str, arms: list[dict], **extra: Any) -> httpx.Response:
    body = {"name": name, "policy": {"name": "fixed"}, "arms": arms, **extra}
    return client.post("/experiments", json=body, headers=CONTROL)


def test_a_new_version_is_tested_promoted_and_followed_without_a_redeploy(client, registry):
    new = registry["new_version"]
    follower = create(
        client,
        "follows-stable",
        [
            pool_arm("current", f"models:/digits-logreg@{ALIAS}", weight=0.5),
            pool_arm("forest", "models:/digits-forest/1", weight=0.5),
        ],
    )
    assert follower.status_code == 201, follower.text
    created = create(
        client,
        "new-version",
        [
            pool_arm("stable", f"models:/digits-logreg@{ALIAS}", weight=0.5),
            pool_arm("candidate", f"models:/digits-logreg/{new}", weight=0.5),
        ],
        promotion={"registry_alias": ALIAS},
    )
    assert created.status_code == 201, created.text
    versions = {}
    for _ in range(60):
        decision = client.post("/predict", json={"features": ROW, "experiment": "new-version"})
        assert decision.status_code == 200, decision.text
        body = decision.json()
        assert body["fallback"] is False
        versions.setdefault(body["arm"], set()).add(body["model_version"])
        reward = 1.0 if body["arm"] == "candidate" else 0.0
        answer = client.post(
            "/feedback", json={"decision_id": body["decision_id"], "reward": reward}
        )
        assert answer.status_code == 200, answer.text
    assert versions == {"stable": {"1"}, "candidate": {new}}  # the alias was pinned at creation
    synced(client)
    arms = {a["name"]: a for a in client.get("/experiments/new-version").json()["arms"]}
    assert (arms["candidate"]["reward_mean"], arms["stable"]["reward_mean"]) == (1.0, 0.0)
    assert arms["candidate"]["prob_best"] > 0.99
    promoted = client.post(
        "/experiments/new-version/promote", json={"arm": "candidate"}, headers=CONTROL
    )
    assert promoted.status_code == 200, promoted.text

    # the conclusion is recorded and the alias moves to the winner's version...
    def alias_version() -> str:
        return str(registry["client"].get_model_version_by_alias("digits-logreg", ALIAS).version)

    # (the MLflow record, with its report and plots, is written in the background)
    wait_for(lambda: alias_version() == new, timeout_s=180)

    # ...and an experiment serving that alias follows it by itself: a new revision
    def followed() -> bool:
        answer = client.post(
            "/predict",
            json={"features": ROW, "experiment": "follows-stable", "arm": "current"},
            headers=QA,
        ).json()
        return answer["model_version"] == new

    wait_for(followed, timeout_s=30)
    audit = client.get("/experiments/follows-stable/audit", headers=CONTROL).json()
    moved = [entry for entry in audit if entry["action"] == "alias_moved"]
    assert len(moved) == 1, [entry["action"] for entry in audit]
    assert f'"to": "{new}"' in moved[0]["detail"]
    summary = client.get("/experiments/follows-stable").json()
    assert summary["revision"] >= 2
    assert {a["name"]: a["model_uri"] for a in summary["arms"]}["current"].endswith(f"@{ALIAS}")


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("models:/digits-logreg/99", "has no version 99"),
        ("models:/no-such-model/1", "does not exist"),
    ],
)
def test_a_version_that_cannot_load_is_refused_and_leaves_nothing(client, uri, expected):
    response = create(
        client,
        "never-created",
        [pool_arm("ok", "models:/digits-forest/1", weight=0.5), pool_arm("bad", uri, weight=0.5)],
    )
    assert response.status_code == 422, response.text
    body = response.json()
    assert "arms[1] (bad)" in body["message"]
    assert expected in body["message"]
    assert client.get("/experiments/never-created").status_code == 404


def test_a_model_that_exists_but_fails_to_load_is_refused(client, tmp_path):
    broken = tmp_path / "broken-load"
    broken.mkdir()
    (broken / "MLmodel").write_text("flavors:\n  python_function:\n    loader_module: nowhere\n")
    response = create(
        client,
        "never-loaded",
        [
            pool_arm("ok", "models:/digits-forest/1", weight=0.5),
            pool_arm("bad", str(broken), weight=0.5),
        ],
    )
    assert response.status_code == 422, response.text
    assert "arms[1] (bad): cannot load" in response.json()["message"]
    assert client.get("/experiments/never-loaded").status_code == 404


def test_the_pool_evicts_beyond_its_limit_and_reloads_on_demand(client, demo_store):
    """a0 is on a version of its own (copied now), so only this test's requests load it:
    the session's other experiments also serve version 1 and could reload it after eviction."""
    _, own = new_logreg_version(demo_store["tracking_uri"])
    uris = [
        f"models:/digits-logreg/{own}",
        "models:/digits-forest/1",
        "models:/digits-mlp/1",
    ]
    created = create(
        client,
        "three-pooled",
        [
            pool_arm(f"a{i}", uri, weight=1 / 3 if i < 2 else 1 - 2 / 3)
            for i, uri in enumerate(uris)
        ],
    )
    assert created.status_code == 201, created.text
    stats = pool_stats()
    assert len(stats["resident"]) <= 2  # max_models_per_replica: 2
    before = stats["loads"].get(uris[0], 0)

    def force(arm: str) -> dict[str, Any]:
        response = client.post(
            "/predict", json={"features": ROW, "experiment": "three-pooled", "arm": arm}, headers=QA
        )
        assert response.status_code == 200, response.text
        return response.json()

    for arm in ("a1", "a2", "a0"):  # a0's version was evicted: loaded again on demand
        answer = force(arm)
        assert (answer["arm"], answer["fallback"]) == (arm, False)
    after = pool_stats()
    assert after["loads"][uris[0]] == before + 1
    assert uris[0] in after["resident"]
    assert len(after["resident"]) <= 2
    assert all(seconds > 0 for seconds in after["resident"].values())  # cold-load time


def test_a_router_placed_arm_answers_with_no_second_hop(client):
    from ray import serve

    deployments_before = set(serve.status().applications[APP_NAME].deployments)
    loads_before = pool_stats()["loads"]
    arms = [
        {
            "name": "near",
            "model_uri": "models:/digits-logreg/1",
            "placement": "router",
            "weight": 0.5,
        },
        {
            "name": "also",
            "model_uri": "models:/digits-forest/1",
            "placement": "router",
            "weight": 0.5,
        },
    ]
    created = create(client, "in-process", arms)
    assert created.status_code == 201, created.text
    answers = [
        client.post("/predict", json={"features": ROW, "experiment": "in-process"}).json()
        for _ in range(30)
    ]
    assert {a["arm"] for a in answers} == {"near", "also"}
    assert not any(a["fallback"] for a in answers)
    assert set(serve.status().applications[APP_NAME].deployments) == deployments_before
    assert pool_stats()["loads"] == loads_before  # nothing went through the pool
    refused = create(
        client,
        "dedicated-at-runtime",
        [
            {"name": "x", "model_uri": "models:/digits-mlp/1", "placement": "dedicated",
             "deployment": {"num_replicas": 1}, "weight": 0.5},
            pool_arm("y", "models:/digits-forest/1", weight=0.5),
        ],
    )  # fmt: skip
    assert refused.status_code == 422
    assert refused.json()["field"] == "arms[0].placement"


def test_an_update_replaces_an_arms_model_after_loading_it(client, registry):
    new = registry["new_version"]
    created = create(
        client,
        "swap-arm",
        [
            pool_arm("a", "models:/digits-forest/1", weight=0.5),
            pool_arm("b", "models:/digits-mlp/1", weight=0.5),
        ],
    )
    assert created.status_code == 201, created.text
    revision = created.json()["revision"]
    bad = client.patch(
        "/experiments/swap-arm",
        json={"arms": [{"name": "b", "model_uri": "models:/nope/1"}]},
        headers=CONTROL,
    )
    assert bad.status_code == 422
    assert client.get("/experiments/swap-arm").json()["revision"] == revision
    swapped = client.patch(
        "/experiments/swap-arm",
        json={"arms": [{"name": "b", "model_uri": f"models:/digits-logreg/{new}"}]},
        headers=CONTROL,
    )
    assert swapped.status_code == 200, swapped.text
    assert swapped.json()["revision"] == revision + 1
    answer = client.post(
        "/predict", json={"features": ROW, "experiment": "swap-arm", "arm": "b"}, headers=QA
    ).json()
    assert answer["model_version"] == new
