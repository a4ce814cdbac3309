"""Experiment metrics in the Prometheus text format, rendered by the state deployment.

Every router replica answers ``GET /metrics`` with the same numbers because one place — the
experiment-state deployment, which merges every router's counts — renders them. The series
(all labelled ``experiment`` and ``arm`` or ``shadow``) are listed in :data:`SERIES`; the
README documents them and the dashboard and alert rules use only these.

Latency is a histogram with :data:`LATENCY_BUCKETS`: routers count calls per bucket and sync
the counts like every other counter, so the quantiles the dashboard shows
(``histogram_quantile``) cover every replica. Counters restart from the store's totals after a
restart, except latency and shadow latency, which live in memory (a Prometheus counter reset,
which ``rate()`` handles).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from serve_app.experiment.live import LiveExperiment
from serve_app.experiment.records import LATENCY_BUCKETS, LatencyHistogram

# name -> (type, labels, help)
SERIES: dict[str, tuple[str, tuple[str, ...], str]] = {
    "bandit_arm_requests": ("counter", ("experiment", "arm"), "Decisions routed to the arm."),
    "bandit_arm_errors": ("counter", ("experiment", "arm"), "Failed or timed-out arm calls."),
    "bandit_arm_fallbacks": (
        "counter",
        ("experiment", "arm"),
        "Requests the default arm answered because this arm failed.",
    ),
    "bandit_arm_feedback": ("counter", ("experiment", "arm"), "Rewards learned from."),
    "bandit_arm_reward_sum": ("counter", ("experiment", "arm"), "Sum of learned rewards."),
    "bandit_arm_latency_seconds": (
        "histogram",
        ("experiment", "arm"),
        "Model call latency seen by the routers.",
    ),
    "bandit_arm_weight": ("gauge", ("experiment", "arm"), "Current routing probability."),
    "bandit_arm_prob_best": ("gauge", ("experiment", "arm"), "Posterior P(arm is best)."),
    "bandit_arm_posterior_mean": ("gauge", ("experiment", "arm"), "Mean reward estimate."),
    "bandit_arm_circuit_open": (
        "gauge",
        ("experiment", "arm"),
        "Router replicas whose circuit for the arm is not closed.",
    ),
    "bandit_arm_guardrail_breached": (
        "gauge",
        ("experiment", "arm"),
        "1 when the arm breaches a configured guardrail.",
    ),
    "bandit_arm_rolled_back": (
        "gauge",
        ("experiment", "arm"),
        "1 when a guardrail breach rolled the arm back (weight 0).",
    ),
    "bandit_experiment_srm_p_value": (
        "gauge",
        ("experiment",),
        "Sample-ratio-mismatch p-value of routed counts against the logged weights.",
    ),
    "bandit_experiment_status": (
        "gauge",
        ("experiment", "status"),
        "1 for the experiment's current status.",
    ),
    "bandit_experiment_drift_alert": (
        "gauge",
        ("experiment",),
        "1 when input or prediction drift is detected (experiments with drift tracking).",
    ),
    "bandit_feature_drift_psi": (
        "gauge",
        ("experiment", "feature"),
        "Population stability index of the feature's live window against its reference.",
    ),
    "bandit_arm_prediction_drift_psi": (
        "gauge",
        ("experiment", "arm"),
        "Population stability index of the arm's live predictions against its reference.",
    ),
    "bandit_arm_concept_drift_alert": (
        "gauge",
        ("experiment", "arm"),
        "1 when the arm's reward dropped against its own reference, or its feedback labels "
        "shifted from its training profile (experiments with concept_drift).",
    ),
    "bandit_arm_concept_drift_statistic": (
        "gauge",
        ("experiment", "arm"),
        "The arm's CUSUM statistic over its alarm threshold (1 raises the alert).",
    ),
    "bandit_experiment_decision_log_rows": (
        "gauge",
        ("experiment",),
        "Rows the experiment's decision log holds (experiments with decision_log).",
    ),
    "bandit_retrain_runs": (
        "counter",
        ("experiment", "outcome"),
        "Retrainings that ended: succeeded (a challenger tests the version), failed, "
        "timed_out, interrupted (a restart).",
    ),
    "bandit_retrain_running": (
        "gauge",
        ("experiment",),
        "1 while a retraining of the experiment runs (experiments with retrain).",
    ),
    "bandit_experiment_delegated": (
        "gauge",
        ("experiment",),
        "1 while a retraining challenger serves the experiment's traffic.",
    ),
    "bandit_shadow_requests": ("counter", ("experiment", "shadow"), "Mirrored calls."),
    "bandit_shadow_errors": ("counter", ("experiment", "shadow"), "Failed mirrored calls."),
    "bandit_shadow_timeouts": (
        "counter",
        ("experiment", "shadow"),
        "Mirrored calls that ran past the shadow's timeout.",
    ),
    "bandit_shadow_dropped": (
        "counter",
        ("experiment", "shadow"),
        "Mirror copies not sent because too many were in flight.",
    ),
    "bandit_shadow_agreement": (
        "gauge",
        ("experiment", "shadow"),
        "Share of rows where the shadow predicted what the served arm predicted.",
    ),
    "bandit_state_restore_problems": (
        "gauge",
        (),
        "Stored rows or experiments the state left out at its last start (see the audit log).",
    ),
    "bandit_state_duplicate_batches": (
        "counter",
        (),
        "Router sync batches received again and acknowledged without being added twice.",
    ),
    "bandit_state_report_builds": (
        "counter",
        (),
        "Reports the state built (a report is kept for 2 s and shared by every request).",
    ),
    "bandit_state_reports_kept": (
        "gauge",
        (),
        "Built reports the state keeps now (at most 64, whatever the requests ask for).",
    ),
}
STATUSES = ("draft", "running", "paused", "concluded")


def exported_names() -> set[str]:
    """Every series name as it appears in the text format (``_total``, ``_bucket`` ...)."""
    names = set()
    for name, (kind, _, _) in SERIES.items():
        if kind == "counter":
            names.add(f"{name}_total")
        elif kind == "histogram":
            names.update(f"{name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
        else:
            names.add(name)
    return names


class _Families:
    """Builds one metric family per series, with its documented type, labels and help."""

    def __init__(self) -> None:
        self.families: dict[str, Metric] = {}
        for name, (kind, labels, help_text) in SERIES.items():
            family_type = {
                "counter": CounterMetricFamily,
                "gauge": GaugeMetricFamily,
                "histogram": HistogramMetricFamily,
            }[kind]
            self.families[name] = family_type(name, help_text, labels=list(labels))

    def add(self, name: str, labels: Iterable[str], value: float) -> None:
        self.families[name].add_metric(list(labels), value)  # type: ignore[attr-defined]

    def add_histogram(self, name: str, labels: Iterable[str], histogram: LatencyHistogram) -> None:
        cumulative, rows = 0.0, []
        for count, bound in zip(histogram.counts, (*LATENCY_BUCKETS, float("inf")), strict=True):
            cumulative += count
            rows.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
        self.families[name].add_metric(list(labels), rows, histogram.sum_s)  # type: ignore[attr-defined]


class _Snapshot:
    """A prometheus-client collector over a list of ready-made families."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterator[Metric]:
        yield from self._families


