"""One model version ("arm") as a Serve deployment of its own (placement ``dedicated``).

The contract is MLServer's: load once, then ``predict`` a 2-D batch of feature rows into a list
of predictions. Any MLflow model URI loads (``models:/name/1``, ``models:/name@alias``,
``runs:/...``, a local path). When the arm follows an alias and the alias moves, the router
sends the newly pinned URI with each call; the replica loads that version once and keeps the
previous one until the switch is complete (at most two in memory).

``@serve.batch`` is a per-arm choice, not a default: on small single-row models it cost
10-12 ms of p50 here, while it pays off for models with a high per-call cost. The router calls
``predict`` or ``predict_batched`` as the arm's config says; the batch size and wait are live
settings that reach the replica through ``user_config`` / :meth:`ModelArm.reconfigure`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from typing import Any

import numpy as np
from ray import serve

from serve_app.models.loading import load_model, predict_labels

logger = logging.getLogger("ray.serve")

VERSIONS_KEPT = 2


@serve.deployment(
    ray_actor_options={"num_cpus": 0.25},
    max_ongoing_requests=64,
    logging_config={"enable_access_log": False},  # the router logs the request once
)
class ModelArm:
    """Serves one MLflow model (and the versions an alias moves it to)."""

    def __init__(self, model_uri: str, tracking_uri: str | None) -> None:
        try:
            import torch

            torch.set_num_threads(1)  # replicas share a few cores; no intra-op fan-out
        except ImportError:  # pragma: no cover - torch is a dependency
            pass
        self.model_uri = model_uri
        self.tracking_uri = tracking_uri
        self.models: OrderedDict[str, Any] = OrderedDict()
        self.models[model_uri] = load_model(model_uri, tracking_uri)
        self._loading = asyncio.Lock()
        logger.info("loaded model %s", model_uri)

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Apply live batching settings: ``{"max_batch_size": n, "batch_wait_timeout_s": s}``."""
        batching = user_config.get("batching") or {}
        if "max_batch_size" in batching:
            self.predict_batched.set_max_batch_size(int(batching["max_batch_size"]))
        if "batch_wait_timeout_s" in batching:
            self.predict_batched.set_batch_wait_timeout_s(float(batching["batch_wait_timeout_s"]))

    async def _model(self, uri: str | None) -> Any:
        """The model for ``uri`` (default: the deployed one), loading a new version once."""
        uri = uri or self.model_uri
        if uri not in self.models:
            async with self._loading:
                if uri not in self.models:
                    model = await asyncio.to_thread(load_model, uri, self.tracking_uri)
                    self.models[uri] = model
                    logger.info("loaded model %s", uri)
                    while len(self.models) > VERSIONS_KEPT:
                        self.models.popitem(last=False)
        self.models.move_to_end(uri)
        return self.models[uri]

    async def predict(self, features: np.ndarray, uri: str | None = None) -> list[Any]:
        """Predictions for a 2-D array of rows, one per row."""
        return predict_labels(await self._model(uri), features)

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.005)
    async def predict_batched(
        self, batches: list[np.ndarray], uris: list[str | None]
    ) -> list[list[Any]]:
        """Concatenate concurrent requests (per model version) into one model call each."""
        answers: list[list[Any]] = [[] for _ in batches]
        for uri in dict.fromkeys(uris):
            members = [i for i, u in enumerate(uris) if u == uri]
            rows = np.concatenate([batches[i] for i in members], axis=0)
            predictions = predict_labels(await self._model(uri), rows)
            start = 0
            for i in members:
                size = len(batches[i])
                answers[i] = predictions[start : start + size]
                start += size
        return answers
