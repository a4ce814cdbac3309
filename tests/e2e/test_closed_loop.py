"""The closed loop over HTTP with no hand in it: simulated traffic whose inputs drift, a concept
drift alarm, a retraining on the logged rows in a Ray task, a new registered version, the
challenger experiment, and then either the promotion (the registry alias moves and serving
follows) or, for a retrained model that is worse, the rollback.

Each run prints its timeline (seconds and requests from the start of the traffic), the figures
the closing note quotes."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from serve_app.models.retraining import LINEAGE_PREFIX

from .conftest import CONTROL_TOKEN

pytestmark = pytest.mark.e2e

CONTROL = {"Authorization": f"Bearer {CONTROL_TOKEN}"}
DRIFT_AFTER, DRIFT_RAMP = 300, 100
TIME_LIMIT_S = 420.0


WALKTHROUGH = Path(__file__).parents[2] / "configs" / "experiments" / "digits-loop.json"
"""The README's closed-loop experiment; the tests run it on copies of the demo model."""


def loop_config(name: str, model: str, **params: Any) -> dict[str, Any]:
    config = json.loads(WALKTHROUGH.read_text())
    (arm,) = config["arms"]
    arm["model_uri"] = f"models:/{model}@champion"
    config["retrain"]["params"] = params
    return {**config, "name": name}


@pytest.fixture(scope="module")
def registry(demo_store: dict[str, Any]) -> MlflowClient:
    """``loop-digits`` and ``loop-worse``: copies of the demo logistic regression, each with
    ``champion`` on version 1."""
    from serve_app.models.registry import mlflow_uris

    tracking = demo_store["tracking_uri"]
    client = MlflowClient(tracking, tracking)
    with mlflow_uris(tracking):
        for name in ("loop-digits", "loop-worse"):
            version = client.copy_model_version(demo_store["uris"]["logreg"], name)
            client.set_registered_model_alias(name, "champion", str(version.version))
    return client


async def run_loop(url: str, name: str, shift: float, done: Any) -> dict[str, Any]:
    """Create the experiment, send drifting traffic until ``done(view)`` holds, and return
    what happened when (``view``: summary, retraining runs, audit actions)."""
    from serve_app.cli.simulate import run_simulation

    timeline: dict[str, tuple[float, int]] = {}
    async with httpx.AsyncClient(base_url=url, timeout=30, headers=CONTROL) as http:
        started = time.monotonic()
        traffic = asyncio.create_task(
            run_simulation(
                url,
                experiment=name,
                requests=50_000,
                concurrency=8,
                reward_rates=None,
                seed=0,
                show_progress=False,
                drift_after=DRIFT_AFTER,
                drift_ramp=DRIFT_RAMP,
                drift_shift=shift,
            )
        )
        try:
            while True:
                await asyncio.sleep(0.5)
                assert not traffic.done(), traffic.result()  # runs until cancelled
                view = await look(http, name)
                served = view["summary"]["arms"][0]["requests"] + view["challenger_requests"]
                for event in view["events"]:
                    timeline.setdefault(event, (round(time.monotonic() - started, 1), served))
                if done(view):
                    return {**view, "timeline": timeline}
                assert time.monotonic() - started < TIME_LIMIT_S, (timeline, view)
        finally:
            traffic.cancel()
            await asyncio.gather(traffic, return_exceptions=True)
            print(f"\n{name}: {timeline}")


def handed_back(view: dict[str, Any]) -> bool:
    """The parent serves again and the run is closed: its outcome recorded, its version linked
    to the challenger's conclusion run (the same state step, or the next one)."""
    runs = view["runs"]
    return (
        "delegation_ended" in view["events"]
        and bool(runs)
        and runs[-1]["outcome"] is not None
        and runs[-1]["conclusion_run"] is not None
    )


async def look(http: httpx.AsyncClient, name: str) -> dict[str, Any]:
    summary = (await http.get(f"/experiments/{name}")).json()
    runs = (await http.get(f"/experiments/{name}/retraining")).json()["runs"]
    drift = (await http.get(f"/experiments/{name}/drift")).json()
    actions = [e["action"] for e in (await http.get(f"/experiments/{name}/audit")).json()]
    events = list(dict.fromkeys(actions))
    if drift["concept"]["alert"]:
        events.insert(0, "concept_alarm")
    child = runs[-1]["challenger"] if runs and runs[-1]["challenger"] else None
    child_summary = (await http.get(f"/experiments/{child}")).json() if child else None
    if child_summary and child_summary["status"] == "concluded":
        events.append(f"challenger_{child_summary['outcome']}")
    challenger_requests = sum(a["requests"] for a in child_summary["arms"]) if child_summary else 0
    return {
        "summary": summary,
        "runs": runs,
        "drift": drift,
        "events": events,
        "child": child_summary,
        "challenger_requests": challenger_requests,
    }