def experiment_metrics(
    live: LiveExperiment,
    circuits: Iterable[Mapping[str, Mapping[str, str]]],
    retrain: Mapping[str, Any] | None = None,
    decision_log_rows: int | None = None,
) -> dict[str, Any]:
    """One experiment's summary with the metric-only fields :func:`render` takes.

    ``circuits``: each router replica's circuit states (``{experiment: {arm: state}}``);
    ``retrain``: its retrainings (``{"running": bool, "ended": {outcome: n}}``);
    ``decision_log_rows``: the rows its decision log holds.
    """
    name = live.name
    summary = live.summary()
    seen = list(circuits)
    return {
        **summary,
        "latency": dict(live.latency),
        "circuit_open": {
            arm: sum(1 for c in seen if c.get(name, {}).get(arm, "closed") != "closed")
            for arm in live.config.arm_names
        },
        "guardrail_breached": {arm["name"]: arm["guardrail_breached"] for arm in summary["arms"]},
        "drift_features": live.drift.psi_by_feature() if live.drift else {},
        "drift_arms": live.drift.psi_by_arm() if live.drift else {},
        "concept_arms": live.concept.to_dict()["arms"] if live.concept else None,
        "retrain": retrain if live.config.retrain is not None else None,
        "decision_log_rows": decision_log_rows if live.config.decision_log else None,
    }


