"""The lifecycle's decisions without Ray: guardrail rollbacks, ramp steps, stopping actions."""

from __future__ import annotations

from typing import Any

import pytest

from bandits import ArmStats, make_policy
from serve_app.config import ExperimentConfig
from serve_app.experiment.lifecycle import judge, ramp_step
from serve_app.experiment.live import LiveExperiment
from serve_app.experiment.records import ArmCounts

NOW = 1_000_000.0


def live(spec: dict[str, Any], stats: dict[str, ArmStats], **fields: Any) -> LiveExperiment:
    config = ExperimentConfig.model_validate(
        {
            "name": "exp",
            "arms": [{"name": n, "model_uri": f"/m/{n}"} for n in ("control", "b", "c")],
            **spec,
        }
    )
    policy = make_policy(config.policy.name, config.arm_names, config.policy_params(1), seed=0)
    policy.set_stats({arm: stats.get(arm, ArmStats()) for arm in config.arm_names})
    counts = {arm: ArmCounts(pulls=s.pulls) for arm, s in stats.items()}
    values = {"status": "running", "started_at": NOW - 10, "period_started_at": NOW - 10}
    values.update(fields)
    return LiveExperiment(
        config=config,
        revision=1,
        outcome=None,
        winner=None,
        policy=policy,
        counts=counts,
        shadows={},
        **values,
    )


def bern(n: int, rate: float) -> ArmStats:
    return ArmStats(n, n, n * rate, n * rate)


def kinds(judgement) -> list[tuple[str, str | None]]:
    return [(action.kind, action.arm) for action in judgement.actions]


STOPPING = {"stopping": {"min_samples_per_arm": 100, "prob_best": 0.95, "expected_loss": 0.005}}
EVEN = {"control": bern(2000, 0.10), "b": bern(2000, 0.10), "c": bern(2000, 0.10)}


def test_a_clear_winner_is_promoted_and_a_best_control_is_a_rollback():
    stats = {"control": bern(2000, 0.10), "b": bern(2000, 0.16), "c": bern(2000, 0.11)}
    assert kinds(judge(live(STOPPING, stats), NOW)) == [("promote", "b")]
    stats = {"control": bern(2000, 0.20), "b": bern(2000, 0.10), "c": bern(2000, 0.11)}
    assert kinds(judge(live(STOPPING, stats), NOW)) == [("rollback", None)]


def test_no_answer_keeps_running_until_max_duration_then_stops():
    spec = {"stopping": {**STOPPING["stopping"], "max_duration_s": 3600}}
    assert kinds(judge(live(spec, EVEN), NOW)) == []
    expired = judge(live(spec, EVEN, started_at=NOW - 3601), NOW)
    assert kinds(expired) == [("stop", None)]
    assert "no answer after 3601 s" in expired.actions[0].reason


def test_recommend_only_records_the_decision_once():
    spec = {"stopping": {**STOPPING["stopping"], "action": "recommend"}}
    stats = {"control": bern(2000, 0.10), "b": bern(2000, 0.16), "c": bern(2000, 0.11)}
    first = judge(live(spec, stats), NOW)
    assert kinds(first) == [("recommend", "b")]
    standing = {"winner": "b", "reason": first.actions[0].reason}
    assert kinds(judge(live(spec, stats, recommendation=standing), NOW)) == []


def test_paused_drafts_and_concluded_experiments_are_judged_but_never_acted_on():
    stats = {"control": bern(2000, 0.10), "b": bern(2000, 0.16), "c": bern(2000, 0.11)}
    for status in ("draft", "paused", "concluded"):
        judgement = judge(live(STOPPING, stats, status=status), NOW)
        assert judgement.actions == []
        assert judgement.stopping is not None
        assert judgement.stopping.winner == "b"


def test_guardrail_breach_excludes_the_arm_and_the_last_challenger_rolls_back():
    spec = {"guardrails": {"max_error_rate": 0.05, "min_requests": 100}}
    stats = {"control": bern(500, 0.1), "b": bern(500, 0.1), "c": bern(500, 0.1)}
    experiment = live(spec, stats)
    experiment.counts["b"] = ArmCounts(pulls=500, errors=100)
    assert kinds(judge(experiment, NOW)) == [("exclude", "b")]
    assert "error rate 20.00%" in judge(experiment, NOW).actions[0].reason
    experiment.excluded = {"b": "breach"}
    experiment.counts["c"] = ArmCounts(pulls=500, errors=60)
    assert kinds(judge(experiment, NOW)) == [("exclude", "c"), ("rollback", None)]


