"""The MLflow registry and tracking settings, for the moment a call needs them.

MLflow keeps the tracking and registry URIs in process-wide state. :func:`mlflow_uris` sets
them only for the duration of a block and restores the previous values afterwards, so
serving code never redirects a caller's own MLflow logging. :func:`resolve_version` answers
which version a registered-model URI points to now (an alias moves; ``latest`` grows).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from serve_app.models.uris import ModelUri, parse_model_uri

logger = logging.getLogger(__name__)

_URI_LOCK = threading.RLock()
_PROGRESS_ENV = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"


def client_for(tracking_uri: str | None) -> MlflowClient:
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def latest_version(client: MlflowClient, name: str) -> str | None:
    """Highest version number of a registered model, or None if it has none."""
    try:
        versions = client.search_model_versions(f"name='{name}'")
    except MlflowException:
        return None
    numbers = [int(v.version) for v in versions]
    return str(max(numbers)) if numbers else None


def resolve_version(client: MlflowClient, uri: ModelUri) -> Any:
    """The registry's ``ModelVersion`` a registered URI points to now.

    Raises:
        MlflowException: the model, version or alias does not exist.
        ValueError: not a registered-model URI.
    """
    if uri.kind != "registered" or uri.name is None:
        raise ValueError(f"{uri.raw!r} is not a registered model version")
    if uri.alias is not None:
        return client.get_model_version_by_alias(uri.name, uri.alias)
    if uri.version is not None:
        return client.get_model_version(uri.name, uri.version)
    assert uri.selector is not None
    if uri.selector.lower() == "latest":
        latest = latest_version(client, uri.name)
        if latest is None:
            raise MlflowException(f"registered model {uri.name!r} has no versions")
        return client.get_model_version(uri.name, latest)
    versions = client.get_latest_versions(uri.name, stages=[uri.selector])  # a stage name
    if not versions:
        raise MlflowException(f"registered model {uri.name!r} has no version in {uri.selector}")
    return versions[0]


@contextmanager
def mlflow_uris(tracking_uri: str | None) -> Iterator[None]:
    """Point MLflow's tracking and registry URIs at ``tracking_uri`` for a block.

    The previous values (including "unset" and the environment variables MLflow mirrors
    them into) are restored on exit. ``None`` leaves MLflow's configuration untouched.
    """
    if tracking_uri is None:
        yield
        return
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    with _URI_LOCK:
        env_before = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
        tracking_before = getattr(tracking_utils, "_tracking_uri", None)
        registry_before = getattr(registry_utils, "_registry_uri", None)
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(tracking_uri)
        try:
            yield
        finally:
            mlflow.set_tracking_uri(tracking_before)
            registry_utils._registry_uri = registry_before
            for key, value in env_before.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


@contextmanager
def no_progress_bars() -> Iterator[None]:
    """Turn off MLflow's artifact-download progress bars (noise in service logs)."""
    before = os.environ.get(_PROGRESS_ENV)
    os.environ[_PROGRESS_ENV] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(_PROGRESS_ENV, None)
        else:
            os.environ[_PROGRESS_ENV] = before


def current_version(uri: str, tracking_uri: str | None) -> str | None:
    """The version a registered-model URI points to now (None: not a registered URI).

    Raises:
        MlflowException: the model, alias or version does not exist.
    """
    parsed = parse_model_uri(uri)
    if parsed.kind != "registered":
        return None
    if parsed.version is not None:
        return parsed.version
    with mlflow_uris(tracking_uri):
        return str(resolve_version(client_for(tracking_uri), parsed).version)
