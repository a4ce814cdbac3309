"""The state deployment's background work: each a small step that a loop repeats.

- :class:`Lifecycle` judges every experiment once per ``lifecycle.evaluate_interval_s``
  (:func:`~serve_app.experiment.lifecycle.judge`), carries out what it decides through the
  control plane, and re-tests drift windows when due;
- :class:`Timeline` samples each experiment's cumulative per-arm counts as decisions
  accumulate, and keeps the stored history bounded;
- :class:`ReplicaWatch` polls Serve for running replicas per deployment (routers get the
  counts with their next sync and hold the circuits of arms without one open);
- :class:`Conclusions` records concluded experiments in MLflow in the background;
- :func:`every` runs a step forever, logging (never raising) a step's failure.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from serve_app.config import AppConfig
from serve_app.experiment.lifecycle import ACTOR, judge
from serve_app.experiment.live import LiveExperiment
from serve_app.state.control import ControlPlane
from serve_app.state.store import ExperimentStore

logger = logging.getLogger("ray.serve")

SYNC_LOG_TTL_S = 24 * 3600.0
"""Routers silent for this long are forgotten by the sync log (their replicas are gone)."""


async def every(
    interval_s: float,
    step: Callable[[], Awaitable[Any]],
    what: str,
    immediately: bool = False,
) -> None:
    """Run ``step`` every ``interval_s`` forever; a failing step is logged and retried.
    ``immediately`` runs it once before the first wait."""
    first = immediately
    while True:
        if not first:
            await asyncio.sleep(interval_s)
        first = False
        try:
            await step()
        except Exception:
            logger.exception("%s failed", what)


class Lifecycle:
    """Judges the experiments and acts on the judgements (actor ``lifecycle``)."""

    def __init__(
        self, experiments: dict[str, LiveExperiment], control: ControlPlane, store: ExperimentStore
    ) -> None:
        self.experiments = experiments
        self.control = control
        self.store = store

    async def step(self) -> None:
        now = time.time()
        for name in list(self.experiments):
            try:
                await self.evaluate(name, now)
                await self.drift(self.experiments[name], now)
            except Exception:  # one experiment's failure must not stop the others
                logger.exception("lifecycle evaluation of %s failed", name)

    async def evaluate(self, name: str, now: float | None = None) -> list[dict[str, Any]]:
        """Judge one experiment now and carry out what the lifecycle decides.

        Returns:
            The actions taken (kind, arm, reason).
        """
        live = self.control.live(name)
        # on the loop: the judgement reads counts that syncs change (a few ms, the verdict
        # is cached until feedback arrives)
        judgement = judge(live, now or time.time())
        live.guardrail_checks = judgement.guardrails
        live.stopping = judgement.stopping
        taken = []
        for action in judgement.actions:
            if self.experiments.get(name) is not live or live.status != "running":
                break  # changed meanwhile (a control call won the race): judge again later
            await self.control.act(live, action)
            taken.append({"kind": action.kind, "arm": action.arm, "reason": action.reason})
        return taken

    async def drift(self, live: LiveExperiment, now: float) -> None:
        """Warm up missing references and re-test the windows when due."""
        drift = live.drift
        if drift is None or not drift.due(now):
            return
        name = live.name

        def save(arm: str, profile: str) -> None:
            self.store.save_drift_reference(name, arm, profile)

        # the windows keep changing with every sync on this loop: test a copy in a thread
        windows = copy.deepcopy(drift.windows)
        await asyncio.to_thread(drift.warm_up, save, windows)
        before = drift.report.alert if drift.report else False
        report = await asyncio.to_thread(drift.evaluate, now, windows)
        if report is not None and report.alert != before:
            logger.warning("experiment %s drift alert %s: %s", name, report.alert, report.reasons)


class Timeline:
    """Samples cumulative per-arm counts (see :class:`~serve_app.config.LifecycleLoopConfig`)."""

    def __init__(
        self, experiments: dict[str, LiveExperiment], store: ExperimentStore, config: AppConfig
    ) -> None:
        self.experiments = experiments
        self.store = store
        self.settings = config.lifecycle
        self._last: dict[str, tuple[tuple[Any, ...], int, float]] = {}
        self.samples = 0

    @property
    def tick_s(self) -> float:
        return min(0.5, self.settings.timeline_interval_s)

    async def step(self, now: float | None = None) -> int:
        """Store a sample of each experiment that is due; returns the rows written."""
        now = time.time() if now is None else now
        rows = []
        for name, live in self.experiments.items():
            stats = live.policy.stats
            key = tuple((s.pulls, s.feedback, s.reward_sum) for s in stats.values())
            decisions = sum(s.pulls for s in stats.values())
            previous = self._last.get(name)
            if previous is not None:
                last_key, last_decisions, last_at = previous
                if key == last_key:
                    continue
                grown = decisions - last_decisions >= self.settings.timeline_every_decisions
                if not grown and now - last_at < self.settings.timeline_interval_s:
                    continue
            self._last[name] = (key, decisions, now)
            weights = live.weights()
            rows.extend(
                {
                    "experiment": name,
                    "at": now,
                    "decisions": decisions,
                    "arm": arm,
                    "pulls": stats[arm].pulls,
                    "feedback": stats[arm].feedback,
                    "reward_sum": stats[arm].reward_sum,
                    "weight": weights[arm],
                }
                for arm in live.config.arm_names
            )
        if rows:
            await asyncio.to_thread(self.store.add_timeline, rows)
            self.samples += 1
            if self.samples % 100 == 0:
                await self.thin()
        return len(rows)

    async def thin(self) -> None:
        keep = self.settings.timeline_max_samples
        for name in list(self.experiments):
            await asyncio.to_thread(self.store.thin_timeline, name, keep)


class Aliases:
    """Follows registry aliases: every ``models.alias_poll_interval_s`` each model on an
    ``@alias`` (or ``latest``) URI is resolved again, and a move pins the new version (a new
    revision with an audit entry, see :meth:`ControlPlane.follow_versions`), so the
    platform's own promotion that moves ``champion`` reaches serving by itself."""

    def __init__(
        self, experiments: dict[str, LiveExperiment], control: ControlPlane, config: AppConfig
    ) -> None:
        self.experiments = experiments
        self.control = control
        self.tracking_uri = config.mlflow_tracking_uri

    async def step(self) -> None:
        from serve_app.models.registry import current_version

        for name, live in list(self.experiments.items()):
            versions = {}
            for model in [*live.config.arms, *live.config.shadows]:
                if not model.follows_alias:
                    continue
                try:
                    version = await asyncio.to_thread(
                        current_version, model.model_uri, self.tracking_uri
                    )
                except Exception as error:  # the registry is down, or the alias went away
                    logger.warning("resolving %s of %s failed: %r", model.model_uri, name, error)
                    continue
                if version is not None:
                    versions[model.name] = version
            if versions and self.experiments.get(name) is live:
                await self.control.follow_versions(live, versions)


