"""The traffic simulator: drive a running app with the digits hold-out set, send rewards.

:func:`run_simulation` is a plain coroutine on :class:`serve_app.client.AsyncClient`; the
``simulate`` command only parses options and renders tables, and end-to-end tests call it
directly.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from serve_app.client import AsyncClient, BanditServeError

__all__ = [
    "DEFAULT_DRIFT_RAMP",
    "DEFAULT_DRIFT_SHIFT",
    "ArmTally",
    "SimulationResult",
    "drift_amount",
    "drifted_features",
    "run_simulation",
]

HTTP_TIMEOUT_S = 30.0
MAX_ERROR_SAMPLES = 5
console = Console()


@dataclass
class ArmTally:
    """Client-side counts for one arm."""

    requests: int = 0
    feedback: int = 0
    reward_sum: float = 0.0

    @property
    def mean_reward(self) -> float:
        """Mean reward over acknowledged feedback; NaN before any feedback."""
        return self.reward_sum / self.feedback if self.feedback else math.nan


@dataclass
class SimulationResult:
    """What :func:`run_simulation` saw.

    Attributes:
        url: Base URL of the app.
        experiment: Experiment name (as requested, else as reported by the server).
        requested: Number of requests asked for.
        arms: Per-arm client tally, keyed by the arm the server chose.
        predict_errors: Failed ``/predict`` calls (transport errors, non-2xx, bad JSON).
        feedback_errors: Failed ``/feedback`` calls.
        error_samples: The first few error messages, for display.
        elapsed_s: Wall-clock seconds for the traffic phase.
        server: JSON of ``GET /experiments/{experiment}`` after the run, or None.
        server_error: Why ``server`` is None, if it is.
        aborted: Why the run stopped early, or None if it ran to the end.
    """

    url: str
    experiment: str | None
    requested: int
    arms: dict[str, ArmTally] = field(default_factory=dict)
    predict_errors: int = 0
    feedback_errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    server: dict[str, Any] | None = None
    server_error: str | None = None
    aborted: str | None = None

    @property
    def errors(self) -> int:
        """All failed HTTP calls."""
        return self.predict_errors + self.feedback_errors

    @property
    def completed(self) -> int:
        """Successful ``/predict`` calls."""
        return sum(t.requests for t in self.arms.values())

    def record_error(self, message: str, *, feedback: bool) -> None:
        if feedback:
            self.feedback_errors += 1
        else:
            self.predict_errors += 1
        if len(self.error_samples) < MAX_ERROR_SAMPLES:
            self.error_samples.append(message)


DEFAULT_DRIFT_RAMP = 1000
"""Requests over which an injected drift grows from nothing to its full shift."""

DEFAULT_DRIFT_SHIFT = 0.25
"""Full injected shift, in feature units (digit pixels are in 0..1: a quarter of the range)."""


def drift_amount(step: int, drift_after: int | None, ramp: int, shift: float) -> float:
    """The shift added to every feature of request ``step`` (0-based) by gradual drift.

    Nothing before ``drift_after``; from there it grows linearly, reaching ``shift`` after
    ``ramp`` requests, and stays::

        amount(i) = shift * min(1, (i - drift_after + 1) / ramp)   for i >= drift_after

    ``ramp == 0`` is a sudden shift; ``drift_after=None`` turns drift off.

    Example:
        >>> [drift_amount(i, 2, 4, 1.0) for i in range(8)]
        [0.0, 0.0, 0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
        >>> drift_amount(5, 5, 0, 0.3), drift_amount(5, None, 0, 0.3)
        (0.3, 0.0)
    """
    if drift_after is None or step < drift_after:
        return 0.0
    if ramp <= 0:
        return shift
    return shift * min(1.0, (step - drift_after + 1) / ramp)


def drifted_features(
    rows: np.ndarray, step: int, drift_after: int | None, ramp: int, shift: float
) -> np.ndarray:
    """``rows`` (one request's features) plus :func:`drift_amount` for request ``step``.

    Returns a new float64 array; the input is never modified.

    Example:
        >>> drifted_features(np.zeros((1, 2)), 3, 2, 4, 1.0).tolist()
        [[0.5, 0.5]]
    """
    return np.asarray(rows, dtype=np.float64) + drift_amount(step, drift_after, ramp, shift)


async def run_simulation(
    url: str,
    *,
    experiment: str | None,
    requests: int,
    concurrency: int,
    reward_rates: Mapping[str, float] | None,
    seed: int,
    show_progress: bool = True,
    feedback_delay_ms: float = 0.0,
    drift_after: int | None = None,
    drift_ramp: int = DEFAULT_DRIFT_RAMP,
    drift_shift: float = DEFAULT_DRIFT_SHIFT,
    token: str | None = None,
) -> SimulationResult:
    """Send ``requests`` predictions to a running app and report a reward for each.

    Row ``i`` of the digits hold-out set (``digits_split()`` test part, cycling) goes to
    ``POST {url}/predict`` as unit ``u<i>``. The reward posted to ``/feedback`` is 1.0
    if the prediction equals the true label, else 0.0; for arms in ``reward_rates`` it
    is instead a Bernoulli(rate) draw; the feedback carries the true label too (what an
    experiment's decision log keeps for retraining). Draws are pre-sampled per request index from
    ``seed``, so a run is reproducible for a given routing regardless of concurrency.

    Gradual drift (``drift_after``): from request ``drift_after`` on, every feature of the
    row gets a shift that grows linearly from 0 to ``drift_shift`` over ``drift_ramp``
    requests and then stays (:func:`drift_amount`), so the app's drift detection has
    something to find. Rewards still use the row's true label.

    HTTP failures are counted, never raised. If the first ``min(requests, 20)``
    predictions all fail, the run stops early and ``aborted`` says why.

    Args:
        url: Base URL of the app, e.g. ``http://127.0.0.1:8000``.
        experiment: Experiment to route through; None lets the app pick its default.
        requests: Number of prediction requests.
        concurrency: Maximum predictions in flight.
        reward_rates: Arm -> Bernoulli reward rate, overriding correctness rewards.
        seed: Seed for the reward draws.
        show_progress: Draw a rich progress bar on the console.
        feedback_delay_ms: Wait this long after a prediction before sending feedback
            (the wait does not hold a concurrency slot, like real delayed outcomes).
        drift_after: Request index where injected drift starts; None for no drift.
        drift_ramp: Requests over which the drift grows to its full size (0: at once).
        drift_shift: Full shift added to every feature.
        token: Data-plane token, when the app protects its data plane.

    Returns:
        The client tally, error counts, elapsed time and the server's final view.
    """
    from serve_app.models.demo import digits_split

    if requests < 1:
        raise ValueError(f"requests must be >= 1, got {requests}")
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    if drift_after is not None and drift_after < 0:
        raise ValueError(f"drift_after must be >= 0, got {drift_after}")
    if drift_ramp < 0:
        raise ValueError(f"drift_ramp must be >= 0, got {drift_ramp}")
    if not math.isfinite(drift_shift):
        raise ValueError(f"drift_shift must be finite, got {drift_shift}")
    base = url.strip().rstrip("/")
    _, features, _, labels = digits_split()
    draws = np.random.default_rng(seed).random(requests)
    rates = dict(reward_rates or {})
    result = SimulationResult(url=base, experiment=experiment, requested=requests)
    semaphore = asyncio.Semaphore(concurrency)
    abort_after = min(requests, 20)
    attempted = 0
    stop = asyncio.Event()
    feedback_tasks: set[asyncio.Task[None]] = set()

    progress = Progress(
        TextColumn("[bold]simulate"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("errors {task.fields[errors]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not show_progress,
        transient=False,
    )
    task_id = progress.add_task("requests", total=requests, errors=0)

    async def send_feedback(
        client: AsyncClient, decision_id: str, arm: str, reward: float, label: int
    ) -> None:
        if feedback_delay_ms > 0:
            await asyncio.sleep(feedback_delay_ms / 1000.0)
        try:
            await client.feedback(decision_id, reward, label=label)
        except (BanditServeError, ValueError, TypeError) as exc:
            result.record_error(str(exc), feedback=True)
            return
        tally = result.arms.setdefault(arm, ArmTally())
        tally.feedback += 1
        tally.reward_sum += reward

    async def predict(client: AsyncClient, i: int) -> tuple[str, str, Any] | None:
        """POST one row; returns (arm, decision_id, prediction) or None on failure."""
        rows = drifted_features(
            features[i % len(features)][None, :], i, drift_after, drift_ramp, drift_shift
        )
        try:
            answer = await client.predict(rows.tolist(), experiment=experiment, unit_id=f"u{i}")
            decision = (answer.arm, answer.decision_id, answer.predictions[0])
        except (BanditServeError, ValueError, KeyError, IndexError, TypeError) as exc:
            result.record_error(str(exc), feedback=False)
            return None
        result.arms.setdefault(decision[0], ArmTally()).requests += 1
        if result.experiment is None:
            result.experiment = answer.experiment
        return decision

    async def one(client: AsyncClient, i: int) -> None:
        nonlocal attempted
        async with semaphore:
            if stop.is_set():
                return
            decision = await predict(client, i)
            attempted += 1
            progress.update(task_id, advance=1, errors=result.errors)
            if decision is None:
                if attempted >= abort_after and result.completed == 0 and not stop.is_set():
                    result.aborted = (
                        f"all of the first {attempted} requests to {base}/predict failed "
                        f"(last error: {result.error_samples[-1]}); is the app running?"
                    )
                    stop.set()
                return
        arm, decision_id, prediction = decision
        label = int(labels[i % len(labels)])
        if arm in rates:
            reward = 1.0 if draws[i] < rates[arm] else 0.0
        else:
            reward = 1.0 if _same_label(prediction, label) else 0.0
        if feedback_delay_ms > 0:
            task = asyncio.create_task(send_feedback(client, decision_id, arm, reward, label))
            feedback_tasks.add(task)
            task.add_done_callback(feedback_tasks.discard)
        else:
            await send_feedback(client, decision_id, arm, reward, label)

    started = time.perf_counter()
    async with AsyncClient(
        base, token=token, timeout=HTTP_TIMEOUT_S, max_connections=max(2 * concurrency, 4)
    ) as client:
        with progress:
            await asyncio.gather(*(one(client, i) for i in range(requests)))
            if feedback_tasks:
                await asyncio.gather(*list(feedback_tasks))
        result.elapsed_s = time.perf_counter() - started
        if result.aborted is None and result.experiment is not None:
            try:
                result.server = await client.experiment(result.experiment)
            except (BanditServeError, ValueError) as exc:
                result.server_error = str(exc)
    return result


def _same_label(prediction: Any, label: int) -> bool:
    try:
        return int(prediction) == label
    except (TypeError, ValueError):
        return False
