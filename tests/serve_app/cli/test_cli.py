"""CLI: option parsing, demo-models in a temp dir, and failures without a running app.

``simulate`` and ``status`` against the real app are covered by the end-to-end tests.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from serve_app.cli import app
from serve_app.cli.commands import data_dir_default, parse_reward_rates
from serve_app.cli.simulate import run_simulation

runner = CliRunner()


def _closed_port_url() -> str:
    """A local URL where nothing listens (the port was free a moment ago)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, None),
        ("", None),
        ("logreg=0.3", {"logreg": 0.3}),
        (" logreg = 0.3 , forest=0.6,", {"logreg": 0.3, "forest": 0.6}),
        ("a=0,b=1", {"a": 0.0, "b": 1.0}),
    ],
)
def test_parse_reward_rates(text: str | None, expected: dict[str, float] | None) -> None:
    assert parse_reward_rates(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("logreg", "ARM=RATE"),
        ("=0.3", "ARM=RATE"),
        ("logreg=", "ARM=RATE"),
        ("logreg=high", "not a number"),
        ("logreg=1.5", "must be in [0, 1]"),
        ("logreg=-0.1", "must be in [0, 1]"),
        ("logreg=nan", "must be in [0, 1]"),
        ("logreg=0.1,logreg=0.2", "more than once"),
        (",,", "no ARM=RATE"),
    ],
)
def test_parse_reward_rates_errors(text: str, fragment: str) -> None:
    with pytest.raises(typer.BadParameter, match=fragment.replace("[", r"\[")):
        parse_reward_rates(text)


def test_simulate_rejects_bad_rates_before_any_request() -> None:
    result = runner.invoke(
        app, ["simulate", "--url", _closed_port_url(), "--reward-rates", "logreg=2"]
    )
    assert result.exit_code == 2
    assert "--reward-rates" in result.output
    assert "must be in [0, 1]" in result.output


@pytest.mark.parametrize("command", ["simulate", "status"])
def test_bad_url_is_a_usage_error(command: str) -> None:
    result = runner.invoke(app, [command, "--url", "127.0.0.1:8000"])
    assert result.exit_code == 2
    assert "http://" in result.output


def test_status_unreachable_app_exits_1() -> None:
    url = _closed_port_url()
    result = runner.invoke(app, ["status", "--url", url])
    assert result.exit_code == 1
    assert "cannot reach" in result.output
    assert "is the app running?" in result.output


def test_simulate_unreachable_app_stops_early() -> None:
    url = _closed_port_url()
    result = runner.invoke(app, ["simulate", "--url", url, "--requests", "500"])
    assert result.exit_code == 1
    assert "is the app running?" in result.output


def test_run_simulation_unreachable_reports_abort() -> None:
    url = _closed_port_url()
    result = asyncio.run(
        run_simulation(
            url,
            experiment="x",
            requests=200,
            concurrency=4,
            reward_rates=None,
            seed=0,
            show_progress=False,
        )
    )
    assert result.aborted is not None
    assert result.completed == 0
    assert 20 <= result.predict_errors < 200
    assert result.server is None
    assert result.error_samples


def test_run_simulation_validates_arguments() -> None:
    with pytest.raises(ValueError, match="requests"):
        asyncio.run(
            run_simulation(
                "http://127.0.0.1:1",
                experiment=None,
                requests=0,
                concurrency=1,
                reward_rates=None,
                seed=0,
            )
        )


def test_data_dir_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("BANDIT_SERVE_HOME", raising=False)
    assert data_dir_default() == Path("var")
    monkeypatch.setenv("BANDIT_SERVE_HOME", str(tmp_path))
    assert data_dir_default() == tmp_path


def test_demo_models_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BANDIT_SERVE_HOME", str(tmp_path / "home"))
    result = runner.invoke(app, ["demo-models"])
    assert result.exit_code == 0, result.output
    for name in ("digits-logreg", "digits-forest", "digits-mlp"):
        assert f"models:/{name}/1" in result.output
    assert (tmp_path / "home" / "mlflow.db").is_file()
    assert any((tmp_path / "home" / "mlartifacts").iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]

    again = runner.invoke(app, ["demo-models", "--data-dir", str(tmp_path / "home")])
    assert again.exit_code == 0, again.output
    assert "models:/digits-mlp/1" in again.output
