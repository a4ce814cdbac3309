"""The experiment-state deployment: the one place where counts from every router meet.

It runs as a single-replica Serve deployment (one named Ray actor, restarted by Serve when it
dies, restored from the store) and is never called per prediction. Routers call:

- :meth:`ExperimentState.sync` every ~100 ms or N decisions with a numbered batch of counts,
  and get back the merged snapshot of every experiment (with its config when the router's
  revision is old), which they route on until the next sync;
- :meth:`ExperimentState.record_feedback` with a group commit of verified feedback: written
  in one transaction, then learned from, and only then do the routers answer 200;
- :meth:`ExperimentState.control` for the control plane (:mod:`~serve_app.state.control`).

The methods here are thin: the write path is :mod:`~serve_app.state.ledger`, restoring is
:mod:`~serve_app.state.restore`, the background loops are :mod:`~serve_app.state.loops`,
reports :mod:`~serve_app.state.reports` and the metrics text
:mod:`~serve_app.state.prometheus`. All methods run on one event loop, so merges never
interleave (Seldon v1's shared Thompson state lost updates exactly there); store writes run
in a worker thread behind one lock, so the loop keeps answering while SQLite or PostgreSQL
commits.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ray import serve

from bandits.drift import ReferenceProfile
from serve_app.config import AppConfig
from serve_app.experiment.drift import ExperimentDrift
from serve_app.experiment.live import ExperimentSnapshot, LiveExperiment
from serve_app.experiment.records import FeedbackOutcome, FeedbackRecord, SyncBatch
from serve_app.state.control import ControlPlane
from serve_app.state.keys import load_keyring
from serve_app.state.ledger import Ledger
from serve_app.state.loops import (
    Aliases,
    Conclusions,
    Lifecycle,
    Timeline,
    every,
    prune_sync_log,
    watch_replicas,
)
from serve_app.state.prometheus import experiment_metrics, render
from serve_app.state.reports import ReportCache
from serve_app.state.restore import restore_experiments
from serve_app.state.store import ExperimentStore

logger = logging.getLogger("ray.serve")

CIRCUITS_FRESH_S = 30.0
"""Router replicas that synced this recently count in ``bandit_arm_circuit_open``."""
REPLICA_WARMUP = (30.0, 0.5)
"""For its first 30 s the state polls replicas every 0.5 s: the arms are still starting, and
an arm first seen without a running replica must not look dead for a whole interval."""


def _app_name() -> str | None:
    """This replica's Serve application, or None outside a Serve replica."""
    try:
        return str(serve.get_replica_context().app_name)
    except Exception:
        return None


@dataclass(frozen=True)
class StateSnapshot:
    """What a router routes on: every experiment, and running replicas per deployment."""

    experiments: dict[str, ExperimentSnapshot]
    replicas: dict[str, int]


