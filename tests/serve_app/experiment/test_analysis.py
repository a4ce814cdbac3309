"""Comparisons, stopping rules and guardrails, against independent references and seeded
simulations (the lifecycle acts on exactly these functions)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as scipy_stats
from statsmodels.stats.multitest import multipletests

from bandits import ArmStats
from serve_app.config import GuardrailConfig, StoppingConfig
from serve_app.experiment.analysis import (
    compare,
    evaluate_guardrails,
    evaluate_stopping,
    posterior,
)
from serve_app.experiment.live import verdict
from serve_app.experiment.records import LATENCY_BUCKETS, LatencyHistogram, latency_bucket


def bernoulli(n: int, successes: int, pulls: int | None = None) -> ArmStats:
    return ArmStats(pulls or n, n, float(successes), float(successes))


def histogram(latencies_s) -> LatencyHistogram:
    total = LatencyHistogram()
    for value in latencies_s:
        total = total + LatencyHistogram.of(float(value))
    return total


def bucket(seconds: float, count: int) -> LatencyHistogram:
    counts = [0] * (len(LATENCY_BUCKETS) + 1)
    counts[latency_bucket(seconds)] = count
    return LatencyHistogram(tuple(counts), seconds * count)


def stopping(rules, arms, control, reward, elapsed_s):
    return evaluate_stopping(rules, arms, control, reward, elapsed_s, verdict(arms, reward))


def test_quantile_interpolates_inside_the_bucket_like_histogram_quantile():
    # 100 values uniform in (10, 25] ms: all in one bucket, p95 = 10 + 0.95 * 15 ms
    assert bucket(0.02, 100).quantile_ms() == pytest.approx(24.25)
    assert LatencyHistogram().quantile_ms() is None
    assert bucket(1e6, 5).quantile_ms() == 1000 * LATENCY_BUCKETS[-1]


def test_quantile_of_a_histogram_is_within_its_bucket_of_the_exact_quantile():
    rng = np.random.default_rng(0)
    values = rng.lognormal(np.log(0.02), 0.5, size=20_000)
    exact = 1000 * float(np.quantile(values, 0.95))
    estimate = histogram(values).quantile_ms(0.95)
    assert estimate is not None
    upper = 1000 * LATENCY_BUCKETS[latency_bucket(exact / 1000)]
    lower = 1000 * LATENCY_BUCKETS[latency_bucket(exact / 1000) - 1]
    assert lower <= estimate <= upper


def test_beta_posterior_matches_scipy_mean_for_a_uniform_prior():
    post = posterior(bernoulli(200, 50), "binary")
    dist = scipy_stats.beta(post["alpha"], post["beta"])
    assert dist.mean() == pytest.approx(51 / 202, abs=1e-12)
    normal = posterior(ArmStats(10, 4, 10.0, 30.0), "continuous")
    sample = np.array([1.0, 2.0, 3.0, 4.0])  # sum 10, sum of squares 30
    assert normal["mean"] == pytest.approx(2.5)
    assert normal["sd"] == pytest.approx(sample.std(ddof=1) / 2, abs=1e-12)


def test_comparisons_adjust_p_values_with_holm_like_statsmodels():
    arms = {
        "control": bernoulli(1000, 100),
        "b": bernoulli(1000, 130),
        "c": bernoulli(1000, 108),
        "d": bernoulli(1000, 95),
    }
    rows = compare(arms, "control", "binary")
    raw = [row["frequentist"]["p_value"] for row in rows]
    reject, adjusted, _, _ = multipletests(raw, alpha=0.05, method="holm")
    assert [row["frequentist"]["p_value_adjusted"] for row in rows] == pytest.approx(
        list(adjusted), abs=1e-12
    )
    assert [row["frequentist"]["significant"] for row in rows] == list(reject)
    assert [row["arm"] for row in rows] == ["b", "c", "d"]
    # relative lift of b: (0.13 - 0.10) / 0.10
    assert rows[0]["frequentist"]["estimate"] == pytest.approx(0.3)


def test_comparisons_without_data_are_null_not_nan():
    rows = compare({"control": ArmStats(), "b": ArmStats()}, "control", "continuous")
    assert rows == [
        {"arm": "b", "control": "control", "frequentist": None, "bayesian": None,
         "sequential": None}
    ]  # fmt: skip


def run_until_stop(
    rules: StoppingConfig, rates: dict[str, float], rng: np.random.Generator, batch: int, looks: int
) -> tuple[str | None, int]:
    """Feed equal Bernoulli batches per arm, evaluate after each; (winner, samples per arm)."""
    n = dict.fromkeys(rates, 0)
    s = dict.fromkeys(rates, 0)
    for look in range(1, looks + 1):
        for arm, rate in rates.items():
            n[arm] += batch
            s[arm] += int(rng.binomial(batch, rate))
        arms = {arm: bernoulli(n[arm], s[arm]) for arm in rates}
        decision = stopping(rules, arms, "control", "binary", elapsed_s=0.0)
        if decision.met:
            return decision.winner, look * batch
    return None, looks * batch


@pytest.mark.slow
def test_bayesian_rule_stops_with_the_right_winner():
    rules = StoppingConfig(
        rule="bayesian", min_samples_per_arm=200, prob_best=0.95, expected_loss=0.002
    )
    rng = np.random.default_rng(7)
    rates = {"control": 0.10, "b": 0.15, "c": 0.11}
    outcomes = [run_until_stop(rules, rates, rng, batch=100, looks=60) for _ in range(40)]
    winners = [winner for winner, _ in outcomes]
    assert winners.count("b") >= 38, winners  # right in >= 95 % of seeded runs
    assert all(samples >= 200 for _, samples in outcomes)  # never before min_samples


@pytest.mark.slow
def test_sequential_rule_keeps_false_positives_below_alpha_under_continuous_monitoring():
    rules = StoppingConfig(rule="sequential", min_samples_per_arm=10, alpha=0.05, tuning=2000)
    rng = np.random.default_rng(11)
    rates = {"control": 0.2, "b": 0.2}  # A/A: any stop is a false positive
    stops = [run_until_stop(rules, rates, rng, batch=25, looks=80)[0] for _ in range(400)]
    false_positive_rate = sum(winner is not None for winner in stops) / len(stops)
    assert false_positive_rate <= 0.05


def test_sequential_rule_finds_a_real_winner_and_the_control_when_all_are_worse():
    rules = StoppingConfig(rule="sequential", min_samples_per_arm=10, alpha=0.05)
    rng = np.random.default_rng(3)
    winner, _ = run_until_stop(rules, {"control": 0.2, "b": 0.3}, rng, batch=100, looks=50)
    assert winner == "b"
    winner, _ = run_until_stop(rules, {"control": 0.3, "b": 0.2}, rng, batch=100, looks=50)
    assert winner == "control"


def test_no_rule_fires_before_min_samples_and_max_duration_expires():
    rules = StoppingConfig(min_samples_per_arm=1000, max_duration_s=60)
    arms = {"control": bernoulli(500, 10), "b": bernoulli(500, 400)}
    early = stopping(rules, arms, "control", "binary", elapsed_s=10)
    assert not early.met
    assert "fewest feedback per arm 500 of 1000" in early.reason
    late = stopping(rules, arms, "control", "binary", elapsed_s=61)
    assert (late.met, late.expired, late.winner) == (True, True, None)
    assert {rule.name for rule in late.rules} == {
        "min_samples", "prob_best", "expected_loss", "max_duration",
    }  # fmt: skip


def test_error_rate_and_latency_guardrails_judge_challengers_against_the_control():
    rules = GuardrailConfig(max_error_rate=0.05, min_requests=100, max_p95_latency_ratio=1.5)
    fast = bucket(0.008, 200)  # p95 in (5, 10] ms
    slow = bucket(0.2, 200)  # p95 in (100, 250] ms
    checks = evaluate_guardrails(
        rules,
        "control",
        ["b", "c", "d"],
        calls={"control": (200, 0), "b": (200, 20), "c": (200, 1), "d": (50, 40)},
        latency={"control": fast, "b": fast, "c": slow, "d": slow},
        metrics={},
    )
    by = {(check.arm, check.rule): check for check in checks}
    assert by[("b", "error_rate")].breached  # 10 % > 5 %
    assert not by[("b", "p95_latency")].breached
    assert not by[("c", "error_rate")].breached
    assert by[("c", "p95_latency")].breached  # ~243 ms > 1.5 x ~9.8 ms + 5 ms
    assert not by[("d", "error_rate")].breached  # 80 %, but only 50 of 100 calls: not judged
    assert "judged after 100 calls" in by[("d", "error_rate")].detail


def test_metric_guardrail_breaches_only_on_confident_harm_beyond_the_tolerance():
    rules = GuardrailConfig.model_validate(
        {"metrics": [{"name": "refund", "direction": "increase", "max_relative_change": 0.1}]}
    )

    def checks(control_rate: float, arm_rate: float, n: int = 4000):
        metrics = {
            "control": {"refund": bernoulli(n, int(control_rate * n))},
            "b": {"refund": bernoulli(n, int(arm_rate * n))},
        }
        return evaluate_guardrails(rules, "control", ["b"], {}, {}, metrics)[0]

    assert checks(0.10, 0.20).breached  # +100 %, far beyond +10 %
    assert not checks(0.10, 0.105).breached  # +5 %: within tolerance
    assert not checks(0.10, 0.05).breached  # fewer refunds is not harm
    assert checks(0.10, 0.20, n=20).value is None  # too few samples: not judged
