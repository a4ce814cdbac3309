"""Demo models for the digits task, trained and registered in MLflow on first run.

Three deliberately different classifiers (a linear model, a tree ensemble and a small
torch MLP) are trained on scikit-learn's bundled ``load_digits`` data, so a bandit has
arms whose accuracies really differ. All three share one output contract: given a
float64 array of shape ``(n, 64)`` they return integer class labels.

The helpers the serving side needs for *any* MLflow model live in
:mod:`serve_app.models.loading`; like them, training sets MLflow's tracking and registry
URIs only for the duration of the call (:func:`serve_app.models.uris.mlflow_uris`).
"""

from __future__ import annotations

import io
import logging
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pyfunc
import numpy as np
from mlflow.tracking import MlflowClient

from serve_app.models.registry import latest_version, mlflow_uris, no_progress_bars

__all__ = [
    "CHAMPION_ALIAS",
    "DIGITS_MODELS",
    "EXPERIMENT_NAME",
    "TorchDigitsClassifier",
    "digits_split",
    "retrain_digits",
    "train_demo_models",
]

logger = logging.getLogger(__name__)

DIGITS_MODELS: dict[str, str] = {
    "logreg": "digits-logreg",
    "forest": "digits-forest",
    "mlp": "digits-mlp",
}
"""Arm name -> registered MLflow model name."""

EXPERIMENT_NAME = "bandit-serve-demo"

CHAMPION_ALIAS = "champion"
"""The alias the demo's closed-loop experiment follows; first run points it at version 1 of
each demo model (a retrained version that wins moves it)."""

_N_FEATURES = 64
_N_CLASSES = 10
_HIDDEN = 32
_MODEL_NAME_IN_RUN = "model"
_STATE_DICT_KEY = "state_dict"

# Pinning requirements skips MLflow's requirement inference, which imports the model in a
# subprocess and costs several seconds per logged model.
_SKLEARN_REQS = ["mlflow", "scikit-learn", "numpy", "skops"]
_TORCH_REQS = ["mlflow", "torch", "numpy", "pandas"]


# --------------------------------------------------------------------------- data