def test_auto_rollback_off_reports_the_breach_without_acting():
    spec = {"guardrails": {"max_error_rate": 0.05, "auto_rollback": False}}
    experiment = live(spec, {"control": bern(500, 0.1), "b": bern(500, 0.1)})
    experiment.counts["b"] = ArmCounts(pulls=500, errors=100)
    judgement = judge(experiment, NOW)
    assert judgement.actions == []
    assert [(c.arm, c.breached) for c in judgement.guardrails if c.breached] == [("b", True)]


RAMP = {
    "policy": {"name": "fixed"},
    "ramp": {"arm": "b", "steps": [5, 25, 100], "min_samples": 50, "min_duration_s": 60},
    "guardrails": {"max_error_rate": 0.1, "min_requests": 20},
}


def test_ramp_starts_at_the_first_step_with_the_others_sharing_the_rest():
    experiment = live(RAMP, {})
    weights = {arm.name: arm.weight for arm in experiment.config.arms}
    assert weights == pytest.approx({"control": 0.475, "b": 0.05, "c": 0.475})
    assert ramp_step(5.0, [5, 25, 100]) == 0


def test_ramp_waits_for_samples_and_time_then_steps_then_promotes():
    stats = {"control": bern(1000, 0.1), "b": bern(60, 0.1), "c": bern(1000, 0.1)}
    waiting = live(RAMP, stats, period_counts={"b": ArmCounts(pulls=40)})
    assert judge(waiting, NOW).actions == []  # 40 of 50 samples
    young = live(RAMP, stats, period_counts={"b": ArmCounts(pulls=60)}, period_started_at=NOW)
    assert judge(young, NOW).actions == []  # 0 of 60 s
    ready = live(RAMP, stats, period_counts={"b": ArmCounts(pulls=60)}, period_started_at=0.0)
    step = judge(ready, NOW).actions
    assert kinds(judge(ready, NOW)) == [("ramp", "b")]
    assert step[0].weights == pytest.approx({"control": 0.375, "b": 0.25, "c": 0.375})
    spec = {**RAMP, "arms": [
        {"name": "control", "model_uri": "/m/control", "weight": 0.375},
        {"name": "b", "model_uri": "/m/b", "weight": 0.25},
        {"name": "c", "model_uri": "/m/c", "weight": 0.375},
    ]}  # fmt: skip
    last = live(spec, stats, period_counts={"b": ArmCounts(pulls=60)}, period_started_at=0.0)
    assert kinds(judge(last, NOW)) == [("promote", "b")]


@pytest.mark.parametrize(
    ("missing", "pulls", "routed", "started"),
    [
        ("min_samples", 49, 1000, 0.0),  # all else met: 49 of 50 canary requests in the step
        ("min_duration_s", 60, 1000, NOW - 59),  # 59 of 60 s in the step
        ("guardrails judged", 60, 19, 0.0),  # 19 of the guardrails' 20 routed calls
    ],
)
def test_each_ramp_condition_alone_holds_the_step(missing, pulls, routed, started):
    stats = {"control": bern(1000, 0.1), "b": bern(routed, 0.1), "c": bern(1000, 0.1)}
    held = live(RAMP, stats, period_counts={"b": ArmCounts(pulls=pulls)}, period_started_at=started)
    held.counts["b"] = ArmCounts(pulls=routed)
    assert judge(held, NOW).actions == [], missing
    met = live(RAMP, stats, period_counts={"b": ArmCounts(pulls=60)}, period_started_at=0.0)
    met.counts["b"] = ArmCounts(pulls=max(routed, 20))
    assert kinds(judge(met, NOW)) == [("ramp", "b")]


def test_forced_requests_do_not_count_toward_a_ramp_or_its_guardrails():
    stats = {"control": bern(1000, 0.1), "b": bern(0, 0.1), "c": bern(1000, 0.1)}
    forced_only = live(
        RAMP, stats, period_counts={"b": ArmCounts(forced=500)}, period_started_at=0.0
    )
    forced_only.counts["b"] = ArmCounts(forced=500, forced_errors=500)
    judgement = judge(forced_only, NOW)
    assert judgement.actions == []  # no routed samples, and no breach from forced errors
    assert not any(check.breached for check in judgement.guardrails)


def test_a_breaching_canary_rolls_the_experiment_back():
    stats = {"control": bern(1000, 0.1), "b": bern(60, 0.1), "c": bern(1000, 0.1)}
    experiment = live(RAMP, stats, period_counts={"b": ArmCounts(pulls=60)}, period_started_at=0)
    experiment.counts["b"] = ArmCounts(pulls=60, errors=30)
    assert kinds(judge(experiment, NOW)) == [("exclude", "b"), ("rollback", None)]
