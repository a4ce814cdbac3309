"""The hand-written sides the product is compared with, as Ray Serve deployments.

* :class:`RandomIngress`: what a user writes without bandit-serve: parse the JSON, pick an
  arm uniformly at random, await that arm's model. It calls the very same model replicas as
  the product, looked up by name in the product's application: a ``dedicated`` arm's
  ``ModelArm`` deployment, or the shared ``model-pool`` deployment with the arm's URI as the
  ``multiplexed_model_id``. So only the routing differs. Plain Starlette, no FastAPI or
  pydantic: the cheapest honest two-hop ingress.
* :class:`InProcessSplit`: the one-hop ideal: one deployment that holds the same models,
  picks one at random and predicts in-process, with no second hop and no routing state.
* :class:`PerRequestStateIngress`: Seldon-v1-style shared state: the same policy code, but
  every request awaits the product's ``ExperimentState.sync`` with its one decision (a
  :class:`~serve_app.experiment.records.SyncBatch` of one pull) and routes on the merged
  statistics it returns, instead of the router's batched background sync.
"""

from __future__ import annotations

import random
import uuid
from typing import Any, NamedTuple

import numpy as np
from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse

from bandits import make_policy

__all__ = ["InProcessSplit", "PerRequestStateIngress", "RandomIngress", "Target"]

INGRESS_OPTIONS: dict[str, Any] = {
    "ray_actor_options": {"num_cpus": 0.25},
    "max_ongoing_requests": 256,
    "logging_config": {"enable_access_log": False},
}
"""The product router's default deployment options, so the ingresses run alike."""


class Target(NamedTuple):
    """Where one arm's model answers: a deployment of an application, and for the pool the
    model URI sent as ``multiplexed_model_id``."""

    app: str
    deployment: str
    model_id: str | None = None


class _Handles:
    """One handle per deployment, and one per (deployment, model id), made once (as the
    product's backends do)."""

    def __init__(self) -> None:
        self._handles: dict[tuple[str, str, str | None], Any] = {}

    def __call__(self, target: Target) -> Any:
        key = (target.app, target.deployment, target.model_id)
        handle = self._handles.get(key)
        if handle is None:
            handle = serve.get_deployment_handle(target.deployment, app_name=target.app)
            if target.model_id is not None:
                handle = handle.options(multiplexed_model_id=target.model_id)
            self._handles[key] = handle
        return handle


def _features(body: dict[str, Any]) -> np.ndarray:
    return np.asarray(body["features"], dtype=np.float64)


@serve.deployment(**INGRESS_OPTIONS)
class RandomIngress:
    """Uniformly random arm per request, over the product's model replicas.

    Args:
        experiments: Experiment name (the request's ``"experiment"``; the first one by
            default) -> where each of its arms answers.
    """

    def __init__(self, experiments: dict[str, list[Target]]) -> None:
        handles = _Handles()
        self._arms = {
            name: [handles(Target(*target)) for target in targets]
            for name, targets in experiments.items()
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
class InProcessSplit:
    """The one-hop ideal: the same models in this replica, one chosen at random per request.

    Args:
        model_uris: The models to choose between.
        tracking_uri: Where ``models:/`` URIs resolve.
    """

    def __init__(self, model_uris: list[str], tracking_uri: str | None) -> None:
        import torch

        from serve_app.models.loading import load_model

        torch.set_num_threads(1)  # as the product's model replicas
        self._models = [load_model(uri, tracking_uri) for uri in model_uris]
        self._rng = random.Random()

    async def __call__(self, request: Request) -> JSONResponse:
        from serve_app.models.loading import predict_labels

        body = await request.json()
        index = self._rng.randrange(len(self._models))
        predictions = predict_labels(self._models[index], _features(body))
        return JSONResponse({"predictions": predictions, "arm": index})


@serve.deployment(**INGRESS_OPTIONS)
class PerRequestStateIngress:
    """Thompson sampling that awaits the shared state on every request.

    Each request sends its one decision as a numbered batch. The state applies a router's
    batches in order and recognises a number it has seen as a retry, so concurrent requests
    each lease a sender id of their own (a free list: as many ids as requests in flight),
    whose numbers then never race.

    Args:
        product_app: The application holding the state deployment.
        state: The state deployment's name.
        experiment: The experiment whose state is read and counted.
        arms: Arm name -> where its model answers.
    """

    async def __init__(
        self, product_app: str, state: str, experiment: str, arms: dict[str, Target]
    ) -> None:
        self._state = serve.get_deployment_handle(state, app_name=product_app)
        handles = _Handles()
        self._arms = {arm: handles(Target(*target)) for arm, target in arms.items()}
        self._experiment = experiment
        self._prefix = f"bench-per-request-{uuid.uuid4().hex[:8]}"
        self._free: list[tuple[str, int]] = []  # (sender id, last number sent)
        self._senders = 0
        registration = await self._state.register.remote(self._prefix)
        self._policy = make_policy("thompson", list(arms))
        self._apply(registration["snapshot"])

    def _apply(self, snapshot: Any) -> None:
        """Route on the merged stats; remember every experiment's revision, so the state
        sends configs only when they change (as it does for the product's routers)."""
        self._revisions = {name: e.revision for name, e in snapshot.experiments.items()}
        mine = snapshot.experiments[self._experiment]
        self._revision = mine.revision
        self._policy.set_stats(dict(mine.stats))

    def _lease(self) -> tuple[str, int]:
        if self._free:
            sender, seq = self._free.pop()
            return sender, seq + 1
        self._senders += 1
        return f"{self._prefix}-{self._senders}", 1

    async def __call__(self, request: Request) -> JSONResponse:
        from serve_app.experiment.records import ArmCounts, SyncBatch

        body = await request.json()
        features = _features(body)
        decision = self._policy.select()
        sender, seq = self._lease()
        batch = SyncBatch(
            sender, seq, {(self._experiment, self._revision, decision.arm): ArmCounts(pulls=1)}
        )
        try:
            snapshot = await self._state.sync.remote(batch, self._revisions, sender, None)
        finally:
            self._free.append((sender, seq))
        self._apply(snapshot)
        predictions = await self._arms[decision.arm].predict.remote(features)
        return JSONResponse({"predictions": predictions, "arm": decision.arm})