def running_replicas(app_name: str) -> dict[str, int] | None:
    """Running replicas per deployment of ``app_name`` (None: Serve does not know the app).

    Reads the controller's details as the plain dict it sends: ``serve.status()`` rebuilds
    them as pydantic models of every application, pickling each deployment's request
    router class, which made this poll half of an idle state replica's CPU."""
    from ray.serve.context import _get_global_client

    client = _get_global_client(raise_if_no_controller_running=False)
    if client is None:
        return None
    application = client.get_serve_details().get("applications", {}).get(app_name)
    if application is None:
        return None
    return {
        name: sum(1 for replica in details.get("replicas", []) if replica["state"] == "RUNNING")
        for name, details in application.get("deployments", {}).items()
    }


class ReplicaWatch:
    """Keeps ``running`` (deployment -> running replicas of this app) fresh.

    Polls every ``fast_s`` while a deployment has no running replica (arms starting, a
    replica that died), for at most ``fast_for_s`` after the last change (an arm scaled to
    zero stays at zero), and every ``interval_s`` otherwise."""

    def __init__(
        self,
        app_name: str,
        running: dict[str, int],
        interval_s: float,
        fast_s: float = 0.5,
        fast_for_s: float = 60.0,
    ) -> None:
        self.app_name = app_name
        self.running = running
        self.interval_s = interval_s
        self.fast_s = min(fast_s, interval_s)
        self.fast_for_s = fast_for_s
        self.changed_at = time.monotonic()
        self.polls = 0

    async def step(self) -> float:
        """One poll; returns the seconds until the next."""
        found = await asyncio.to_thread(running_replicas, self.app_name)
        self.polls += 1
        if found is not None and found != self.running:
            self.running.clear()
            self.running.update(found)
            self.changed_at = time.monotonic()
        starting = found is None or any(count == 0 for count in found.values())
        recent = time.monotonic() - self.changed_at < self.fast_for_s
        return self.fast_s if starting and recent else self.interval_s

    async def run(self) -> None:
        while True:
            try:
                wait = await self.step()
            except Exception:
                logger.exception("replica check failed")
                wait = self.interval_s
            await asyncio.sleep(wait)


