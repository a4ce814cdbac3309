"""The experiment-state deployment: the one place where counts from every router meet.

It runs as a single-replica Serve deployment (one named Ray actor, restarted by Serve when it
dies, restored from the store) and is never called per prediction. Routers call:

- :meth:`ExperimentState.sync` every ~100 ms or N decisions with their buffered counts, and get
  back the merged statistics of every experiment (plus its config when its revision changed),
  which they route on until the next sync;
- :meth:`ExperimentState.record_feedback` with a batch of verified feedback (group commit):
  the batch is written to the store in one transaction, then applied in memory, and only then
  do the routers answer 200;
- the control methods (start, pause, resume, stop, weights, promote, roll back), each one
  transaction with its audit-log entry.

Two loops run beside them: the lifecycle (:mod:`serve_app.lifecycle`: guardrails, ramps,
stopping rules, acting as ``lifecycle``) and the timeline, which samples cumulative per-arm
counts for the report. A conclusion, automatic or not, is recorded as an MLflow run.

All methods run on one event loop, so merges never interleave (Seldon v1's shared Thompson
state lost updates exactly there); store writes run in a worker thread behind a lock so the
loop keeps answering syncs while SQLite or PostgreSQL commits.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import os
import time
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError
from ray import serve

from bandits import ArmStats, Policy, make_policy
from bandits.drift import ReferenceProfile, SampledBatch
from serve_app.config import (
    SECRET_ENV,
    AppConfig,
    ExperimentConfig,
    describe_validation_error,
)
from serve_app.drift import ExperimentDrift
from serve_app.lifecycle import ACTOR, Action, Judgement, judge
from serve_app.live import LiveExperiment
from serve_app.metrics import render
from serve_app.report import build_report
from serve_app.store import ArmCounts, ExperimentStore, FeedbackRecord, ShadowCounts

logger = logging.getLogger("ray.serve")

# The snapshot's entry with running replicas per deployment of this app (never an experiment
# name: those start with a letter or digit).
REPLICAS_KEY = "_replicas"


class ControlError(ValueError):
    """A control request that cannot apply to the experiment as it is (HTTP 409/422)."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


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

    async def __init__(self, config: dict[str, Any]) -> None:
        self.config = AppConfig.model_validate(config)
        assert self.config.store_url is not None, "parse_config resolves store_url"
        self.store = ExperimentStore(self.config.store_url)
        env_secret = os.environ.get(SECRET_ENV)
        self._secret = env_secret.encode() if env_secret else self.store.secret()
        self._write_lock = asyncio.Lock()
        self._circuits: dict[str, tuple[float, Mapping[str, Mapping[str, str]]]] = {}
        self.experiments = {
            experiment.name: self._restore(experiment.name, experiment)
            for experiment in self.config.experiments
        }
        for name in self.store.api_experiments():
            if name not in self.experiments:
                self.experiments[name] = self._restore(name)
        # models with a deployment in this app, and the feature count of each
        self._deployed: dict[str, int | None] = {}
        for experiment in self.config.experiments:
            for model in [*experiment.arms, *experiment.shadows]:
                self._deployed.setdefault(model.model_uri, experiment.n_features)
        self._profiles: dict[str, ReferenceProfile | None] = {}
        for live in self.experiments.values():
            self._track_drift(live)
        self._timeline_keys: dict[str, tuple[Any, ...]] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._running: dict[str, int] = {}
        self._loops = [
            asyncio.create_task(self._lifecycle_forever()),
            asyncio.create_task(self._timeline_forever()),
            asyncio.create_task(self._watch_replicas()),
        ]
        for name, live in self.experiments.items():
            if live.status == "concluded" and live.mlflow_run_id is None:
                self._record_conclusion_later(name)

    def _restore(self, name: str, deployed: ExperimentConfig | None = None) -> LiveExperiment:
        """Load one experiment from the store (creating or updating it from ``deployed``)."""
        if deployed is not None:
            self.store.ensure_experiment(name, deployed.model_dump(mode="json"), actor="startup")
        row = self.store.experiment_row(name)
        assert row is not None
        config = ExperimentConfig.model_validate(json.loads(row["config"]))
        stats, _ = self.store.load_stats(name)
        lifecycle = self.store.lifecycle(name)
        revision = int(row["revision"])
        live = LiveExperiment(
            config=config,
            revision=revision,
            status=row["status"],
            outcome=row["outcome"],
            winner=row["winner"],
            policy=self._policy(config, revision),
            counts=self.store.load_counts(name),
            shadows=self.store.load_shadows(name),
            metrics=self.store.load_metrics(name),
            period_counts=self.store.load_period(name, revision),
            started_at=lifecycle["started_at"],
            period_started_at=lifecycle["period_started_at"] or time.time(),
            excluded=dict(lifecycle["excluded"]),
            mlflow_run_id=lifecycle["mlflow_run_id"],
            recommendation=lifecycle["recommendation"],
        )
        live.policy.set_stats({arm: stats.get(arm, ArmStats()) for arm in config.arm_names})
        if lifecycle["period_started_at"] is None or (
            live.status == "running" and live.started_at is None
        ):
            live.started_at = live.started_at or (time.time() if live.status == "running" else None)
            self.store.set_lifecycle(
                name, started_at=live.started_at, period_started_at=live.period_started_at
            )
        logger.info(
            "experiment %s restored: revision %d, %s", config.name, live.revision, live.status
        )
        return live

    def _track_drift(self, live: LiveExperiment) -> None:
        """Set up (or drop) drift tracking as the experiment's config says."""
        settings = live.config.drift
        if settings is None:
            live.drift = None
            return
        if live.drift is not None and live.drift.config == settings:
            return
        from serve_app.drift_profiles import load_profile

        references = {}
        for arm in live.config.arms:
            if arm.model_uri not in self._profiles:
                self._profiles[arm.model_uri] = load_profile(
                    arm.model_uri, self.config.mlflow_tracking_uri
                )
            references[arm.name] = self._profiles[arm.model_uri]
        live.drift = ExperimentDrift.create(
            settings, live.control, references, self.store.drift_references(live.config.name)
        )
        logger.info(
            "experiment %s: drift reference %s", live.config.name, live.drift.reference_source
        )

    async def _drift_step(self, live: LiveExperiment, now: float) -> None:
        """Warm up missing references and re-test the windows when due."""
        drift = live.drift
        if drift is None or not drift.due(now):
            return
        name = live.config.name

        def save(arm: str, profile: str) -> None:
            self.store.save_drift_reference(name, arm, profile)

        # the windows keep changing with every sync on this loop: test a copy in a thread
        windows = copy.deepcopy(drift.windows)
        await asyncio.to_thread(drift.warm_up, save, windows)
        before = drift.report.alert if drift.report else False
        report = await asyncio.to_thread(drift.evaluate, now, windows)
        if report is not None and report.alert != before:
            logger.warning("experiment %s drift alert %s: %s", name, report.alert, report.reasons)

    @staticmethod
    def _policy(config: ExperimentConfig, revision: int) -> Policy:
        return make_policy(
            config.policy.name, config.arm_names, config.policy_params(revision), seed=config.seed
        )

    def snapshot(self, revisions: Mapping[str, int] | None = None) -> dict[str, Any]:
        """Every experiment's merged stats; its config too where the caller's revision is old;
        and under :data:`REPLICAS_KEY` the running replicas per deployment of this app."""
        known = revisions or {}
        snapshot: dict[str, Any] = {
            name: live.snapshot(with_config=known.get(name) != live.revision)
            for name, live in self.experiments.items()
        }
        snapshot[REPLICAS_KEY] = dict(self._running)
        return snapshot

    async def _watch_replicas(self) -> None:
        """Poll Serve for running replicas per deployment of this app (routers get them with
        their next sync and hold the circuits of arms without one open)."""
        app_name = serve.get_replica_context().app_name
        while True:
            await asyncio.sleep(self.config.router.replica_check_interval_s)
            try:
                status = await asyncio.to_thread(serve.status)
            except Exception as error:  # the controller is restarting: try again later
                logger.warning("replica check failed (serve.status()): %r", error)
                continue
            application = status.applications.get(app_name)
            if application is not None:
                self._running = {
                    name: deployment.replica_states.get("RUNNING", 0)
                    for name, deployment in application.deployments.items()
                }

    async def register(self, router_id: str) -> dict[str, Any]:
        """A router's first call: the signing secret and the current snapshot."""
        logger.info("router %s registered", router_id)
        return {"secret": self._secret, "snapshot": self.snapshot()}

    async def sync(
        self,
        counts: Mapping[str, Mapping[str, Mapping[str, Mapping[str, float]]]],
        revisions: Mapping[str, int] | None = None,
        router_id: str | None = None,
        circuits: Mapping[str, Mapping[str, str]] | None = None,
        samples: Mapping[str, Mapping[str, SampledBatch]] | None = None,
    ) -> dict[str, Any]:
        """Merge a router's buffered counts and return the merged snapshot.

        Args:
            counts: ``{experiment: {"arms": {arm: {"pulls": n, "errors": e, "forced": f,
                "fallbacks": b}}, "shadows": {shadow: {"requests": n, ...}}}}`` since the
                router's last sync.
            revisions: the revision the router routes each experiment on.
            router_id: the calling router replica.
            circuits: its circuit state per experiment and arm (for the metrics).
            samples: per experiment with drift tracking, a sample of the rows it routed and
                each arm's predictions for them (:class:`bandits.drift.RowSampler`).
        """
        for name, batches in (samples or {}).items():
            live = self.experiments.get(name)
            if live is not None and live.drift is not None:
                live.drift.add(batches)
        if router_id is not None and circuits is not None:
            self._circuits[router_id] = (time.monotonic(), circuits)
        arm_batch: dict[tuple[str, int, str], ArmCounts] = {}
        shadow_batch: dict[tuple[str, str], ShadowCounts] = {}
        for name, groups in counts.items():
            live = self.experiments.get(name)
            if live is None:
                continue
            for arm, values in groups.get("arms", {}).items():
                if arm in live.policy.stats:
                    key = (name, live.revision, arm)
                    arm_batch[key] = ArmCounts(
                        **{k: float(v) if k == "expected" else int(v) for k, v in values.items()}
                    )
            for arm, values in groups.get("latency", {}).items():
                histogram = live.latency.setdefault(arm, {})
                for what, value in values.items():
                    histogram[what] = histogram.get(what, 0.0) + value
            shadow_names = {shadow.name for shadow in live.config.shadows}
            for shadow, values in groups.get("shadows", {}).items():
                if shadow in shadow_names:
                    shadow_batch[(name, shadow)] = ShadowCounts(**values)  # type: ignore[arg-type]
        if arm_batch or shadow_batch:
            await self._write(arm_batch, [], shadow_batch)
        return self.snapshot(revisions)

    async def record_feedback(self, items: list[dict[str, Any]]) -> list[bool]:
        """Store a batch of verified feedback durably, then learn from it.

        Returns:
            Per item, True if accepted now, False if that decision already had feedback.
        """
        records = [FeedbackRecord(**item) for item in items]
        return await self._write({}, records, {})

    async def _write(
        self,
        counts: Mapping[tuple[str, int, str], ArmCounts],
        records: list[FeedbackRecord],
        shadows: Mapping[tuple[str, str], ShadowCounts],
    ) -> list[bool]:
        async with self._write_lock:
            accepted = await asyncio.to_thread(self.store.record, counts, records, shadows)
            self._apply(counts, records, accepted, shadows)
        return accepted

    def _apply(
        self,
        counts: Mapping[tuple[str, int, str], ArmCounts],
        records: list[FeedbackRecord],
        accepted: list[bool],
        shadows: Mapping[tuple[str, str], ShadowCounts],
    ) -> None:
        """Mirror a committed batch in memory (the same sums the store just added)."""
        deltas: dict[str, dict[str, ArmStats]] = {}
        for (name, revision, arm), count in counts.items():
            live = self.experiments[name]
            live.counts[arm] = live.counts.get(arm, ArmCounts()) + count
            if revision == live.revision:
                live.period_counts[arm] = live.period_counts.get(arm, ArmCounts()) + count
            per_arm = deltas.setdefault(name, {})
            per_arm[arm] = per_arm.get(arm, ArmStats()) + ArmStats(pulls=count.pulls)
        for record, ok in zip(records, accepted, strict=True):
            if ok and record.learned and record.experiment in self.experiments:
                per_arm = deltas.setdefault(record.experiment, {})
                reward = ArmStats(0, 1, record.reward, record.reward * record.reward)
                per_arm[record.arm] = per_arm.get(record.arm, ArmStats()) + reward
                live_metrics = self.experiments[record.experiment].metrics.setdefault(
                    record.arm, {}
                )
                for metric, value in (record.metrics or {}).items():
                    live_metrics[metric] = live_metrics.get(metric, ArmStats()) + ArmStats(
                        0, 1, value, value * value
                    )
        for name, per_arm in deltas.items():
            self.experiments[name].policy.update(per_arm)
        for (name, shadow), shadow_counts in shadows.items():
            live = self.experiments[name]
            live.shadows[shadow] = live.shadows.get(shadow, ShadowCounts()) + shadow_counts

    async def assign(
        self, name: str, unit_id: str, arm: str, propensity: float
    ) -> tuple[str, float]:
        """The unit's stored arm (and first propensity), storing ``arm`` if it has none."""
        live = self.experiments[name]
        return await asyncio.to_thread(
            self.store.assign, name, unit_id, arm, propensity, live.revision
        )

    # ---------------------------------------------------------------- control plane

    def _live(self, name: str) -> LiveExperiment:
        live = self.experiments.get(name)
        if live is None:
            raise ControlError(f"unknown experiment {name!r}", status=404)
        return live

    async def _change(
        self,
        live: LiveExperiment,
        action: str,
        actor: str,
        detail: Mapping[str, Any],
        *,
        config: ExperimentConfig | None = None,
        **values: Any,
    ) -> dict[str, Any]:
        new_config = config or live.config
        columns = dict(values)
        if config is not None:
            columns["config"] = config.model_dump(mode="json")
        async with self._write_lock:
            revision = await asyncio.to_thread(
                self.store.update_experiment,
                live.config.name,
                action=action,
                detail=detail,
                actor=actor,
                new_revision=config is not None,
                **columns,
            )
            lifecycle: dict[str, Any] = {}
            if revision != live.revision:
                stats = dict(live.policy.stats)
                live.policy = self._policy(new_config, revision)
                live.policy.set_stats(stats)
                live.period_counts = {}
                lifecycle["period_started_at"] = live.period_started_at = time.time()
            if values.get("status") == "running" and live.started_at is None:
                lifecycle["started_at"] = live.started_at = time.time()
            if lifecycle:
                await asyncio.to_thread(self.store.set_lifecycle, live.config.name, **lifecycle)
            live.config, live.revision = new_config, revision
            for key, value in values.items():
                setattr(live, key, value)
        logger.info("experiment %s: %s by %s (%s)", live.config.name, action, actor, detail)
        if values.get("status") == "concluded":
            self._record_conclusion_later(live.config.name)
        return live.summary()

    async def create(
        self, name: str, actor: str, spec: Mapping[str, Any], reason: str = ""
    ) -> dict[str, Any]:
        """A new experiment whose arms use models this app already deploys."""
        if name in self.experiments:
            raise ControlError(f"experiment {name!r} exists already")
        config = self._validated({**spec, "name": name})
        missing = sorted(
            {m.model_uri for m in [*config.arms, *config.shadows]} - set(self._deployed)
        )
        if missing:
            raise ControlError(
                f"model_uri {', '.join(missing)} has no deployment in this app; add an "
                "experiment that uses it to the app config and redeploy",
                status=422,
            )
        if config.n_features is None:
            config = config.model_copy(
                update={"n_features": self._deployed[config.arms[0].model_uri]}
            )
        async with self._write_lock:
            created = await asyncio.to_thread(
                self.store.create_experiment, name, config.model_dump(mode="json"), actor, reason
            )
            if not created:
                raise ControlError(f"experiment name {name!r} was used before; pick another")
            self.experiments[name] = self._restore(name)
        await asyncio.to_thread(self._track_drift, self.experiments[name])
        logger.info("experiment %s created by %s", name, actor)
        return self.experiments[name].summary()

    async def update(
        self, name: str, actor: str, changes: Mapping[str, Any], reason: str = ""
    ) -> dict[str, Any]:
        """Change description, policy parameters, default arm or attribution window: a new
        revision (the arms and the policy itself are fixed for an experiment's life)."""
        live = self._live(name)
        spec = live.config.model_dump(mode="json")
        for key, value in changes.items():
            if key == "policy_params":
                spec["policy"]["params"] = value
            else:
                spec[key] = value
        config = self._validated(spec)
        detail = {"changes": dict(changes), "reason": reason}
        return await self._change(live, "update", actor, detail, config=config)

    @staticmethod
    def _validated(spec: Mapping[str, Any]) -> ExperimentConfig:
        try:
            return ExperimentConfig.model_validate(spec)
        except ValidationError as error:
            lines = "; ".join(describe_validation_error(error))
            raise ControlError(f"invalid experiment: {lines}", status=422) from None

    async def _move(
        self, name: str, action: str, actor: str, reason: str, source: str, target: str
    ) -> dict[str, Any]:
        """A status change that only applies from ``source`` (409 otherwise)."""
        live = self._live(name)
        if live.status != source:
            raise ControlError(f"experiment {name!r} is {live.status}, not {source}")
        return await self._change(live, action, actor, {"reason": reason}, status=target)

    async def _conclude(
        self, name: str, action: str, actor: str, reason: str, outcome: str, winner: str | None
    ) -> dict[str, Any]:
        """End the experiment: ``winner`` (or, with none, the default arm) takes all traffic."""
        live = self._live(name)
        if live.status == "concluded":
            raise ControlError(f"experiment {name!r} is already concluded ({live.outcome})")
        detail = {"arm": winner or live.config.default, "reason": reason}
        return await self._change(
            live, action, actor, detail, status="concluded", outcome=outcome, winner=winner
        )

    async def start(self, name: str, actor: str, reason: str = "") -> dict[str, Any]:
        """A draft starts running: the policy routes and learns from now on."""
        return await self._move(name, "start", actor, reason, "draft", "running")

    async def stop(self, name: str, actor: str, reason: str = "") -> dict[str, Any]:
        """Conclude without a winner: all traffic to the default (control) arm."""
        return await self._conclude(name, "stop", actor, reason, "stopped", None)

    async def pause(self, name: str, actor: str, reason: str = "") -> dict[str, Any]:
        """All traffic to the default arm, nothing learned, until resumed."""
        return await self._move(name, "pause", actor, reason, "running", "paused")

    async def resume(self, name: str, actor: str, reason: str = "") -> dict[str, Any]:
        """A paused experiment routes by its policy again."""
        return await self._move(name, "resume", actor, reason, "paused", "running")

    async def set_weights(
        self, name: str, weights: Mapping[str, float], actor: str, reason: str = ""
    ) -> dict[str, Any]:
        """New weights for a fixed split: a new revision, so counts per period stay apart."""
        live = self._live(name)
        if live.config.policy.name != "fixed":
            raise ControlError(
                f"experiment {name!r} uses policy {live.config.policy.name!r}; only a fixed "
                "split takes weights (bandits set their own)",
                status=422,
            )
        if set(weights) != set(live.config.arm_names):
            raise ControlError(
                f"weights must name exactly the arms {live.config.arm_names}, "
                f"got {sorted(weights)}",
                status=422,
            )
        arms = [arm.model_copy(update={"weight": weights[arm.name]}) for arm in live.config.arms]
        try:
            config = ExperimentConfig.model_validate(
                {**live.config.model_dump(), "arms": [arm.model_dump() for arm in arms]}
            )
        except ValueError as error:
            raise ControlError(f"invalid weights: {error}", status=422) from None
        detail = {"weights": dict(weights), "reason": reason}
        return await self._change(live, "set_weights", actor, detail, config=config)

    async def promote(self, name: str, arm: str, actor: str, reason: str = "") -> dict[str, Any]:
        """The winner takes all traffic; the experiment is concluded."""
        live = self._live(name)
        if arm not in live.config.arm_names:
            raise ControlError(f"unknown arm {arm!r}; arms are {live.config.arm_names}", 422)
        return await self._conclude(name, "promote", actor, reason, "promoted", arm)

    async def rollback(self, name: str, actor: str, reason: str = "") -> dict[str, Any]:
        """The default (control) arm takes all traffic; the experiment is concluded."""
        default = self._live(name).config.default
        return await self._conclude(name, "rollback", actor, reason, "rolled_back", default)

    async def control(self, action: str, name: str, actor: str, **kwargs: Any) -> dict[str, Any]:
        """One entry point for the control plane: ``{"ok": summary}`` or ``{"error": message,
        "status": http_status}`` (exceptions would lose their status crossing the actor)."""
        handlers = {
            "create": self.create,
            "update": self.update,
            "start": self.start,
            "stop": self.stop,
            "pause": self.pause,
            "resume": self.resume,
            "weights": self.set_weights,
            "promote": self.promote,
            "rollback": self.rollback,
        }
        try:
            return {"ok": await handlers[action](name, actor=actor, **kwargs)}
        except ControlError as error:
            return {"error": str(error), "status": error.status}

    async def audit_log(self, name: str) -> list[dict[str, Any]]:
        self._live(name)
        return await asyncio.to_thread(self.store.audit_log, name)

    # ---------------------------------------------------------------- lifecycle

    async def _lifecycle_forever(self) -> None:
        interval = self.config.lifecycle.evaluate_interval_s
        while True:
            await asyncio.sleep(interval)
            for name in list(self.experiments):
                try:
                    await self.evaluate(name)
                    await self._drift_step(self.experiments[name], time.time())
                except Exception:  # one experiment's failure must not stop the others
                    logger.exception("lifecycle evaluation of %s failed", name)

    async def evaluate(self, name: str, now: float | None = None) -> list[dict[str, Any]]:
        """Judge one experiment now and carry out what the lifecycle decides.

        Returns:
            The actions taken (kind, arm, reason).
        """
        live = self._live(name)
        judgement = await self._judge(live, now)
        taken = []
        for action in judgement.actions:
            if self.experiments.get(name) is not live or live.status != "running":
                break  # changed meanwhile (a control call won the race): judge again later
            await self._act(live, action)
            taken.append({"kind": action.kind, "arm": action.arm, "reason": action.reason})
        return taken

    @staticmethod
    async def _judge(live: LiveExperiment, now: float | None = None) -> Judgement:
        """The lifecycle's current view (cached on ``live`` for summaries and metrics)."""
        # on the loop, not in a thread: the judgement reads counts that syncs change (a few
        # ms: one seeded Monte Carlo P(best) and closed-form tests)
        judgement = judge(live, now or time.time())
        live.guardrail_checks = judgement.guardrails
        live.stopping = judgement.stopping
        return judgement

    async def _act(self, live: LiveExperiment, action: Action) -> None:
        name = live.config.name
        logger.info("lifecycle %s: %s %s (%s)", name, action.kind, action.arm, action.reason)
        if action.kind == "exclude":
            assert action.arm is not None
            excluded = {**live.excluded, action.arm: action.reason}
            async with self._write_lock:
                await asyncio.to_thread(
                    self.store.set_lifecycle,
                    name,
                    excluded=excluded,
                    audit=(
                        "guardrail_rollback",
                        {"arm": action.arm, "reason": action.reason, "revision": live.revision},
                        ACTOR,
                    ),
                )
                live.excluded = excluded
        elif action.kind == "recommend":
            recommendation = {"winner": action.arm, "reason": action.reason}
            async with self._write_lock:
                await asyncio.to_thread(
                    self.store.set_lifecycle,
                    name,
                    recommendation=recommendation,
                    audit=("recommendation", recommendation, ACTOR),
                )
                live.recommendation = recommendation
        elif action.kind == "ramp":
            assert action.weights is not None
            await self.set_weights(name, action.weights, ACTOR, action.reason)
        elif action.kind == "promote":
            assert action.arm is not None
            await self.promote(name, action.arm, ACTOR, action.reason)
        elif action.kind == "rollback":
            await self.rollback(name, ACTOR, action.reason)
        else:
            await self.stop(name, ACTOR, action.reason)

    def _record_conclusion_later(self, name: str) -> None:
        """Log the concluded experiment to MLflow in the background (never blocks routing)."""
        task = asyncio.create_task(self._record_conclusion(name))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _record_conclusion(self, name: str) -> None:
        live = self.experiments[name]
        promotion = live.config.promotion
        if not promotion.log_to_mlflow or live.mlflow_run_id is not None:
            return
        from serve_app.tracking import log_conclusion

        assert self.config.mlflow_tracking_uri is not None
        try:
            report = await self.report(name)
            run_id = await asyncio.to_thread(  # renders the plots and HTML page itself
                log_conclusion,
                self.config.mlflow_tracking_uri,
                report,
                live.config.model_dump(mode="json"),
                alias=promotion.registry_alias if live.outcome == "promoted" else None,
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
        if promotion.registry_alias and live.outcome == "promoted":
            detail["alias"] = promotion.registry_alias
        await asyncio.to_thread(
            self.store.set_lifecycle,
            name,
            mlflow_run_id=run_id,
            audit=("mlflow_run", detail, ACTOR),
        )
        live.mlflow_run_id = run_id

    async def _timeline_forever(self) -> None:
        interval = self.config.lifecycle.timeline_interval_s
        while True:
            await asyncio.sleep(interval)
            try:
                await self.record_timeline()
            except Exception:
                logger.exception("timeline sample failed")

    async def record_timeline(self) -> int:
        """Store each experiment's cumulative per-arm counts where they changed.

        Returns:
            Rows written.
        """
        now = time.time()
        rows = []
        for name, live in self.experiments.items():
            stats = live.policy.stats
            key = tuple((s.pulls, s.feedback, s.reward_sum) for s in stats.values())
            if self._timeline_keys.get(name) == key:
                continue
            self._timeline_keys[name] = key
            weights = live.weights()
            rows.extend(
                {
                    "experiment": name,
                    "at": now,
                    "arm": arm,
                    "pulls": stats[arm].pulls,
                    "feedback": stats[arm].feedback,
                    "reward_sum": stats[arm].reward_sum,
                    "weight": weights[arm],
                }
                for arm in live.config.arm_names
            )
        await asyncio.to_thread(self.store.add_timeline, rows)
        return len(rows)

    async def report(self, name: str) -> dict[str, Any]:
        """The full analysis of one experiment (see :func:`serve_app.report.build_report`)."""
        live = self._live(name)
        await self._judge(live)
        timeline, audit, periods = await asyncio.to_thread(
            lambda: (
                self.store.timeline(name),
                self.store.audit_log(name),
                self.store.period_stats(name),
            )
        )
        drift = live.drift.full() if live.drift else None
        return build_report(live, timeline, audit, periods, drift)  # reads live: on the loop

    async def drift(self, name: str) -> dict[str, Any] | None:
        """Per-feature and per-arm drift scores and the alert flag (None: not tracked)."""
        live = self._live(name)
        return live.drift.full() if live.drift else None

    # ---------------------------------------------------------------- read side

    async def experiments_summary(self) -> list[dict[str, Any]]:
        return [live.summary() for live in self.experiments.values()]

    async def experiment_summary(self, name: str) -> dict[str, Any] | None:
        live = self.experiments.get(name)
        return None if live is None else live.summary()

    async def metrics_text(self) -> bytes:
        """Every experiment's metrics in the Prometheus text format."""
        now = time.monotonic()
        # router replicas that synced in the last 30 s
        fresh = [c for seen, c in self._circuits.values() if now - seen < 30.0]
        rendered = []
        for name, live in self.experiments.items():
            open_counts = {
                arm: sum(1 for c in fresh if c.get(name, {}).get(arm, "closed") != "closed")
                for arm in live.config.arm_names
            }
            summary = live.summary()
            rendered.append(
                {
                    **summary,
                    "latency": {
                        arm: {
                            "buckets": {int(k): v for k, v in h.items() if k != "sum"},
                            "sum": h.get("sum", 0.0),
                        }
                        for arm, h in live.latency.items()
                    },
                    "circuit_open": open_counts,
                    "guardrail_breached": {
                        arm["name"]: arm["guardrail_breached"] for arm in summary["arms"]
                    },
                    "drift_features": live.drift.psi_by_feature() if live.drift else {},
                    "drift_arms": live.drift.psi_by_arm() if live.drift else {},
                }
            )
        return render(rendered)

    def check_health(self) -> None:
        self.store.ping()
