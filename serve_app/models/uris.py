"""MLflow model URIs, parsed once, and the MLflow settings a call needs for a moment.

Every URI this project serves is one of:

- ``models:/<name>/<version>``, ``models:/<name>@<alias>``, ``models:/<name>/latest`` or
  ``models:/<name>/<stage>``: a registered model version;
- ``models:/<logged model id>`` (MLflow 3);
- ``runs:/<run id>/<path>``;
- a local path (plain or ``file://``); anything else (``s3://...``) MLflow resolves itself.

MLflow keeps the tracking and registry URIs in process-wide state. :func:`mlflow_uris` sets
them only for the duration of a block and restores the previous values afterwards, so
serving code never redirects a caller's own MLflow logging.

Example:
    >>> parse_model_uri("models:/digits-forest@champion")
    ModelUri(kind='registered', raw='models:/digits-forest@champion', name='digits-forest', \
version=None, alias='champion', selector=None, run_id=None, path=None)
    >>> registry_version("models:/digits-forest/2"), registry_version("models:/x@champion")
    (('digits-forest', '2'), None)
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote, urlparse

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

logger = logging.getLogger(__name__)

_URI_LOCK = threading.RLock()
_PROGRESS_ENV = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"

Kind = Literal["registered", "logged", "run", "path", "other"]


@dataclass(frozen=True)
class ModelUri:
    """The parts of a model URI (see the module docstring)."""

    kind: Kind
    raw: str
    name: str | None = None  # registered model name
    version: str | None = None
    alias: str | None = None
    selector: str | None = None  # "latest" or a stage name; the logged model id for "logged"
    run_id: str | None = None
    path: str | None = None  # artifact path inside the run, or the local path

    @property
    def follows_alias(self) -> bool:
        """Does the URI name a version indirectly (an alias or latest), so it can move?"""
        return self.kind == "registered" and (self.alias is not None or self.selector is not None)


def parse_model_uri(uri: str) -> ModelUri:
    """Split a model URI into its parts; never raises."""
    parsed = urlparse(uri)
    scheme = parsed.scheme
    if scheme == "models":
        body = uri[len("models:/") :].strip("/")
        if "@" in body:
            name, alias = body.rsplit("@", 1)
            return ModelUri("registered", uri, name=name, alias=alias)
        if "/" not in body:
            return ModelUri("logged", uri, selector=body)
        name, selector = body.rsplit("/", 1)
        if selector.isdigit():
            return ModelUri("registered", uri, name=name, version=selector)
        return ModelUri("registered", uri, name=name, selector=selector)
    if scheme == "runs":
        run_id, _, path = uri[len("runs:/") :].strip("/").partition("/")
        return ModelUri("run", uri, run_id=run_id, path=path or None)
    if scheme in ("", "file") or (len(scheme) == 1 and os.name == "nt"):
        path = unquote(parsed.path) if scheme == "file" else uri
        return ModelUri("path", uri, path=path)
    return ModelUri("other", uri)


def registry_version(uri: Any) -> tuple[str, str] | None:
    """``(registered name, version)`` of a ``models:/<name>/<version>`` URI, else None."""
    if not isinstance(uri, str):
        return None
    parsed = parse_model_uri(uri)
    if parsed.kind == "registered" and parsed.version is not None and parsed.name:
        return parsed.name, parsed.version
    return None


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


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (MLflow's are long)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
