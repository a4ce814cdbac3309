"""A router's link to the experiment-state deployment: batched counts and group commits.

Per prediction the router touches only its :class:`Outbox` (a few dict increments). The
:class:`StateLink` sends what the outbox collected every ``router.sync_interval_s`` (sooner
after ``router.sync_max_events`` events) as one numbered :class:`SyncBatch` and routes on the
snapshot it gets back. A router with nothing to send syncs less often: its interval doubles
after each empty sync, up to ``router.idle_sync_interval_s`` (a sync is a Ray call that costs
both ends a few milliseconds of CPU, most of an idle app's load); its next request or
feedback wakes the loop at once and brings the interval back, so counts still wait at most
``sync_interval_s`` and an idle replica's snapshot at most ``idle_sync_interval_s``.

A batch whose answer is lost (a timeout, a state that died after its commit) is sent again
*as it was*, with the same number, until it is acknowledged; the state stores the last number
it applied per router in the batch's own transaction, so a batch is added exactly once.
Counts of later decisions wait in the outbox meanwhile: a router's crash loses at most what
its outbox held (one sync interval of request counts), never feedback.

Feedback is acknowledged only once durable: concurrent requests are collected for
``router.feedback_commit_window_s`` and committed in one call (group commit). A commit whose
answer is lost is retried (each record carries its request's ``commit_id``, so the retry is
recognised) until ``router.feedback_commit_timeout_s``; only then do the requests get 503,
and a client's own retry of the same feedback is then answered ``"replayed": true`` if the
first attempt had stored it.

Example:
    >>> outbox = Outbox()
    >>> outbox.count("exp", 1, "a", "pulls"); outbox.count("exp", 1, "a", "pulls")
    >>> batch = outbox.take("router-1", seq=1)
    >>> batch.arms[("exp", 1, "a")].pulls, outbox.events, outbox.take("router-1", 2)
    (2, 0, None)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from bandits.drift import RowSampler
from serve_app.config import RouterConfig
from serve_app.errors import Unavailable
from serve_app.experiment.records import (
    LATENCY_BUCKETS,
    ArmCounts,
    ArmKey,
    FeedbackOutcome,
    FeedbackRecord,
    LatencyHistogram,
    LoggedDecision,
    ShadowCounts,
    SyncBatch,
)

logger = logging.getLogger("ray.serve")

FEEDBACK_BATCH = 1000
"""Most feedback records in one commit call."""
MAX_LOGGED_DECISIONS = 20_000
"""Most logged decisions an outbox holds while the state is away (older ones are dropped and
counted: the log is a record for retraining, not an acknowledged promise)."""


async def resolve(response: Any) -> Any:
    """A coroutine for a DeploymentResponse, so asyncio.wait_for can time it out."""
    return await response


class Outbox:
    """What one router counted since its last batch (see the module docstring)."""

    def __init__(self) -> None:
        self._arms: dict[ArmKey, defaultdict[str, float]] = {}
        self._latency: dict[tuple[str, str], list[float]] = {}
        self._shadows: dict[tuple[str, str], defaultdict[str, float]] = {}
        self._samplers: dict[str, RowSampler] = {}
        self._decisions: dict[str, LoggedDecision] = {}  # by decision key, oldest first
        self.dropped_decisions = 0
        self.events = 0

    def count(self, experiment: str, revision: int, arm: str, what: str, amount: int = 1) -> None:
        """Count a routed decision (``pulls``), ``errors``, ``forced``, ``forced_errors`` or
        ``fallbacks`` of one arm in one revision."""
        key = (experiment, revision, arm)
        counts = self._arms.get(key)
        if counts is None:
            counts = self._arms[key] = defaultdict(float)
        counts[what] += amount
        self.events += 1

    def expected(self, experiment: str, revision: int, weights: Mapping[str, float]) -> None:
        """Add one decision's routing probabilities: the expected counts of an SRM test."""
        for arm, weight in weights.items():
            key = (experiment, revision, arm)
            counts = self._arms.get(key)
            if counts is None:
                counts = self._arms[key] = defaultdict(float)
            counts["expected"] += weight

    def latency(self, experiment: str, arm: str, bucket: int, seconds: float) -> None:
        """Count one model call in its latency-histogram bucket."""
        values = self._latency.get((experiment, arm))
        if values is None:
            values = self._latency[(experiment, arm)] = [0.0] * (len(LATENCY_BUCKETS) + 2)
        values[bucket] += 1
        values[-1] += seconds

    def shadow(self, experiment: str, shadow: str, **amounts: float) -> None:
        """Count a mirrored call: requests, errors, timeouts, dropped, latency_sum_s, rows,
        agree_rows."""
        values = self._shadows.setdefault((experiment, shadow), defaultdict(float))
        for what, amount in amounts.items():
            values[what] += amount
        self.events += 1

    def sample(
        self,
        experiment: str,
        capacity: int,
        arm: str,
        features: np.ndarray,
        predictions: list[Any],
    ) -> None:
        """Offer the rows to the experiment's drift sample (sent with the next batch)."""
        sampler = self._samplers.get(experiment)
        if sampler is None or sampler.capacity != capacity:
            sampler = self._samplers[experiment] = RowSampler(len(features[0]), capacity)
        sampler.offer(arm, features, predictions)

    def log_decision(self, decision: LoggedDecision) -> None:
        """Keep a decision for the experiment's decision log (sent with the next batch)."""
        self._decisions[decision.decision_key] = decision
        if len(self._decisions) > MAX_LOGGED_DECISIONS:
            del self._decisions[next(iter(self._decisions))]
            self.dropped_decisions += 1
            if self.dropped_decisions % 1000 == 1:  # the first, then every thousandth
                logger.warning(
                    "decision log: %d decisions dropped while the state was away (the outbox "
                    "holds at most %d)",
                    self.dropped_decisions,
                    MAX_LOGGED_DECISIONS,
                )

    def holds_decision(self, keys: Iterable[str]) -> bool:
        """Is one of these decisions still waiting here for the next batch?"""
        return any(key in self._decisions for key in keys)

    @property
    def empty(self) -> bool:
        """No count and no logged decision since the last batch (drift samples aside: they
        are a sample, not a count)."""
        return not (self._arms or self._latency or self._shadows or self._decisions)

    def take(self, router_id: str, seq: int) -> SyncBatch | None:
        """Everything counted so far as batch ``seq`` (None when there is nothing); the
        outbox starts empty again."""
        samples = {name: sampler.drain() for name, sampler in self._samplers.items()}
        samples = {name: batches for name, batches in samples.items() if batches}
        if self.empty and not samples:
            return None
        arms = {
            key: ArmCounts(
                **{what: value if what == "expected" else int(value) for what, value in v.items()}
            )
            for key, v in self._arms.items()
        }
        latency = {
            key: LatencyHistogram(tuple(int(n) for n in values[:-1]), values[-1])
            for key, values in self._latency.items()
        }
        shadows = {
            key: ShadowCounts(
                **{w: value if w == "latency_sum_s" else int(value) for w, value in v.items()}
            )
            for key, v in self._shadows.items()
        }
        decisions, self._decisions = tuple(self._decisions.values()), {}
        self._arms, self._latency, self._shadows, self.events = {}, {}, {}, 0
        return SyncBatch(router_id, seq, arms, latency, shadows, samples, decisions)


