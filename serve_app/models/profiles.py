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
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bandits.drift import ReferenceProfile
from serve_app.models.registry import client_for, mlflow_uris, no_progress_bars, resolve_version
from serve_app.models.uris import ModelUri, first_line, parse_model_uri

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
    try:
        with mlflow_uris(tracking_uri), no_progress_bars():
            text = _profile_text(parse_model_uri(model_uri), tracking_uri)
    except Exception as exc:  # an unreachable store or a missing model: no profile
        logger.warning("no drift profile for %s: %s", model_uri, first_line(exc))
        return None
    if text is None:
        return None
    try:
        return ReferenceProfile.from_json(text)
    except ValueError as exc:
        logger.warning("unreadable drift profile for %s: %s", model_uri, first_line(exc))
        return None


def _profile_text(uri: ModelUri, tracking_uri: str | None) -> str | None:
    if uri.kind == "path":
        path = Path(uri.path or "")
        for candidate in (path / LOCAL_PROFILE_NAME, path.parent / LOCAL_PROFILE_NAME):
            if candidate.is_file():
                return candidate.read_text()
        return None
    client = client_for(tracking_uri)
    if uri.kind == "registered":
        run_id = resolve_version(client, uri).run_id
    elif uri.kind == "logged":
        run_id = client.get_logged_model(uri.selector).source_run_id
    elif uri.kind == "run":
        run_id = uri.run_id
    else:
        return None  # s3://, gs://, ... model stores carry no profile we know of
    return _run_artifact_text(client, str(run_id)) if run_id else None


def _run_artifact_text(client: Any, run_id: str) -> str | None:
    parent = str(Path(ARTIFACT_PATH).parent)
    listed = {f.path for f in client.list_artifacts(run_id, parent)}
    if ARTIFACT_PATH not in listed:
        return None
    with tempfile.TemporaryDirectory(prefix="drift-profile-") as tmp:
        local = client.download_artifacts(run_id, ARTIFACT_PATH, tmp)
        return Path(local).read_text()