@serve.deployment(
    num_replicas=1,
    max_ongoing_requests=1000,
    ray_actor_options={"num_cpus": 0.1},
    health_check_period_s=2,
    health_check_timeout_s=10,
    logging_config={"enable_access_log": False},  # called ~10 times a second per router
)
class ExperimentState:
    """Holds merged experiment state, persists it, and hands routers their snapshots."""

    async def __init__(self, config: AppConfig) -> None:
        self.config = config
        assert config.store_url is not None, "parse_config resolves store_url"
        self.store = ExperimentStore(config.store_url)
        self.keys = load_keyring(config, self.store)
        restored = await asyncio.to_thread(restore_experiments, config, self.store)
        self.experiments = restored.experiments
        self.restore_problems = restored.problems
        lock = asyncio.Lock()
        self.ledger = Ledger(self.store, self.experiments, lock)
        self.reports = ReportCache(self.store, self._live)
        self.conclusions = Conclusions(self.experiments, self.store, config, self._mlflow_report)
        self.control_plane = ControlPlane(
            self.store, self.experiments, lock, self.conclusions.later, self._track_drift
        )
        self.lifecycle = Lifecycle(self.experiments, self.control_plane, self.store)
        self.aliases = Aliases(self.experiments, self.control_plane, config)
        self.timeline = Timeline(self.experiments, self.store, config)
        self._profiles: dict[str, ReferenceProfile | None] = {}
        for live in self.experiments.values():
            await self._track_drift(live)
        self.replicas: dict[str, int] = {}
        self._circuits: dict[str, tuple[float, Mapping[str, Mapping[str, str]]]] = {}
        settings = config.lifecycle
        self._loops = [
            asyncio.create_task(
                every(settings.evaluate_interval_s, self.lifecycle.step, "lifecycle")
            ),
            asyncio.create_task(every(self.timeline.tick_s, self.timeline.step, "timeline")),
            asyncio.create_task(every(3600.0, lambda: prune_sync_log(self.store), "sync log")),
            asyncio.create_task(
                every(
                    config.models.alias_poll_interval_s,
                    self.aliases.step,
                    "alias check",
                    immediately=True,
                )
            ),
        ]
        app_name = _app_name()
        if app_name is not None:  # in a Serve replica (tests also run this class in-process)
            self._loops.append(
                asyncio.create_task(
                    every(
                        config.router.replica_check_interval_s,
                        lambda: watch_replicas(app_name, self.replicas),
                        "replica check (serve.status())",
                        warmup=REPLICA_WARMUP,
                    )
                )
            )
        for name, live in self.experiments.items():
            if live.status == "concluded" and live.mlflow_run_id is None:
                self.conclusions.later(name)

    def _live(self, name: str) -> LiveExperiment:
        return self.control_plane.live(name)

    async def _track_drift(self, live: LiveExperiment) -> None:
        """Set up (or drop) drift tracking as the experiment's config says."""
        settings = live.config.drift
        if settings is None:
            live.drift = None
            return
        if live.drift is not None and live.drift.config == settings:
            return
        from serve_app.models.profiles import load_profile

        references = {}
        for arm in live.config.arms:
            if arm.model_uri not in self._profiles:
                self._profiles[arm.model_uri] = await asyncio.to_thread(
                    load_profile, arm.model_uri, self.config.mlflow_tracking_uri
                )
            references[arm.name] = self._profiles[arm.model_uri]
        stored = await asyncio.to_thread(self.store.drift_references, live.name)
        live.drift = ExperimentDrift.create(settings, live.control, references, stored)
        logger.info("experiment %s: drift reference %s", live.name, live.drift.reference_source)

    def snapshot(self, revisions: Mapping[str, int] | None = None) -> StateSnapshot:
        """Every experiment's merged stats; its config too where the caller's revision is old."""
        known = revisions or {}
        return StateSnapshot(
            experiments={
                name: live.snapshot(with_config=known.get(name) != live.revision)
                for name, live in self.experiments.items()
            },
            replicas=dict(self.replicas),
        )

    # ---------------------------------------------------------------- routers

    async def register(self, router_id: str) -> dict[str, Any]:
        """A router's first call: the signing keys and the current snapshot."""
        logger.info("router %s registered", router_id)
        return {"keys": self.keys, "snapshot": self.snapshot()}

    async def sync(
        self,
        batch: SyncBatch | None,
        revisions: Mapping[str, int] | None = None,
        router_id: str | None = None,
        circuits: Mapping[str, Mapping[str, str]] | None = None,
    ) -> StateSnapshot:
        """Apply a router's batch (once, whatever the retries) and return the snapshot."""
        if router_id is not None and circuits is not None:
            self._circuits[router_id] = (time.monotonic(), circuits)
        if batch is not None:
            await self.ledger.sync(batch)
        return self.snapshot(revisions)

    async def record_feedback(self, records: list[FeedbackRecord]) -> list[FeedbackOutcome]:
        """Store a group commit durably, then learn from it; one outcome per record."""
        return await self.ledger.feedback(records)

    async def assign(
        self, name: str, unit_id: str, arm: str, propensity: float
    ) -> tuple[str, float]:
        """The unit's stored arm (and first propensity), storing ``arm`` if it has none."""
        live = self._live(name)
        return await asyncio.to_thread(
            self.store.assign, name, unit_id, arm, propensity, live.revision
        )

    # ---------------------------------------------------------------- control plane

    async def control(self, action: str, name: str, actor: str, **kwargs: Any) -> dict[str, Any]:
        return await self.control_plane.control(action, name, actor, **kwargs)

    async def evaluate(self, name: str, now: float | None = None) -> list[dict[str, Any]]:
        """Judge one experiment now and carry out what the lifecycle decides."""
        return await self.lifecycle.evaluate(name, now)

    async def audit_log(self, name: str) -> list[dict[str, Any]]:
        self._live(name)
        return await asyncio.to_thread(self.store.audit_log, name)

    # ---------------------------------------------------------------- read side

    async def report(self, name: str, audit: bool = False, timeline_points: int = 500) -> bytes:
        """The full analysis of one experiment as JSON (see
        :func:`serve_app.report.build.build_report`), built off the loop and cached briefly."""
        return await self.reports.encoded(name, audit, timeline_points)

    async def _mlflow_report(self, name: str) -> dict[str, Any]:
        return await self.reports.report(name, True, 5000)

    async def drift(self, name: str) -> dict[str, Any] | None:
        """Per-feature and per-arm drift scores and the alert flag (None: not tracked)."""
        live = self._live(name)
        return live.drift.full() if live.drift else None

    async def experiments_summary(self) -> list[dict[str, Any]]:
        return [live.summary() for live in self.experiments.values()]

    async def experiment_summary(self, name: str) -> dict[str, Any] | None:
        live = self.experiments.get(name)
        return None if live is None else live.summary()

    async def metrics_text(self) -> bytes:
        """Every experiment's metrics in the Prometheus text format."""
        now = time.monotonic()
        fresh = [c for seen, c in self._circuits.values() if now - seen < CIRCUITS_FRESH_S]
        state = {
            "bandit_state_restore_problems": float(len(self.restore_problems)),
            "bandit_state_duplicate_batches": float(self.ledger.duplicate_batches),
        }
        return render(
            [experiment_metrics(live, fresh) for live in self.experiments.values()], state
        )

    def check_health(self) -> None:
        self.store.ping()

    async def close(self) -> None:
        """Stop the background loops and close the store (tests; Serve kills the actor)."""
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        self.store.close()
