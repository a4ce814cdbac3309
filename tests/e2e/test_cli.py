"""The `bandit-serve` CLI against the real app: simulate drives traffic, status shows it."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from typer.testing import CliRunner

from serve_app.cli import app as cli_app
from serve_app.cli.simulate import run_simulation

pytestmark = pytest.mark.e2e


def test_simulation_feeds_the_experiment(app_url):
    arms_before = httpx.get(f"{app_url}/experiments/split").json()["arms"]
    before = {arm["name"]: arm["feedback"] for arm in arms_before}
    result = asyncio.run(
        run_simulation(
            app_url,
            experiment="split",
            requests=200,
            concurrency=8,
            reward_rates={"logreg": 0.2, "forest": 0.9},
            seed=0,
            show_progress=False,
        )
    )
    assert result.errors == 0
    assert result.completed == 200
    assert sum(tally.requests for tally in result.arms.values()) == 200
    assert sum(tally.feedback for tally in result.arms.values()) == 200
    server = {arm["name"]: arm for arm in result.server["arms"]}
    for name, tally in result.arms.items():
        # every acknowledged feedback is in the server's count
        assert server[name]["feedback"] - before[name] == tally.feedback
    assert result.arms["forest"].mean_reward > result.arms["logreg"].mean_reward


def test_simulate_and_status_commands(app_url):
    runner = CliRunner()
    simulated = runner.invoke(
        cli_app,
        [
            "simulate",
            "--url",
            app_url,
            "--experiment",
            "split",  # not "ts": test_routing checks that experiment's exact reward means
            "--requests",
            "30",
            "--concurrency",
            "4",
        ],
    )
    assert simulated.exit_code == 0, simulated.output
    assert "forest" in simulated.output
    status = runner.invoke(cli_app, ["status", "--url", app_url, "--experiment", "split"])
    assert status.exit_code == 0, status.output
    for text in ("split", "logreg", "forest", "P(best)"):
        assert text in status.output
    everything = runner.invoke(cli_app, ["status", "--url", app_url])
    assert everything.exit_code == 0
    assert "revenue" in everything.output


def test_report_command_writes_tables_plots_and_html(app_url, tmp_path):
    asyncio.run(
        run_simulation(
            app_url,
            experiment="split",
            requests=60,
            concurrency=4,
            reward_rates={"logreg": 0.2, "forest": 0.9},
            seed=1,
            show_progress=False,
        )
    )
    out = tmp_path / "report"
    result = CliRunner().invoke(
        cli_app, ["report", "--url", app_url, "--experiment", "split", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "forest" in result.output
    for name in ("report.json", "report.html", "traffic_share.png", "posteriors.png"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "traffic_share.png").read_bytes().startswith(b"\x89PNG")
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html
    assert "split" in html
    missing = CliRunner().invoke(cli_app, ["report", "--url", app_url, "--experiment", "nope"])
    assert missing.exit_code == 1
    assert "no report for experiment 'nope'" in missing.output
