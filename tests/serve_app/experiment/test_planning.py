"""Planning from an experiment's own traffic, against closed forms and statsmodels."""

from __future__ import annotations

import math
import time

import pytest
from statsmodels.stats.power import NormalIndPower

from bandits import ArmStats
from bandits.stats import SampleStats, plan_bayesian, plan_sequential
from serve_app.config import ExperimentConfig
from serve_app.experiment.live import LiveExperiment
from serve_app.experiment.planning import (
    BAYESIAN_LOOKS,
    PlanError,
    Traffic,
    bayesian_reps,
    make_plan,
    observed_traffic,
    plan_for,
)
from serve_app.experiment.records import ArmCounts

NOW = 1_000_000.0


def test_fixed_horizon_matches_statsmodels_for_an_absolute_mean():
    plan = make_plan(
        Traffic(10.0, 4.0, 500.0, 2, 1000), "continuous", mde=0.5, relative=False, rule="fixed"
    )
    expected = NormalIndPower().solve_power(effect_size=0.5 / 4.0, alpha=0.05, power=0.8)
    fixed = plan["rules"]["fixed"]
    assert fixed["n_per_arm"] == math.ceil(expected)
    assert fixed["days"] == pytest.approx(2 * fixed["n_per_arm"] / 500.0, abs=1e-12)


def test_one_sided_and_more_arms_use_the_bonferroni_level():
    one = make_plan(
        Traffic(10.0, 4.0, None, 3, 0),
        "continuous",
        mde=0.5,
        relative=False,
        alternative="greater",
        rule="fixed",
    )
    # one-sided at 0.05 / 2 per comparison = two-sided at 0.05
    expected = NormalIndPower().solve_power(effect_size=0.5 / 4.0, alpha=0.05, power=0.8)
    assert one["rules"]["fixed"]["n_per_arm"] == math.ceil(expected)
    assert one["rules"]["fixed"]["days"] is None


def test_the_stopping_rules_are_the_library_plans_with_capped_simulation():
    traffic = Traffic(0.10, None, 2000.0, 2, 800)
    started = time.perf_counter()
    plan = make_plan(traffic, "binary", mde=0.10)
    assert time.perf_counter() - started < 5.0
    sequential = plan_sequential(0.10, 0.10, daily_traffic=2000.0, min_samples_per_arm=100)
    bayesian = plan_bayesian(
        0.10,
        0.10,
        daily_traffic=2000.0,
        prob_best=0.95,
        expected_loss=0.001,
        reps=bayesian_reps(2),
        looks=BAYESIAN_LOOKS,
        seed=0,
    )
    assert plan["rules"]["sequential"]["n_per_arm"] == math.ceil(sequential.n_per_arm)
    assert plan["rules"]["bayesian"]["n_per_arm"] == math.ceil(bayesian.n_per_arm)
    assert plan["rules"]["sequential"]["days"] == pytest.approx(sequential.days)
    text = plan["summary"]
    assert text.startswith("To detect a 10% relative lift with 80% power you need ~")
    assert "users per arm" in text
    assert "decisions/day" in text


def test_missing_or_impossible_inputs_name_the_field():
    with pytest.raises(PlanError) as caught:
        make_plan(Traffic(None, None, None, 2, 0), "binary", mde=0.1)
    assert caught.value.field == "baseline"
    with pytest.raises(PlanError) as caught:
        make_plan(Traffic(1.0, None, None, 2, 5), "binary", mde=0.1)
    assert caught.value.field == "baseline"
    with pytest.raises(PlanError) as caught:
        make_plan(Traffic(3.0, None, None, 2, 1), "continuous", mde=0.1)
    assert caught.value.field == "sd"
    # a rule that cannot reach the power says why instead of failing the plan
    plan = make_plan(Traffic(0.5, None, None, 2, 10), "binary", mde=1.5, rule="fixed")
    assert "error" in plan["rules"]["fixed"]


def test_observed_traffic_reads_the_control_and_the_decisions_per_day():
    control = SampleStats.from_values([1.0, 3.0, 5.0])
    seen = observed_traffic(control, "continuous", 3000, NOW - 43_200, NOW, 2)
    assert seen.baseline == 3.0
    assert seen.sd == 2.0
    assert seen.daily_traffic == pytest.approx(6000.0)
    assert observed_traffic(control, "continuous", 0, None, NOW, 2).daily_traffic is None


def test_plan_for_a_live_experiment_uses_its_own_numbers():
    config = ExperimentConfig.model_validate(
        {
            "name": "exp",
            "policy": {"name": "fixed"},
            "arms": [
                {"name": "a", "model_uri": "/m/a", "weight": 0.5},
                {"name": "b", "model_uri": "/m/b", "weight": 0.5},
            ],
        }
    )
    stats = {"a": ArmStats(500, 400, 40.0, 40.0), "b": ArmStats(500, 400, 44.0, 44.0)}
    live = LiveExperiment.create(
        config,
        1,
        stats,
        status="running",
        started_at=NOW - 86_400 / 2,
        counts={"a": ArmCounts(pulls=500), "b": ArmCounts(pulls=500)},
    )
    plan = plan_for(live, NOW, mde=0.2, rule="fixed")
    assert plan["inputs"]["baseline"] == pytest.approx(0.1)
    assert plan["inputs"]["daily_traffic"] == pytest.approx(2000.0)
    assert plan["inputs"]["control_feedback"] == 400
    override = plan_for(live, NOW, mde=0.2, rule="fixed", baseline=0.2, daily_traffic=10.0)
    assert override["inputs"]["baseline"] == 0.2
    assert override["rules"]["fixed"]["n_per_arm"] < plan["rules"]["fixed"]["n_per_arm"]


def test_pathological_inputs_answer_quickly_with_a_reason():
    cases = [
        (Traffic(0.999999, None, 1000.0, 2, 10), {"mde": 1e-6, "relative": False}),
        (Traffic(0.01, None, 1000.0, 2, 10), {"mde": 0.03}),
        (Traffic(0.5, None, 1000.0, 2, 10), {"mde": 1e-300}),
        (Traffic(0.5, None, 1000.0, 20, 10), {"mde": 0.1, "power": 0.99, "alpha": 1e-6}),
    ]
    for traffic, options in cases:
        started = time.perf_counter()
        plan = make_plan(traffic, "binary", **options)
        assert time.perf_counter() - started < 4.0, options
        for row in plan["rules"].values():
            assert "error" in row or row["n_per_arm"] > 0
    plan = make_plan(cases[1][0], "binary", **cases[1][1])
    assert "does not reach power" in plan["rules"]["sequential"]["error"]
    assert "error" in make_plan(cases[2][0], "binary", **cases[2][1])["rules"]["fixed"]
