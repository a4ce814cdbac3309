"""Shared fixtures: one demo MLflow store per test session, in a temp dir."""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture(scope="session")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The three demo models trained once into a temp MLflow store (SQLite + artifacts)."""
    from serve_app.models.demo import train_demo_models

    root: Path = tmp_path_factory.mktemp("mlflow")
    tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
    uris = train_demo_models(tracking_uri, root / "mlartifacts", seed=0)
    return {"tracking_uri": tracking_uri, "uris": uris, "root": root}


def _load_postgres_helper() -> ModuleType:
    """``tests/postgres.py`` by path: ``tests`` is not an importable package here."""
    name = "bandit_serve_tests_postgres"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("postgres.py"))
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private PostgreSQL server for the session (skips where PostgreSQL is not installed)."""
    helper = _load_postgres_helper()
    try:
        server = helper.running_postgres(tmp_path_factory.mktemp("postgres"))
        url = server.__enter__()
    except helper.PostgresUnavailable as error:
        if os.environ.get("CI") == "true":  # CI installs PostgreSQL (.ci/run): never skip there
            pytest.fail(f"PostgreSQL is required under CI=true: {error}")
        pytest.skip(f"PostgreSQL binaries (initdb/pg_ctl) not found: {error}")
    try:
        yield url
    finally:
        server.__exit__(None, None, None)
