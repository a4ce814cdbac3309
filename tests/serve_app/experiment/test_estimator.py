"""Which estimator decides: pooled, or period-weighted where the weights changed (Simpson)."""

from __future__ import annotations

from typing import Any

import pytest

from bandits import ArmStats
from bandits.stats import ProportionStats, period_weighted_means
from serve_app.config import ExperimentConfig
from serve_app.experiment.analysis import decision_estimate, evaluate_stopping, metric_stats
from serve_app.experiment.lifecycle import judge
from serve_app.experiment.live import LiveExperiment, verdict
from serve_app.experiment.records import Delta

NOW = 1_000_000.0


def bern(n: int, rate: float) -> ArmStats:
    return ArmStats(0, n, n * rate, n * rate)


# A ramp: the canary had 10 % of the traffic while everything converted at ~10 %, then 90 %
# while everything converted at ~50 % (a seasonal change). In each period the canary is 2
# points WORSE than the control; pooled, it looks 30 points better.
PERIODS = {
    1: {"control": bern(18_000, 0.10), "canary": bern(2_000, 0.08)},
    2: {"control": bern(2_000, 0.50), "canary": bern(18_000, 0.48)},
}


def pooled() -> dict[str, ArmStats]:
    out: dict[str, ArmStats] = {}
    for period in PERIODS.values():
        for arm, stats in period.items():
            out[arm] = out.get(arm, ArmStats()) + stats
    return out


def live(rule: str, **stopping: Any) -> LiveExperiment:
    config = ExperimentConfig.model_validate(
        {
            "name": "ramped",
            "policy": {"name": "fixed"},
            "arms": [
                {"name": "control", "model_uri": "/m/c", "weight": 0.1},
                {"name": "canary", "model_uri": "/m/k", "weight": 0.9},
            ],
            "stopping": {"rule": rule, "min_samples_per_arm": 100, **stopping},
        }
    )
    experiment = LiveExperiment.create(
        config, 2, {}, status="running", started_at=NOW - 100, period_started_at=NOW - 10
    )
    for period, arms in PERIODS.items():
        experiment.apply(Delta(rewards={("ramped", period, arm): s for arm, s in arms.items()}))
    return experiment


def test_period_weighted_summaries_have_the_library_mean_and_se():
    estimate = decision_estimate(pooled(), PERIODS, "binary")
    assert estimate.estimator == "period_weighted"
    assert estimate.periods == 2
    reference = period_weighted_means(
        [{arm: ProportionStats.from_arm_stats(s) for arm, s in p.items()} for p in PERIODS.values()]
    )
    for arm, summary in estimate.summaries.items():
        assert summary.mean == pytest.approx(reference[arm].mean, abs=1e-12)
        assert (summary.variance / summary.n) ** 0.5 == pytest.approx(reference[arm].se, rel=1e-9)
    assert estimate.summaries["control"].mean == pytest.approx(0.30, abs=1e-12)
    assert estimate.summaries["canary"].mean == pytest.approx(0.28, abs=1e-12)


def test_one_period_is_pooled_and_says_so():
    one = {1: PERIODS[1]}
    estimate = decision_estimate(PERIODS[1], one, "binary", adaptive=True)
    assert estimate.estimator == "pooled"
    assert "inverse-propensity" in estimate.reason
    assert estimate.summaries["canary"] == metric_stats(PERIODS[1]["canary"], "binary")


def test_a_contextual_policy_says_its_pooled_means_compare_different_traffic():
    one = {1: PERIODS[1]}
    estimate = decision_estimate(PERIODS[1], one, "binary", adaptive=True, contextual=True)
    assert estimate.estimator == "pooled"
    assert "different traffic" in estimate.reason
    assert "always:<arm>" in estimate.reason


@pytest.mark.parametrize("rule", ["sequential", "bayesian"])
def test_simpson_ramp_pooled_picks_the_worse_arm_the_decision_does_not(rule):
    experiment = live(rule, prob_best=0.95, expected_loss=0.005)
    # what the pooled means would decide: the canary, wrongly
    stats = pooled()
    wrong = evaluate_stopping(
        experiment.config.stopping,
        stats,
        "control",
        "binary",
        10.0,
        verdict(stats, "binary"),
    )
    assert wrong.winner == "canary"
    assert stats["canary"].reward_mean > stats["control"].reward_mean + 0.25
    # what the lifecycle decides: the period-weighted estimator, and the control is better
    judgement = judge(experiment, NOW)
    assert judgement.stopping is not None
    assert judgement.stopping.estimator == "period_weighted"
    assert judgement.stopping.winner != "canary"
    assert ("promote", "canary") not in [(a.kind, a.arm) for a in judgement.actions]
    found = experiment.verdict()
    assert found is not None
    assert found.prob_best["control"] > 0.9
    analysis = experiment.summary()["analysis"]
    assert analysis["estimator"] == "period_weighted"
    assert "Simpson" in analysis["reason"]


def test_the_report_comparisons_use_the_deciding_estimator():
    from serve_app.report.build import build_report

    experiment = live("sequential")
    report = build_report(experiment, [], None, list(PERIODS.values()))
    assert report["estimator"]["estimator"] == "period_weighted"
    (row,) = report["comparisons"]
    assert row["frequentist"]["estimate"] == pytest.approx(0.28 / 0.30 - 1, abs=1e-9)
    assert report["cuped"] is None
    assert report["ratio_metrics"] == []


def test_periods_where_an_arm_has_no_feedback_are_left_out():
    periods = {0: {"control": bern(500, 0.9)}, **PERIODS}
    estimate = decision_estimate(pooled(), periods, "binary")
    assert estimate.estimator == "period_weighted"
    assert estimate.periods == 2
    assert "1 left out" in estimate.reason
    assert estimate.summaries["control"].mean == pytest.approx(0.30, abs=1e-12)


def test_the_report_renders_cuped_ratio_and_estimator():
    from serve_app.experiment.records import CUPED, PairSums
    from serve_app.report.build import build_report
    from serve_app.report.html import render_html
    from serve_app.report.tables import report_tables

    experiment = live("sequential")
    experiment.pairs = {
        "control": {CUPED: PairSums.of([(1.0, 2.0), (0.0, 1.0), (1.0, 3.0)])},
        "canary": {CUPED: PairSums.of([(1.0, 2.5), (0.0, 0.5), (0.0, 1.0)])},
    }
    report = build_report(experiment, [], None, list(PERIODS.values()))
    assert report["cuped"][0]["theta"] is not None
    titles = [str(table.title) for table in report_tables(report)]
    assert any(title.startswith("CUPED") for title in titles)
    page = render_html(report, {})
    assert "<h2>CUPED</h2>" in page
    assert "Estimator: period_weighted" in page
