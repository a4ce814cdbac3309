"""The /metrics text: parses with prometheus-client's parser and carries every series."""

from __future__ import annotations

import math

from prometheus_client.parser import text_string_to_metric_families

from serve_app.experiment.records import LATENCY_BUCKETS, LatencyHistogram, latency_bucket
from serve_app.state.prometheus import SERIES, exported_names, render

HISTOGRAM = [0] * (len(LATENCY_BUCKETS) + 1)
HISTOGRAM[0], HISTOGRAM[3], HISTOGRAM[-1] = 2, 5, 1


def experiment(**overrides):
    summary = {
        "name": "exp",
        "status": "paused",
        "arms": [
            {
                "name": "a",
                "requests": 10,
                "errors": 1,
                "fallbacks": 1,
                "feedback": 8,
                "reward_sum": 6.0,
                "reward_mean": 0.75,
                "weight": 0.6,
                "prob_best": 0.7,
            },
            {
                "name": "b",
                "requests": 5,
                "errors": 0,
                "fallbacks": 0,
                "feedback": 5,
                "reward_sum": 2.0,
                "reward_mean": 0.4,
                "weight": 0.4,
                "prob_best": 0.3,
            },
        ],
        "shadows": [
            {"name": "s", "requests": 7, "errors": 1, "timeouts": 2, "dropped": 3, "agreement": 0.5}
        ],
        "latency": {"a": LatencyHistogram(tuple(HISTOGRAM), 12.5)},
        "circuit_open": {"b": 2},
        "guardrail_breached": {"a": True},
        "srm_p_value": 0.25,
        "drift": {"alert": True},
        "drift_features": {"f0": 0.31, "f1": 0.02},
        "drift_arms": {"a": 0.05},
        "concept_arms": {
            "a": {"alarm": True, "statistic": 6.0, "threshold": 12.0, "labels": None},
            "b": {"alarm": False, "statistic": 0.0, "threshold": 12.0, "labels": {"drifted": True}},
        },
        "decision_log_rows": 42,
        "retrain": {"running": True, "ended": {"succeeded": 2, "timed_out": 1}},
        "delegate": "exp-r3",
    }
    summary.update(overrides)
    return summary


def parse(text: bytes) -> dict[str, list]:
    samples: dict[str, list] = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples


def value(samples, name, **labels) -> float:
    for sample in samples[name]:
        if all(sample.labels.get(k) == v for k, v in labels.items()):
            return sample.value
    raise KeyError((name, labels))


def test_every_documented_series_is_rendered_and_parses():
    state = {
        "bandit_state_restore_problems": 2.0,
        "bandit_state_duplicate_batches": 3.0,
        "bandit_state_report_builds": 5.0,
        "bandit_state_reports_kept": 4.0,
    }
    samples = parse(render([experiment()], state))
    assert exported_names() <= set(samples)
    assert value(samples, "bandit_state_restore_problems") == 2
    assert value(samples, "bandit_state_duplicate_batches_total") == 3
    assert value(samples, "bandit_state_report_builds_total") == 5
    assert value(samples, "bandit_state_reports_kept") == 4
    assert value(samples, "bandit_arm_requests_total", experiment="exp", arm="a") == 10
    assert value(samples, "bandit_arm_concept_drift_alert", experiment="exp", arm="a") == 1
    assert value(samples, "bandit_arm_concept_drift_alert", experiment="exp", arm="b") == 1
    assert value(samples, "bandit_arm_concept_drift_statistic", experiment="exp", arm="a") == 0.5
    assert value(samples, "bandit_experiment_decision_log_rows", experiment="exp") == 42
    assert value(samples, "bandit_retrain_running", experiment="exp") == 1
    assert value(samples, "bandit_retrain_runs_total", experiment="exp", outcome="failed") == 0
    assert value(samples, "bandit_retrain_runs_total", experiment="exp", outcome="timed_out") == 1
    assert value(samples, "bandit_experiment_delegated", experiment="exp") == 1
    assert value(samples, "bandit_arm_reward_sum_total", arm="b") == 2.0
    assert value(samples, "bandit_arm_weight", arm="a") == 0.6
    assert value(samples, "bandit_arm_circuit_open", arm="b") == 2
    assert value(samples, "bandit_arm_circuit_open", arm="a") == 0
    assert value(samples, "bandit_arm_guardrail_breached", arm="a") == 1
    assert value(samples, "bandit_experiment_srm_p_value", experiment="exp") == 0.25
    assert value(samples, "bandit_experiment_status", status="paused") == 1
    assert value(samples, "bandit_experiment_status", status="running") == 0
    assert value(samples, "bandit_shadow_agreement", shadow="s") == 0.5
    assert value(samples, "bandit_shadow_timeouts_total", shadow="s") == 2
    assert value(samples, "bandit_shadow_dropped_total", shadow="s") == 3


def test_latency_histogram_is_cumulative():
    samples = parse(render([experiment()]))
    buckets = {
        sample.labels["le"]: sample.value
        for sample in samples["bandit_arm_latency_seconds_bucket"]
        if sample.labels["arm"] == "a"
    }
    assert buckets[repr(LATENCY_BUCKETS[0])] == 2
    assert buckets[repr(LATENCY_BUCKETS[3])] == 7
    assert buckets["+Inf"] == 8
    assert value(samples, "bandit_arm_latency_seconds_count", arm="a") == 8
    assert value(samples, "bandit_arm_latency_seconds_sum", arm="a") == 12.5
    assert value(samples, "bandit_arm_latency_seconds_count", arm="b") == 0


def test_missing_optional_values_are_left_out():
    arms = [{**arm, "prob_best": None} for arm in experiment()["arms"]]
    samples = parse(render([experiment(srm_p_value=None, shadows=[], arms=arms)]))
    assert "bandit_experiment_srm_p_value" not in samples
    assert "bandit_shadow_agreement" not in samples
    assert "bandit_arm_prob_best" not in samples  # too little data: no number


def test_latency_bucket_bounds():
    assert latency_bucket(0.0) == 0
    assert latency_bucket(LATENCY_BUCKETS[0]) == 0  # le is inclusive
    assert latency_bucket(LATENCY_BUCKETS[0] * 1.01) == 1
    assert latency_bucket(math.inf) == len(LATENCY_BUCKETS)
    assert set(SERIES) == {name.split("{")[0] for name in SERIES}


def test_drift_series_carry_the_alert_and_each_psi():
    samples = parse(render([experiment()]))
    assert value(samples, "bandit_experiment_drift_alert", experiment="exp") == 1.0
    assert value(samples, "bandit_feature_drift_psi", experiment="exp", feature="f0") == 0.31
    assert value(samples, "bandit_arm_prediction_drift_psi", experiment="exp", arm="a") == 0.05
    untracked = parse(render([experiment(drift=None, drift_features={}, drift_arms={})]))
    assert "bandit_experiment_drift_alert" not in untracked