def render(
    experiments: Iterable[Mapping[str, Any]], state: Mapping[str, float] | None = None
) -> bytes:
    """The text format for experiment summaries extended with the metric-only fields.

    Each mapping is an experiment summary (see ``LiveExperiment.summary``) plus
    ``latency`` ({arm: LatencyHistogram}), ``circuit_open`` ({arm: n}),
    ``guardrail_breached`` ({arm: bool}), ``srm_p_value`` (float or None) and per-shadow
    fields already in the summary. ``state`` holds the label-less ``bandit_state_*``
    series by name.
    """
    families = _Families()
    for series, value in (state or {}).items():
        families.add(series, (), value)
    for experiment in experiments:
        name = experiment["name"]
        for arm in experiment["arms"]:
            labels = (name, arm["name"])
            families.add("bandit_arm_requests", labels, arm["requests"])
            families.add("bandit_arm_errors", labels, arm["errors"])
            families.add("bandit_arm_fallbacks", labels, arm["fallbacks"])
            families.add("bandit_arm_feedback", labels, arm["feedback"])
            families.add("bandit_arm_reward_sum", labels, arm["reward_sum"])
            families.add("bandit_arm_weight", labels, arm["weight"])
            if arm["prob_best"] is not None:
                families.add("bandit_arm_prob_best", labels, arm["prob_best"])
            families.add("bandit_arm_posterior_mean", labels, arm["reward_mean"])
            families.add(
                "bandit_arm_circuit_open", labels, experiment["circuit_open"].get(arm["name"], 0)
            )
            breached = experiment["guardrail_breached"].get(arm["name"], False)
            families.add("bandit_arm_guardrail_breached", labels, float(breached))
            families.add("bandit_arm_rolled_back", labels, float(arm.get("excluded", False)))
            latency = experiment["latency"].get(arm["name"], LatencyHistogram())
            families.add_histogram("bandit_arm_latency_seconds", labels, latency)
        if experiment["srm_p_value"] is not None:
            families.add("bandit_experiment_srm_p_value", (name,), experiment["srm_p_value"])
        for status in STATUSES:
            families.add(
                "bandit_experiment_status", (name, status), float(experiment["status"] == status)
            )
        drift = experiment.get("drift")
        if drift is not None:
            families.add("bandit_experiment_drift_alert", (name,), float(drift["alert"]))
            for feature, value in experiment.get("drift_features", {}).items():
                families.add("bandit_feature_drift_psi", (name, feature), value)
            for arm_name, value in experiment.get("drift_arms", {}).items():
                families.add("bandit_arm_prediction_drift_psi", (name, arm_name), value)
        _closed_loop(families, name, experiment)
        for shadow in experiment["shadows"]:
            labels = (name, shadow["name"])
            families.add("bandit_shadow_requests", labels, shadow["requests"])
            families.add("bandit_shadow_errors", labels, shadow["errors"])
            families.add("bandit_shadow_timeouts", labels, shadow.get("timeouts", 0))
            families.add("bandit_shadow_dropped", labels, shadow.get("dropped", 0))
            if shadow["agreement"] is not None:
                families.add("bandit_shadow_agreement", labels, shadow["agreement"])
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(families.families.values()))  # type: ignore[arg-type]
    return generate_latest(registry)


def _closed_loop(families: _Families, name: str, experiment: Mapping[str, Any]) -> None:
    """Concept drift, the decision log, retraining and delegation of one experiment."""
    for arm, watch in (experiment.get("concept_arms") or {}).items():
        shifted = bool(watch.get("labels") and watch["labels"].get("drifted"))
        alert = bool(watch["alarm"]) or shifted
        families.add("bandit_arm_concept_drift_alert", (name, arm), float(alert))
        threshold = watch["threshold"] or 1.0
        families.add(
            "bandit_arm_concept_drift_statistic", (name, arm), watch["statistic"] / threshold
        )
    if experiment.get("decision_log_rows") is not None:
        families.add(
            "bandit_experiment_decision_log_rows", (name,), experiment["decision_log_rows"]
        )
    retrain = experiment.get("retrain")
    if retrain is not None:
        families.add("bandit_retrain_running", (name,), float(retrain["running"]))
        for outcome in ("succeeded", "failed", "timed_out", "interrupted"):
            families.add("bandit_retrain_runs", (name, outcome), retrain["ended"].get(outcome, 0))
    families.add("bandit_experiment_delegated", (name,), float(bool(experiment.get("delegate"))))
