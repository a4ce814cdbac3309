"""``bandit-serve plan`` offline: explicit baseline, variance and traffic, no running app."""

from __future__ import annotations

import json
import math

from statsmodels.stats.power import NormalIndPower
from typer.testing import CliRunner

from serve_app.cli.commands import app

runner = CliRunner()


def test_offline_plan_prints_a_table_and_a_sentence():
    result = runner.invoke(
        app, ["plan", "--baseline", "0.1", "--daily-traffic", "2000", "--mde", "0.1"],
        env={"COLUMNS": "200"},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "fixed horizon" in result.output
    assert "sequential" in result.output
    assert "To detect a 10% relative lift with 80% power you need ~" in result.output
    assert "decisions/day" in result.output


def test_offline_plan_json_matches_statsmodels():
    result = runner.invoke(
        app,
        ["plan", "--baseline", "10", "--sd", "4", "--mde", "0.5", "--absolute",
         "--rule", "fixed", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    expected = NormalIndPower().solve_power(effect_size=0.5 / 4, alpha=0.05, power=0.8)
    assert body["rules"]["fixed"]["n_per_arm"] == math.ceil(expected)
    assert body["inputs"]["sd"] == 4.0


def test_offline_plan_refuses_bad_inputs():
    assert runner.invoke(app, ["plan", "--mde", "0.1"]).exit_code == 2  # no baseline
    bad = runner.invoke(app, ["plan", "--baseline", "0.1", "--power", "1.5"])
    assert bad.exit_code == 2
    assert "--power" in bad.output
    bad = runner.invoke(app, ["plan", "--baseline", "0.1", "--rule", "magic"])
    assert bad.exit_code == 2
    assert "--rule" in bad.output
