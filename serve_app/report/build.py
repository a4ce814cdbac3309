"""The experiment report: one JSON document with everything the experiment has to say.

Served as ``GET /experiments/{name}/report``, printed and drawn by ``bandit-serve report``
(:mod:`serve_app.report.render`) and logged with the MLflow run of a conclusion
(:mod:`serve_app.models.tracking`). Keys:

- ``arms``: counts, reward mean, weight, P(best), expected loss, error rate, p95 latency,
  whether a guardrail rolled the arm back (and why), the posterior of its mean, and its
  period-weighted mean (robust to weights changing over time: Simpson's paradox);
- ``comparisons``: each challenger against the control
  (:func:`serve_app.experiment.analysis.compare`), on the summaries of the estimator that
  decides;
- ``estimator``: which one (``pooled``, or ``period_weighted`` where the weights changed
  between periods) and why;
- ``cuped``: CUPED-adjusted effects beside the plain ones, with the variance reduction (null
  when no feedback carried a covariate); ``ratio_metrics``: each configured ratio metric per
  arm and its delta-method comparisons;
- ``srm``, ``stopping``, ``guardrails``, ``ramp``: the lifecycle's view now;
- ``timeline``: cumulative per-arm counts sampled as decisions accumulate (at most the
  requested number of samples, spread over the whole history);
- ``audit``: every transition and change, with who and why (only for the control token:
  null otherwise);
- ``drift``: input and prediction drift when the experiment tracks it, concept drift
  (``drift.concept``: each arm's reward CUSUM and label shift) when it watches it (else null);
- ``closed_loop``: the experiment's retraining runs (trigger, rows, version, challenger,
  outcome), the challenger it delegates to now, and its parent when it is a challenger
  (null for an experiment outside the loop);
- ``offpolicy``: with a decision log, off-policy estimates of the uniform split and of each
  arm alone on the logged decisions (:mod:`serve_app.experiment.offpolicy`; null without a
  log, ``results`` empty with too few records);
- ``mlflow_run_id``: the run recording the conclusion.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from bandits import ArmStats
from bandits.stats import period_weighted_means
from serve_app.experiment.analysis import compare, metric_stats, posterior
from serve_app.experiment.lifecycle import ramp_step
from serve_app.experiment.live import LiveExperiment
from serve_app.experiment.records import ArmCounts

SRM_ALPHA = 0.001  # the usual SRM alarm level: a mismatch this unlikely means a bug


def build_report(
    live: LiveExperiment,
    timeline: Sequence[dict[str, Any]],
    audit: Sequence[dict[str, Any]] | None,
    periods: Sequence[dict[str, ArmStats]],
    drift: dict[str, Any] | None = None,
    retraining: Sequence[dict[str, Any]] | None = None,
    offpolicy: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The report of ``live`` with its stored history (timeline, audit log or None when the
    reader may not see it, per-period stats, retraining runs).

    Comparisons use the arms still in the experiment plus the control; arms rolled back by a
    guardrail keep their numbers in ``arms``.
    """
    config = live.config
    reward = config.reward
    stats = {arm: live.policy.stats[arm] for arm in config.arm_names}
    weights = live.weights()
    found = live.verdict()
    probabilities, losses = (found.prob_best, found.expected_loss) if found else ({}, {})
    weighted = period_weighted_means(
        [{arm: metric_stats(s, reward) for arm, s in period.items()} for period in periods]
    )
    arms = []
    for arm_config in config.arms:
        arm = arm_config.name
        counts = live.counts.get(arm, ArmCounts())
        calls = counts.pulls  # routed calls: forced ones have their own error count
        pwm = weighted.get(arm)
        arms.append(
            {
                "name": arm,
                "model_uri": arm_config.model_uri,
                "requests": stats[arm].pulls,
                "forced": counts.forced,
                "feedback": stats[arm].feedback,
                "reward_mean": stats[arm].reward_mean,
                "reward_sum": stats[arm].reward_sum,
                "period_weighted_mean": pwm.mean if pwm and pwm.n else None,
                "period_weighted_se": pwm.se if pwm and pwm.n else None,
                "weight": weights[arm],
                "prob_best": probabilities.get(arm),
                "expected_loss": losses.get(arm),
                "errors": counts.errors,
                "forced_errors": counts.forced_errors,
                "fallbacks": counts.fallbacks,
                "error_rate": counts.errors / calls if calls else 0.0,
                "p95_latency_ms": live.p95_latency_ms(arm),
                "excluded": arm in live.excluded,
                "exclusion_reason": live.excluded.get(arm),
                "posterior": posterior(stats[arm], reward),
            }
        )
    compared = {arm: stats[arm] for arm in live.active_arms}
    compared.setdefault(live.control, stats[live.control])
    rules = config.stopping
    alpha, tuning = (rules.alpha, rules.tuning) if rules else (0.05, 5000.0)
    estimate = live.estimate(list(compared))
    analysis = live.analysis()
    srm_p = live.srm_p_value()
    now = time.time()
    return {
        "experiment": config.name,
        "description": config.description,
        "generated_at": now,
        "status": live.status,
        "outcome": live.outcome,
        "winner": live.winner,
        "revision": live.revision,
        "policy": config.policy.name,
        "reward": reward,
        "control": live.control,
        "started_at": live.started_at,
        "duration_s": now - live.started_at if live.started_at else 0.0,
        "arms": arms,
        "comparisons": compare(
            compared,
            live.control,
            reward,
            alpha=alpha,
            tuning=tuning,
            summaries=estimate.summaries,
        ),
        "estimator": estimate.to_dict(),
        "cuped": analysis["cuped"],
        "ratio_metrics": analysis["ratio_metrics"],
        "srm": {"p_value": srm_p, "mismatch": srm_p is not None and srm_p < SRM_ALPHA},
        "stopping": live.stopping.to_dict() if live.stopping else None,
        "recommendation": live.recommendation,
        "guardrails": [vars(check) for check in live.guardrail_checks],
        "ramp": _ramp(live),
        "timeline": [dict(row) for row in timeline],
        "audit": None if audit is None else [_audit_entry(entry) for entry in audit],
        "drift": drift,
        "closed_loop": _closed_loop(live, retraining),
        "offpolicy": offpolicy,
        "mlflow_run_id": live.mlflow_run_id,
    }


def _closed_loop(
    live: LiveExperiment, retraining: Sequence[dict[str, Any]] | None
) -> dict[str, Any] | None:
    if retraining is None and live.config.parent is None:
        return None
    return {
        "parent": live.config.parent,
        "delegate": live.delegate,
        "retraining": [dict(run) for run in retraining or ()],
    }


def _ramp(live: LiveExperiment) -> dict[str, Any] | None:
    ramp = live.config.ramp
    if ramp is None:
        return None
    percent = 100.0 * float(
        next(arm.weight or 0.0 for arm in live.config.arms if arm.name == ramp.arm)
    )
    return {
        "arm": ramp.arm,
        "steps": list(ramp.steps),
        "step": ramp_step(percent, ramp.steps),
        "percent": percent,
        "min_samples": ramp.min_samples,
        "requests_in_step": live.period_counts.get(ramp.arm, ArmCounts()).pulls,
    }


def _audit_entry(entry: dict[str, Any]) -> dict[str, Any]:
    detail = entry.get("detail")
    return {
        "at": entry["at"],
        "action": entry["action"],
        "actor": entry["actor"],
        "detail": json.loads(detail) if isinstance(detail, str) else detail,
    }