def digits_split(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split scikit-learn's bundled digits data into a stratified 70/30 train/test split.

    Pixel intensities (0..16) are scaled to ``[0, 1]`` by dividing by 16.

    Args:
        seed: ``random_state`` of the split. Models trained with seed ``s`` must be
            evaluated on ``digits_split(s)`` to keep the hold-out set unseen.

    Returns:
        ``(X_train, X_test, y_train, y_test)``; features are float64 of shape ``(n, 64)``,
        labels are int64.

    Example:
        >>> X_train, X_test, y_train, y_test = digits_split(0)
        >>> X_train.shape, X_test.shape, X_train.dtype
        ((1257, 64), (540, 64), dtype('float64'))
        >>> float(X_train.max()) <= 1.0
        True
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    features = np.asarray(digits.data, dtype=np.float64) / 16.0
    labels = np.asarray(digits.target, dtype=np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        features, labels, test_size=0.3, stratify=labels, random_state=seed
    )
    return x_train, x_test, y_train, y_test


# --------------------------------------------------------------------------- torch model


def _build_mlp() -> Any:
    """The MLP architecture, 64 -> 32 -> 10, shared by training and loading."""
    from torch import nn

    return nn.Sequential(
        nn.Linear(_N_FEATURES, _HIDDEN),
        nn.ReLU(),
        nn.Linear(_HIDDEN, _N_CLASSES),
    )


class TorchDigitsClassifier(mlflow.pyfunc.PythonModel):
    """MLflow pyfunc wrapper around the digits MLP.

    The network weights travel as a logged artifact (a torch ``state_dict`` file); the
    architecture is rebuilt from this module at load time. ``predict`` returns integer
    labels, the same contract as the scikit-learn pyfunc models.
    """

    # MLflow wraps ``predict`` for type-hint validation when a subclass is created and warns
    # (unfilterably) that ours has no hints; the logged signature describes the input instead.
    _skip_type_hint_validation = True

    def __init__(self) -> None:
        self._net: Any = None

    def load_context(self, context: Any) -> None:
        """Rebuild the network and load its weights from the ``state_dict`` artifact."""
        import torch

        net = _build_mlp()
        state = torch.load(context.artifacts[_STATE_DICT_KEY], weights_only=True)
        net.load_state_dict(state)
        net.eval()
        self._net = net

    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        """Classify rows of 64 pixel features.

        Args:
            context: MLflow model context (unused after ``load_context``).
            model_input: numpy array or pandas DataFrame of shape ``(n, 64)``.
            params: Unused; accepted for MLflow's ``predict`` contract.

        Returns:
            ``np.ndarray`` of int64 class labels, shape ``(n,)``.
        """
        import torch

        if self._net is None:
            self.load_context(context)
        if hasattr(model_input, "to_numpy"):
            model_input = model_input.to_numpy()
        features = np.asarray(model_input, dtype=np.float32).reshape(-1, _N_FEATURES)
        with torch.no_grad():
            logits = self._net(torch.from_numpy(features))
        return logits.argmax(dim=1).numpy().astype(np.int64)


def _train_mlp(x_train: np.ndarray, y_train: np.ndarray, seed: int) -> Any:
    """Train the MLP with Adam on mini-batches; deterministic for a given seed."""
    import torch
    from torch import nn

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(seed)
        net = _build_mlp()
        optimiser = torch.optim.Adam(net.parameters(), lr=1e-2)
        loss_fn = nn.CrossEntropyLoss()
        features = torch.from_numpy(x_train.astype(np.float32))
        labels = torch.from_numpy(y_train.astype(np.int64))
        generator = torch.Generator().manual_seed(seed)
        batch_size = 64
        for _epoch in range(30):
            order = torch.randperm(len(features), generator=generator)
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                optimiser.zero_grad()
                loss = loss_fn(net(features[idx]), labels[idx])
                loss.backward()
                optimiser.step()
        net.eval()
        return net
    finally:
        torch.set_num_threads(previous_threads)


# --------------------------------------------------------------------------- mlflow state


@contextmanager
def _quiet_loggers(quiet: bool) -> Iterator[None]:
    """Silence MLflow's and alembic's logging and progress bars for a block when ``quiet``."""
    if not quiet:
        yield
        return
    names = ("mlflow", "alembic")
    levels = {name: logging.getLogger(name).level for name in names}
    for name in names:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        # The registry announces new versions with bare prints to stderr.
        with no_progress_bars(), redirect_stderr(io.StringIO()):
            yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def _experiment_id(client: MlflowClient, artifact_dir: Path | None) -> str:
    """Get or create the demo experiment with artifacts under ``artifact_dir`` (None: the
    tracking server's default location)."""
    experiment = client.get_experiment_by_name(EXPERIMENT_NAME)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment.experiment_id)
        return str(experiment.experiment_id)
    location = artifact_dir.as_uri() if artifact_dir is not None else None
    return str(client.create_experiment(EXPERIMENT_NAME, artifact_location=location))


def _ensure_champion(client: MlflowClient, name: str) -> None:
    """Point ``name@champion`` at version 1 unless the alias exists already."""
    try:
        client.get_model_version_by_alias(name, CHAMPION_ALIAS)
    except Exception:
        client.set_registered_model_alias(name, CHAMPION_ALIAS, "1")


# --------------------------------------------------------------------------- training


