"""One experiment's merged state in memory, as the state deployment holds it.

Everything here equals what the store holds (counts, feedback, lifecycle), plus what only
lives in memory: latency histograms and the lifecycle's latest judgement, which the loop in
:mod:`serve_app.lifecycle` refreshes every ``lifecycle.evaluate_interval_s``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from bandits import ArmStats, Policy, prob_best
from bandits.stats import srm_test
from serve_app.analysis import GuardrailCheck, StoppingDecision, quantile_ms
from serve_app.config import ExperimentConfig
from serve_app.drift import ExperimentDrift
from serve_app.store import ArmCounts, ShadowCounts

PROB_BEST_DRAWS = 10_000
STATUSES = ("draft", "running", "paused", "concluded")
OUTCOMES = ("promoted", "rolled_back", "stopped")


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
    # feedback metrics per arm and metric: ArmStats(feedback=n, reward_sum=sum, ...)
    metrics: dict[str, dict[str, ArmStats]] = field(default_factory=dict)
    # routing counts of the current revision (a ramp step waits on these)
    period_counts: dict[str, ArmCounts] = field(default_factory=dict)
    started_at: float | None = None
    period_started_at: float = field(default_factory=time.time)
    excluded: dict[str, str] = field(default_factory=dict)  # arm -> why it was rolled back
    mlflow_run_id: str | None = None
    recommendation: dict[str, Any] | None = None
    stopping: StoppingDecision | None = None
    guardrail_checks: list[GuardrailCheck] = field(default_factory=list)
    drift: ExperimentDrift | None = None
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

    @property
    def control(self) -> str:
        return self.config.default

    @property
    def active_arms(self) -> list[str]:
        """Arms still in the experiment (not rolled back by a guardrail)."""
        return [arm for arm in self.config.arm_names if arm not in self.excluded]

    def snapshot(self, with_config: bool) -> dict[str, Any]:
        snapshot: dict[str, Any] = {
            "revision": self.revision,
            "status": self.status,
            "route_to": self.route_to,
            "excluded": sorted(self.excluded),
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
        """Current routing probabilities: the policy's renormalised over the arms still in,
        or all on one arm when not running."""
        route_to = self.route_to
        if route_to is not None:
            return {arm: float(arm == route_to) for arm in self.config.arm_names}
        weights = self.policy.weights()
        if not self.excluded:
            return weights
        kept = {arm: w for arm, w in weights.items() if arm not in self.excluded}
        total = sum(kept.values())
        if total <= 0:
            return weights
        return {arm: kept.get(arm, 0.0) / total for arm in weights}

    def calls(self) -> dict[str, tuple[int, int]]:
        """Per arm (model calls, failed calls): routed and forced requests."""
        return {
            arm: (counts.pulls + counts.forced, counts.errors)
            for arm, counts in self.counts.items()
        }

    def guardrail_breached(self, arm: str) -> bool:
        """Is the arm rolled back, or does it breach a guardrail now? The error-rate limit
        applies to every arm, the control included."""
        if arm in self.excluded:
            return True
        if any(check.breached for check in self.guardrail_checks if check.arm == arm):
            return True
        rules = self.config.guardrails
        calls, errors = self.calls().get(arm, (0, 0))
        if rules.max_error_rate is None or calls < rules.min_requests:
            return False
        return errors / calls > rules.max_error_rate

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

    def p95_latency_ms(self, arm: str) -> float | None:
        return quantile_ms(self.latency.get(arm, {}))

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
                    "excluded": arm in self.excluded,
                    "exclusion_reason": self.excluded.get(arm),
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
            "started_at": self.started_at,
            "stopping": self.stopping.to_dict() if self.stopping else None,
            "recommendation": self.recommendation,
            "mlflow_run_id": self.mlflow_run_id,
            "drift": self.drift.summary() if self.drift else None,
            "arms": arms,
            "shadows": shadows,
        }
