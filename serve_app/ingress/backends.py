"""Where an arm runs, seen from the router: one backend per placement.

Every backend answers ``predict(features, uri, timeout_s)`` for the arm's serving URI (its
pinned version) and ``warm(uri, timeout_s)`` to load a version before traffic needs it:

- :class:`PoolBackend` (``pool``): the shared multiplexed pool deployment; the URI is the
  request's ``multiplexed_model_id``, so Serve sends it to a replica that holds the version;
- :class:`DeploymentBackend` (``dedicated``): the arm's own deployment;
- :class:`LocalBackend` (``router``): the model loaded inside this router replica, called
  in-process, with no second hop.

A version that is not loaded yet is *cold*: a pool call for it waits at most
``pool.cold_start_timeout_s`` and a router-placed one does not wait at all; both then raise
:class:`ModelLoading`, which the dispatcher answers with the default arm and counts as a
fallback, not as an error of the arm (a cold start is not the model failing).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import numpy as np

from serve_app.models.loading import load_model, predict_labels

logger = logging.getLogger("ray.serve")


class ModelLoading(Exception):
    """The arm's version is still loading (a cold start)."""


async def _timed(response: Any, timeout_s: float) -> Any:
    """Await a deployment response for at most ``timeout_s`` (``asyncio.timeout``: no task
    per call, as ``wait_for`` makes); a call that times out or is cancelled is cancelled."""
    try:
        async with asyncio.timeout(timeout_s):
            return await response
    except BaseException:
        with contextlib.suppress(Exception):
            response.cancel()
        raise


class PoolBackend:
    """Arms served by the app's shared model pool (Ray Serve model multiplexing)."""

    placement = "pool"

    def __init__(self, handle: Any, cold_start_timeout_s: float) -> None:
        self.handle = handle
        self.deployment_name = str(handle.deployment_name)
        self.cold_start_timeout_s = cold_start_timeout_s
        self._handles: dict[str, Any] = {}
        self.ready: set[str] = set()

    def _for(self, uri: str) -> Any:
        handle = self._handles.get(uri)
        if handle is None:
            handle = self._handles[uri] = self.handle.options(multiplexed_model_id=uri)
        return handle

    async def predict(self, features: np.ndarray, uri: str, timeout_s: float) -> list[Any]:
        if uri in self.ready:
            return list(await _timed(self._for(uri).predict.remote(features), timeout_s))
        try:
            wait = min(timeout_s, self.cold_start_timeout_s)
            answer = list(await _timed(self._for(uri).predict.remote(features), wait))
        except TimeoutError:
            raise ModelLoading(f"{uri} is still loading") from None
        self.ready.add(uri)
        return answer

    def needs_warming(self, uri: str) -> bool:
        """Only a version this router has not seen loaded: the pool reloads an evicted one on
        demand, and warming every known version again (on each new revision) would cycle a
        full replica's LRU, each warm evicting what the one before it loaded."""
        return uri not in self.ready

    async def warm(self, uri: str, timeout_s: float) -> None:
        """Load ``uri`` on a pool replica; raises the loader's error when it cannot."""
        await _timed(self._for(uri).load.remote(), timeout_s)
        self.ready.add(uri)


class DeploymentBackend:
    """An arm served by its own deployment (placement ``dedicated``)."""

    placement = "dedicated"

    def __init__(self, handle: Any, batched: bool) -> None:
        self.handle = handle
        self.deployment_name = str(handle.deployment_name)
        self._method = handle.predict_batched if batched else handle.predict

    async def predict(self, features: np.ndarray, uri: str, timeout_s: float) -> list[Any]:
        return list(await _timed(self._method.remote(features, uri), timeout_s))

    def needs_warming(self, uri: str) -> bool:
        return False

    async def warm(self, uri: str, timeout_s: float) -> None:
        """A dedicated deployment loaded its model when it started (and loads a version an
        alias moves to on first use)."""


class LocalBackend:
    """Models loaded inside this router replica (placement ``router``), shared by every
    experiment and arm of the replica that serves the same URI."""

    placement = "router"

    def __init__(self, tracking_uri: str | None) -> None:
        self.tracking_uri = tracking_uri
        self.models: dict[str, Any] = {}
        self._loading: dict[str, asyncio.Task[Any]] = {}

    async def predict(self, features: np.ndarray, uri: str, timeout_s: float) -> list[Any]:
        model = self.models.get(uri)
        if model is None:
            self._start_loading(uri)
            raise ModelLoading(f"{uri} is loading in this router replica")
        # in-process on the event loop: the point of this placement is small, fast models
        return predict_labels(model, features)

    def _start_loading(self, uri: str) -> asyncio.Task[Any]:
        task = self._loading.get(uri)
        if task is None or (task.done() and task.exception() is not None):
            task = self._loading[uri] = asyncio.create_task(self._load(uri))
        return task

    async def _load(self, uri: str) -> Any:
        model = await asyncio.to_thread(load_model, uri, self.tracking_uri)
        self.models[uri] = model
        logger.info("router loaded %s in-process", uri)
        return model

    def needs_warming(self, uri: str) -> bool:
        return uri not in self.models

    async def warm(self, uri: str, timeout_s: float) -> None:
        """Load ``uri`` into this replica; raises the loader's error when it cannot."""
        if self.needs_warming(uri):
            await asyncio.wait_for(asyncio.shield(self._start_loading(uri)), timeout=timeout_s)
