"""log_conclusion against a real MLflow store (SQLite + local artifacts in tmp_path)."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from serve_app.models.tracking import (
    experiment_name_for,
    load_alias_version,
    log_conclusion,
)
from serve_app.report import render_html, render_plots

CONFIG: dict[str, Any] = {
    "name": "digits",
    "policy": {"name": "thompson", "params": {"floor": 0.05, "seed": 7}},
    "reward": "binary",
    "arms": [
        {"name": "logreg", "model_uri": "models:/digits-logreg/1"},
        {"name": "forest", "model_uri": "models:/digits-forest/2"},
    ],
    "stopping": {"min_samples": 100, "prob_best": 0.95, "notes": "x" * 7000},
    "guardrails": None,
}


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A SQLite MLflow store with ``digits-forest`` v1, v2 and ``digits-logreg`` v1."""
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    experiment_id = client.create_experiment(
        "models", artifact_location=(tmp_path / "mlartifacts" / "models").as_uri()
    )
    for name, versions in (("digits-forest", 2), ("digits-logreg", 1)):
        client.create_registered_model(name)
        for _ in range(versions):
            run = client.create_run(experiment_id)
            client.log_text(run.info.run_id, "flavor: none\n", "model/MLmodel")
            source = f"{run.info.artifact_uri}/model"
            client.create_model_version(name, source, run_id=run.info.run_id)
            client.set_terminated(run.info.run_id)
    client.set_registered_model_alias("digits-forest", "champion", "1")
    return {"tracking_uri": tracking_uri, "client": client, "root": tmp_path}


def _report(binary_report: dict[str, Any]) -> dict[str, Any]:
    """The binary fixture with the winner on digits-forest version 2."""
    for arm in binary_report["arms"]:
        if arm["name"] == "forest":
            arm["model_uri"] = "models:/digits-forest/2"
    assert binary_report["winner"] == "forest"
    return binary_report


def _download_json(client: MlflowClient, run_id: str, path: str, dst: Path) -> Any:
    local = client.download_artifacts(run_id, path, str(dst))
    return json.loads(Path(local).read_text())


def test_log_conclusion_records_run_and_moves_alias(
    store: dict[str, Any], binary_report: dict[str, Any], tmp_path: Path
) -> None:
    report = _report(binary_report)
    client: MlflowClient = store["client"]
    run_id = log_conclusion(store["tracking_uri"], report, CONFIG, alias="champion")

    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "digits-promoted"
    assert run.info.start_time == int(report["started_at"] * 1000)
    assert run.info.end_time == int((report["started_at"] + report["duration_s"]) * 1000)
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == experiment_name_for(report) == "bandit-serve/digits"
    assert experiment.artifact_location.startswith((tmp_path / "mlartifacts").as_uri())

    tags = run.data.tags
    assert tags["bandit_serve.outcome"] == "promoted"
    assert tags["bandit_serve.winner"] == "forest"
    assert tags["bandit_serve.status"] == "concluded"
    assert tags["bandit_serve.alias"] == "champion"
    assert tags["bandit_serve.alias_model"] == "digits-forest"
    assert tags["bandit_serve.alias_version"] == "2"
    assert tags["bandit_serve.alias_previous_version"] == "1"
    assert "forest" in tags["mlflow.note.content"]

    params = run.data.params
    assert params["policy"] == "thompson"
    assert params["control"] == "logreg"
    assert params["arm.forest.model_uri"] == "models:/digits-forest/2"
    assert params["config.policy.params.floor"] == "0.05"
    assert params["config.arms.1.model_uri"] == "models:/digits-forest/2"
    assert len(params["config.stopping.notes"]) == 6000
    assert not any(key.startswith("config.guardrails") for key in params)

    metrics = run.data.metrics
    forest = next(a for a in report["arms"] if a["name"] == "forest")
    assert metrics["forest.reward_mean"] == pytest.approx(forest["reward_mean"])
    assert metrics["forest.requests"] == forest["requests"]
    assert metrics["forest.prob_best"] == pytest.approx(0.97)
    assert metrics["forest.lift"] == pytest.approx(
        report["comparisons"][0]["frequentist"]["estimate"]
    )
    assert metrics["srm.p_value"] == pytest.approx(0.4)
    assert "logreg.p95_latency_ms" not in metrics  # null in the report
    history = client.get_metric_history(run_id, "forest.timeline.pulls")
    assert [m.step for m in history] == list(range(20))
    assert history[-1].value == forest["requests"]

    files = {f.path for f in client.list_artifacts(run_id)}
    assert {"report.json", "config.json", "report.html", "plots"} <= files
    plot_files = {Path(f.path).name for f in client.list_artifacts(run_id, "plots")}
    assert plot_files == {
        "traffic_share.png",
        "posteriors.png",
        "cumulative_reward.png",
        "drift.png",
    }
    logged = _download_json(client, run_id, "report.json", tmp_path / "dl")
    assert logged == {**report, "mlflow_run_id": run_id}
    assert _download_json(client, run_id, "config.json", tmp_path / "dl") == CONFIG

    version = client.get_model_version_by_alias("digits-forest", "champion")
    assert str(version.version) == "2"
    assert version.tags["bandit_serve.promoted_by_run"] == run_id
    assert load_alias_version(store["tracking_uri"], "digits-forest", "champion") == "2"


