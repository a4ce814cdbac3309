"""One experiment's merged state in memory, as the state deployment holds it.

Everything here is what the store committed (counts, feedback, lifecycle), added by
:meth:`LiveExperiment.apply` from the same :class:`~serve_app.experiment.records.Delta` the
store wrote, plus what only lives in memory: latency histograms, drift windows and the
lifecycle's latest judgement, which the state's loop refreshes every
``lifecycle.evaluate_interval_s``.

The Bayesian verdict (P(best) and expected loss of every arm) is :meth:`LiveExperiment.verdict`,
one seeded computation cached until the learned statistics change: the summary, the
metrics, the report and the stopping rule all read that one number.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bandits import ArmStats, Policy
from bandits.contextual import ContextualPolicy, RidgeStats
from bandits.stats import ProbBestResult, prob_best, srm_test
from serve_app.config import ExperimentConfig
from serve_app.experiment.analysis import (
    Estimate,
    GuardrailCheck,
    StoppingDecision,
    cuped_comparisons,
    decision_estimate,
    metric_stats,
    ratio_comparisons,
)
from serve_app.experiment.concept import ConceptDrift
from serve_app.experiment.drift import ExperimentDrift
from serve_app.experiment.records import (
    ArmCounts,
    Delta,
    LatencyHistogram,
    PairSums,
    ShadowCounts,
)

VERDICT_DRAWS = 20_000
"""Joint posterior draws behind P(best) and expected loss (standard error <= 0.0036)."""


@dataclass(frozen=True)
class ExperimentSnapshot:
    """What a router routes one experiment on until its next sync."""

    revision: int
    status: str
    route_to: str | None
    excluded: frozenset[str]
    stats: Mapping[str, ArmStats]
    config: ExperimentConfig | None = None  # sent only when the router's revision is old
    delegate: str | None = None  # the retraining challenger that takes this traffic now
    context_stats: Mapping[str, RidgeStats] | None = None  # a contextual policy's, per arm


def verdict(
    stats: Mapping[str, ArmStats], reward: str, summaries: Mapping[str, Any] | None = None
) -> ProbBestResult | None:
    """P(arm is best) and expected loss ``E[max_j mu_j - mu_k]`` of every arm, by seeded
    Monte Carlo over the posteriors of :func:`bandits.stats.prob_best` (binary:
    ``Beta(1 + s, 1 + n - s)``; continuous: ``N(mean, s^2 / n)``). ``summaries`` (the
    period-weighted ones of :func:`~serve_app.experiment.analysis.decision_estimate`, each
    ``N(mean, se^2)``) replace the pooled summaries of ``stats``.

    None without arms, or when a continuous arm has fewer than 2 rewards (no posterior
    variance yet).
    """
    if not stats:
        return None
    if summaries is None:
        summaries = {arm: metric_stats(value, reward) for arm, value in stats.items()}
    else:
        summaries = {arm: summaries[arm] for arm in stats}
    if reward == "continuous" and any(s.n < 2 for s in summaries.values()):
        return None
    return prob_best(summaries, draws=VERDICT_DRAWS, seed=0)


@dataclass
class LiveExperiment:
    """One experiment's merged state in memory, always equal to what the store holds."""

    config: ExperimentConfig
    revision: int
    status: str
    outcome: str | None
    winner: str | None
    policy: Policy
    counts: dict[str, ArmCounts] = field(default_factory=dict)
    shadows: dict[str, ShadowCounts] = field(default_factory=dict)
    latency: dict[str, LatencyHistogram] = field(default_factory=dict)
    # feedback metrics per arm and metric: ArmStats(feedback=n, reward_sum=sum, ...)
    metrics: dict[str, dict[str, ArmStats]] = field(default_factory=dict)
    # routing counts of the current revision (a ramp step waits on these)
    period_counts: dict[str, ArmCounts] = field(default_factory=dict)
    # CUPED ("_cuped") and ratio-metric pair sums per arm and name
    pairs: dict[str, dict[str, PairSums]] = field(default_factory=dict)
    # learned statistics per period (revision) and arm: the period-weighted estimator's input
    periods: dict[int, dict[str, ArmStats]] = field(default_factory=dict)
    started_at: float | None = None
    period_started_at: float = field(default_factory=time.time)
    excluded: dict[str, str] = field(default_factory=dict)  # arm -> why it was rolled back
    mlflow_run_id: str | None = None
    recommendation: dict[str, Any] | None = None
    stopping: StoppingDecision | None = None
    guardrail_checks: list[GuardrailCheck] = field(default_factory=list)
    drift: ExperimentDrift | None = None
    concept: ConceptDrift | None = None
    delegate: str | None = None  # a running retraining challenger takes this traffic
    # the routing policy of a contextual experiment, holding the learned ridge statistics
    # (``policy`` then keeps the context-free per-arm statistics)
    contextual: ContextualPolicy | None = None
    _verdict_key: tuple[Any, ...] | None = None
    _verdict: ProbBestResult | None = None

    @classmethod
    def create(
        cls,
        config: ExperimentConfig,
        revision: int,
        stats: Mapping[str, ArmStats],
        context_stats: Mapping[str, RidgeStats] | None = None,
        **values: Any,
    ) -> LiveExperiment:
        """A live experiment whose policy is built for ``revision`` and holds ``stats`` (and
        a contextual one's ridge statistics, ``context_stats``)."""
        policy = config.build_policy(revision)
        policy.set_stats({arm: stats.get(arm, ArmStats()) for arm in config.arm_names})
        contextual = config.build_contextual_policy(revision)
        if contextual is not None and context_stats:
            arms = set(contextual.arms)
            contextual.set_stats({a: s for a, s in context_stats.items() if a in arms})
        values.setdefault("contextual", contextual)
        values.setdefault("outcome", None)
        values.setdefault("winner", None)
        return cls(config=config, revision=revision, policy=policy, **values)

    @property
    def name(self) -> str:
        return self.config.name

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

    # ---------------------------------------------------------------- changes

    def apply(self, delta: Delta) -> None:
        """Add a committed delta (its entries for this experiment) to memory."""
        name = self.config.name
        learned: dict[str, ArmStats] = {}
        for (experiment, period, arm), counts in delta.arms.items():
            if experiment != name or arm not in self.policy.stats:
                continue
            self.counts[arm] = self.counts.get(arm, ArmCounts()) + counts
            if period == self.revision:
                self.period_counts[arm] = self.period_counts.get(arm, ArmCounts()) + counts
            learned[arm] = learned.get(arm, ArmStats()) + ArmStats(pulls=counts.pulls)
        for (experiment, period, arm), rewards in delta.rewards.items():
            if experiment == name and arm in self.policy.stats:
                learned[arm] = learned.get(arm, ArmStats()) + rewards
                per_period = self.periods.setdefault(period, {})
                per_period[arm] = per_period.get(arm, ArmStats()) + rewards
        for (experiment, _, arm, pair), pair_sums in delta.pairs.items():
            if experiment == name:
                per_arm_pairs = self.pairs.setdefault(arm, {})
                per_arm_pairs[pair] = per_arm_pairs.get(pair, PairSums()) + pair_sums
        for (experiment, _, arm, metric), sums in delta.metrics.items():
            if experiment == name:
                per_arm = self.metrics.setdefault(arm, {})
                per_arm[metric] = per_arm.get(metric, ArmStats()) + sums
        for (experiment, shadow), counts in delta.shadows.items():
            if experiment == name:
                self.shadows[shadow] = self.shadows.get(shadow, ShadowCounts()) + counts
        if self.contextual is not None:
            ridge = {
                arm: stats
                for (experiment, arm), stats in delta.ridge.items()
                if experiment == name and stats.dim == self.contextual.dim
            }
            if ridge:
                self.contextual.update(ridge)
        if learned:
            self.policy.update(learned)

    def add_latency(self, arm: str, histogram: LatencyHistogram) -> None:
        self.latency[arm] = self.latency.get(arm, LatencyHistogram()) + histogram

    def new_revision(self, config: ExperimentConfig, revision: int, now: float) -> None:
        """Route on ``config`` from ``revision`` on: a new policy holding the same stats and
        a new period (its counts start at zero)."""
        stats = dict(self.policy.stats)
        same_context = config.context_key == self.config.context_key
        learned = dict(self.contextual.stats) if self.contextual and same_context else {}
        self.config, self.revision = config, revision
        self.policy = config.build_policy(revision)
        self.policy.set_stats(stats)
        # a new encoding starts learning afresh (the store keeps ridge stats per encoding)
        self.contextual = config.build_contextual_policy(revision)
        if self.contextual is not None and learned:
            self.contextual.set_stats(learned)
        self.period_counts = {}
        self.period_started_at = now

    def frozen_copy(self) -> LiveExperiment:
        """A copy to read in another thread while syncs change this one: its own containers
        and its own policy over the same (immutable) statistics, without the drift windows
        (large: read :meth:`ExperimentDrift.full` on the loop)."""
        policy = self.config.build_policy(self.revision)
        policy.set_stats(self.policy.stats)
        contextual = self.config.build_contextual_policy(self.revision)
        if contextual is not None and self.contextual is not None:
            contextual.set_stats(self.contextual.stats)
        return dataclasses.replace(
            self,
            policy=policy,
            contextual=contextual,
            counts=dict(self.counts),
            shadows=dict(self.shadows),
            latency=dict(self.latency),
            metrics={arm: dict(values) for arm, values in self.metrics.items()},
            pairs={arm: dict(values) for arm, values in self.pairs.items()},
            periods={period: dict(values) for period, values in self.periods.items()},
            period_counts=dict(self.period_counts),
            excluded=dict(self.excluded),
            recommendation=copy.deepcopy(self.recommendation),
            guardrail_checks=list(self.guardrail_checks),
            drift=None,
            concept=None,
        )

    # ---------------------------------------------------------------- reads

    def snapshot(self, with_config: bool) -> ExperimentSnapshot:
        return ExperimentSnapshot(
            revision=self.revision,
            status=self.status,
            route_to=self.route_to,
            excluded=frozenset(self.excluded),
            stats=dict(self.policy.stats),
            config=self.config if with_config else None,
            delegate=self.delegate,
            context_stats=dict(self.contextual.stats) if self.contextual else None,
        )

    def verdict(self) -> ProbBestResult | None:
        """:func:`verdict` of the arms still in the experiment (rolled-back arms are out of
        the running and have none), cached until their learned statistics change."""
        stats = {arm: self.policy.stats[arm] for arm in self.active_arms}
        key = tuple((a, s.feedback, s.reward_sum, s.reward_sum_squares) for a, s in stats.items())
        if key != self._verdict_key:
            estimate = self.estimate(self.active_arms)
            summaries = estimate.summaries if estimate.estimator != "pooled" else None
            self._verdict = verdict(stats, self.config.reward, summaries)
            self._verdict_key = key
        return self._verdict

    def estimate(self, arms: list[str] | None = None) -> Estimate:
        """Which estimator decides for ``arms`` (default: the arms still in, plus the
        control), and their summaries (see
        :func:`~serve_app.experiment.analysis.decision_estimate`)."""
        names = list(arms if arms is not None else self.active_arms)
        if self.control not in names:
            names.append(self.control)
        stats = {arm: self.policy.stats[arm] for arm in names}
        adaptive = self.config.policy.name != "fixed"
        contextual = self.config.policy.contextual
        return decision_estimate(stats, self.periods, self.config.reward, adaptive, contextual)

    def analysis(self) -> dict[str, Any]:
        """Which estimator decides (and why), the CUPED comparisons when feedback carried
        covariates (else None) and the configured ratio metrics, for the arms still in."""
        estimate = self.estimate()
        challengers = [arm for arm in self.active_arms if arm != self.control]
        rules = self.config.stopping
        alpha, tuning = (rules.alpha, rules.tuning) if rules else (0.05, 5000.0)
        return {
            **estimate.to_dict(),
            "cuped": cuped_comparisons(self.pairs, self.control, challengers, alpha=alpha),
            "ratio_metrics": ratio_comparisons(
                self.config.ratio_metrics,
                self.pairs,
                self.control,
                challengers,
                alpha=alpha,
                tuning=tuning,
            ),
        }

    def weights(self) -> dict[str, float]:
        """Current routing probabilities: the policy's renormalised over the arms still in,
        or all on one arm when not running."""
        route_to = self.route_to
        if route_to is not None:
            return {arm: float(arm == route_to) for arm in self.config.arm_names}
        weights = self.policy.weights()
        if self.contextual is not None:
            weights = self._marginal_weights(weights)
        if not self.excluded:
            return weights
        kept = {arm: w for arm, w in weights.items() if arm not in self.excluded}
        total = sum(kept.values())
        if total <= 0:
            return weights
        return {arm: kept.get(arm, 0.0) / total for arm in weights}

    def _marginal_weights(self, uniform: dict[str, float]) -> dict[str, float]:
        """A contextual policy's weights depend on the context: its average routing
        probability over this revision's decisions (the sum of every arm's probability per
        decision, ``ArmCounts.expected``), or the equal split before any."""
        expected = {arm: self.period_counts.get(arm, ArmCounts()).expected for arm in uniform}
        total = sum(expected.values())
        if total <= 0:
            return uniform
        return {arm: value / total for arm, value in expected.items()}

    def calls(self) -> dict[str, tuple[int, int]]:
        """Per arm (routed calls, failed routed calls): what the error guardrail judges.
        Forced requests are left out, so forcing an arm cannot roll it back."""
        return {arm: (counts.pulls, counts.errors) for arm, counts in self.counts.items()}

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

    def drift_view(self) -> dict[str, Any] | None:
        """Everything about drift (``GET /drift``, the report): per-feature and per-arm data
        drift when tracked, ``concept`` per arm when watched, one ``alert`` for either
        (None: neither is)."""
        if self.drift is None and self.concept is None:
            return None
        view: dict[str, Any] = self.drift.full() if self.drift else {"alert": False}
        if self.concept is not None:
            view["concept"] = self.concept.to_dict()
            view["alert"] = bool(view["alert"] or self.concept.alert)
        return view

    def drift_summary(self) -> dict[str, Any] | None:
        """Data drift (when tracked) and concept drift (when watched), for the summary."""
        if self.drift is None and self.concept is None:
            return None
        summary: dict[str, Any] = self.drift.summary() if self.drift else {"alert": False}
        if self.concept is not None:
            summary["concept_alert"] = self.concept.alert
            summary["concept_drifted_arms"] = self.concept.drifted_arms()
            summary["alert"] = bool(summary["alert"] or self.concept.alert)
        return summary

    def p95_latency_ms(self, arm: str) -> float | None:
        histogram = self.latency.get(arm)
        return histogram.quantile_ms(0.95) if histogram else None

    def summary(self) -> dict[str, Any]:
        weights = self.weights()
        found = self.verdict()
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
                    "forced_errors": counts.forced_errors,
                    "errors": counts.errors,
                    "fallbacks": counts.fallbacks,
                    "feedback": stats.feedback,
                    "reward_sum": stats.reward_sum,
                    "reward_mean": stats.reward_mean,
                    "weight": weights[arm],
                    "prob_best": found.prob_best.get(arm) if found else None,
                    "expected_loss": found.expected_loss.get(arm) if found else None,
                    "guardrail_breached": self.guardrail_breached(arm),
                    "excluded": arm in self.excluded,
                    "exclusion_reason": self.excluded.get(arm),
                }
            )
        shadows = []
        for shadow_config in self.config.shadows:
            counts = self.shadows.get(shadow_config.name, ShadowCounts())
            answered = counts.requests - counts.errors - counts.timeouts
            shadows.append(
                {
                    "name": shadow_config.name,
                    "model_uri": shadow_config.model_uri,
                    "percent": shadow_config.percent,
                    "requests": counts.requests,
                    "errors": counts.errors,
                    "timeouts": counts.timeouts,
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
            "drift": self.drift_summary(),
            "analysis": self.analysis(),
            "delegate": self.delegate,
            "parent": self.config.parent,
            "arms": arms,
            "shadows": shadows,
        }
