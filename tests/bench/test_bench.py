"""Fast, seeded checks of the benchmark suite's own maths (no Ray, no timing assertions)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from bench.bounds import kl_bernoulli, lai_robbins, lai_robbins_coefficient
from bench.chapelle_li import Environment, run_policy_objects, run_vectorised
from bench.loadgen import ratio_summary
from bench.regret import PolicySpec, Scenario, checkpoints, simulate
from bench.report import REQUIRED_KEYS, write_results


def test_lai_robbins_matches_a_hand_calculation() -> None:
    # Arms 0.5 (best) and 0.25: KL(0.25 || 0.5) = 0.25 ln 0.5 + 0.75 ln 1.5.
    kl = 0.25 * math.log(0.5) + 0.75 * math.log(1.5)
    assert kl_bernoulli(0.25, 0.5) == pytest.approx(kl)
    assert lai_robbins_coefficient([0.5, 0.25]) == pytest.approx(0.25 / kl)
    # Two equal suboptimal arms count twice; the best arm never counts.
    assert lai_robbins_coefficient([0.25, 0.5, 0.25]) == pytest.approx(0.5 / kl)
    assert lai_robbins([0.5, 0.25], [1, math.e, 100]) == pytest.approx(
        [0.0, 0.25 / kl, 0.25 / kl * math.log(100)]
    )
    # Gaussian, known sigma: each arm adds 2 sigma^2 / gap.
    assert lai_robbins_coefficient([1.0, 0.5, 0.0], "gaussian", sigma=2.0) == pytest.approx(
        8.0 / 0.5 + 8.0 / 1.0
    )


def test_regret_is_zero_when_every_arm_is_best() -> None:
    scenario = Scenario("flat", (0.4, 0.4, 0.4))
    for spec in (
        PolicySpec("ts", "thompson", {"weight_draws": 100}, batch=10),
        PolicySpec("ucb", "ucb1"),
    ):
        assert simulate(scenario, spec, 500, seed=1) == [0.0]


def test_regret_of_a_uniform_split_is_linear() -> None:
    # The uniform split pays half the gap per step on average.
    scenario = Scenario("k2", (0.6, 0.4))
    (regret,) = simulate(scenario, PolicySpec("uniform", "fixed"), 4000, seed=2)
    assert regret == pytest.approx(0.2 * 4000 / 2, rel=0.1)


def test_ucb1_regret_grows_like_log_t() -> None:
    scenario = Scenario("k2", (0.9, 0.1))
    at = [250, 500, 1000, 2000, 4000]
    runs = np.array(
        [simulate(scenario, PolicySpec("ucb", "ucb1"), 4000, seed=s, at=at) for s in range(3)]
    )
    mean = runs.mean(axis=0)
    increments = np.diff(mean)  # each doubling of t adds about the same regret
    assert mean[-1] < 0.05 * 0.8 * 4000  # far below a uniform split's 1600
    assert increments.max() < 3 * increments.min() + 2


def test_thompson_batches_are_applied_through_update() -> None:
    # Batch larger than the horizon: the policy never learns, so it stays uniform.
    scenario = Scenario("k2", (1.0, 0.0))
    spec = PolicySpec("ts", "thompson", {"weight_draws": 100}, batch=10_000)
    (regret,) = simulate(scenario, spec, 2000, seed=3)
    assert regret == pytest.approx(1000, rel=0.1)
    learned = PolicySpec("ts", "thompson", {"weight_draws": 100}, batch=10)
    assert simulate(scenario, learned, 2000, seed=3)[0] < 100


def test_checkpoints_are_log_spaced_and_end_at_the_horizon() -> None:
    points = checkpoints(50_000)
    assert points[0] == 1
    assert points[-1] == 50_000
    assert points == sorted(set(points))


@pytest.mark.parametrize("policy", ["thompson", "ucb1"])
@pytest.mark.parametrize("delta", [1, 10])
def test_vectorised_chapelle_li_matches_the_policy_objects(policy: str, delta: int) -> None:
    """Same environments, independent randomness: the regrets agree in distribution."""
    vectorised, objects = [], []
    for seed in range(12):
        env = Environment(1500, k=4, replace_p=2e-3, seed=seed)
        vectorised.append(run_vectorised(env, policy, delta, seed=100 + seed))
        objects.append(run_policy_objects(env, policy, delta, seed=200 + seed))
    # Paired by environment: the mean difference is within noise (two-sided t-test).
    diff = np.array(vectorised) - np.array(objects)
    assert stats.ttest_1samp(diff, 0.0).pvalue > 0.001
    assert np.mean(vectorised) == pytest.approx(np.mean(objects), rel=0.35, abs=15)


def test_vectorised_thompson_chooses_like_the_policy_without_feedback() -> None:
    # No feedback (delta > T), no replacements: both pick uniformly among 3 arms.
    env = Environment(3000, k=3, replace_p=0.0, seed=5)
    env.rates = np.array([1.0, 0.0, 0.0])
    regret_vec = run_vectorised(env, "thompson", 10_000, seed=1)
    regret_obj = run_policy_objects(env, "thompson", 10_000, seed=2)
    expected = 3000 * 2 / 3
    for regret in (regret_vec, regret_obj):
        assert regret == pytest.approx(expected, rel=0.06)


def test_environment_replacements_are_seeded() -> None:
    a, b = Environment(20_000, seed=9), Environment(20_000, seed=9)
    assert a.events == b.events
    assert np.array_equal(a.rates, b.rates)
    assert 5 <= len(a.events) <= 45  # about 20 expected at 1e-3 per step


def test_ratio_summary_skips_non_finite() -> None:
    assert ratio_summary([1.0, float("nan"), 3.0]) == {
        "min": 1.0,
        "median": 2.0,
        "max": 3.0,
        "n": 2,
    }


def test_json_writer_has_the_required_keys(tmp_path: Path) -> None:
    paths = write_results(
        {"meta": {"mode": "test"}, "router_throughput_ratio": float("nan")}, tmp_path
    )
    data = json.loads(paths["json"].read_text())
    for key in REQUIRED_KEYS:
        assert key in data
    assert data["router_throughput_ratio"] is None  # NaN is written as null
    assert paths["md"].read_text().startswith("# bandit-serve benchmarks (test mode)")


def test_docstring_examples() -> None:
    import doctest

    import bench.bounds
    import bench.loadgen
    import bench.regret

    for module in (bench.bounds, bench.loadgen, bench.regret):
        assert doctest.testmod(module).failed == 0
