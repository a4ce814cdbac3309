"""Calling the arms: timeouts, circuit breakers, fallback to the default arm, shadow copies.

An arm is answered by the backend of its placement (:mod:`serve_app.ingress.backends`), for
its serving URI (the pinned version). For one request :meth:`Dispatcher.answer` calls the
routed arm with its timeout; when it fails, the default arm answers (a *fallback*, counted
against the failed arm) and the feedback of that answer is kept out of learning. Every call
feeds the arm's circuit breaker. Failures of routed decisions are ``errors`` (they feed the
error-rate guardrail); failures of forced requests are ``forced_errors`` and feed no
guardrail. A cold start (:class:`~serve_app.ingress.backends.ModelLoading`) is a fallback
and nothing else: not an error, not a breaker failure.

Shadows get a fire-and-forget copy of a share of the requests after the answer is known:
their answers, errors and timeouts never change or delay what the client gets; what they
did is counted (requests, errors, timeouts, dropped copies, latency, agreement).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from serve_app.config import RouterConfig
from serve_app.errors import Unavailable
from serve_app.experiment.records import latency_bucket
from serve_app.ingress.backends import ModelLoading
from serve_app.ingress.routing import Route, RoutedExperiment
from serve_app.ingress.sync import Outbox

logger = logging.getLogger("ray.serve")


@dataclass(frozen=True)
class Answer:
    """What the client gets: the predictions and which arm gave them."""

    predictions: list[Any]
    arm: str
    learned: bool
    fallback: bool
    model_version: str | None = None


class Dispatcher:
    """Arm calls and shadow copies of one router replica.

    Args:
        outbox: Where calls are counted (the state exports them as the ``bandit_arm_*``
            series: one place for every arm's requests, errors, fallbacks and latency).
        limits: The router's config (``mirror_max_in_flight``).
    """

    def __init__(self, outbox: Outbox, limits: RouterConfig) -> None:
        self.outbox = outbox
        self.limits = limits
        self._mirrors: set[asyncio.Task[None]] = set()

    async def answer(self, routed: RoutedExperiment, route: Route, features: np.ndarray) -> Answer:
        """Answer with ``route.arm``, or with the default arm when it fails.

        Raises:
            Unavailable: neither the arm nor the default arm could answer (503).
        """
        arm = route.arm
        started = time.perf_counter()
        try:
            predictions = await self.call(routed, arm, features)
        except Exception as error:  # ModelLoading (a cold start) included
            return await self._fall_back(routed, route, features, error)
        self._latency(routed, route, arm, time.perf_counter() - started)
        return Answer(predictions, arm, route.learned, False, routed.model_version(arm))

    def _latency(self, routed: RoutedExperiment, route: Route, arm: str, seconds: float) -> None:
        """Routed calls feed the latency histogram (and its guardrail); forced ones do not."""
        if not route.forced:
            self.outbox.latency(routed.name, arm, latency_bucket(seconds), seconds)

    async def _fall_back(
        self, routed: RoutedExperiment, route: Route, features: np.ndarray, error: Exception
    ) -> Answer:
        name, default, revision = routed.name, routed.config.default, routed.revision
        if not isinstance(error, ModelLoading):
            failed = "forced_errors" if route.forced else "errors"
            self.outbox.count(name, revision, route.arm, failed)
        if route.arm == default:
            raise self._unavailable(routed, route.arm, error) from None
        logger.warning(
            "arm %s of %s failed (%r); answering with %s", route.arm, name, error, default
        )
        self.outbox.count(name, revision, route.arm, "fallbacks")
        try:
            predictions = await self.call(routed, default, features)
        except Exception as default_error:
            self.outbox.count(name, revision, default, "errors")
            raise self._unavailable(routed, default, default_error) from None
        return Answer(predictions, default, False, True, routed.model_version(default))

    async def call(self, routed: RoutedExperiment, arm: str, features: np.ndarray) -> list[Any]:
        """Call one arm (or shadow) with its timeout; feed its circuit breaker."""
        backend = routed.backends.get(arm) or routed.shadow_backends[arm]
        breaker = routed.breakers.get(arm)
        model = routed.model(arm)
        try:
            predictions = await backend.predict(
                features, model.serving_uri, model.deployment.timeout_s
            )
        except ModelLoading:
            raise
        except Exception:
            if breaker is not None:
                breaker.record_failure()
            raise
        if breaker is not None:
            breaker.record_success()
        return predictions

    @staticmethod
    def _unavailable(routed: RoutedExperiment, arm: str, error: Exception) -> Unavailable:
        logger.error("arm %s of %s failed: %r", arm, routed.name, error)
        return Unavailable(
            f"model arm {arm!r} of experiment {routed.name!r} could not answer; retry later"
        )

    # ---------------------------------------------------------------- shadows

    def mirror(self, routed: RoutedExperiment, features: np.ndarray, served: list[Any]) -> None:
        """Fire-and-forget copies to the shadow models; the client never waits for them."""
        for shadow in routed.config.shadows:
            if routed.rng.random() * 100.0 >= shadow.percent:
                continue
            if len(self._mirrors) >= self.limits.mirror_max_in_flight:
                self.outbox.shadow(routed.name, shadow.name, dropped=1)
                continue
            task = asyncio.create_task(self._shadow_call(routed, shadow.name, features, served))
            self._mirrors.add(task)
            task.add_done_callback(self._mirrors.discard)

    async def _shadow_call(
        self, routed: RoutedExperiment, shadow: str, features: np.ndarray, served: list[Any]
    ) -> None:
        start = time.perf_counter()
        try:
            predictions = await self.call(routed, shadow, features)
        except (TimeoutError, ModelLoading):
            self.outbox.shadow(routed.name, shadow, requests=1, timeouts=1)
            return
        except Exception as error:
            logger.debug("shadow %s failed: %r", shadow, error)
            self.outbox.shadow(routed.name, shadow, requests=1, errors=1)
            return
        agree = sum(int(a == b) for a, b in zip(predictions, served, strict=False))
        self.outbox.shadow(
            routed.name,
            shadow,
            requests=1,
            latency_sum_s=time.perf_counter() - start,
            rows=len(served),
            agree_rows=agree,
        )
