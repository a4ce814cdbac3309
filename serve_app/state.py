"""The experiment-state deployment: the one place where counts from every router meet.

It runs as a single-replica Serve deployment (one named Ray actor, restarted by Serve when it
dies, restored from the store) and is never called per prediction. Routers call:

- :meth:`ExperimentState.sync` every ~100 ms or N decisions with their buffered counts, and get
  back the merged statistics of every experiment (plus its config when its revision changed),
  which they route on until the next sync;
- :meth:`ExperimentState.record_feedback` with a batch of verified feedback (group commit):
  the batch is written to the store in one transaction, then applied in memory, and only then
  do the routers answer 200;
- the control methods (pause, resume, weights, promote, roll back), each one transaction with
  its audit-log entry.

All methods run on one event loop, so merges never interleave (Seldon v1's shared Thompson
state lost updates exactly there); store writes run in a worker thread behind a lock so the
loop keeps answering syncs while SQLite or PostgreSQL commits.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from ray import serve

from bandits import ArmStats, Policy, make_policy, prob_best
from bandits.stats import srm_test
from serve_app.config import (
    SECRET_ENV,
    AppConfig,
    ExperimentConfig,
    describe_validation_error,
)
from serve_app.metrics import render
from serve_app.store import ArmCounts, ExperimentStore, FeedbackRecord, ShadowCounts

logger = logging.getLogger("ray.serve")

PROB_BEST_DRAWS = 10_000
STATUSES = ("running", "paused", "concluded")


class ControlError(ValueError):
    """A control request that cannot apply to the experiment as it is (HTTP 409/422)."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class LiveExperiment:
    """One experiment's merged state in memory, always equal to what the store holds."""

    config: ExperimentConfig
    revision: int
    status: str
    outcome: str | None
    winner: str | None
    policy: Policy
    counts: dict[str, ArmCounts]
    shadows: dict[str, ShadowCounts]
    latency: dict[str, dict[str, float]] = field(default_factory=dict)
    started_at: float = field(default_factory=time.time)
    _prob_best_key: tuple[Any, ...] | None = None
    _prob_best: dict[str, float] = field(default_factory=dict)

    @property
    def route_to(self) -> str | None:
        """The arm that takes all traffic when the experiment is not running, else None."""
        if self.status == "running":
            return None
        if self.outcome == "promoted" and self.winner:
            return self.winner
        return self.config.default

    def snapshot(self, with_config: bool) -> dict[str, Any]:
        snapshot: dict[str, Any] = {
            "revision": self.revision,
            "status": self.status,
            "route_to": self.route_to,
            "stats": {arm: stats.to_dict() for arm, stats in self.policy.stats.items()},
        }
        if with_config:
            snapshot["config"] = self.config.model_dump(mode="json")
        return snapshot

    def prob_best(self) -> dict[str, float]:
        """P(arm is best) under the experiment's reward model, cached until stats change."""
        stats = dict(self.policy.stats)
        key = tuple((s.feedback, s.reward_sum, s.reward_sum_squares) for s in stats.values())
        if key != self._prob_best_key:
            self._prob_best = prob_best(stats, self.config.reward, draws=PROB_BEST_DRAWS, seed=0)
            self._prob_best_key = key
        return self._prob_best

    def weights(self) -> dict[str, float]:
        """Current routing probabilities: the policy's, or all on one arm when not running."""
        route_to = self.route_to
        if route_to is None:
            return self.policy.weights()
        return {arm: float(arm == route_to) for arm in self.config.arm_names}

    def guardrail_breached(self, arm: str) -> bool:
        """Does the arm breach a guardrail? Error rate = errors / calls once judged."""
        rules = self.config.guardrails
        counts = self.counts.get(arm, ArmCounts())
        calls = counts.pulls + counts.forced
        if rules.max_error_rate is None or calls < rules.min_requests:
            return False
        return counts.errors / calls > rules.max_error_rate

    def srm_p_value(self) -> float | None:
        """Chi-square SRM test of the policy's routed counts against the expected counts,
        the sum over decisions of each arm's routing probability at that moment (exact for
        changing bandit weights). None before traffic, and for stored assignments (a unit's
        later requests are not random draws)."""
        if self.config.sticky_assignments:
            return None
        arms = self.config.arm_names
        observed = [self.counts.get(arm, ArmCounts()).pulls for arm in arms]
        expected = [self.counts.get(arm, ArmCounts()).expected for arm in arms]
        if sum(observed) == 0 or sum(expected) <= 0:
            return None
        return float(srm_test(observed, expected).p_value)

    def summary(self) -> dict[str, Any]:
        weights = self.weights()
        best = self.prob_best()
        arms = []
        for arm_config in self.config.arms:
            arm = arm_config.name
            stats = self.policy.stats[arm]
            counts = self.counts.get(arm, ArmCounts())
            arms.append(
                {
                    "name": arm,
                    "model_uri": arm_config.model_uri,
                    "requests": stats.pulls,
                    "forced": counts.forced,
                    "errors": counts.errors,
                    "fallbacks": counts.fallbacks,
                    "feedback": stats.feedback,
                    "reward_sum": stats.reward_sum,
                    "reward_mean": stats.reward_mean,
                    "weight": weights[arm],
                    "prob_best": best[arm],
                    "guardrail_breached": self.guardrail_breached(arm),
                }
            )
        shadows = []
        for shadow_config in self.config.shadows:
            counts = self.shadows.get(shadow_config.name, ShadowCounts())
            answered = counts.requests - counts.errors
            shadows.append(
                {
                    "name": shadow_config.name,
                    "model_uri": shadow_config.model_uri,
                    "percent": shadow_config.percent,
                    "requests": counts.requests,
                    "errors": counts.errors,
                    "dropped": counts.dropped,
                    "mean_latency_ms": 1000 * counts.latency_sum_s / answered if answered else None,
                    "rows": counts.rows,
                    "agree_rows": counts.agree_rows,
                    "agreement": counts.agree_rows / counts.rows if counts.rows else None,
                }
            )
        return {
            "name": self.config.name,
            "description": self.config.description,
            "status": self.status,
            "outcome": self.outcome,
            "winner": self.winner,
            "revision": self.revision,
            "policy": self.config.policy.name,
            "policy_params": self.config.policy.params,
            "reward": self.config.reward,
            "default_arm": self.config.default,
            "feedback_window_s": self.config.feedback_window_s,
            "srm_p_value": self.srm_p_value(),
            "arms": arms,
            "shadows": shadows,
        }


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

    def __init__(self, config: dict[str, Any]) -> None:
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

    def _restore(self, name: str, deployed: ExperimentConfig | None = None) -> LiveExperiment:
        """Load one experiment from the store (creating or updating it from ``deployed``)."""
        if deployed is not None:
            self.store.ensure_experiment(name, deployed.model_dump(mode="json"), actor="startup")
        row = self.store.experiment_row(name)
        assert row is not None
        config = ExperimentConfig.model_validate(json.loads(row["config"]))
        stats, _ = self.store.load_stats(name)
        live = LiveExperiment(
            config=config,
            revision=int(row["revision"]),
            status=row["status"],
            outcome=row["outcome"],
            winner=row["winner"],
            policy=self._policy(config, int(row["revision"])),
            counts=self.store.load_counts(name),
            shadows=self.store.load_shadows(name),
        )
        live.policy.set_stats({arm: stats.get(arm, ArmStats()) for arm in config.arm_names})
        logger.info(
            "experiment %s restored: revision %d, %s", config.name, live.revision, live.status
        )
        return live

    @staticmethod
    def _policy(config: ExperimentConfig, revision: int) -> Policy:
        return make_policy(
            config.policy.name, config.arm_names, config.policy_params(revision), seed=config.seed
        )

    def snapshot(self, revisions: Mapping[str, int] | None = None) -> dict[str, Any]:
        """Every experiment's merged stats; its config too where the caller's revision is old."""
        known = revisions or {}
        return {
            name: live.snapshot(with_config=known.get(name) != live.revision)
            for name, live in self.experiments.items()
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
    ) -> dict[str, Any]:
        """Merge a router's buffered counts and return the merged snapshot.

        Args:
            counts: ``{experiment: {"arms": {arm: {"pulls": n, "errors": e, "forced": f,
                "fallbacks": b}}, "shadows": {shadow: {"requests": n, ...}}}}`` since the
                router's last sync.
            revisions: the revision the router routes each experiment on.
            router_id: the calling router replica.
            circuits: its circuit state per experiment and arm (for the metrics).
        """
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
        for (name, _revision, arm), count in counts.items():
            live = self.experiments[name]
            live.counts[arm] = live.counts.get(arm, ArmCounts()) + count
            per_arm = deltas.setdefault(name, {})
            per_arm[arm] = per_arm.get(arm, ArmStats()) + ArmStats(pulls=count.pulls)
        for record, ok in zip(records, accepted, strict=True):
            if ok and record.learned and record.experiment in self.experiments:
                per_arm = deltas.setdefault(record.experiment, {})
                reward = ArmStats(0, 1, record.reward, record.reward * record.reward)
                per_arm[record.arm] = per_arm.get(record.arm, ArmStats()) + reward
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
            if revision != live.revision:
                stats = dict(live.policy.stats)
                live.policy = self._policy(new_config, revision)
                live.policy.set_stats(stats)
            live.config, live.revision = new_config, revision
            for key, value in values.items():
                setattr(live, key, value)
        logger.info("experiment %s: %s by %s (%s)", live.config.name, action, actor, detail)
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

    async def pause(self, name: str, actor: str, reason: str = "") -> dict[str, Any]:
        """All traffic to the default arm, nothing learned, until resumed."""
        live = self._live(name)
        if live.status != "running":
            raise ControlError(f"experiment {name!r} is {live.status}, not running")
        return await self._change(live, "pause", actor, {"reason": reason}, status="paused")

    async def resume(self, name: str, actor: str, reason: str = "") -> dict[str, Any]:
        live = self._live(name)
        if live.status != "paused":
            raise ControlError(f"experiment {name!r} is {live.status}, not paused")
        return await self._change(live, "resume", actor, {"reason": reason}, status="running")

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
        if live.status == "concluded":
            raise ControlError(f"experiment {name!r} is already concluded ({live.outcome})")
        detail = {"arm": arm, "reason": reason}
        return await self._change(
            live, "promote", actor, detail, status="concluded", outcome="promoted", winner=arm
        )

    async def rollback(self, name: str, actor: str, reason: str = "") -> dict[str, Any]:
        """The default (control) arm takes all traffic; the experiment is concluded."""
        live = self._live(name)
        if live.status == "concluded":
            raise ControlError(f"experiment {name!r} is already concluded ({live.outcome})")
        detail = {"arm": live.config.default, "reason": reason}
        return await self._change(
            live,
            "rollback",
            actor,
            detail,
            status="concluded",
            outcome="rolled_back",
            winner=live.config.default,
        )

    async def control(self, action: str, name: str, actor: str, **kwargs: Any) -> dict[str, Any]:
        """One entry point for the control plane: ``{"ok": summary}`` or ``{"error": message,
        "status": http_status}`` (exceptions would lose their status crossing the actor)."""
        handlers = {
            "create": self.create,
            "update": self.update,
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
                }
            )
        return render(rendered)

    def check_health(self) -> None:
        self.store.ping()
