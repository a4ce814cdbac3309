"""Planning of the product's stopping rules, checked against simulations of the rules on data.

The simulations here re-implement the rules on raw (binomial or Normal) data, looking every
few observations as the product does, and spot-check their vectorised statistics against the
library's own functions; the planners are then compared with them within Monte Carlo error.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

import bandits.stats.planning as planning
from bandits.stats import (
    ProportionStats,
    SampleStats,
    StoppingPlan,
    plan_bayesian,
    plan_sequential,
    prob_best,
    sample_size,
    sequential_rho,
    sequential_test,
)


def _sequential_p(
    s_a: np.ndarray, s_b: np.ndarray, v_a: np.ndarray, v_b: np.ndarray, n: np.ndarray, alt: str
) -> np.ndarray:
    """sequential_test's relative p-values from per-arm sums and variances at size n per arm
    (vectorised from its docstring; spot-checked below)."""
    m_a, m_b = s_a / n, s_b / n
    degenerate = (m_a == 0) | (v_a + v_b == 0)  # sequential_test's NO_EVIDENCE: p = 1
    m_a = np.where(degenerate, 1.0, m_a)
    var = v_b / (n * m_a**2) + m_b**2 * v_a / (n * m_a**4)
    var = np.where(degenerate, 1.0, var)
    d = (m_b - m_a) / np.abs(m_a)
    total = 2 * n
    s = total * d / np.sqrt(total * var)
    if alt == "two-sided":
        rho2 = sequential_rho(0.05, 5000) ** 2
        nr2 = total * rho2
        p = np.minimum(1, np.sqrt(nr2 + 1) * np.exp(-rho2 * s * s / (2 * (nr2 + 1))))
    else:
        rho = sequential_rho(0.05, 5000, one_sided=True)
        nr2 = total * rho**2
        x = rho * s / np.sqrt(1 + nr2)
        log_m = math.log(2) - 0.5 * np.log1p(nr2) + 0.5 * x * x + stats.norm.logcdf(x)
        p = np.where(x > 0, np.exp(-np.maximum(log_m, 0)), 1.0)
    return np.where(degenerate, 1.0, p)


def _first(hit: np.ndarray) -> np.ndarray:
    return np.where(hit.any(axis=1), hit.argmax(axis=1), hit.shape[1])


def _monitor_proportions(
    p0: float, p1: float, horizon: float, alternative: str, reps: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """The product's relative sequential test on binomial data, checked every 2 users per arm
    (in chunks of 250 experiments): per experiment the size at the stop (inf if none by the
    horizon) and whether B was the better one then."""
    sizes = np.arange(100, math.ceil(horizon) + 2, 2, dtype=float)
    batches = np.diff(sizes, prepend=0.0).astype(int)
    rng = np.random.default_rng(seed)
    at, b_better = [], []
    for _ in range(reps // 250):
        s_a = np.cumsum(rng.binomial(batches, p0, (250, sizes.size)), axis=1).astype(float)
        s_b = np.cumsum(rng.binomial(batches, p1, (250, sizes.size)), axis=1).astype(float)
        v_a, v_b = (s_a / sizes) * (1 - s_a / sizes), (s_b / sizes) * (1 - s_b / sizes)
        p = _sequential_p(s_a, s_b, v_a, v_b, sizes, alternative)
        for rep, look in ((0, 0), (5, 40), (77, sizes.size - 1), (249, 300)):
            a = ProportionStats(int(sizes[look]), s_a[rep, look])
            b = ProportionStats(int(sizes[look]), s_b[rep, look])
            ref = sequential_test(a, b, alternative=alternative).p_value
            assert p[rep, look] == pytest.approx(ref, rel=1e-9, abs=1e-300)
        stop = _first(p <= 0.05)
        idx = np.minimum(stop, sizes.size - 1)
        rows = np.arange(250)
        at.append(np.where(stop < sizes.size, sizes[idx], np.inf))
        b_better.append(s_b[rows, idx] > s_a[rows, idx])
    return np.concatenate(at), np.concatenate(b_better)


@pytest.mark.slow
@pytest.mark.parametrize("alternative", ["two-sided", "greater"])
def test_sequential_plan_matches_simulated_monitoring(alternative: str) -> None:
    """10 % -> 12 % conversion, the product's relative test checked every 2 users per arm:
    2,000 simulated experiments stop with the right winner by the planned horizon, and by
    fractions of it, as often as planned, and their median and average durations are the
    planned ones (measured: see the report of the lead's issue)."""
    plan = plan_sequential(0.10, 0.20, alternative=alternative)
    reps = 2000
    at, b_better = _monitor_proportions(0.10, 0.12, plan.n_per_arm, alternative, reps, seed=31)
    right = np.isfinite(at) & b_better
    for fraction in (0.25, 0.5, 0.75, 1.0):
        h = fraction * plan.n_per_arm
        planned = plan_sequential(0.10, 0.20, alternative=alternative, n_per_arm=h).power
        se = math.sqrt(planned * (1 - planned) / reps)
        assert (right & (at <= h)).mean() == pytest.approx(planned, abs=3 * se + 0.005)
    assert float(np.median(at)) == pytest.approx(plan.median_n_per_arm, rel=0.04)
    expected = float(np.minimum(at, plan.n_per_arm).mean())
    assert expected == pytest.approx(plan.expected_n_per_arm, rel=0.02)
    wrong = float((np.isfinite(at) & ~b_better).mean())
    assert wrong == pytest.approx(plan.wrong_winner, abs=3 * math.sqrt(0.005 / reps) + 0.002)


@pytest.mark.slow
def test_sequential_plan_with_three_arms_matches_the_product_rule() -> None:
    """Three arms (one challenger +0.1 sd, one null), the product's rule: any challenger
    significant at alpha / 2 stops the experiment; the best significant one wins. The plan
    (which ignores the null challenger) matches the simulated right-winner rate."""
    plan = plan_sequential(5.0, 0.1, sd=1.0, relative=False, arms=3)
    reps, step = 2000, 20
    sizes = np.arange(100, math.ceil(plan.n_per_arm) + step, step, dtype=float)
    rng = np.random.default_rng(5)
    batches = np.diff(sizes, prepend=0.0)
    means = np.array([5.0, 5.1, 5.0])
    # Exact sufficient statistics of Normal batches: the batch mean and the within sum of
    # squares (chi-square, independent of it).
    bm = rng.normal(means[:, None, None], 1 / np.sqrt(batches), (3, reps, sizes.size))
    within = rng.chisquare(batches - 1, (3, reps, sizes.size))
    sums = np.cumsum(bm * batches, axis=2)
    squares = np.cumsum(within + batches * bm**2, axis=2)
    var = (squares - sums**2 / sizes) / (sizes - 1)
    rho2 = sequential_rho(0.025, 5000) ** 2
    total = 2 * sizes
    p = {}
    for k in (1, 2):
        d = (sums[k] - sums[0]) / sizes
        se2 = (var[0] + var[k]) / sizes
        s2 = total * se2
        log_p = 0.5 * np.log(total * rho2 + 1) - total * total * rho2 * d * d / (
            2 * s2 * (total * rho2 + 1)
        )
        p[k] = np.exp(np.minimum(log_p, 0))
        a = SampleStats(int(sizes[9]), float(sums[0, 3, 9]), float(squares[0, 3, 9]))
        b = SampleStats(int(sizes[9]), float(sums[k, 3, 9]), float(squares[k, 3, 9]))
        ref = sequential_test(a, b, alpha=0.025, relative=False).p_value
        assert p[k][3, 9] == pytest.approx(ref, rel=1e-9)
    better = {k: (p[k] <= 0.025) & (sums[k] > sums[0]) for k in (1, 2)}
    stop = _first(better[1] | better[2])
    idx = np.minimum(stop, sizes.size - 1)
    rows = np.arange(reps)
    ok = stop < sizes.size
    # The winner is the best significantly better challenger at the stop.
    est1 = np.where(better[1][rows, idx], sums[1][rows, idx], -np.inf)
    est2 = np.where(better[2][rows, idx], sums[2][rows, idx], -np.inf)
    right = ok & (est1 >= est2)
    se = math.sqrt(0.8 * 0.2 / reps)
    assert right.mean() == pytest.approx(plan.power, abs=3 * se + 0.01)
    assert (ok & ~right).mean() <= 0.025  # the null challenger: at most alpha / 2


@pytest.mark.slow
def test_sequential_plan_on_growthbook_design_matches_simulation() -> None:
    """GrowthBook's design (mean 10, variance 3910, +5 %, 133,333 per arm, the product's
    relative test from 100 users per arm): the plan's P(right winner by then) and P(wrong
    winner) against 2,000 experiments of Normal data checked every 2 users per arm up to
    2,000, every 20 up to 20,000, every 500 beyond. The coefficient of variation is 6.3, so
    the early checks stop the wrong way about 4 % of the time. The last look alone rejects
    with probability 0.072. (GrowthBook prints 0.20596 there: the fixed-horizon power formula
    with the confidence sequence's width, not a probability of rejecting.)"""
    sd, horizon = math.sqrt(3909.9997749994377), 400_000 / 3
    plan = plan_sequential(10.0, 0.05, sd=sd, n_per_arm=horizon)
    exact = [
        SampleStats(133_333, 133_333 * m, 133_332 * sd**2 + 133_333 * m * m) for m in (10.0, 10.5)
    ]
    seq = sequential_test(exact[0], exact[1])
    half = (seq.ci[1] - seq.ci[0]) / 2
    final = stats.norm.sf((half - 0.05) / seq.se) + stats.norm.cdf((-half - 0.05) / seq.se)
    assert final == pytest.approx(0.0721, abs=1e-4)
    assert final < plan.power
    sizes = np.unique(
        np.concatenate([np.arange(100, 2000, 2), np.arange(2000, 20_000, 20),
                        np.arange(20_000, 133_334, 500)])
    ).astype(float)  # fmt: skip
    batches = np.diff(sizes, prepend=0.0)
    rng = np.random.default_rng(3)
    right, wrong, reps = 0, 0, 2000
    for _ in range(reps // 500):
        sums, squares = [], []
        for mu in (10.0, 10.5):  # exact sufficient statistics of Normal batches
            batch_mean = rng.normal(mu, sd / np.sqrt(batches), (500, sizes.size))
            within = sd**2 * rng.chisquare(batches - 1, (500, sizes.size))
            sums.append(np.cumsum(batches * batch_mean, axis=1))
            squares.append(np.cumsum(within + batches * batch_mean**2, axis=1))
        var = [(q - t**2 / sizes) / (sizes - 1) for t, q in zip(sums, squares, strict=True)]
        p_values = _sequential_p(sums[0], sums[1], var[0], var[1], sizes, "two-sided")
        a = SampleStats(int(sizes[9]), float(sums[0][4, 9]), float(squares[0][4, 9]))
        b = SampleStats(int(sizes[9]), float(sums[1][4, 9]), float(squares[1][4, 9]))
        assert p_values[4, 9] == pytest.approx(sequential_test(a, b).p_value, rel=1e-9)
        stop = _first(p_values <= 0.05)
        idx = np.minimum(stop, sizes.size - 1)
        rows = np.arange(500)
        stopped = stop < sizes.size
        better = sums[1][rows, idx] > sums[0][rows, idx]
        right += int((stopped & better).sum())
        wrong += int((stopped & ~better).sum())
    assert right / reps == pytest.approx(plan.power, abs=3 * math.sqrt(0.12 * 0.88 / reps) + 0.01)
    assert wrong / reps == pytest.approx(plan.wrong_winner, abs=3 * math.sqrt(0.05 * 0.95 / reps))
    assert plan.wrong_winner > 0.03  # a real effect of checking a skewed metric so early


def test_sequential_plan_sizes_against_the_fixed_design() -> None:
    sd = math.sqrt(3909.9997749994377)
    full = plan_sequential(10.0, 0.05, sd=sd)
    assert full.fixed_n_per_arm == pytest.approx(
        sample_size(10.0, 0.05, sd=sd, relative=True).n_control
    )
    assert full.fixed_n_per_arm < full.n_per_arm < 3 * full.fixed_n_per_arm
    assert full.median_n_per_arm < full.n_per_arm


def _bayes_rule(s_a: np.ndarray, s_b: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The product's two-arm Bayesian rule with Beta(1 + s, 1 + n - s) posteriors in the
    Normal approximation (spot-checked against prob_best): (fires, B leads)."""
    a_a, b_a, a_b, b_b = 1 + s_a, 1 + n - s_a, 1 + s_b, 1 + n - s_b
    mean_a, mean_b = a_a / (a_a + b_a), a_b / (a_b + b_b)
    var_a = a_a * b_a / ((a_a + b_a) ** 2 * (a_a + b_a + 1))
    var_b = a_b * b_b / ((a_b + b_b) ** 2 * (a_b + b_b + 1))
    diff, spread = mean_b - mean_a, np.sqrt(var_a + var_b)
    z = np.abs(diff) / spread
    p_best = stats.norm.cdf(z)
    loss = spread * stats.norm.pdf(z) - np.abs(diff) * stats.norm.sf(z)
    return (p_best >= 0.95) & (loss <= 0.001), diff > 0


def test_bayes_rule_of_the_simulation_is_prob_best() -> None:
    for n, s_a, s_b in ((100, 10, 14), (400, 40, 55), (1500, 150, 170)):
        r = prob_best({"a": ProportionStats(n, s_a), "b": ProportionStats(n, s_b)}, draws=400_000)
        a_a, b_a, a_b, b_b = 1 + s_a, 1 + n - s_a, 1 + s_b, 1 + n - s_b
        diff = a_b / (a_b + b_b) - a_a / (a_a + b_a)
        spread = math.sqrt(
            a_a * b_a / ((a_a + b_a) ** 2 * (a_a + b_a + 1))
            + a_b * b_b / ((a_b + b_b) ** 2 * (a_b + b_b + 1))
        )
        assert r.prob_best["b"] == pytest.approx(stats.norm.cdf(diff / spread), abs=0.004)
        loss = spread * stats.norm.pdf(diff / spread) - diff * stats.norm.sf(diff / spread)
        assert r.expected_loss["b"] == pytest.approx(loss, rel=0.03, abs=2e-5)


@pytest.mark.slow
@pytest.mark.parametrize("check_every", [None, 20])
def test_bayesian_plan_matches_a_simulation_checking_every_user(check_every: int | None) -> None:
    """10 % -> 12 %: 2,000 experiments simulated on binomial data and checked after every
    user per arm (or every 20), against the plan's geometric checks with the continuity
    correction (or its exact checks every 20)."""
    plan = plan_bayesian(0.10, 0.20, check_every=check_every)
    reps, step = 2000, 1 if check_every is None else check_every
    sizes = np.arange(100, math.ceil(plan.n_per_arm) + step, step, dtype=float)
    batches = np.diff(sizes, prepend=0.0).astype(int)
    rng = np.random.default_rng(12)
    at, right = [], []
    for _ in range(reps // 250):
        s_a = np.cumsum(rng.binomial(batches, 0.10, (250, sizes.size)), axis=1).astype(float)
        s_b = np.cumsum(rng.binomial(batches, 0.12, (250, sizes.size)), axis=1).astype(float)
        fires, b_leads = _bayes_rule(s_a, s_b, sizes)
        stop = _first(fires)
        idx = np.minimum(stop, sizes.size - 1)
        at.append(np.where(stop < sizes.size, sizes[idx], np.inf))
        right.append(b_leads[np.arange(250), idx])
    stop_at, b_won = np.concatenate(at), np.concatenate(right)
    by = np.isfinite(stop_at)
    se = math.sqrt(0.8 * 0.2 / reps + 0.8 * 0.2 / 1000)
    assert (by & b_won).mean() == pytest.approx(plan.power, abs=3 * se)
    wrong_se = math.sqrt(0.05 * 0.95 * (1 / reps + 1 / 1000))
    assert (by & ~b_won).mean() == pytest.approx(plan.wrong_winner, abs=3 * wrong_se)
    assert float(np.median(stop_at)) == pytest.approx(plan.median_n_per_arm, rel=0.08)
    expected = float(np.minimum(stop_at, plan.n_per_arm).mean())
    assert expected == pytest.approx(plan.expected_n_per_arm, rel=0.05)


@pytest.mark.slow
def test_bayesian_plan_with_three_arms_matches_prob_best() -> None:
    """Three arms (10 %, 12 %, 10 %), the rule evaluated with prob_best itself (Monte Carlo
    over Beta posteriors) every 100 users per arm, against the plan's quadrature with the
    same checks."""
    plan = plan_bayesian(0.10, 0.20, arms=3, check_every=100)
    reps = 250
    rng = np.random.default_rng(4)
    sizes = np.arange(100, math.ceil(plan.n_per_arm) + 100, 100)
    batches = np.diff(sizes, prepend=0)
    succ = np.cumsum(
        rng.binomial(batches, np.array([0.10, 0.12, 0.10])[:, None, None], (3, reps, sizes.size)),
        axis=2,
    )
    right = 0
    for rep in range(reps):
        for j, n in enumerate(sizes):
            arms = {k: ProportionStats(int(n), int(succ[i, rep, j])) for i, k in enumerate("abc")}
            r = prob_best(arms, draws=4000, seed=rep)
            best = max(r.prob_best, key=r.prob_best.__getitem__)
            if r.prob_best[best] >= 0.95 and r.expected_loss[best] <= 0.001:
                right += best == "b"
                break
    se = math.sqrt(0.8 * 0.2 / reps + 0.8 * 0.2 / 1000)
    assert right / reps == pytest.approx(plan.power, abs=3 * se)


def test_plans_are_consistent_and_monotone() -> None:
    base = plan_sequential(0.10, 0.20, daily_traffic=5000)
    again = plan_sequential(0.10, 0.20, n_per_arm=base.n_per_arm)
    assert again.power == pytest.approx(0.8, abs=1e-9)
    powers = [plan_sequential(0.10, 0.20, n_per_arm=n).power for n in (500, 2000, 5000, 20_000)]
    assert powers == sorted(powers)
    assert plan_sequential(0.10, 0.30).n_per_arm < base.n_per_arm
    assert plan_sequential(0.10, 0.20, alternative="greater").n_per_arm < base.n_per_arm
    assert plan_sequential(0.10, 0.20, arms=3).n_per_arm > base.n_per_arm  # alpha / 2
    assert plan_sequential(0.10, 0.20, power=0.9).n_per_arm > base.n_per_arm
    negative = plan_sequential(0.10, -0.20)  # control wins; the lift's variance differs
    assert negative.power == pytest.approx(0.8)
    assert negative.n_per_arm != base.n_per_arm
    assert base.days == pytest.approx(2 * base.n_per_arm / 5000)
    assert base.expected_days == pytest.approx(2 * base.expected_n_per_arm / 5000)
    assert base.n_total == 2 * base.n_per_arm
    assert plan_sequential(0.10, 0.20).days is None
    bayes = plan_bayesian(0.10, 0.20, seed=3)
    assert bayes == plan_bayesian(0.10, 0.20, seed=3)  # seeded
    assert bayes.rule == "bayesian"
    assert 0.79 < bayes.power < 0.81
    stricter = plan_bayesian(0.10, 0.20, prob_best=0.99, seed=3)
    assert stricter.n_per_arm > bayes.n_per_arm
    assert stricter.wrong_winner < bayes.wrong_winner
    fixed = plan_bayesian(0.10, 0.20, n_per_arm=3000, seed=3)
    assert fixed.n_per_arm == 3000
    assert fixed.power > bayes.power
    means = plan_bayesian(10.0, 0.02, sd=4.0, expected_loss=0.01)
    assert means.power == pytest.approx(0.8, abs=0.01)
    assert isinstance(base, StoppingPlan)


def test_summary_reads_the_plan() -> None:
    p = plan_sequential(0.10, 0.20, daily_traffic=4000)
    text = p.summary()
    assert f"{math.ceil(p.n_per_arm):,} per arm" in text
    assert f"{p.days:.1f} days at 4,000 a day" in text
    assert "+20.00% relative" in text
    assert "power 80%" in text
    assert "fewer than 90% by the horizon" in text  # the horizon holds only 80 % of stops
    long = plan_sequential(0.10, 0.20, n_per_arm=40_000)
    assert "90% by" in long.summary()
    assert "inf" not in long.summary()
    assert "days" not in plan_sequential(0.1, 0.01, relative=False).summary()


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: plan_sequential(0.1, 0.2, arms=1), "arms"),
        (lambda: plan_sequential(0.1, 0.2, power=1.0), "power"),
        (lambda: plan_sequential(0.1, -0.2, arms=3), "no single best arm"),
        (lambda: plan_sequential(0.1, -0.2, alternative="greater"), "cannot detect"),
        (lambda: plan_sequential(0.1, 0.2, alternative="less"), "cannot detect"),
        (lambda: plan_sequential(0.1, 0.2, alpha=0.6, alternative="greater"), "one-sided"),
        (lambda: plan_sequential(0.1, 0.2, n_per_arm=50), "n_per_arm"),
        (lambda: plan_sequential(0.1, 0.2, daily_traffic=0), "daily_traffic"),
        (lambda: plan_sequential(0.1, 0.2, min_samples_per_arm=1), "min_samples_per_arm"),
        (lambda: plan_sequential(0.1, 0.0), "effect must be nonzero"),
        (lambda: plan_bayesian(0.1, 0.2, prob_best=0.5), "prob_best"),
        (lambda: plan_bayesian(0.1, 0.2, expected_loss=0.0), "expected_loss"),
        (lambda: plan_bayesian(0.1, 0.2, reps=10), "reps"),
        (lambda: plan_bayesian(0.1, 0.2, looks=3), "looks"),
    ],
)
def test_planning_validation(call: object, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        call()  # type: ignore[operator]


def test_unreachable_power_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(planning, "_MAX_EXTENSIONS", 0)  # search only the first range
    with pytest.raises(ValueError, match=r"does not reach power 0.8 by .* raise expected_loss"):
        plan_bayesian(0.1, 0.01, expected_loss=1e-12, reps=100)