class StateLink:
    """The sync loop and the feedback group commit of one router replica.

    Args:
        state: The experiment-state deployment's handle.
        router_id: This replica's id (batches are numbered per router).
        limits: The router's config.
        on_snapshot: Called with every snapshot the state returns.
        revisions: The revision this replica routes each experiment on.
        circuits: This replica's circuit states, sent along for the metrics.
    """

    def __init__(
        self,
        state: Any,
        router_id: str,
        limits: RouterConfig,
        on_snapshot: Callable[[Any], None],
        revisions: Callable[[], dict[str, int]],
        circuits: Callable[[], dict[str, dict[str, str]]],
    ) -> None:
        self.state = state
        self.router_id = router_id
        self.limits = limits
        self.outbox = Outbox()
        self._on_snapshot = on_snapshot
        self._revisions = revisions
        self._circuits = circuits
        self._seq = 0
        self._pending: SyncBatch | None = None
        self.interval = limits.sync_interval_s
        self._wanted = asyncio.Event()
        self._lock = asyncio.Lock()
        self.last_sync = time.monotonic()
        self.failures = 0
        self._queue: list[tuple[FeedbackRecord, asyncio.Future[FeedbackOutcome]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._sync_forever())

    @property
    def unsynced(self) -> bool:
        """Does this replica hold counts or logged decisions the state has not acknowledged
        (in the outbox, or in a batch sent but not answered)? Drift samples and shadow calls
        still running are not counted."""
        return self._pending is not None or not self.outbox.empty

    def counted(self) -> None:
        """Call after counting: wakes the sync loop once the outbox holds enough events, or
        at once after an idle spell."""
        if self.outbox.events >= self.limits.sync_max_events:
            self._wanted.set()
        else:
            self._active()

    def _active(self) -> None:
        """Traffic again after an idle spell: back to the busy interval, sync now."""
        if self.interval > self.limits.sync_interval_s:
            self.interval = self.limits.sync_interval_s
            self._wanted.set()

    async def _sync_forever(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wanted.wait(), timeout=self.interval)
            self._wanted.clear()
            await self.sync_once()

    def _next_interval(self, sent: bool) -> None:
        """Busy (something was sent): ``sync_interval_s``; empty: double, up to
        ``idle_sync_interval_s``."""
        busy, idle = self.limits.sync_interval_s, self.limits.idle_sync_interval_s
        self.interval = busy if sent else min(2 * self.interval, idle)

    async def sync_once(self) -> bool:
        """Send the pending batch (or a new one) and apply the snapshot; False when the
        batch was not acknowledged (a snapshot that fails to apply is logged: the batch is
        stored, and neither the sync loop nor a feedback commit waiting on it stops)."""
        async with self._lock:
            if self._pending is None:
                self._pending = self.outbox.take(self.router_id, self._seq + 1)
                if self._pending is not None:
                    self._seq = self._pending.seq
            self._next_interval(sent=self._pending is not None)
            try:
                snapshot = await asyncio.wait_for(
                    resolve(
                        self.state.sync.remote(
                            self._pending, self._revisions(), self.router_id, self._circuits()
                        )
                    ),
                    timeout=self.limits.feedback_commit_timeout_s,
                )
            except Exception as error:  # the same batch goes again next time
                self.failures += 1
                if self.failures in (1, 10) or self.failures % 100 == 0:
                    logger.warning("state sync failed %d times: %r", self.failures, error)
                return False
            self._pending = None
            self.failures = 0
            self.last_sync = time.monotonic()
        try:
            self._on_snapshot(snapshot)
        except Exception:
            logger.exception("applying the state's snapshot failed; the next sync brings one")
        return True

    async def close(self) -> None:
        """On graceful shutdown: stop the loop and flush the last counts."""
        if self._task is not None:
            self._task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.sync_once(), timeout=2.0)

    # ---------------------------------------------------------------- feedback

    async def commit(self, record: FeedbackRecord) -> FeedbackOutcome:
        """Store one feedback durably in the next group commit.

        Raises:
            Unavailable: the state could not confirm the commit in time (503; retry).
        """
        future: asyncio.Future[FeedbackOutcome] = asyncio.get_running_loop().create_future()
        self._queue.append((record, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return await asyncio.shield(future)

    async def _flush(self) -> None:
        await asyncio.sleep(self.limits.feedback_commit_window_s)
        while self._queue:
            batch, self._queue = self._queue[:FEEDBACK_BATCH], self._queue[FEEDBACK_BATCH:]
            records = [record for record, _ in batch]
            await self._sync_decisions_of(records)
            try:
                outcomes = await self._commit_until_answered(records)
            except Exception as error:
                logger.warning("feedback commit of %d items failed: %r", len(batch), error)
                failure = Unavailable("feedback could not be stored yet; retry the same request")
                for _, future in batch:
                    if not future.done():
                        future.set_exception(failure)
                continue
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                if not future.done():
                    future.set_result(outcome)
            self._active()  # the state learned from it: fetch the new stats now

    async def _sync_decisions_of(self, records: list[FeedbackRecord]) -> None:
        """Feedback that arrives before its decision went out with a sync: send the sync
        first, so a logged decision is stored before its feedback is acknowledged (a failed
        sync is retried by the loop; the feedback's own row is stored either way)."""
        keys = {record.decision_key for record in records}
        pending = self._pending is not None and any(
            decision.decision_key in keys for decision in self._pending.decisions
        )
        if pending or self.outbox.holds_decision(keys):
            await self.sync_once()

    async def _commit_until_answered(self, records: list[FeedbackRecord]) -> list[FeedbackOutcome]:
        """Commit, retrying a call whose answer was lost until the commit timeout (safe:
        the store recognises each record's ``commit_id``)."""
        deadline = time.monotonic() + self.limits.feedback_commit_timeout_s
        per_attempt = max(1.0, self.limits.feedback_commit_timeout_s / 3)
        delay = 0.1
        while True:
            remaining = deadline - time.monotonic()
            try:
                return list(
                    await asyncio.wait_for(
                        resolve(self.state.record_feedback.remote(records)),
                        timeout=max(min(remaining, per_attempt), 0.05),
                    )
                )
            except Exception as error:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise
                logger.info("feedback commit retried after %r", error)
                await asyncio.sleep(min(delay, remaining))
                delay = min(2 * delay, 1.0)
