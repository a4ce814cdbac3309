"""The hand-written sides the product is compared with, as Ray Serve deployments.

* :class:`RandomIngress`: what a user writes without bandit-serve: parse the JSON, pick an
  arm uniformly at random, await that arm's model deployment. It calls the very same
  ``ModelArm`` replicas as the product (looked up by name in the product's application), so
  only the routing differs. Plain Starlette, no FastAPI or pydantic: the cheapest honest
  ingress.
* :class:`PlainModel`: the floor; one deployment that loads the model and answers HTTP itself,
  with no routing and no second hop.
* :class:`PerRequestStateIngress`: Seldon-v1-style shared state: the same policy code, but
  every request awaits the product's ``ExperimentState.sync`` with its one decision and routes
  on the merged statistics it returns, instead of the router's batched background sync.
"""

from __future__ import annotations

import random
import uuid
from typing import Any

import numpy as np
from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse

from bandits import ArmStats, make_policy

__all__ = ["PerRequestStateIngress", "PlainModel", "RandomIngress"]

INGRESS_OPTIONS: dict[str, Any] = {
    "ray_actor_options": {"num_cpus": 0.25},
    "max_ongoing_requests": 256,
    "logging_config": {"enable_access_log": False},
}
"""The product router's default deployment options, so the ingresses run alike."""


def _features(body: dict[str, Any]) -> np.ndarray:
    return np.asarray(body["features"], dtype=np.float64)


@serve.deployment(**INGRESS_OPTIONS)
class RandomIngress:
    """Uniformly random arm per request, over the product's model deployments.

    Args:
        product_app: The Serve application whose ``ModelArm`` deployments to call.
        experiments: Experiment name -> the deployment name of each of its arms.
    """

    def __init__(self, product_app: str, experiments: dict[str, list[str]]) -> None:
        handles: dict[str, Any] = {}
        self._arms = {
            name: [
                handles.setdefault(d, serve.get_deployment_handle(d, app_name=product_app))
                for d in deployments
            ]
            for name, deployments in experiments.items()
        }
        self._default = next(iter(experiments))
        self._rng = random.Random()

    async def __call__(self, request: Request) -> JSONResponse:
        body = await request.json()
        arms = self._arms[body.get("experiment") or self._default]
        index = self._rng.randrange(len(arms))
        predictions = await arms[index].predict.remote(_features(body))
        return JSONResponse({"predictions": predictions, "arm": index})


@serve.deployment(**INGRESS_OPTIONS)
class PlainModel:
    """One model answering HTTP directly: the floor under any routing."""

    def __init__(self, model_uri: str, tracking_uri: str | None) -> None:
        import torch

        from serve_app.models.loading import load_model

        torch.set_num_threads(1)  # as ModelArm
        self.model = load_model(model_uri, tracking_uri)

    async def __call__(self, request: Request) -> JSONResponse:
        from serve_app.models.loading import predict_labels

        body = await request.json()
        return JSONResponse({"predictions": predict_labels(self.model, _features(body))})


@serve.deployment(**INGRESS_OPTIONS)
class PerRequestStateIngress:
    """Thompson sampling that awaits the shared state on every request.

    Args:
        product_app: The application holding the state and model deployments.
        state: The state deployment's name.
        experiment: The experiment to route.
        arms: Arm name -> its model deployment's name.
    """

    async def __init__(
        self, product_app: str, state: str, experiment: str, arms: dict[str, str]
    ) -> None:
        self._state = serve.get_deployment_handle(state, app_name=product_app)
        self._handles = {
            arm: serve.get_deployment_handle(d, app_name=product_app) for arm, d in arms.items()
        }
        self._experiment = experiment
        self._id = f"bench-per-request-{uuid.uuid4().hex[:8]}"
        registration = await self._state.register.remote(self._id)
        self._revision = int(registration["snapshot"][experiment]["revision"])
        self._policy = make_policy("thompson", list(arms))
        self._apply(registration["snapshot"])

    def _apply(self, snapshot: dict[str, Any]) -> None:
        stats = snapshot[self._experiment]["stats"]
        self._policy.set_stats({arm: ArmStats.from_dict(v) for arm, v in stats.items()})

    async def __call__(self, request: Request) -> JSONResponse:
        body = await request.json()
        features = _features(body)
        decision = self._policy.select()
        counts = {self._experiment: {"arms": {decision.arm: {"pulls": 1}}}}
        snapshot = await self._state.sync.remote(
            counts, {self._experiment: self._revision}, self._id, None
        )
        self._apply(snapshot)
        predictions = await self._handles[decision.arm].predict.remote(features)
        return JSONResponse({"predictions": predictions, "arm": decision.arm})