def train_demo_models(
    tracking_uri: str,
    artifact_dir: str | Path,
    *,
    seed: int = 0,
    force: bool = False,
    quiet: bool = True,
) -> dict[str, str]:
    """Train, log and register the three digits demo models (idempotent).

    If every model in :data:`DIGITS_MODELS` already has a registered version, nothing
    is trained and the latest versions are returned. Otherwise only the missing models
    are trained (all three when ``force``). Each run logs the test ``accuracy`` metric,
    a model signature, an input example and a drift reference profile (training features
    and the model's predictions on them, see :mod:`serve_app.models.profiles`), and registers
    a new model version.

    Args:
        tracking_uri: MLflow tracking and registry URI, e.g. ``sqlite:////abs/mlflow.db``.
        artifact_dir: Directory for the ``bandit-serve-demo`` experiment's artifacts.
            Only used when the experiment is created; nothing goes to ``./mlruns``.
        seed: Seed for the data split and for every model.
        force: Retrain and register new versions even if versions exist.
        quiet: Silence MLflow's and alembic's INFO logging while training.

    Returns:
        Arm name -> ``models:/<registered name>/<version>``.
    """
    artifact_path = Path(artifact_dir).resolve()
    artifact_path.mkdir(parents=True, exist_ok=True)
    with _quiet_loggers(quiet), mlflow_uris(tracking_uri):
        client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        uris: dict[str, str] = {}
        missing: list[str] = []
        for arm, name in DIGITS_MODELS.items():
            version = None if force else latest_version(client, name)
            if version is None:
                missing.append(arm)
            else:
                uris[arm] = f"models:/{name}/{version}"
        if not missing:
            for name in DIGITS_MODELS.values():
                _ensure_champion(client, name)
            return uris

        experiment_id = _experiment_id(client, artifact_path)
        data = digits_split(seed)
        for arm in missing:
            started = time.perf_counter()
            version, accuracy = _TRAINERS[arm](data, seed, experiment_id, DIGITS_MODELS[arm])
            uris[arm] = f"models:/{DIGITS_MODELS[arm]}/{version}"
            logger.info(
                "trained %s: accuracy %.3f in %.1fs -> %s",
                arm,
                accuracy,
                time.perf_counter() - started,
                uris[arm],
            )
        for name in DIGITS_MODELS.values():
            _ensure_champion(client, name)
        return {arm: uris[arm] for arm in DIGITS_MODELS}


_Split = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _train_sklearn(
    estimator: Any,
    data: _Split,
    experiment_id: str,
    name: str,
    trusted_types: list[str] | None = None,
    tags: dict[str, str] | None = None,
) -> tuple[str, float]:
    """Fit a scikit-learn estimator, log it (skops format) with its accuracy, register it."""
    import mlflow.sklearn
    from mlflow.models import infer_signature

    from serve_app.models.profiles import build_profile, log_profile

    x_train, x_test, y_train, y_test = data
    estimator.fit(x_train, y_train)
    predictions = np.asarray(estimator.predict(x_test), dtype=np.int64)
    accuracy = float(np.mean(predictions == y_test))
    with mlflow.start_run(experiment_id=experiment_id, run_name=name, tags=tags):
        mlflow.log_params({"estimator": type(estimator).__name__, **_short_params(estimator)})
        mlflow.log_metric("accuracy", accuracy)
        log_profile(build_profile(x_train, estimator.predict(x_train)))
        info = mlflow.sklearn.log_model(
            estimator,
            name=_MODEL_NAME_IN_RUN,
            signature=infer_signature(x_test[:5], predictions[:5]),
            input_example=x_test[:2],
            registered_model_name=name,
            pip_requirements=_SKLEARN_REQS,
            skops_trusted_types=trusted_types,
        )
    return str(info.registered_model_version), accuracy


def _short_params(estimator: Any) -> dict[str, Any]:
    """The estimator parameters worth logging (scalars only)."""
    return {
        k: v
        for k, v in estimator.get_params().items()
        if isinstance(v, int | float | str | bool) and k in {"max_iter", "n_estimators", "C"}
    }


def _train_logreg(data: _Split, seed: int, experiment_id: str, name: str) -> tuple[str, float]:
    from sklearn.linear_model import LogisticRegression

    return _train_sklearn(LogisticRegression(max_iter=2000), data, experiment_id, name)


def _train_forest(data: _Split, seed: int, experiment_id: str, name: str) -> tuple[str, float]:
    from sklearn.ensemble import RandomForestClassifier

    forest = RandomForestClassifier(n_estimators=60, random_state=seed, n_jobs=1)
    # skops refuses tree node storage unless trusted; we wrote this file ourselves.
    trusted = ["sklearn.tree._tree.Tree"]
    return _train_sklearn(forest, data, experiment_id, name, trusted)


