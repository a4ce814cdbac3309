"""The shared model pool: one Serve deployment that serves any model version on demand.

Built on Ray Serve's model multiplexing: a request carries its model URI as the
``multiplexed_model_id``; a replica loads that version on first use, keeps at most
``pool.max_models_per_replica`` of them (the least recently used one is unloaded first) and
reports what it holds, so Serve routes a request to a replica that already has its version.
Replicas autoscale on load like any deployment.

Arms with placement ``pool`` are served here, so an experiment created at runtime on a
version registered after startup needs no redeploy. :meth:`ModelPool.load` preloads a
version (and is how a model that cannot be loaded is reported before an experiment uses
it); :meth:`ModelPool.stats` says what this replica loaded, how long it took and what it
holds now.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import numpy as np
from ray import serve

from serve_app.models.loading import load_model, predict_labels

logger = logging.getLogger("ray.serve")


class Resident:
    """A loaded model; Serve's LRU calls ``__del__`` when it evicts it."""

    def __init__(self, pool: ModelPool, uri: str, model: Any) -> None:
        self.pool, self.uri, self.model = pool, uri, model

    def __del__(self) -> None:
        self.pool.resident.pop(self.uri, None)


@serve.deployment(logging_config={"enable_access_log": False})
class ModelPool:
    """Serves any MLflow model URI given as the request's ``multiplexed_model_id``."""

    def __init__(self, tracking_uri: str | None, max_models_per_replica: int) -> None:
        try:
            import torch

            torch.set_num_threads(1)  # replicas share a few cores; no intra-op fan-out
        except ImportError:  # pragma: no cover - torch is a dependency
            pass
        self.tracking_uri = tracking_uri
        self.resident: dict[str, float] = {}  # uri -> seconds its load took
        self.loads: dict[str, int] = {}

        async def load(model_id: str) -> Resident:
            started = time.perf_counter()
            model = await asyncio.to_thread(load_model, model_id, self.tracking_uri)
            seconds = time.perf_counter() - started
            self.loads[model_id] = self.loads.get(model_id, 0) + 1
            self.resident[model_id] = seconds
            logger.info("pool loaded %s in %.2f s", model_id, seconds)
            return Resident(self, model_id, model)

        # wired up here so the limit comes from the config (Serve detects it on the instance)
        self.get_model = serve.multiplexed(max_num_models_per_replica=max_models_per_replica)(load)

    async def predict(self, features: np.ndarray) -> list[Any]:
        """Predictions of the request's model for a 2-D array of rows, one per row."""
        resident = await self.get_model(serve.get_multiplexed_model_id())
        return predict_labels(resident.model, features)

    async def load(self) -> dict[str, Any]:
        """Load (or touch) the request's model; raises the loader's error if it cannot."""
        uri = serve.get_multiplexed_model_id()
        await self.get_model(uri)
        return {"uri": uri, "load_s": self.resident.get(uri)}

    async def stats(self) -> dict[str, Any]:
        """What this replica loaded (how often) and what it holds now (and how long each
        took to load)."""
        return {"loads": dict(self.loads), "resident": dict(self.resident)}
