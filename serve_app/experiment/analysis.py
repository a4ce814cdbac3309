"""What an experiment's numbers say: comparisons, stopping rules and guardrails.

Pure functions over the additive statistics the state deployment keeps (no Ray, no store), so
the lifecycle's decisions and the report are one computation, tested directly:

- :func:`compare`: each challenger against the control, three ways (fixed-horizon Welch with
  Holm-adjusted p-values, Bayesian chance to win and risk, the always-valid sequential test);
- :func:`evaluate_stopping`: the configured stopping rule, with every rule's status spelt out;
- :func:`evaluate_guardrails`: error rate, p95 latency and feedback metrics of each challenger
  against the control.

Relative effects are ``(mean_arm - mean_control) / |mean_control|`` throughout.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from bandits import ArmStats
from bandits.stats import (
    MetricStats,
    ProbBestResult,
    ProportionStats,
    SampleStats,
    adjust_pvalues,
    bayesian_effect,
    sequential_test,
    welch_ttest,
)
from serve_app.config import GuardrailConfig, MetricGuardrail, StoppingConfig
from serve_app.experiment.records import LatencyHistogram


def metric_stats(stats: ArmStats, reward: str) -> MetricStats:
    """The learned feedback of one arm as the summary the statistics take."""
    if reward == "binary":
        return ProportionStats.from_arm_stats(stats)
    return SampleStats.from_arm_stats(stats)


def posterior(stats: ArmStats, reward: str) -> dict[str, Any]:
    """Posterior of the arm's mean reward, as the report plots it.

    Binary: ``Beta(1 + s, 1 + n - s)`` (uniform prior). Continuous: ``N(mean, s^2 / n)`` with
    the sample variance ``s^2`` (flat prior; ``sd`` is None below 2 observations).
    """
    if reward == "binary":
        successes = stats.reward_sum
        return {
            "family": "beta",
            "alpha": 1.0 + successes,
            "beta": 1.0 + stats.feedback - successes,
        }
    sample = SampleStats.from_arm_stats(stats)
    sd = math.sqrt(sample.variance / sample.n) if sample.n >= 2 else None
    return {"family": "normal", "mean": sample.mean if sample.n else 0.0, "sd": sd}


def _usable(stats: MetricStats) -> bool:
    """Enough data for a comparison: two observations (proportions: one)."""
    return stats.n >= (1 if isinstance(stats, ProportionStats) else 2)


def compare(
    arms: Mapping[str, ArmStats],
    control: str,
    reward: str,
    *,
    alpha: float = 0.05,
    tuning: float = 5000.0,
) -> list[dict[str, Any]]:
    """Every other arm against ``control``: fixed-horizon, Bayesian and sequential results.

    The fixed-horizon p-values are Holm-adjusted over the challengers; ``significant`` is the
    adjusted p-value (sequential: its own always-valid p-value, Bonferroni over the
    challengers) below ``alpha``. Arms without data get ``None`` results.
    """
    base = metric_stats(arms[control], reward)
    challengers = [arm for arm in arms if arm != control]
    sequential = {
        row["arm"]: row["sequential"]
        for row in _sequential_rows(arms, control, reward, alpha, tuning)
    }
    rows: list[dict[str, Any]] = []
    for arm in challengers:
        treatment = metric_stats(arms[arm], reward)
        row: dict[str, Any] = {"arm": arm, "control": control}
        if _usable(base) and _usable(treatment):
            welch = welch_ttest(base, treatment, alpha=alpha)
            bayes = bayesian_effect(base, treatment, alpha=alpha)
            row["frequentist"] = {
                "estimate": welch.estimate,
                "se": welch.se,
                "ci": list(welch.ci),
                "p_value": welch.p_value,
            }
            row["bayesian"] = {
                "chance_to_win": bayes.chance_to_win,
                "mean": bayes.mean,
                "ci": list(bayes.ci),
                "risk": list(bayes.risk),
            }
            row["sequential"] = sequential[arm]
        else:
            row.update(frequentist=None, bayesian=None, sequential=None)
        rows.append(row)
    tested = [row for row in rows if row["frequentist"] is not None]
    if tested:
        adjusted = adjust_pvalues(
            [row["frequentist"]["p_value"] for row in tested], "holm", alpha=alpha
        )
        for row, p_value, reject in zip(tested, adjusted.p_values, adjusted.reject, strict=True):
            row["frequentist"]["p_value_adjusted"] = p_value
            row["frequentist"]["significant"] = bool(reject)
    return rows


def _sequential_rows(
    arms: Mapping[str, ArmStats], control: str, reward: str, alpha: float, tuning: float
) -> list[dict[str, Any]]:
    """The sequential part of :func:`compare`, alone for the stopping rule (which runs every
    second and needs neither the Welch nor the Bayesian results)."""
    base = metric_stats(arms[control], reward)
    challengers = [arm for arm in arms if arm != control]
    rows = []
    for arm in challengers:
        treatment = metric_stats(arms[arm], reward)
        sequential = None
        if _usable(base) and _usable(treatment):
            result = sequential_test(base, treatment, alpha=alpha, tuning=tuning)
            sequential = {
                "estimate": result.estimate,
                "ci": list(result.ci),
                "p_value": result.p_value,
                "significant": result.p_value <= alpha / len(challengers),
            }
        rows.append({"arm": arm, "sequential": sequential})
    return rows


@dataclass(frozen=True)
class RuleCheck:
    """One stopping rule's status: ``value`` against ``target`` where the rule has numbers
    (samples, P(best), expected loss, seconds), and the sentence a person reads."""

    name: str
    met: bool
    detail: str
    value: float | None = None
    target: float | None = None


@dataclass(frozen=True)
class StoppingDecision:
    """Whether to stop now, with which winner, and why (``rules``: every rule's status)."""

    met: bool
    winner: str | None
    reason: str
    rules: tuple[RuleCheck, ...] = field(default_factory=tuple)
    expired: bool = False

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["rules"] = [asdict(rule) for rule in self.rules]
        return data


def evaluate_stopping(
    rules: StoppingConfig,
    arms: Mapping[str, ArmStats],
    control: str,
    reward: str,
    elapsed_s: float,
    verdict: ProbBestResult | None,
) -> StoppingDecision:
    """Apply the stopping rule to the arms still in the experiment (``arms``, control
    included); ``verdict`` is their P(best) and expected loss (None: too little data), the
    experiment's one Bayesian verdict (:meth:`~serve_app.experiment.live.LiveExperiment.verdict`).

    ``bayesian``: stop when ``max_k P(k best) >= prob_best`` and that arm's expected loss
    ``E[max_j mu_j - mu_k] <= expected_loss``. ``sequential``: stop when a challenger's
    always-valid test rejects at ``alpha / (K - 1)``; the best significantly better challenger
    wins, the control wins when every challenger is significantly worse. Both wait until each
    arm has ``min_samples_per_arm`` feedback; past ``max_duration_s`` the decision is
    ``expired`` (the experiment stops on the control).
    """
    checks: list[RuleCheck] = []
    fewest = min(stats.feedback for stats in arms.values())
    enough = fewest >= rules.min_samples_per_arm
    checks.append(
        RuleCheck(
            "min_samples",
            enough,
            f"fewest feedback per arm {fewest} of {rules.min_samples_per_arm} needed",
            fewest,
            rules.min_samples_per_arm,
        )
    )
    winner: str | None = None
    reason = ""
    if rules.rule == "bayesian":
        if verdict is None:
            checks.append(RuleCheck("prob_best", False, "too little data for a posterior"))
        else:
            probabilities, losses = verdict.prob_best, verdict.expected_loss
            best = max(probabilities, key=lambda arm: probabilities[arm])
            confident = probabilities[best] >= rules.prob_best
            cheap = losses[best] <= rules.expected_loss
            checks.append(
                RuleCheck(
                    "prob_best",
                    confident,
                    f"P({best} best) = {probabilities[best]:.4f}, threshold {rules.prob_best}",
                    probabilities[best],
                    rules.prob_best,
                )
            )
            checks.append(
                RuleCheck(
                    "expected_loss",
                    cheap,
                    f"expected loss of {best} = {losses[best]:.6f}, "
                    f"threshold {rules.expected_loss}",
                    losses[best],
                    rules.expected_loss,
                )
            )
            if enough and confident and cheap:
                winner = best
                reason = (
                    f"{best} is best with probability {probabilities[best]:.4f} and expected "
                    f"loss {losses[best]:.6f}"
                )
    else:
        rows = _sequential_rows(arms, control, reward, rules.alpha, rules.tuning)
        better = [
            row
            for row in rows
            if row["sequential"] and row["sequential"]["significant"]
            if row["sequential"]["estimate"] > 0
        ]
        worse = [
            row
            for row in rows
            if row["sequential"] and row["sequential"]["significant"]
            if row["sequential"]["estimate"] < 0
        ]
        detail = ", ".join(
            f"{row['arm']}: p={row['sequential']['p_value']:.4g}"
            if row["sequential"]
            else f"{row['arm']}: no data"
            for row in rows
        )
        decided = bool(better) or (bool(rows) and len(worse) == len(rows))
        checks.append(RuleCheck("sequential", decided, f"always-valid p-values: {detail}"))
        if enough and better:
            top = max(better, key=lambda row: row["sequential"]["estimate"])
            winner = top["arm"]
            reason = (
                f"{winner} beats {control} by {top['sequential']['estimate']:+.2%} "
                f"(always-valid p = {top['sequential']['p_value']:.4g})"
            )
        elif enough and decided:
            winner = control
            reason = f"every challenger is significantly worse than {control}"
    expired = rules.max_duration_s is not None and elapsed_s >= rules.max_duration_s
    if rules.max_duration_s is not None:
        checks.append(
            RuleCheck(
                "max_duration",
                expired,
                f"running {elapsed_s:.0f} s of at most {rules.max_duration_s:.0f} s",
                elapsed_s,
                rules.max_duration_s,
            )
        )
    if winner is None and expired:
        reason = f"no answer after {elapsed_s:.0f} s (max_duration_s {rules.max_duration_s:g})"
    if winner is None and not expired:
        reason = "not yet: " + "; ".join(check.detail for check in checks if not check.met)
    return StoppingDecision(
        met=winner is not None or expired,
        winner=winner,
        reason=reason,
        rules=tuple(checks),
        expired=winner is None and expired,
    )


@dataclass(frozen=True)
class GuardrailCheck:
    """One guardrail of one challenger arm."""

    arm: str
    rule: str
    value: float | None
    threshold: float | None
    breached: bool
    detail: str


def _metric_check(
    rule: MetricGuardrail, arm: str, control: ArmStats | None, stats: ArmStats | None
) -> GuardrailCheck:
    name = f"metric:{rule.name}"
    base = SampleStats.from_arm_stats(control) if control else SampleStats(0, 0.0, 0.0)
    treatment = SampleStats.from_arm_stats(stats) if stats else SampleStats(0, 0.0, 0.0)
    if min(base.n, treatment.n) < rule.min_samples:
        detail = (
            f"{rule.name}: {treatment.n} values for {arm}, {base.n} for the control, "
            f"{rule.min_samples} needed"
        )
        return GuardrailCheck(arm, name, None, rule.max_relative_change, False, detail)
    result = sequential_test(base, treatment, alpha=rule.alpha, relative=True)
    low, high = result.ci
    harm = low if rule.direction == "increase" else -high
    breached = harm > rule.max_relative_change
    detail = (
        f"{rule.name} {result.estimate:+.2%} vs control (always-valid "
        f"{1 - rule.alpha:.0%} interval {low:+.2%}..{high:+.2%}; harmful: {rule.direction} "
        f"beyond {rule.max_relative_change:.2%})"
    )
    return GuardrailCheck(arm, name, result.estimate, rule.max_relative_change, breached, detail)


def evaluate_guardrails(
    rules: GuardrailConfig,
    control: str,
    challengers: Sequence[str],
    calls: Mapping[str, tuple[int, int]],
    latency: Mapping[str, LatencyHistogram],
    metrics: Mapping[str, Mapping[str, ArmStats]],
) -> list[GuardrailCheck]:
    """Judge each challenger against the control.

    Args:
        rules: The experiment's guardrails.
        control: The control (default) arm.
        challengers: The arms to judge.
        calls: Per arm (routed calls, errors of routed calls); forced requests are not here.
        latency: Per arm, the latency histogram of its routed calls.
        metrics: Per arm and feedback metric, ``ArmStats(feedback=n, reward_sum=sum, ...)``.

    Error rate ``errors / calls`` breaches above ``max_error_rate``; p95 latency breaches when
    ``p95_arm > max_p95_latency_ratio * p95_control + latency_slack_ms``; a feedback metric
    when its always-valid interval lies wholly beyond the tolerated harm. Nothing is judged
    before ``min_requests`` calls (metrics: their own ``min_samples``).
    """
    checks: list[GuardrailCheck] = []
    empty = LatencyHistogram()
    control_p95 = latency.get(control, empty).quantile_ms(0.95)
    for arm in challengers:
        n_calls, errors = calls.get(arm, (0, 0))
        judged = n_calls >= rules.min_requests
        if rules.max_error_rate is not None:
            rate = errors / n_calls if n_calls else 0.0
            breached = judged and rate > rules.max_error_rate
            checks.append(
                GuardrailCheck(
                    arm,
                    "error_rate",
                    rate if n_calls else None,
                    rules.max_error_rate,
                    breached,
                    f"error rate {rate:.2%} ({errors}/{n_calls} calls), "
                    f"limit {rules.max_error_rate:.2%}"
                    + ("" if judged else f"; judged after {rules.min_requests} calls"),
                )
            )
        if rules.max_p95_latency_ratio is not None:
            arm_p95 = latency.get(arm, empty).quantile_ms(0.95)
            breached, detail = False, f"p95 latency not judged yet ({n_calls} calls)"
            if arm_p95 is not None and control_p95 is not None and judged:
                limit = rules.max_p95_latency_ratio * control_p95 + rules.latency_slack_ms
                breached = arm_p95 > limit
                detail = (
                    f"p95 latency {arm_p95:.1f} ms vs control {control_p95:.1f} ms, limit "
                    f"{rules.max_p95_latency_ratio:g} x control + "
                    f"{rules.latency_slack_ms:g} ms = {limit:.1f} ms"
                )
            checks.append(
                GuardrailCheck(
                    arm, "p95_latency", arm_p95, rules.max_p95_latency_ratio, breached, detail
                )
            )
        for rule in rules.metrics:
            checks.append(
                _metric_check(
                    rule,
                    arm,
                    metrics.get(control, {}).get(rule.name),
                    metrics.get(arm, {}).get(rule.name),
                )
            )
    return checks