def accuracy_on_drifted_rows(client: httpx.Client, name: str, shift: float) -> tuple[float, set]:
    """Predictions of ``name`` for 60 fully drifted hold-out rows: accuracy and who answered."""
    from serve_app.models.demo import digits_split

    _, features, _, labels = digits_split()
    answers = [
        client.post(
            "/predict", json={"features": [(features[i] + shift).tolist()], "experiment": name}
        )
        for i in range(60)
    ]
    assert all(a.status_code == 200 for a in answers), answers[0].text
    bodies = [a.json() for a in answers]
    correct = [int(b["predictions"][0]) == int(labels[i]) for i, b in enumerate(bodies)]
    served = {(b["experiment"], b["arm"], b["model_version"]) for b in bodies}
    return float(np.mean(correct)), served


def test_drift_retrains_tests_promotes_and_serving_follows(app_url, client, registry, tmp_path):
    created = client.post("/experiments", json=loop_config("loop", "loop-digits"), headers=CONTROL)
    assert created.status_code == 201, created.text

    view = asyncio.run(run_loop(app_url, "loop", 1.5, handed_back))
    (run,) = view["runs"]
    assert run["trigger"] == "concept_drift"
    assert run["status"] == "concluded"
    assert run["outcome"] == "won", view["child"]
    assert run["rows"] >= 300
    assert run["model_uri"] == "models:/loop-digits/2"
    assert view["child"]["outcome"] == "promoted"
    assert view["child"]["winner"] == "challenger"
    assert view["events"].index("retrain_started") < view["events"].index("delegated")
    assert view["events"].index("alias_moved") < view["events"].index("delegation_ended")

    # the registry: the alias moved, the lineage is on the version and its run
    assert str(registry.get_model_version_by_alias("loop-digits", "champion").version) == "2"
    version = registry.get_model_version("loop-digits", "2")
    assert version.tags[f"{LINEAGE_PREFIX}rows"] == str(run["rows"])
    assert version.tags[f"{LINEAGE_PREFIX}rows_sha256"] == run["rows_sha256"]
    assert version.tags[f"{LINEAGE_PREFIX}parent_model_uri"] == "models:/loop-digits/1"
    assert version.tags[f"{LINEAGE_PREFIX}conclusion_run"] == view["child"]["mlflow_run_id"]
    assert registry.get_run(version.run_id).data.tags[f"{LINEAGE_PREFIX}outcome"] == "won"
    # the rows came after the estimated start of the drop, never from the reference before it
    # (the detector itself restarted when serving moved to the new version)
    changed_at = float(version.tags[f"{LINEAGE_PREFIX}rows_since"])
    assert run["rows_from"] >= changed_at

    # serving follows: the experiment itself answers again, on the new version, and well
    accuracy, served = accuracy_on_drifted_rows(client, "loop", 1.5)
    assert served == {("loop", "current", "2")}
    assert accuracy > 0.85, accuracy  # the champion had ~0.4 on these rows

    # the decision log: the experiment's and its challenger's rows, exported by the CLI
    page = client.get(
        "/experiments/loop/decisions",
        params={"challengers": "true", "labelled": "true", "limit": 5000},
        headers=CONTROL,
    ).json()
    experiments = {row["experiment"] for row in page["rows"]}
    assert experiments == {"loop", view["child"]["name"]}
    before_drop = [
        r for r in page["rows"] if r["experiment"] == "loop" and r["issued_at"] < changed_at
    ]
    assert len(before_drop) >= 100  # logged, and left out of the training rows
    from typer.testing import CliRunner

    from serve_app.cli.commands import app as cli

    out = tmp_path / "loop.parquet"
    result = CliRunner().invoke(
        cli,
        [
            "decisions",
            "loop",
            "--out",
            str(out),
            "--url",
            app_url,
            "--control-token",
            CONTROL_TOKEN,
        ],
    )
    assert result.exit_code == 0, result.output
    import pandas as pd

    exported = pd.read_parquet(out)
    assert len(exported) >= run["rows"] - 1  # the parent's own rows (the challenger's apart)
    assert set(exported["experiment"]) == {"loop"}
    metrics = client.get("/metrics").text
    assert 'bandit_retrain_runs_total{experiment="loop",outcome="succeeded"} 1.0' in metrics


def test_a_worse_retrained_model_is_rolled_back(app_url, client, registry):
    config = loop_config("loop-worse", "loop-worse", label_noise=0.9, seed=3)
    created = client.post("/experiments", json=config, headers=CONTROL)
    assert created.status_code == 201, created.text

    view = asyncio.run(run_loop(app_url, "loop-worse", 1.0, handed_back))
    (run,) = view["runs"]
    assert run["outcome"] == "lost", view["child"]
    assert view["child"]["outcome"] == "rolled_back"
    assert run["model_uri"] == "models:/loop-worse/2"
    assert str(registry.get_model_version_by_alias("loop-worse", "champion").version) == "1"
    tags = registry.get_model_version("loop-worse", "2").tags
    assert tags[f"{LINEAGE_PREFIX}outcome"] == "lost"
    _, served = accuracy_on_drifted_rows(client, "loop-worse", 1.0)
    assert served == {("loop-worse", "current", "1")}  # the champion serves on
    assert "alias_moved" not in view["events"]