def _train_torch(data: _Split, seed: int, experiment_id: str, name: str) -> tuple[str, float]:
    """Train the MLP, save its state dict and log it as a :class:`TorchDigitsClassifier`."""
    import torch
    from mlflow.models import infer_signature

    from serve_app.models.profiles import build_profile, log_profile

    x_train, x_test, y_train, y_test = data
    net = _train_mlp(x_train, y_train, seed)
    with torch.no_grad():
        logits = net(torch.from_numpy(x_test.astype(np.float32)))
        train_labels = net(torch.from_numpy(x_train.astype(np.float32))).argmax(dim=1).numpy()
    predictions = logits.argmax(dim=1).numpy().astype(np.int64)
    accuracy = float(np.mean(predictions == y_test))
    with (
        tempfile.TemporaryDirectory(prefix="digits-mlp-") as tmp,
        mlflow.start_run(experiment_id=experiment_id, run_name=name),
    ):
        state_path = Path(tmp) / "state_dict.pt"
        torch.save(net.state_dict(), state_path)
        mlflow.log_params({"estimator": "torch-mlp", "hidden": _HIDDEN, "epochs": 30})
        mlflow.log_metric("accuracy", accuracy)
        log_profile(build_profile(x_train, train_labels.astype(np.int64), seed=seed))
        info = mlflow.pyfunc.log_model(
            name=_MODEL_NAME_IN_RUN,
            python_model=TorchDigitsClassifier(),
            artifacts={_STATE_DICT_KEY: str(state_path)},
            signature=infer_signature(x_test[:5], predictions[:5]),
            input_example=x_test[:2],
            registered_model_name=name,
            pip_requirements=_TORCH_REQS,
        )
    return str(info.registered_model_version), accuracy


_TRAINERS = {"logreg": _train_logreg, "forest": _train_forest, "mlp": _train_torch}


# --------------------------------------------------------------------------- the closed loop


def retrain_digits(request: Any) -> str:
    """The demo's retraining function (``retrain.entrypoint:
    serve_app.models.demo:retrain_digits``): a logistic regression fitted on the logged,
    labelled rows, evaluated on a stratified fifth of them held out, logged with a drift
    profile of its training rows and registered as a new version of the champion's model.

    ``request`` is a :class:`~serve_app.models.retraining.RetrainRequest`. Its ``params``:
    ``label_noise`` (default 0) replaces that share of the training labels with random
    classes (seeded by ``seed``, default 0): the demo's way to produce a worse model, which
    its challenger test then rolls back.

    Returns:
        ``models:/<champion's name>/<new version>``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    from serve_app.models.retraining import LINEAGE_PREFIX
    from serve_app.models.uris import registry_version

    target = registry_version(request.champion_uri)
    if target is None:
        raise ValueError(f"the champion {request.champion_uri!r} is not a registered version")
    params = dict(request.params)
    noise = float(params.get("label_noise", 0.0))
    rng = np.random.default_rng(int(params.get("seed", 0)))
    features = np.asarray(request.rows.features, dtype=np.float64)
    labels = np.asarray([int(label) for label in request.rows.labels], dtype=np.int64)
    counts = np.bincount(labels)
    stratify = labels if counts[counts > 0].min() >= 2 else None
    x_train, x_test, y_train, y_test = train_test_split(
        features, labels, test_size=0.2, random_state=0, stratify=stratify
    )
    if noise > 0:
        flip = rng.random(len(y_train)) < noise
        y_train = y_train.copy()
        y_train[flip] = rng.integers(0, _N_CLASSES, int(flip.sum()))
    with _quiet_loggers(True):
        client = MlflowClient(request.tracking_uri, request.tracking_uri)
        experiment_id = _experiment_id(client, None)
        tags = {f"{LINEAGE_PREFIX}{k}": str(v) for k, v in request.lineage.items()}
        version, accuracy = _train_sklearn(
            LogisticRegression(max_iter=2000),
            (x_train, x_test, y_train, y_test),
            experiment_id,
            target[0],
            tags={**tags, f"{LINEAGE_PREFIX}label_noise": str(noise)},
        )
    logger.info("retrained %s on %d rows: accuracy %.3f", target[0], len(labels), accuracy)
    return f"models:/{target[0]}/{version}"
