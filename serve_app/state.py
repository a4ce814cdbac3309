"""The experiment-state deployment: the one place where counts from every router meet.

It runs as a single-replica Serve deployment (one named Ray actor, restarted by Serve when it
dies) and is never called per prediction. Routers call:

- :meth:`ExperimentState.sync` every ~100 ms or N decisions with their buffered counts, and get
  back the merged statistics of every experiment, which they route on until the next sync;
- :meth:`ExperimentState.record_feedback` with a batch of verified feedback (group commit):
  the batch is written to the store in one transaction, then applied in memory, and only then
  do the routers answer 200.

All methods run on one event loop, so merges never interleave (Seldon v1's shared Thompson
state lost updates exactly there); store writes run in a worker thread behind a lock so the
loop keeps answering syncs while SQLite or PostgreSQL commits.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ray import serve

from bandits import ArmStats, Policy, make_policy, prob_best
from serve_app.config import SECRET_ENV, AppConfig, ExperimentConfig
from serve_app.store import ArmCounts, ExperimentStore, FeedbackRecord

logger = logging.getLogger("ray.serve")

PROB_BEST_DRAWS = 10_000


@dataclass
class LiveExperiment:
    """One experiment's merged state in memory, always equal to what the store holds."""

    config: ExperimentConfig
    revision: int
    policy: Policy
    errors: dict[str, int]
    started_at: float = field(default_factory=time.time)
    _prob_best_key: tuple[Any, ...] | None = None
    _prob_best: dict[str, float] = field(default_factory=dict)

    def snapshot(self) -> dict[str, Any]:
        return {
            "revision": self.revision,
            "stats": {arm: stats.to_dict() for arm, stats in self.policy.stats.items()},
        }

    def prob_best(self) -> dict[str, float]:
        """P(arm is best) under the experiment's reward model, cached until stats change."""
        stats = dict(self.policy.stats)
        key = tuple(
            (arm, s.feedback, s.reward_sum, s.reward_sum_squares) for arm, s in stats.items()
        )
        if key != self._prob_best_key:
            self._prob_best = prob_best(stats, self.config.reward, draws=PROB_BEST_DRAWS, seed=0)
            self._prob_best_key = key
        return self._prob_best

    def summary(self) -> dict[str, Any]:
        weights = self.policy.weights()
        best = self.prob_best()
        model_uris = {arm.name: arm.model_uri for arm in self.config.arms}
        arms = []
        for arm, stats in self.policy.stats.items():
            arms.append(
                {
                    "name": arm,
                    "model_uri": model_uris[arm],
                    "requests": stats.pulls,
                    "errors": self.errors.get(arm, 0),
                    "feedback": stats.feedback,
                    "reward_sum": stats.reward_sum,
                    "reward_mean": stats.reward_mean,
                    "weight": weights[arm],
                    "prob_best": best[arm],
                }
            )
        return {
            "name": self.config.name,
            "description": self.config.description,
            "status": "running",
            "revision": self.revision,
            "policy": self.config.policy.name,
            "policy_params": self.config.policy.params,
            "reward": self.config.reward,
            "default_arm": self.config.default,
            "feedback_window_s": self.config.feedback_window_s,
            "arms": arms,
        }


@serve.deployment(
    num_replicas=1,
    max_ongoing_requests=1000,
    ray_actor_options={"num_cpus": 0.1},
    health_check_period_s=5,
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
        self.experiments = {
            experiment.name: self._restore(experiment) for experiment in self.config.experiments
        }

    def _restore(self, experiment: ExperimentConfig) -> LiveExperiment:
        revision = self.store.ensure_experiment(
            experiment.name, experiment.model_dump(mode="json"), actor="startup"
        )
        stats, errors = self.store.load_stats(experiment.name)
        policy = make_policy(
            experiment.policy.name,
            experiment.arm_names,
            experiment.policy_params(revision),
            seed=experiment.seed,
        )
        policy.set_stats({arm: stats.get(arm, ArmStats()) for arm in experiment.arm_names})
        logger.info("experiment %s restored at revision %d", experiment.name, revision)
        return LiveExperiment(experiment, revision, policy, errors)

    def snapshot(self) -> dict[str, Any]:
        return {name: live.snapshot() for name, live in self.experiments.items()}

    async def register(self, router_id: str) -> dict[str, Any]:
        """A router's first call: the signing secret and the current snapshot."""
        logger.info("router %s registered", router_id)
        return {"secret": self._secret, "snapshot": self.snapshot()}

    async def sync(self, counts: Mapping[str, Mapping[str, Mapping[str, int]]]) -> dict[str, Any]:
        """Merge a router's buffered counts and return the merged snapshot.

        Args:
            counts: ``{experiment: {arm: {"pulls": n, "errors": e}}}`` since its last sync.
        """
        batch = {
            (name, self.experiments[name].revision, arm): ArmCounts(
                int(values.get("pulls", 0)), int(values.get("errors", 0))
            )
            for name, arms in counts.items()
            if name in self.experiments
            for arm, values in arms.items()
            if arm in self.experiments[name].policy.stats
        }
        if batch:
            await self._write(batch, [])
        return self.snapshot()

    async def record_feedback(self, items: list[dict[str, Any]]) -> list[bool]:
        """Store a batch of verified feedback durably, then learn from it.

        Returns:
            Per item, True if accepted now, False if that decision already had feedback.
        """
        records = [FeedbackRecord(**item) for item in items]
        return await self._write({}, records)

    async def _write(
        self, counts: Mapping[tuple[str, int, str], ArmCounts], records: list[FeedbackRecord]
    ) -> list[bool]:
        async with self._write_lock:
            accepted = await asyncio.to_thread(self.store.record, counts, records)
            self._apply(counts, records, accepted)
        return accepted

    def _apply(
        self,
        counts: Mapping[tuple[str, int, str], ArmCounts],
        records: list[FeedbackRecord],
        accepted: list[bool],
    ) -> None:
        """Mirror a committed batch in memory (the same sums the store just added)."""
        deltas: dict[str, dict[str, ArmStats]] = {}
        for (name, _revision, arm), count in counts.items():
            per_arm = deltas.setdefault(name, {})
            per_arm[arm] = per_arm.get(arm, ArmStats()) + ArmStats(pulls=count.pulls)
            errors = self.experiments[name].errors
            errors[arm] = errors.get(arm, 0) + count.errors
        for record, ok in zip(records, accepted, strict=True):
            if ok and record.learned and record.experiment in self.experiments:
                per_arm = deltas.setdefault(record.experiment, {})
                reward = ArmStats(0, 1, record.reward, record.reward * record.reward)
                per_arm[record.arm] = per_arm.get(record.arm, ArmStats()) + reward
        for name, per_arm in deltas.items():
            self.experiments[name].policy.update(per_arm)

    async def experiments_summary(self) -> list[dict[str, Any]]:
        return [live.summary() for live in self.experiments.values()]

    async def experiment_summary(self, name: str) -> dict[str, Any] | None:
        live = self.experiments.get(name)
        return None if live is None else live.summary()

    def check_health(self) -> None:
        self.store.ping()
