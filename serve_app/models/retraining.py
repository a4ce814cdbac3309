"""What a retraining function gets and gives back, and how it runs (inside a Ray task).

A retraining function (``retrain.entrypoint`` of an experiment, ``package.module:function``)
is called with one :class:`RetrainRequest` and returns the URI of the model version it
registered (``models:/<name>/<version>``)::

    def retrain(request: RetrainRequest) -> str:
        x, y = request.rows.features, request.rows.labels
        ...  # fit, log with mlflow (the tracking URI is set for the call), register
        return f"models:/{name}/{version}"

:func:`run_retraining` is the body of the Ray task: it imports the function, calls it with
MLflow pointed at the app's tracking server, checks what it returned, and writes the lineage
(:data:`LINEAGE_PREFIX` tags: trigger, rows used with their time range and hash, the parent
version) on the new model version and on the run that logged it, whatever the function did.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from serve_app.models.uris import registry_version

LINEAGE_PREFIX = "bandit_serve.retrain."
"""Prefix of the lineage tags on a retrained model version and its run."""


class RetrainError(RuntimeError):
    """The retraining function failed or returned something that is not a new version."""


@dataclass(frozen=True)
class LoggedRows:
    """Labelled rows of the decision log, oldest first (one row per logged feature row:
    a request's rows share its decision's arm, reward and label).

    Attributes:
        features: ``(n, n_features)`` float64.
        labels: The feedback labels, one per row.
        predictions: What the serving arm answered for each row.
        arms: The arm that served each row.
        rewards: The reward each row's decision received.
        propensities: The probability the policy gave that arm.
        issued_at: Decision times (seconds since the epoch).
        decision_keys: The decisions the rows belong to.
    """

    features: np.ndarray
    labels: np.ndarray
    predictions: np.ndarray
    arms: np.ndarray
    rewards: np.ndarray
    propensities: np.ndarray
    issued_at: np.ndarray
    decision_keys: tuple[str, ...]

    @classmethod
    def from_log(cls, records: Sequence[Mapping[str, Any]]) -> LoggedRows:
        """Rows from :meth:`~serve_app.state.store.ExperimentStore.decision_rows` records
        (``labelled=True``): a record's label belongs to its first feature row (the one the
        feedback was about), so each record gives one row."""
        rows = [(r, r["features"][0], r["predictions"][0]) for r in records if r["features"]]
        return cls(
            features=np.asarray([f for _, f, _ in rows], dtype=np.float64).reshape(len(rows), -1),
            labels=np.asarray([r["label"] for r, _, _ in rows]),
            predictions=np.asarray([p for _, _, p in rows], dtype=object),
            arms=np.asarray([r["arm"] for r, _, _ in rows], dtype=object),
            rewards=np.asarray([r["reward"] for r, _, _ in rows], dtype=np.float64),
            propensities=np.asarray([r["propensity"] for r, _, _ in rows], dtype=np.float64),
            issued_at=np.asarray([r["issued_at"] for r, _, _ in rows], dtype=np.float64),
            decision_keys=tuple(r["decision_key"] for r, _, _ in rows),
        )

    def __len__(self) -> int:
        return len(self.decision_keys)

    def digest(self) -> str:
        """SHA-256 over the rows exactly as given (keys, features, labels), in order: the
        same rows always give the same hash, any change another."""
        sha = hashlib.sha256()
        sha.update("\n".join(self.decision_keys).encode())
        sha.update(np.ascontiguousarray(self.features).tobytes())
        sha.update(json.dumps([str(label) for label in self.labels.tolist()]).encode())
        return sha.hexdigest()

    def lineage(self) -> dict[str, str]:
        """``rows``, ``rows_from``, ``rows_to`` (epoch seconds) and ``rows_sha256``."""
        return {
            "rows": str(len(self)),
            "rows_from": f"{float(self.issued_at.min()):.3f}" if len(self) else "",
            "rows_to": f"{float(self.issued_at.max()):.3f}" if len(self) else "",
            "rows_sha256": self.digest(),
        }


@dataclass(frozen=True)
class RetrainRequest:
    """Everything a retraining function is given.

    Attributes:
        experiment: The experiment whose log the rows come from.
        trigger: What started it (``data_drift``, ``concept_drift``, ``schedule``).
        champion_uri: The champion's version (``models:/<name>/<version>``): register the
            new version under the same name to make it a candidate for its alias.
        tracking_uri: The app's MLflow tracking and registry URI (set for the call).
        rows: The labelled logged rows, newest ``retrain.max_rows`` of them.
        params: ``retrain.params`` from the config, as given.
        lineage: The tags the app writes on the version (log them on your run if you like).
    """

    experiment: str
    trigger: str
    champion_uri: str
    tracking_uri: str | None
    rows: LoggedRows
    params: Mapping[str, Any] = field(default_factory=dict)
    lineage: Mapping[str, str] = field(default_factory=dict)


def load_entrypoint(entrypoint: str) -> Any:
    """The function ``package.module:function`` names.

    Raises:
        RetrainError: the module does not import or has no such callable.
    """
    module_name, _, function_name = entrypoint.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as error:
        raise RetrainError(f"cannot import {module_name!r}: {error!r}") from None
    function = getattr(module, function_name, None)
    if not callable(function):
        raise RetrainError(f"{module_name!r} has no function {function_name!r}")
    return function


def run_retraining(entrypoint: str, request: RetrainRequest) -> dict[str, str]:
    """Call the retraining function and record the lineage on what it registered.

    Returns:
        ``{"model_uri": "models:/<name>/<version>", "run_id": ...}``.

    Raises:
        RetrainError: the function raised, or did not return a new registered version.
    """
    from serve_app.models.registry import client_for, mlflow_uris

    function = load_entrypoint(entrypoint)
    with mlflow_uris(request.tracking_uri):
        try:
            returned = function(request)
        except Exception as error:
            raise RetrainError(f"{entrypoint} raised {error!r}"[:2000]) from None
        target = registry_version(returned)
        if target is None:
            raise RetrainError(
                f"{entrypoint} returned {returned!r}; a retraining function returns the "
                "registered version it created, 'models:/<name>/<version>'"
            )
        if returned == request.champion_uri:
            raise RetrainError(f"{entrypoint} returned the champion {returned!r} itself")
        client = client_for(request.tracking_uri)
        version = client.get_model_version(*target)  # raises for a version that does not exist
        tags = {f"{LINEAGE_PREFIX}{key}": value for key, value in request.lineage.items()}
        for key, value in tags.items():
            client.set_model_version_tag(target[0], target[1], key, value)
        if version.run_id:
            for key, value in tags.items():
                client.set_tag(version.run_id, key, value)
    return {"model_uri": str(returned), "run_id": version.run_id or ""}


def tag_conclusion(
    tracking_uri: str | None, model_uri: str, conclusion_run_id: str, outcome: str
) -> None:
    """Link a retrained version (and its run) to the challenger experiment's conclusion."""
    from serve_app.models.registry import client_for, mlflow_uris

    target = registry_version(model_uri)
    if target is None:
        return
    with mlflow_uris(tracking_uri):
        client = client_for(tracking_uri)
        tags = {
            f"{LINEAGE_PREFIX}conclusion_run": conclusion_run_id,
            f"{LINEAGE_PREFIX}outcome": outcome,
        }
        version = client.get_model_version(*target)
        for key, value in tags.items():
            client.set_model_version_tag(target[0], target[1], key, value)
            if version.run_id:
                client.set_tag(version.run_id, key, value)
