"""The app builder: the ``import_path`` of every config in ``configs/``.

``serve run configs/local.yaml`` calls :func:`build_app` with the YAML's ``args``. It validates
them (an invalid config stops here, naming the path), checks that every model exists, fills
in what the models' signatures say (features per row, input dtype), and wires the graph::

    Router (ingress) ──▶ ModelPool (placement pool: any version, loaded on demand)
          ├──────────▶ ModelArm deployments (placement dedicated: one per model and options)
          ├── in-process models (placement router: no second hop)
          └──────────▶ ExperimentState (one replica; never awaited per prediction)

Two dedicated arms that serve the same model URI with the same deployment options share one
deployment; the pool is always deployed, so experiments created at runtime can use it.
The validated :class:`~serve_app.config.AppConfig` itself is what every deployment receives
(Ray pickles it), so the config is validated once, here, and never again downstream.
"""

from __future__ import annotations

from typing import Any

from ray.serve import Application

from serve_app.config import AppConfig, ArmConfig, ExperimentConfig, ShadowConfig, parse_config
from serve_app.errors import ConfigError
from serve_app.ingress.placement import dedicated_key
from serve_app.ingress.router import Router
from serve_app.models.arm import ModelArm
from serve_app.models.pool import ModelPool
from serve_app.state.deployment import ExperimentState

STATE_DEPLOYMENT = "experiment-state"
ROUTER_DEPLOYMENT = "router"
POOL_DEPLOYMENT = "model-pool"


def build_app(args: dict[str, Any]) -> Application:
    """Build the bandit-serve application from a config mapping.

    Raises:
        ConfigError: the config is invalid or names a model that does not exist.
    """
    config = parse_config(args)
    if config.check_models:
        config = check_models(config)
    pool = ModelPool.options(name=POOL_DEPLOYMENT, **config.pool.deployment.serve_options()).bind(
        config.mlflow_tracking_uri, config.pool.max_models_per_replica
    )
    dedicated = _bind_dedicated(config)
    # the state loads retraining challengers into the same model deployments
    state = ExperimentState.options(
        name=STATE_DEPLOYMENT,
        ray_actor_options=config.state.ray_actor_options.model_dump(exclude_none=True),
    ).bind(config, pool, dedicated)
    router = Router.options(
        name=ROUTER_DEPLOYMENT,
        logging_config={"enable_access_log": config.router.access_log},
        **config.router.deployment.serve_options(),
    )
    return router.bind(config, state, pool, dedicated)


def _bind_dedicated(config: AppConfig) -> dict[str, Application]:
    """One deployment per distinct (model URI, deployment options) of the ``dedicated``
    arms and shadows (``pool`` models share the pool; ``router`` ones get none)."""
    deployments: dict[str, Application] = {}
    for experiment in config.experiments:
        for model in [*experiment.arms, *experiment.shadows]:
            key = dedicated_key(model)
            if model.placement == "dedicated" and key not in deployments:
                deployments[key] = _bind_model(config, experiment, model)
    return deployments


def _bind_model(
    config: AppConfig, experiment: ExperimentConfig, model: ArmConfig | ShadowConfig
) -> Application:
    options = model.deployment.serve_options()
    if model.deployment.batching is not None:
        options["user_config"] = {"batching": model.deployment.batching.model_dump()}
    deployment = ModelArm.options(name=f"model-{experiment.name}-{model.name}", **options)
    return deployment.bind(model.model_uri, config.mlflow_tracking_uri)


def check_models(config: AppConfig) -> AppConfig:
    """Fail with every missing model named; fill ``n_features`` and ``feature_dtype`` from
    the arms' MLflow signatures.

    Raises:
        ConfigError: one line per arm whose model cannot be found, or whose signature
            disagrees with the other arms' on the features per row; else one line per
            experiment whose arms' signatures differ in the datatypes or shapes of their
            input or output (the Open Inference Protocol serves an experiment as one model).
    """
    from serve_app.ingress.oip_metadata import disagreement, read_tensors
    from serve_app.models.loading import input_signature, model_exists

    problems = []
    disagreeing = []
    tensors: dict[str, Any] = {}  # by model URI: experiments share models
    experiments = []
    for index, experiment in enumerate(config.experiments):
        for arm_index, arm in enumerate(experiment.arms):
            missing = model_exists(arm.model_uri, config.mlflow_tracking_uri)
            if missing:
                problems.append(f"experiments[{index}].arms[{arm_index}].model_uri: {missing}")
        if problems:
            experiments.append(experiment)
            continue
        signatures = {
            arm.name: input_signature(arm.model_uri, config.mlflow_tracking_uri)
            for arm in experiment.arms
        }
        widths = {name: s.n_features for name, s in signatures.items() if s.n_features}
        if len(set(widths.values())) > 1:
            shown = ", ".join(f"{name}: {width}" for name, width in widths.items())
            problems.append(
                f"experiments[{index}].arms: the models take different numbers of features "
                f"per row ({shown}); an experiment's arms must take the same input"
            )
        else:
            for arm in experiment.arms:
                if arm.model_uri not in tensors:
                    tensors[arm.model_uri] = read_tensors(arm.model_uri, config.mlflow_tracking_uri)
            conflict = disagreement({arm.name: tensors[arm.model_uri] for arm in experiment.arms})
            if conflict:
                disagreeing.append(f"experiments[{index}] ({experiment.name}): {conflict}")
        update: dict[str, Any] = {}
        if experiment.n_features is None and widths:
            update["n_features"] = next(iter(widths.values()))
        dtypes = [s.dtype for s in signatures.values() if s.dtype]
        if experiment.feature_dtype is None and dtypes:
            update["feature_dtype"] = min(dtypes, key=_dtype_rank)
        experiments.append(experiment.model_copy(update=update))
    if problems:
        hint = "(run `bandit-serve demo-models` to train the demo models)"
        raise ConfigError("model not found:\n  " + "\n  ".join(problems) + f"\n{hint}")
    if disagreeing:
        raise ConfigError(
            "the arms of an experiment must take the same input and give the same output, "
            "but their MLflow signatures differ:\n  " + "\n  ".join(disagreeing)
        )
    return config.model_copy(update={"experiments": experiments})


def _dtype_rank(dtype: str) -> tuple[int, int]:
    """Narrower input types first: integer before float, fewer bytes before more."""
    import numpy as np

    kind = np.dtype(dtype)
    return (0 if kind.kind in "iu" else 1, kind.itemsize)
