"""Shared fixtures: one demo MLflow store per test session, in a temp dir."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture(scope="session")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The three demo models trained once into a temp MLflow store (SQLite + artifacts)."""
    from serve_app.demo_models import train_demo_models

    root: Path = tmp_path_factory.mktemp("mlflow")
    tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
    uris = train_demo_models(tracking_uri, root / "mlartifacts", seed=0)
    return {"tracking_uri": tracking_uri, "uris": uris, "root": root}
