"""One model version ("arm") as a Serve deployment.

The contract is MLServer's: load once, then ``predict`` a 2-D batch of feature rows into a list
of predictions. Any MLflow model URI loads (``models:/name/1``, ``models:/name@alias``,
``runs:/...``, a local path).

``@serve.batch`` is a per-arm choice, not a default: on small single-row models it cost
10-12 ms of p50 here, while it pays off for models with a high per-call cost. The router calls
``predict`` or ``predict_batched`` as the arm's config says; the batch size and wait are live
settings that reach the replica through ``user_config`` / :meth:`ModelArm.reconfigure`.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from ray import serve

from serve_app.models.loading import load_model, predict_labels

logger = logging.getLogger("ray.serve")


@serve.deployment(
    ray_actor_options={"num_cpus": 0.25},
    max_ongoing_requests=64,
    logging_config={"enable_access_log": False},  # the router logs the request once
)
class ModelArm:
    """Serves one MLflow model."""

    def __init__(self, model_uri: str, tracking_uri: str | None) -> None:
        try:
            import torch

            torch.set_num_threads(1)  # replicas share a few cores; no intra-op fan-out
        except ImportError:  # pragma: no cover - torch is a dependency
            pass
        self.model_uri = model_uri
        self.model = load_model(model_uri, tracking_uri)
        logger.info("loaded model %s", model_uri)

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Apply live batching settings: ``{"max_batch_size": n, "batch_wait_timeout_s": s}``."""
        batching = user_config.get("batching") or {}
        if "max_batch_size" in batching:
            self.predict_batched.set_max_batch_size(int(batching["max_batch_size"]))
        if "batch_wait_timeout_s" in batching:
            self.predict_batched.set_batch_wait_timeout_s(float(batching["batch_wait_timeout_s"]))

    def predict(self, features: np.ndarray) -> list[Any]:
        """Predictions for a 2-D array of rows, one per row."""
        return predict_labels(self.model, features)

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.005)
    async def predict_batched(self, batches: list[np.ndarray]) -> list[list[Any]]:
        """Concatenate concurrent requests into one model call, then split the answers."""
        sizes = [len(batch) for batch in batches]
        predictions = predict_labels(self.model, np.concatenate(batches, axis=0))
        answers, start = [], 0
        for size in sizes:
            answers.append(predictions[start : start + size])
            start += size
        return answers
