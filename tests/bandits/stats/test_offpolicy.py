from __future__ import annotations

import math

import numpy as np
import pytest

from bandits.stats import (
    ProportionStats,
    SampleStats,
    ips_estimate,
    period_weighted_means,
    welch_ttest,
)


def _logs(rng: np.random.Generator, n: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """A logging policy whose propensity of 'a' depends on a context that also drives reward."""
    context = rng.random(n)
    p_a = np.where(context < 0.5, 0.8, 0.2)
    chose_a = rng.random(n) < p_a
    reward = rng.binomial(1, np.where(chose_a, 0.2 + 0.6 * context, 0.3 + 0.4 * context))
    arms = ["a" if c else "b" for c in chose_a]
    prop = np.where(chose_a, p_a, 1 - p_a)
    return arms, reward.astype(float), prop


def test_closed_form_small_log() -> None:
    arms, rewards, props = ["a", "b", "a", "b", "a"], [1.0, 0.0, 0.0, 1.0, 2.0], [
        0.5, 0.5, 0.8, 0.2, 0.25]  # fmt: skip
    e = ips_estimate(arms, rewards, props, "a")
    wr = np.array([2.0, 0.0, 0.0, 0.0, 8.0])
    w = np.array([2.0, 0.0, 1.25, 0.0, 4.0])
    assert e.horvitz_thompson == pytest.approx(wr.mean(), rel=1e-15)
    assert e.horvitz_thompson_se == pytest.approx(wr.std(ddof=1) / math.sqrt(5), rel=1e-12)
    hajek = wr.sum() / w.sum()
    assert e.hajek == pytest.approx(hajek, rel=1e-15)
    lin = np.sqrt((w**2 * (np.array(rewards) - hajek) ** 2).sum() / 20) / w.mean()
    assert e.hajek_se == pytest.approx(lin, rel=1e-12)
    assert (e.n_records, e.n_arm) == (5, 3)


def test_uniform_propensity_reduces_to_plain_means() -> None:
    rng = np.random.default_rng(1)
    arms = list(rng.choice(["a", "b"], size=400))
    r = rng.normal(size=400)
    e = ips_estimate(arms, r, np.full(400, 0.5), "a")
    mask = np.array(arms) == "a"
    assert e.hajek == pytest.approx(r[mask].mean(), rel=1e-12)
    assert e.horvitz_thompson == pytest.approx(r[mask].sum() / 0.5 / 400, rel=1e-12)


def test_ipw_is_unbiased_where_the_naive_mean_is_not() -> None:
    rng = np.random.default_rng(7)
    truth = {"a": 0.2 + 0.6 * 0.5, "b": 0.3 + 0.4 * 0.5}  # E over uniform context
    ht, hj, naive, ht_se, hj_se = [], [], [], [], []
    for _ in range(300):
        arms, r, p = _logs(rng, 400)
        e = ips_estimate(arms, r, p, "a")
        ht.append(e.horvitz_thompson)
        hj.append(e.hajek)
        ht_se.append(e.horvitz_thompson_se)
        hj_se.append(e.hajek_se)
        naive.append(r[np.array(arms) == "a"].mean())
    assert np.mean(ht) == pytest.approx(truth["a"], abs=3 * np.std(ht) / math.sqrt(300))
    assert np.mean(hj) == pytest.approx(truth["a"], abs=3 * np.std(hj) / math.sqrt(300) + 0.002)
    assert abs(np.mean(naive) - truth["a"]) > 0.05  # confounded by the context
    # Reported standard errors match the spread across replications (within 15 %).
    assert np.mean(ht_se) == pytest.approx(np.std(ht), rel=0.15)
    assert np.mean(hj_se) == pytest.approx(np.std(hj), rel=0.15)
    assert np.std(hj) < np.std(ht)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((["a"], [1.0], [0.5], "a"), "at least 2"),
        ((["a", "b"], [1.0], [0.5, 0.5], "a"), "same length"),
        ((["a", "b"], [1.0, 0.0], [0.0, 0.5], "a"), "propensities"),
        ((["a", "b"], [1.0, 0.0], [0.5, 1.5], "a"), "propensities"),
        ((["a", "b"], [math.nan, 0.0], [0.5, 0.5], "a"), "rewards"),
        ((["a", "b"], [1.0, 0.0], [0.5, 0.5], "c"), "no record chose arm 'c'"),
    ],
)
def test_ips_validation(args: tuple, match: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValueError, match=match):
        ips_estimate(*args)


def test_simpsons_paradox_period_weighting_picks_the_right_arm() -> None:
    # A is better than B by 2 points in BOTH periods, but the bandit gave A most of the traffic
    # in the low-conversion period and B most of the traffic in the high-conversion one.
    periods = [
        {"A": ProportionStats(900, 108), "B": ProportionStats(100, 10)},  # 12 % vs 10 %
        {"A": ProportionStats(100, 52), "B": ProportionStats(900, 450)},  # 52 % vs 50 %
    ]
    pooled = {k: periods[0][k] + periods[1][k] for k in ("A", "B")}
    assert pooled["A"].mean == pytest.approx(0.16)
    assert pooled["B"].mean == pytest.approx(0.46)
    assert max(pooled, key=lambda k: pooled[k].mean) == "B"  # naive: wrong arm
    weighted = period_weighted_means(periods)
    assert weighted["A"].mean == pytest.approx(0.32, rel=1e-12)  # (1000 * .12 + 1000 * .52) / 2000
    assert weighted["B"].mean == pytest.approx(0.30, rel=1e-12)
    assert max(weighted, key=lambda k: weighted[k].mean) == "A"  # right arm
    assert welch_ttest(pooled["B"], pooled["A"]).p_value < 1e-30  # and naive is "significant"


def test_period_weighted_closed_form_and_degenerate() -> None:
    p1 = {"x": SampleStats.from_values([1.0, 2.0, 3.0]), "y": SampleStats.from_values([5.0, 7.0])}
    p2 = {"x": SampleStats.from_values([4.0, 6.0]), "z": SampleStats(0, 0.0, 0.0)}
    r = period_weighted_means([p1, p2])
    w1, w2 = 5.0, 2.0
    assert r["x"].mean == pytest.approx((w1 * 2.0 + w2 * 5.0) / 7, rel=1e-15)
    se2 = (w1 / 7) ** 2 * 1.0 / 3 + (w2 / 7) ** 2 * 2.0 / 2
    assert r["x"].se == pytest.approx(math.sqrt(se2), rel=1e-12)
    assert (r["x"].n, r["x"].periods) == (5, 2)
    assert (r["y"].mean, r["y"].periods) == (6.0, 1)  # absent from period 2
    assert (r["z"].mean, r["z"].se, r["z"].n, r["z"].periods) == (0.0, 0.0, 0, 0)
    with pytest.raises(ValueError, match=r"periods\[0\]\['q'\]"):
        period_weighted_means([{"q": 3.0}])  # type: ignore[dict-item]
