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
from bandits.ope import candidate_from_dict
from serve_app.config import AppConfig, ExperimentConfig
from serve_app.errors import BanditServeError
from serve_app.experiment.concept import ConceptDrift
from serve_app.experiment.drift import ExperimentDrift
from serve_app.experiment.live import ExperimentSnapshot, LiveExperiment
from serve_app.experiment.offpolicy import MAX_LOG_ROWS, evaluate_log
from serve_app.experiment.planning import PlanError, plan_for
from serve_app.experiment.records import FeedbackOutcome, FeedbackRecord, SyncBatch
from serve_app.ingress.placement import Placements
from serve_app.state.control import ControlPlane
from serve_app.state.keys import load_keyring
from serve_app.state.ledger import Ledger
from serve_app.state.loops import (
    Aliases,
    Conclusions,
    DecisionLogKeeper,
    Lifecycle,
    ReplicaWatch,
    Timeline,
    every,
    prune_sync_log,
)
from serve_app.state.prometheus import experiment_metrics, render
from serve_app.state.reports import ReportCache
from serve_app.state.restore import restore_experiments
from serve_app.state.retrain import Retrainer
from serve_app.state.store import ExperimentStore

logger = logging.getLogger("ray.serve")

CIRCUITS_FRESH_S = 30.0
"""Router replicas that synced this recently count in ``bandit_arm_circuit_open``."""
RETRAIN_TICK_S = 1.0
"""How often the retrainer looks at its experiments (each reads its triggers every
``retrain.check_interval_s``)."""
DECISION_LOG_TICK_S = 1.0
"""How often the decision logs that grew are brought back within their bounds."""


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

    async def __init__(
        self, config: AppConfig, pool: Any = None, dedicated: Mapping[str, Any] | None = None
    ) -> None:
        """``pool`` and ``dedicated``: the model deployments' handles, which the retraining
        challengers' models are loaded into (None: this state cannot create challengers)."""
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
        self.placements = Placements(config, pool, dedicated or {}) if pool is not None else None
        self.retrainer = Retrainer(
            self.experiments, self.control_plane, self.store, config, self._prepare
        )
        self.decision_log = DecisionLogKeeper(self.experiments, self.store, self.ledger)
        await asyncio.to_thread(self.retrainer.restore)
        self.lifecycle = Lifecycle(self.experiments, self.control_plane, self.store)
        self.aliases = Aliases(self.experiments, self.control_plane, config)
        self.timeline = Timeline(self.experiments, self.store, config)
        self._profiles: dict[str, ReferenceProfile | None] = {}
        self._served: dict[str, tuple[str, ...]] = {}  # experiment -> its arms' serving URIs
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
            asyncio.create_task(every(RETRAIN_TICK_S, self.retrainer.step, "retraining")),
            asyncio.create_task(
                every(DECISION_LOG_TICK_S, self.decision_log.step, "decision log bounds")
            ),
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
            watch = ReplicaWatch(app_name, self.replicas, config.router.replica_check_interval_s)
            self._loops.append(asyncio.create_task(watch.run()))
        for name, live in self.experiments.items():
            if live.status == "concluded" and live.mlflow_run_id is None:
                self.conclusions.later(name)

    async def _prepare(self, spec: dict[str, Any]) -> ExperimentConfig:
        """Load a challenger's models where they serve and pin their versions, as the router
        does for an experiment created over HTTP."""
        if self.placements is None:
            raise RuntimeError("this state has no model deployments to load models into")
        return await self.placements.prepare(spec)

    def _live(self, name: str) -> LiveExperiment:
        return self.control_plane.live(name)

    async def _track_drift(self, live: LiveExperiment) -> None:
        """Set up (or drop) data and concept drift tracking as the experiment's config says;
        both start over when an arm serves another version (a new model, a new reference)."""
        settings, concept = live.config.drift, live.config.concept_drift
        served = tuple(arm.serving_uri for arm in live.config.arms)
        if settings is None:
            live.drift = None
        if concept is None:
            live.concept = None
        if settings is None and concept is None:
            return
        fresh = self._served.get(live.name) != served
        self._served[live.name] = served
        references = await self._references(live)
        if settings is not None and (fresh or live.drift is None or live.drift.config != settings):
            stored = await asyncio.to_thread(self.store.drift_references, live.name)
            live.drift = ExperimentDrift.create(settings, live.control, references, stored)
            logger.info("experiment %s: drift reference %s", live.name, live.drift.reference_source)
        if concept is not None and (
            fresh or live.concept is None or live.concept.config != concept
        ):
            live.concept = ConceptDrift.create(
                concept, live.config.reward, live.config.arm_names, references
            )

    async def _references(self, live: LiveExperiment) -> dict[str, ReferenceProfile | None]:
        """Each arm's model profile (loaded once per model URI)."""
        from serve_app.models.profiles import load_profile

        references = {}
        for arm in live.config.arms:
            uri = arm.serving_uri
            if uri not in self._profiles:
                self._profiles[uri] = await asyncio.to_thread(
                    load_profile, uri, self.config.mlflow_tracking_uri
                )
            references[arm.name] = self._profiles[uri]
        return references

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

    async def report(
        self, name: str, audit: bool = False, timeline_points: int = 500
    ) -> tuple[bytes, float]:
        """The full analysis of one experiment as JSON (see
        :func:`serve_app.report.build.build_report`), built off the loop and cached briefly,
        and the seconds this cached copy stays fresh (a router keeps it that long)."""
        return await self.reports.shared(name, audit, timeline_points)

    async def _mlflow_report(self, name: str) -> dict[str, Any]:
        return await self.reports.report(name, True, 5000)

    async def drift(self, name: str) -> dict[str, Any] | None:
        """Per-feature and per-arm drift scores, concept drift per arm, and the alert flag
        (None: neither is tracked)."""
        return self._live(name).drift_view()

    async def decisions(
        self, name: str, after: str | None, limit: int, labelled: bool, challengers: bool
    ) -> list[dict[str, Any]]:
        """A page of the experiment's decision log (with its challengers' rows)."""
        sources = self.retrainer.sources(name) if challengers else [name]
        return await asyncio.to_thread(
            self.store.decision_rows, sources, labelled=labelled, after=after, limit=limit
        )

    async def retrain_runs(self, name: str) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.store.retrain_runs, name)

    async def ope(
        self,
        name: str,
        candidates: list[dict[str, Any]],
        estimators: list[str],
        level: float = 0.95,
        clip: float | None = None,
    ) -> dict[str, Any]:
        """Off-policy estimates of the candidates (specs the router parsed) on the newest
        logged decisions (:mod:`serve_app.experiment.offpolicy`); ``{"error", "status"}``
        when the log cannot answer."""
        config = self._live(name).config

        def run() -> dict[str, Any]:
            rows = self.store.policy_log(name, MAX_LOG_ROWS)
            parsed = [candidate_from_dict(spec) for spec in candidates]
            return evaluate_log(rows, config, parsed, estimators, level=level, clip=clip)

        try:
            return {"ok": await asyncio.to_thread(run)}
        except BanditServeError as error:
            return {"error": str(error), "status": error.status}

    async def experiments_summary(self) -> list[dict[str, Any]]:
        return [live.summary() for live in self.experiments.values()]

    async def experiment_summary(self, name: str) -> dict[str, Any] | None:
        live = self.experiments.get(name)
        return None if live is None else live.summary()

    async def plan(self, name: str, options: dict[str, Any]) -> dict[str, Any] | None:
        """Users and days to detect an effect from the experiment's own traffic (see
        :func:`serve_app.experiment.planning.plan_for`), computed off the loop; None for an
        unknown experiment, ``{"error": {"field", "message"}}`` for a plan that cannot be
        made from these inputs."""
        live = self.experiments.get(name)
        if live is None:
            return None
        copy = live.frozen_copy()
        # one plan at a time (each costs up to ~1.5 s of CPU): a flood of plan requests
        # queues here instead of crowding the syncs and commits that share this process
        lock = self.__dict__.setdefault("_plan_lock", asyncio.Lock())
        async with lock:
            try:
                return await asyncio.to_thread(plan_for, copy, time.time(), **options)
            except PlanError as error:
                return {"error": {"field": error.field, "message": error.message}}

    async def metrics_text(self) -> bytes:
        """Every experiment's metrics in the Prometheus text format."""
        now = time.monotonic()
        fresh = [c for seen, c in self._circuits.values() if now - seen < CIRCUITS_FRESH_S]
        state = {
            "bandit_state_restore_problems": float(len(self.restore_problems)),
            "bandit_state_duplicate_batches": float(self.ledger.duplicate_batches),
            "bandit_state_report_builds": float(self.reports.builds),
            "bandit_state_reports_kept": float(self.reports.kept),
        }
        experiments = [
            experiment_metrics(
                live,
                fresh,
                retrain=self.retrainer.metrics(name),
                decision_log_rows=self.decision_log.rows.get(name, 0),
            )
            for name, live in self.experiments.items()
        ]
        return render(experiments, state)

    def check_health(self) -> None:
        self.store.ping()

    async def close(self) -> None:
        """Stop the background loops and close the store (tests; Serve kills the actor)."""
        await self.retrainer.close()
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        self.store.close()
