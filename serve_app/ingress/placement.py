"""Which backend serves each model of an experiment, and getting a new experiment's models
ready before it exists.

The app builder deploys one pool (always, so any experiment created at runtime can use it)
and one deployment per distinct ``(model URI, deployment options)`` of the ``dedicated``
models in the config (:func:`dedicated_key`); ``router`` models get none. A
:class:`Placements` of one router replica maps every model config to its backend, warms
versions, and checks an experiment created at runtime (:meth:`Placements.prepare`): every
model must load (a 422 names the arm and the loader's error otherwise, and nothing is
created), versions behind an alias are pinned, and features per row and the input dtype come
from the signatures.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from serve_app.config import (
    AppConfig,
    ExperimentConfig,
    ModelConfig,
    describe_validation_error,
)
from serve_app.errors import InvalidRequest
from serve_app.ingress.backends import DeploymentBackend, LocalBackend, PoolBackend
from serve_app.models.uris import first_line

logger = logging.getLogger("ray.serve")

Backend = PoolBackend | DeploymentBackend | LocalBackend


def serving_uris(config: ExperimentConfig) -> frozenset[str]:
    """The versions an experiment's arms and shadows serve."""
    return frozenset(model.serving_uri for model in [*config.arms, *config.shadows])


def dedicated_key(model: ModelConfig) -> str:
    """The identity of a dedicated deployment: same URI and options, same deployment."""
    return json.dumps([model.model_uri, model.deployment.model_dump(mode="json")])


class Placements:
    """The backends of one router replica (see the module docstring)."""

    def __init__(self, config: AppConfig, pool: Any, dedicated: Mapping[str, Any]) -> None:
        self.config = config
        self.pool = PoolBackend(pool, config.pool.cold_start_timeout_s)
        self.local = LocalBackend(config.mlflow_tracking_uri)
        self.dedicated = {
            key: DeploymentBackend(handle, batched=json.loads(key)[1].get("batching") is not None)
            for key, handle in dedicated.items()
        }

    def backend(self, model: ModelConfig) -> Backend | None:
        """The backend serving ``model`` (None: a dedicated model this app does not deploy)."""
        if model.placement == "pool":
            return self.pool
        if model.placement == "router":
            return self.local
        return self.dedicated.get(dedicated_key(model))

    def backends(self, config: ExperimentConfig) -> tuple[dict[str, Backend], dict[str, Backend]]:
        """Every arm's and shadow's backend.

        Raises:
            KeyError: a dedicated model without a deployment in this app.
        """

        def find(model: ModelConfig) -> Backend:
            backend = self.backend(model)
            if backend is None:
                raise KeyError(model.model_uri)
            return backend

        return (
            {arm.name: find(arm) for arm in config.arms},
            {shadow.name: find(shadow) for shadow in config.shadows},
        )

    async def warm(
        self,
        config: ExperimentConfig,
        timeout_s: float | None = None,
        again: frozenset[str] = frozenset(),
    ) -> None:
        """Load every model of ``config`` that this router has not seen loaded where it runs,
        and the versions in ``again`` in any case (errors are logged, not raised).

        A revision that moves an arm to a version (an alias moved, maybe back to one served
        before) passes it in ``again``: the pool may have evicted it since. :meth:`prepare`
        loads an experiment created at runtime in any case: that is the check that its
        models load. This skips only within one router replica: another one warms a new
        experiment's versions once itself.
        """
        timeout = timeout_s or self.config.pool.preload_timeout_s
        for model in [*config.arms, *config.shadows]:
            backend = self.backend(model)
            if backend is None:
                continue
            uri = model.serving_uri
            if uri not in again and not backend.needs_warming(uri):
                continue
            try:
                await backend.warm(uri, timeout)
            except Exception as error:
                logger.warning("warming %s of %s failed: %r", model.name, config.name, error)

    async def prepare(self, spec: Mapping[str, Any]) -> ExperimentConfig:
        """An experiment created at runtime, checked and with every model loaded.

        Raises:
            InvalidRequest: the spec is invalid, a dedicated model is not deployed, a model
                cannot be loaded (naming the arm and the loader's error).
        """
        try:
            config = ExperimentConfig.model_validate(spec)
        except ValidationError as error:
            lines = "; ".join(describe_validation_error(error))
            raise InvalidRequest(f"invalid experiment: {lines}") from None
        from serve_app.models.loading import input_signature, model_exists
        from serve_app.models.registry import current_version

        tracking = self.config.mlflow_tracking_uri
        models = [("arms", i, m) for i, m in enumerate(config.arms)]
        models += [("shadows", i, m) for i, m in enumerate(config.shadows)]
        pinned: dict[str, str] = {}
        for group, index, model in models:
            where = f"{group}[{index}] ({model.name})"
            if self.backend(model) is None:
                raise InvalidRequest(
                    f"{where}: placement 'dedicated' needs a deployment of {model.model_uri} "
                    "with these options in the app config; use placement 'pool' or 'router' "
                    "to serve a model without a redeploy",
                    field=f"{group}[{index}].placement",
                )
            missing = await asyncio.to_thread(model_exists, model.model_uri, tracking)
            if missing:
                raise InvalidRequest(f"{where}: {missing}", field=f"{group}[{index}].model_uri")
            if model.follows_alias:
                version = await asyncio.to_thread(current_version, model.model_uri, tracking)
                if version is not None:
                    pinned[model.name] = version
        config = with_versions(config, pinned)
        for group, index, model in models:
            model = config.model(model.name)
            backend = self.backend(model)
            assert backend is not None
            try:
                await backend.warm(model.serving_uri, self.config.pool.preload_timeout_s)
            except Exception as error:
                raise InvalidRequest(
                    f"{group}[{index}] ({model.name}): cannot load {model.serving_uri}: "
                    f"{first_line(error)}",
                    field=f"{group}[{index}].model_uri",
                ) from None
        if config.n_features is None or config.feature_dtype is None:
            signature = await asyncio.to_thread(
                input_signature, config.arms[0].serving_uri, tracking
            )
            update = {}
            if config.n_features is None:
                update["n_features"] = signature.n_features
            if config.feature_dtype is None:
                update["feature_dtype"] = signature.dtype
            config = config.model_copy(update=update)
        return config


def with_versions(config: ExperimentConfig, versions: Mapping[str, str]) -> ExperimentConfig:
    """``config`` with the given models (arms or shadows, by name) pinned to ``versions``."""
    if not versions:
        return config
    spec = config.model_dump(mode="json")
    for model in [*spec["arms"], *spec["shadows"]]:
        if model["name"] in versions:
            model["version"] = versions[model["name"]]
    return ExperimentConfig.model_validate(spec)
