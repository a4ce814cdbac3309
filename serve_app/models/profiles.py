"""Drift reference profiles stored with MLflow models.

At training time :func:`log_profile` writes a :class:`~bandits.drift.ReferenceProfile` (the
training features and the model's predictions on them) as the artifact
``drift/reference_profile.json`` of the active MLflow run, the run that logs the model. At
serving time :func:`load_profile` finds it again from the arm's model URI:

* ``models:/name/<version>``, ``models:/name@alias``, ``models:/name/latest``: the model
  version's ``run_id``, then that run's artifact;
* ``models:/<logged model id>`` (MLflow 3): the logged model's ``source_run_id``;
* ``runs:/<run id>/<path>``: that run's artifact;
* a local model directory (plain path or ``file://``): ``drift_profile.json`` inside the
  directory (next to ``MLmodel``), else next to the directory. Write it there with
  :func:`save_profile`.

A model without a profile gives ``None`` (the serving side can then build one from the
first live requests with :meth:`ReferenceProfile.from_data`).
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import numpy as np
import numpy.typing as npt

from bandits.drift import ReferenceProfile

__all__ = [
    "ARTIFACT_PATH",
    "LOCAL_PROFILE_NAME",
    "build_profile",
    "load_profile",
    "log_profile",
    "save_profile",
]

logger = logging.getLogger(__name__)

ARTIFACT_PATH = "drift/reference_profile.json"
"""Where :func:`log_profile` puts the profile inside a run's artifacts."""

LOCAL_PROFILE_NAME = "drift_profile.json"
"""File name :func:`load_profile` looks for in (or next to) a local model directory."""


def build_profile(
    features: npt.ArrayLike,
    predictions: npt.ArrayLike | None = None,
    *,
    feature_names: list[str] | None = None,
    seed: int = 0,
    **options: Any,
) -> ReferenceProfile:
    """Profile reference features and the model's predictions on them.

    Predictions that are not one scalar per row (probability vectors, multi-output) are
    left out: the profile then has no prediction column.

    Args:
        features: Array of shape ``(n, d)``.
        predictions: One prediction per row, or None.
        feature_names: Optional column names.
        seed: Seed of the bounded reference samples.
        **options: Passed to :meth:`ReferenceProfile.from_data` (``bins``, ``sample_size``,
            ``categorical``, ...).
    """
    preds = None
    if predictions is not None:
        array = np.asarray(predictions)
        if array.ndim == 2 and array.shape[1] == 1:
            array = array[:, 0]
        preds = array if array.ndim == 1 else None
    return ReferenceProfile.from_data(
        features, preds, feature_names=feature_names, seed=seed, **options
    )


def log_profile(profile: ReferenceProfile) -> None:
    """Log ``profile`` as ``drift/reference_profile.json`` in the active MLflow run.

    Raises:
        RuntimeError: No MLflow run is active.
    """
    import mlflow

    if mlflow.active_run() is None:
        raise RuntimeError("log_profile needs an active MLflow run (inside mlflow.start_run())")
    with tempfile.TemporaryDirectory(prefix="drift-profile-") as tmp:
        path = Path(tmp) / Path(ARTIFACT_PATH).name
        path.write_text(profile.to_json())
        mlflow.log_artifact(str(path), artifact_path=str(Path(ARTIFACT_PATH).parent))


def save_profile(profile: ReferenceProfile, model_dir: str | Path) -> Path:
    """Write ``profile`` into a local model directory as ``drift_profile.json``."""
    path = Path(model_dir) / LOCAL_PROFILE_NAME
    path.write_text(profile.to_json())
    return path


def load_profile(model_uri: str, tracking_uri: str | None = None) -> ReferenceProfile | None:
    """The reference profile stored with a model, or None when it has none.

    Args:
        model_uri: Any MLflow model URI this project serves (see the module docstring).
        tracking_uri: Tracking and registry URI; None uses MLflow's configuration.

    Returns:
        The profile, or None when the model or its profile is missing, or the profile
        cannot be read (logged at WARNING; a broken profile must not stop serving).
    """
    from serve_app.demo_models import _mlflow_uris, _no_progress_bars

    try:
        with _mlflow_uris(tracking_uri), _no_progress_bars():
            text = _profile_text(model_uri, tracking_uri)
    except Exception as exc:  # an unreachable store or a missing model: no profile
        logger.warning("no drift profile for %s: %s", model_uri, _first_line(exc))
        return None
    if text is None:
        return None
    try:
        return ReferenceProfile.from_json(text)
    except ValueError as exc:
        logger.warning("unreadable drift profile for %s: %s", model_uri, _first_line(exc))
        return None


def _profile_text(uri: str, tracking_uri: str | None) -> str | None:
    parsed = urlparse(uri)
    scheme = parsed.scheme
    if scheme in ("", "file") or (len(scheme) == 1 and os.name == "nt"):
        path = Path(unquote(parsed.path)) if scheme == "file" else Path(uri)
        for candidate in (path / LOCAL_PROFILE_NAME, path.parent / LOCAL_PROFILE_NAME):
            if candidate.is_file():
                return candidate.read_text()
        return None
    if scheme not in ("models", "runs"):
        return None  # s3://, gs://, ... model stores carry no profile we know of
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    if scheme == "models":
        run_id = _model_run_id(client, uri)
    else:
        run_id = uri[len("runs:/") :].strip("/").partition("/")[0]
    if not run_id:
        return None
    return _run_artifact_text(client, run_id)


def _model_run_id(client: Any, uri: str) -> str | None:
    from serve_app.demo_models import _latest_version

    body = uri[len("models:/") :].strip("/")
    if "@" in body:
        name, alias = body.rsplit("@", 1)
        return str(client.get_model_version_by_alias(name, alias).run_id or "") or None
    if "/" not in body:  # models:/<logged model id> (MLflow 3)
        return str(client.get_logged_model(body).source_run_id or "") or None
    name, selector = body.rsplit("/", 1)
    if selector.lower() == "latest":
        latest = _latest_version(client, name)
        if latest is None:
            return None
        selector = latest
    if not selector.isdigit():  # a stage name
        versions = client.get_latest_versions(name, stages=[selector])
        return str(versions[0].run_id) if versions else None
    return str(client.get_model_version(name, selector).run_id or "") or None


def _run_artifact_text(client: Any, run_id: str) -> str | None:
    parent = str(Path(ARTIFACT_PATH).parent)
    listed = {f.path for f in client.list_artifacts(run_id, parent)}
    if ARTIFACT_PATH not in listed:
        return None
    with tempfile.TemporaryDirectory(prefix="drift-profile-") as tmp:
        local = client.download_artifacts(run_id, ARTIFACT_PATH, tmp)
        return Path(local).read_text()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
