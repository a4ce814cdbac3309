"""Simulator drift injection: the pure transform and the option checks."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from typer.testing import CliRunner

from serve_app.cli import app
from serve_app.cli.simulate import drift_amount, drifted_features, run_simulation

runner = CliRunner()


def test_drift_grows_linearly_then_stays() -> None:
    amounts = [drift_amount(i, 100, 1000, 0.5) for i in range(2000)]
    assert amounts[:100] == [0.0] * 100
    assert amounts[100] == pytest.approx(0.5 / 1000)
    assert amounts[599] == pytest.approx(0.25)
    assert amounts[1099:] == [0.5] * 901
    assert np.all(np.diff(amounts) >= 0)


def test_no_drift_and_sudden_drift() -> None:
    assert drift_amount(10**6, None, 10, 1.0) == 0.0
    assert [drift_amount(i, 3, 0, -0.2) for i in range(5)] == [0.0, 0.0, 0.0, -0.2, -0.2]


def test_drifted_features_shifts_every_feature_without_touching_the_input() -> None:
    rows = np.arange(6, dtype=np.float64).reshape(2, 3)
    out = drifted_features(rows, step=7, drift_after=5, ramp=4, shift=2.0)
    np.testing.assert_allclose(out, rows + 1.5)  # (7 - 5 + 1) / 4 of 2.0
    np.testing.assert_array_equal(rows, np.arange(6).reshape(2, 3))
    np.testing.assert_array_equal(drifted_features(rows, 4, 5, 4, 2.0), rows)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"drift_after": -1}, "drift_after must be >= 0"),
     ({"drift_after": 0, "drift_ramp": -5}, "drift_ramp must be >= 0"),
     ({"drift_after": 0, "drift_shift": float("nan")}, "drift_shift must be finite")],
)  # fmt: skip
def test_run_simulation_checks_drift_arguments(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        asyncio.run(
            run_simulation(
                "http://127.0.0.1:9",
                experiment=None,
                requests=1,
                concurrency=1,
                reward_rates=None,
                seed=0,
                show_progress=False,
                **kwargs,  # type: ignore[arg-type]
            )
        )


def test_simulate_has_drift_options() -> None:
    result = runner.invoke(app, ["simulate", "--help"])
    assert result.exit_code == 0
    for option in ("--drift-after", "--drift-ramp", "--drift-shift"):
        assert option in result.output
    bad = runner.invoke(app, ["simulate", "--drift-after", "-3"])
    assert bad.exit_code == 2