class DecisionLogKeeper:
    """Keeps every decision log within ``decision_log.max_rows`` and ``max_age_s``: a log
    that grew is pruned within a second (the oldest rows go first), and every log is
    checked for age once a minute. Between two steps a log holds at most ``max_rows`` plus
    the rows written in that second."""

    AGE_CHECK_S = 60.0

    def __init__(
        self, experiments: dict[str, LiveExperiment], store: ExperimentStore, ledger: Any
    ) -> None:
        self.experiments = experiments
        self.store = store
        self.ledger = ledger
        self.rows: dict[str, int] = {}  # experiment -> rows after its last prune
        self.pruned = 0
        self._age_checked = 0.0

    async def step(self, now: float | None = None) -> int:
        """Prune the logs that grew (all of them once a minute); returns the rows deleted."""
        now = time.time() if now is None else now
        grown = self.ledger.take_logged()
        every_log = now - self._age_checked >= self.AGE_CHECK_S
        if every_log:
            self._age_checked = now
        deleted = 0
        for name, live in list(self.experiments.items()):
            log = live.config.decision_log
            if log is None or not (every_log or name in grown):
                continue
            deleted += await asyncio.to_thread(
                self.store.prune_decision_log, name, log.max_rows, now - log.max_age_s
            )
            self.rows[name] = await asyncio.to_thread(self.store.decision_log_rows, name)
        self.pruned += deleted
        return deleted


async def prune_sync_log(store: ExperimentStore) -> None:
    await asyncio.to_thread(store.prune_sync_log, time.time() - SYNC_LOG_TTL_S)


class Conclusions:
    """Records concluded experiments as MLflow runs, in the background (never blocks)."""

    def __init__(
        self,
        experiments: dict[str, LiveExperiment],
        store: ExperimentStore,
        config: AppConfig,
        report: Callable[[str], Awaitable[dict[str, Any]]],
    ) -> None:
        self.experiments = experiments
        self.store = store
        self.tracking_uri = config.mlflow_tracking_uri
        self.report = report
        self._tasks: set[asyncio.Task[None]] = set()

    def later(self, name: str) -> None:
        task = asyncio.create_task(self.record(name))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def record(self, name: str) -> None:
        live = self.experiments[name]
        promotion = live.config.promotion
        if not promotion.log_to_mlflow or live.mlflow_run_id is not None:
            return
        from serve_app.models.tracking import log_conclusion

        assert self.tracking_uri is not None
        alias = promotion.registry_alias if live.outcome == "promoted" else None
        try:
            report = await self.report(name)
            run_id = await asyncio.to_thread(  # renders the plots and HTML page itself
                log_conclusion,
                self.tracking_uri,
                report,
                live.config.model_dump(mode="json"),
                alias=alias,
            )
        except Exception as error:
            logger.exception("MLflow record of %s failed", name)
            await asyncio.to_thread(
                self.store.set_lifecycle,
                name,
                audit=("mlflow_failed", {"error": repr(error)[:500]}, ACTOR),
            )
            return
        detail = {"run_id": run_id, "outcome": live.outcome, "winner": live.winner}
        if alias:
            detail["alias"] = alias
        await asyncio.to_thread(
            self.store.set_lifecycle,
            name,
            mlflow_run_id=run_id,
            audit=("mlflow_run", detail, ACTOR),
        )
        live.mlflow_run_id = run_id