def test_given_html_and_plots_are_logged_as_is(
    store: dict[str, Any], continuous_report: dict[str, Any], tmp_path: Path
) -> None:
    plots = render_plots(continuous_report, tmp_path / "plots")
    html = render_html(continuous_report, plots)
    run_id = log_conclusion(store["tracking_uri"], continuous_report, {}, html=html, plots=plots)
    client: MlflowClient = store["client"]
    local = client.download_artifacts(run_id, "report.html", str(tmp_path / "dl"))
    assert Path(local).read_text(encoding="utf-8") == html
    names = {Path(f.path).name for f in client.list_artifacts(run_id, "plots")}
    assert names == {p.name for p in plots.values()}
    assert "bandit_serve.alias" not in client.get_run(run_id).data.tags


def test_non_registry_winner_is_a_tag_not_an_error(
    store: dict[str, Any], binary_report: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    for arm in binary_report["arms"]:
        arm["model_uri"] = f"runs:/abc/{arm['name']}"
    with caplog.at_level("WARNING", logger="serve_app.models.tracking"):
        run_id = log_conclusion(store["tracking_uri"], binary_report, CONFIG, alias="champion")
    tags = store["client"].get_run(run_id).data.tags
    assert "not models:/<name>/<version>" in tags["bandit_serve.alias_skipped"]
    assert "alias_version" not in " ".join(tags)
    assert "not moved" in caplog.text
    assert load_alias_version(store["tracking_uri"], "digits-forest", "champion") == "1"


def test_missing_registry_version_is_a_tag(
    store: dict[str, Any], binary_report: dict[str, Any]
) -> None:
    report = _report(binary_report)
    report["arms"][1]["model_uri"] = "models:/digits-forest/9"
    run_id = log_conclusion(store["tracking_uri"], report, CONFIG, alias="champion")
    run = store["client"].get_run(run_id)
    assert run.info.status == "FINISHED"
    assert "digits-forest@champion -> 9" in run.data.tags["bandit_serve.alias_error"]
    assert load_alias_version(store["tracking_uri"], "digits-forest", "champion") == "1"


def test_stopped_without_winner_leaves_alias(
    store: dict[str, Any], binary_report: dict[str, Any]
) -> None:
    report = _report(binary_report)
    report.update(outcome="stopped", winner=None)
    run_id = log_conclusion(store["tracking_uri"], report, CONFIG, alias="champion")
    run = store["client"].get_run(run_id)
    assert run.info.run_name == "digits-stopped"
    assert run.data.tags["bandit_serve.winner"] == "none"
    assert "alias not moved" in run.data.tags["bandit_serve.alias_skipped"]
    assert load_alias_version(store["tracking_uri"], "digits-forest", "champion") == "1"


def test_load_alias_version_unknown(store: dict[str, Any]) -> None:
    assert load_alias_version(store["tracking_uri"], "digits-forest", "nope") is None
    assert load_alias_version(store["tracking_uri"], "no-such-model", "champion") is None


def test_threads_and_global_uri_untouched(
    store: dict[str, Any], binary_report: dict[str, Any], continuous_report: dict[str, Any]
) -> None:
    before = mlflow.get_tracking_uri()
    results: dict[str, str] = {}

    def work(report: dict[str, Any]) -> None:
        results[report["experiment"]] = log_conclusion(store["tracking_uri"], report, {})

    threads = [threading.Thread(target=work, args=(r,)) for r in (binary_report, continuous_report)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert set(results) == {"digits", "revenue"}
    for name, run_id in results.items():
        assert store["client"].get_run(run_id).data.tags["bandit_serve.experiment"] == name
    assert mlflow.get_tracking_uri() == before
    # Two conclusions of the same experiment share one MLflow experiment.
    again = log_conclusion(store["tracking_uri"], binary_report, {})
    first = store["client"].get_run(results["digits"]).info.experiment_id
    assert store["client"].get_run(again).info.experiment_id == first
