"""What an experiment's numbers say: comparisons, stopping rules and guardrails.

Pure functions over the additive statistics the state deployment keeps (no Ray, no store), so
the lifecycle's decisions and the report are one computation, tested directly:

- :func:`compare`: each challenger against the control, three ways (fixed-horizon Welch with
  Holm-adjusted p-values, Bayesian chance to win and risk, the always-valid sequential test);
- :func:`evaluate_stopping`: the configured stopping rule, with every rule's status spelt out;
- :func:`evaluate_guardrails`: error rate, p95 latency and feedback metrics of each challenger
  against the control;
- :func:`decision_estimate`: which estimator decides (pooled, or period-weighted where the
  weights changed between periods), and the per-arm summaries the decisions then take;
- :func:`cuped_comparisons` and :func:`ratio_comparisons`: CUPED-adjusted effects beside the
  plain ones, and ratio metrics with the delta method's variance.

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
    PeriodWeightedMean,
    ProbBestResult,
    ProportionStats,
    SampleStats,
    TTestResult,
    adjust_pvalues,
    bayesian_effect,
    cuped_effect,
    period_weighted_means,
    sequential_test,
    welch_ttest,
)
from serve_app.config import GuardrailConfig, MetricGuardrail, RatioMetricConfig, StoppingConfig
from serve_app.experiment.records import CUPED, LatencyHistogram, PairSums


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


def _summaries(
    arms: Mapping[str, ArmStats], reward: str, given: Mapping[str, MetricStats] | None
) -> dict[str, MetricStats]:
    """The summaries of ``arms``: ``given`` ones where there are, else the pooled ones."""
    given = given or {}
    return {arm: given.get(arm) or metric_stats(value, reward) for arm, value in arms.items()}


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
    summaries: Mapping[str, MetricStats] | None = None,
) -> list[dict[str, Any]]:
    """Every other arm against ``control``: fixed-horizon, Bayesian and sequential results.

    The fixed-horizon p-values are Holm-adjusted over the challengers; ``significant`` is the
    adjusted p-value (sequential: its own always-valid p-value, Bonferroni over the
    challengers) below ``alpha``. Arms without data get ``None`` results. ``summaries``
    (from :func:`decision_estimate`) replace the pooled summaries of ``arms``.
    """
    summaries = _summaries(arms, reward, summaries)
    base = summaries[control]
    challengers = [arm for arm in arms if arm != control]
    sequential = {
        row["arm"]: row["sequential"] for row in _sequential_rows(summaries, control, alpha, tuning)
    }
    rows: list[dict[str, Any]] = []
    for arm in challengers:
        treatment = summaries[arm]
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
    summaries: Mapping[str, MetricStats], control: str, alpha: float, tuning: float
) -> list[dict[str, Any]]:
    """The sequential part of :func:`compare`, alone for the stopping rule (which runs every
    second and needs neither the Welch nor the Bayesian results)."""
    base = summaries[control]
    challengers = [arm for arm in summaries if arm != control]
    rows = []
    for arm in challengers:
        treatment = summaries[arm]
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
    """Whether to stop now, with which winner, and why (``rules``: every rule's status;
    ``estimator``: ``pooled`` or ``period_weighted``, the summaries the rule judged)."""

    met: bool
    winner: str | None
    reason: str
    rules: tuple[RuleCheck, ...] = field(default_factory=tuple)
    expired: bool = False
    estimator: str = "pooled"

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
    summaries: Mapping[str, MetricStats] | None = None,
    estimator: str = "pooled",
) -> StoppingDecision:
    """Apply the stopping rule to the arms still in the experiment (``arms``, control
    included); ``verdict`` is their P(best) and expected loss (None: too little data), the
    experiment's one Bayesian verdict (:meth:`~serve_app.experiment.live.LiveExperiment.verdict`).

    ``bayesian``: stop when ``max_k P(k best) >= prob_best`` and that arm's expected loss
    ``E[max_j mu_j - mu_k] <= expected_loss``. ``sequential``: stop when a challenger's
    always-valid test rejects at ``alpha / (K - 1)``; the best significantly better challenger
    wins, the control wins when every challenger is significantly worse. Both wait until each
    arm has ``min_samples_per_arm`` feedback; past ``max_duration_s`` the decision is
    ``expired`` (the experiment stops on the control). ``summaries`` (from
    :func:`decision_estimate`) replace the pooled summaries of ``arms`` in the sequential
    rule (the Bayesian one reads ``verdict``, computed from the same summaries).
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
        summaries = _summaries(arms, reward, summaries)
        rows = _sequential_rows(summaries, control, rules.alpha, rules.tuning)
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
    if winner is not None and estimator != "pooled":
        reason += f" ({estimator.replace('_', '-')} estimator)"
    return StoppingDecision(
        met=winner is not None or expired,
        winner=winner,
        reason=reason,
        rules=tuple(checks),
        expired=winner is None and expired,
        estimator=estimator,
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


# ---------------------------------------------------------------- which estimator decides


@dataclass(frozen=True)
class Estimate:
    """The per-arm summaries the decisions take, and the estimator that made them.

    ``estimator`` is ``"pooled"`` (each arm's sums over the whole experiment) or
    ``"period_weighted"`` (:func:`bandits.stats.period_weighted_means`); ``reason`` says why.
    """

    estimator: str
    reason: str
    summaries: Mapping[str, MetricStats]
    periods: int

    def to_dict(self) -> dict[str, Any]:
        return {"estimator": self.estimator, "reason": self.reason, "periods": self.periods}


def weighted_summary(weighted: PeriodWeightedMean) -> SampleStats:
    """A :class:`SampleStats` with the period-weighted ``mean`` and standard error ``se``.

    Every test reads a summary through its mean, its per-observation variance ``v`` and its
    size ``n`` (``se**2 = v / n``), so with ``v = n se**2`` the Welch, Bayesian and sequential
    tests run on the period-weighted estimate unchanged::

        sum = n mean,   sum_squares = (n - 1) v + n mean**2

    >>> s = weighted_summary(PeriodWeightedMean(mean=0.3, se=0.02, n=100, periods=2))
    >>> round(s.mean, 12), round(math.sqrt(s.variance / s.n), 12)
    (0.3, 0.02)
    """
    n = weighted.n
    variance = weighted.se**2 * n
    return SampleStats(n, n * weighted.mean, (n - 1) * variance + n * weighted.mean**2)


def decision_estimate(
    arms: Mapping[str, ArmStats],
    periods: Mapping[int, Mapping[str, ArmStats]],
    reward: str,
    adaptive: bool = False,
    contextual: bool = False,
) -> Estimate:
    """Which estimator the comparisons and stopping rules use, with its per-arm summaries.

    A period is a revision; the weights change only between revisions for a fixed split
    or a ramp. Pooling an arm's feedback across periods with different weights confounds
    the arm with the period (Simpson's paradox: an arm that got most of its traffic while
    every arm did well looks better than it is). So when the compared ``arms`` have feedback
    in two or more periods, each arm's mean is the period-weighted one over the periods in
    which every arm has feedback (all arms weighted by the same period traffic), and its
    standard error that estimator's; otherwise the pooled sums decide. ``adaptive`` (a
    bandit, whose weights move within a period) is said in the reason: there the pooled
    estimate is the one the state holds; an inverse-propensity estimate needs the decision
    log. ``contextual``: each arm got the contexts the policy judged it best for, so its
    pooled mean is over other traffic than the other arms'; the reason says so and points to
    off-policy evaluation (what each arm alone would have earned on all the traffic).
    """
    with_data = [
        {arm: stats for arm, stats in period.items() if arm in arms and stats.feedback}
        for _, period in sorted(periods.items())
    ]
    with_data = [period for period in with_data if period]
    # compare the arms over the same periods only: those in which every arm has feedback
    common = [period for period in with_data if set(period) == set(arms)]
    if len(with_data) >= 2 and common:
        weighted = period_weighted_means(
            [{arm: metric_stats(s, reward) for arm, s in period.items()} for period in common]
        )
        summaries: dict[str, MetricStats] = {}
        for arm, stats in arms.items():
            found = weighted.get(arm)
            summaries[arm] = (
                weighted_summary(found)
                if found is not None and found.n >= 2
                else metric_stats(stats, reward)
            )
        left_out = len(with_data) - len(common)
        return Estimate(
            "period_weighted",
            f"the weights changed between {len(with_data)} periods (revisions): each arm's "
            f"per-period means over the {len(common)} periods in which every arm has feedback"
            + (f" ({left_out} left out)" if left_out else "")
            + ", weighted by the periods' traffic, so a period's general level is not "
            "credited to the arm that got more traffic then (Simpson's paradox)",
            summaries,
            len(common),
        )
    reason = "one period: the weights did not change between revisions"
    if contextual:
        reason += (
            "; a contextual policy sends each arm the contexts it is best for, so the pooled "
            "means compare the arms on different traffic: GET /experiments/{name}/ope with "
            "always:<arm> estimates what each arm alone would earn on all of it"
        )
    elif adaptive:
        reason += (
            "; the policy adapts its weights within the period, where pooled means can be "
            "confounded with time (an inverse-propensity estimate needs the decision log)"
        )
    return Estimate(
        "pooled",
        reason,
        {arm: metric_stats(stats, reward) for arm, stats in arms.items()},
        len(with_data),
    )


# ---------------------------------------------------------------- CUPED and ratio metrics


def _test(result: TTestResult) -> dict[str, Any]:
    return {
        "estimate": result.estimate,
        "se": result.se,
        "ci": list(result.ci),
        "p_value": result.p_value,
    }


def cuped_comparisons(
    pairs: Mapping[str, Mapping[str, PairSums]],
    control: str,
    challengers: Sequence[str],
    *,
    alpha: float = 0.05,
) -> list[dict[str, Any]] | None:
    """Each challenger against the control on the reward of the units that sent a
    covariate: the CUPED-adjusted relative effect and interval beside the plain one.

    :func:`bandits.stats.cuped_effect` with ``theta`` pooled over the two arms and the
    relative lift on the unadjusted control mean; ``variance_reduction`` is ``1 -
    se_adjusted**2 / se_plain**2``. None when no feedback carried a covariate; a row whose
    arms have fewer than 2 such units each has ``None`` results and says so.
    """
    if not any(CUPED in per_arm for per_arm in pairs.values()):
        return None
    empty = PairSums()
    base = pairs.get(control, {}).get(CUPED, empty)
    rows: list[dict[str, Any]] = []
    for arm in challengers:
        treatment = pairs.get(arm, {}).get(CUPED, empty)
        row: dict[str, Any] = {
            "arm": arm,
            "control": control,
            "units": {control: base.n, arm: treatment.n},
        }
        if min(base.n, treatment.n) < 2:
            row.update(adjusted=None, unadjusted=None, theta=None, variance_reduction=None)
            row["detail"] = "fewer than 2 units with a covariate in an arm"
        else:
            try:
                result = cuped_effect(base.cuped(), treatment.cuped(), alpha=alpha)
            except ValueError as error:  # impossible sums: say so, never a p-value
                row.update(adjusted=None, unadjusted=None, theta=None, variance_reduction=None)
                row["detail"] = str(error)
            else:
                row.update(
                    adjusted=_test(result.adjusted),
                    unadjusted=_test(result.unadjusted),
                    theta=result.theta,
                    variance_reduction=result.variance_reduction,
                )
        rows.append(row)
    return rows


def ratio_comparisons(
    ratios: Sequence[RatioMetricConfig],
    pairs: Mapping[str, Mapping[str, PairSums]],
    control: str,
    challengers: Sequence[str],
    *,
    alpha: float = 0.05,
    tuning: float = 5000.0,
) -> list[dict[str, Any]]:
    """Per ratio metric, each arm's ``sum(num) / sum(den)`` and each challenger's relative
    effect: Welch with the delta method's variance, the Bayesian chance to win and the
    always-valid sequential test (see :class:`bandits.stats.RatioStats`)."""
    out: list[dict[str, Any]] = []
    empty = PairSums()
    for ratio in ratios:
        arms = [control, *challengers]
        sums = {arm: pairs.get(arm, {}).get(ratio.name, empty) for arm in arms}
        entry: dict[str, Any] = {
            "name": ratio.name,
            "numerator": ratio.numerator,
            "denominator": ratio.denominator,
            "arms": {},
            "comparisons": [],
        }
        stats = {}
        for arm, value in sums.items():
            try:
                stats[arm] = value.ratio()
            except ValueError as error:
                entry["arms"][arm] = {"units": value.n, "value": None, "detail": str(error)}
                continue
            entry["arms"][arm] = {
                "units": value.n,
                "value": stats[arm].mean if value.n and value.sum_y else None,
                "numerator_sum": value.sum_x,
                "denominator_sum": value.sum_y,
            }
        for arm in challengers:
            row: dict[str, Any] = {"arm": arm, "control": control}
            base, treatment = stats.get(control), stats.get(arm)
            if base is None or treatment is None or min(base.n, treatment.n) < 2:
                row.update(frequentist=None, bayesian=None, sequential=None)
            else:
                welch = welch_ttest(base, treatment, alpha=alpha)
                bayes = bayesian_effect(base, treatment, alpha=alpha)
                seq = sequential_test(base, treatment, alpha=alpha, tuning=tuning)
                row["frequentist"] = _test(welch)
                row["bayesian"] = {
                    "chance_to_win": bayes.chance_to_win,
                    "mean": bayes.mean,
                    "ci": list(bayes.ci),
                    "risk": list(bayes.risk),
                }
                row["sequential"] = {
                    "estimate": seq.estimate,
                    "ci": list(seq.ci),
                    "p_value": seq.p_value,
                }
            entry["comparisons"].append(row)
        out.append(entry)
    return out
