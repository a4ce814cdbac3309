"""The app builder: the ``import_path`` of every config in ``configs/``.

``serve run configs/local.yaml`` calls :func:`build_app` with the YAML's ``args``. It validates
them (an invalid config stops here, naming the path), checks that every model exists, and
wires the graph::

    Router (ingress) ──▶ ModelArm deployments, one per distinct model (and its options)
          └──────────▶ ExperimentState (one replica; never awaited per prediction)

Two arms that serve the same model URI with the same deployment options share one deployment.
"""

from __future__ import annotations

import json
from typing import Any

from ray.serve import Application

from serve_app.config import AppConfig, ArmConfig, ExperimentConfig, ShadowConfig, parse_config
from serve_app.errors import ConfigError
from serve_app.model_arm import ModelArm
from serve_app.router import Router
from serve_app.state import ExperimentState

STATE_DEPLOYMENT = "experiment-state"
ROUTER_DEPLOYMENT = "router"


def build_app(args: dict[str, Any]) -> Application:
    """Build the bandit-serve application from a config mapping.

    Raises:
        ConfigError: the config is invalid or names a model that does not exist.
    """
    config = parse_config(args)
    if config.check_models:
        config = check_models(config)
    payload = config.model_dump(mode="json")
    state = ExperimentState.options(name=STATE_DEPLOYMENT).bind(payload)
    arms, shadows = _bind_models(config)
    router = Router.options(
        name=ROUTER_DEPLOYMENT,
        logging_config={"enable_access_log": config.router.access_log},
        **config.router.deployment.serve_options(),
    )
    return router.bind(payload, state, arms, shadows)


def _bind_models(
    config: AppConfig,
) -> tuple[dict[str, dict[str, Application]], dict[str, dict[str, Application]]]:
    """One deployment per distinct (model URI, deployment options), for arms and shadows."""
    shared: dict[str, Application] = {}
    arms: dict[str, dict[str, Application]] = {}
    shadows: dict[str, dict[str, Application]] = {}
    for experiment in config.experiments:
        members = [(arms, arm) for arm in experiment.arms]
        members += [(shadows, shadow) for shadow in experiment.shadows]
        for target, model in members:
            key = json.dumps([model.model_uri, model.deployment.model_dump(mode="json")])
            if key not in shared:
                shared[key] = _bind_model(config, experiment, model)
            target.setdefault(experiment.name, {})[model.name] = shared[key]
    return arms, shadows


def _bind_model(
    config: AppConfig, experiment: ExperimentConfig, model: ArmConfig | ShadowConfig
) -> Application:
    options = model.deployment.serve_options()
    if model.deployment.batching is not None:
        options["user_config"] = {"batching": model.deployment.batching.model_dump()}
    deployment = ModelArm.options(name=f"model-{experiment.name}-{model.name}", **options)
    return deployment.bind(model.model_uri, config.mlflow_tracking_uri)


def check_models(config: AppConfig) -> AppConfig:
    """Fail with every missing model named, and fill ``n_features`` from model signatures.

    Raises:
        ConfigError: one line per arm whose model cannot be found.
    """
    from serve_app.demo_models import model_exists

    problems = []
    experiments = []
    for index, experiment in enumerate(config.experiments):
        for arm_index, arm in enumerate(experiment.arms):
            missing = model_exists(arm.model_uri, config.mlflow_tracking_uri)
            if missing:
                problems.append(f"experiments[{index}].arms[{arm_index}].model_uri: {missing}")
        if experiment.n_features is None and not problems:
            n_features = infer_n_features(experiment.arms[0].model_uri, config.mlflow_tracking_uri)
            experiment = experiment.model_copy(update={"n_features": n_features})
        experiments.append(experiment)
    if problems:
        hint = "(run `bandit-serve demo-models` to train the demo models)"
        raise ConfigError("model not found:\n  " + "\n  ".join(problems) + f"\n{hint}")
    return config.model_copy(update={"experiments": experiments})


def infer_n_features(model_uri: str, tracking_uri: str | None) -> int | None:
    """Features per row from the model's MLflow signature, or None when it has none."""
    import mlflow
    from mlflow.models import get_model_info

    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    try:
        if tracking_uri:
            mlflow.set_tracking_uri(tracking_uri)
            mlflow.set_registry_uri(tracking_uri)
        signature = get_model_info(model_uri).signature
    except Exception:
        return None
    finally:
        mlflow.set_tracking_uri(previous[0])
        mlflow.set_registry_uri(previous[1])
    if signature is None or signature.inputs is None:
        return None
    schema = signature.inputs
    if schema.is_tensor_spec():
        shape = schema.inputs[0].shape
        return int(shape[-1]) if len(shape) == 2 and shape[-1] > 0 else None
    return len(schema.inputs)
