from __future__ import annotations

import json
import math
from types import ModuleType

import numpy as np
import pytest
from scipy.special import ndtri
from sklearn.linear_model import Ridge

from bandits.ope import (
    ESTIMATORS,
    BanditLog,
    cross_fit_rewards,
    dm,
    dr,
    fit_rewards,
    fold_ids,
    importance_weights,
    ips,
    select_ridge,
    snips,
)

# Five records over arms a, b; target: a with 0.8, b with 0.2 everywhere.
ACTIONS = ["a", "b", "a", "b", "a"]
PROPS = np.array([0.5, 0.5, 0.8, 0.2, 0.25])
REWARDS = np.array([1.0, 0.0, 0.0, 1.0, 2.0])
TARGET = np.tile([0.8, 0.2], (5, 1))
Q = np.array([[0.5, 0.4], [0.6, 0.1], [0.2, 0.9], [0.3, 0.3], [1.0, 0.0]])


@pytest.fixture
def log() -> BanditLog:
    return BanditLog.from_records(["a", "b"], ACTIONS, PROPS, REWARDS)


def test_closed_forms(log: BanditLog) -> None:
    w = np.array([0.8 / 0.5, 0.2 / 0.5, 0.8 / 0.8, 0.2 / 0.2, 0.8 / 0.25])
    np.testing.assert_allclose(importance_weights(log, TARGET), w)
    z = float(ndtri(0.975))
    phi = w * REWARDS
    e = ips(log, TARGET)
    assert e.value == pytest.approx(phi.mean())
    assert e.se == pytest.approx(phi.std(ddof=1) / math.sqrt(5))
    assert (e.ci_low, e.ci_high) == pytest.approx((e.value - z * e.se, e.value + z * e.se))
    assert e.ess == pytest.approx(w.sum() ** 2 / (w**2).sum())
    assert e.max_weight == pytest.approx(3.2)
    s = snips(log, TARGET)
    v = (w * REWARDS).sum() / w.sum()
    assert s.value == pytest.approx(v)
    assert s.se == pytest.approx(math.sqrt((w**2 * (REWARDS - v) ** 2).sum() / 20) / w.mean())
    d = dm(log, TARGET, Q)
    assert d.value == pytest.approx((0.8 * Q[:, 0] + 0.2 * Q[:, 1]).mean())
    q_logged = Q[np.arange(5), [0, 1, 0, 1, 0]]
    phi_dr = 0.8 * Q[:, 0] + 0.2 * Q[:, 1] + w * (REWARDS - q_logged)
    r = dr(log, TARGET, Q)
    assert r.value == pytest.approx(phi_dr.mean())
    assert r.se == pytest.approx(phi_dr.std(ddof=1) / math.sqrt(5))


def test_snips_matches_the_hajek_estimate_of_bandits_stats(log: BanditLog) -> None:
    from bandits.stats import ips_estimate

    always_a = np.tile([1.0, 0.0], (5, 1))
    reference = ips_estimate(ACTIONS, REWARDS, PROPS, "a")
    assert ips(log, always_a).value == pytest.approx(reference.horvitz_thompson)
    assert ips(log, always_a).se == pytest.approx(reference.horvitz_thompson_se)
    assert snips(log, always_a).value == pytest.approx(reference.hajek)
    assert snips(log, always_a).se == pytest.approx(reference.hajek_se)


def test_clipping(log: BanditLog) -> None:
    e = ips(log, TARGET, clip=1.5)
    w = np.minimum(importance_weights(log, TARGET), 1.5)
    assert e.value == pytest.approx((w * REWARDS).mean())
    assert (e.clip, e.clipped, e.max_weight) == (1.5, 2, pytest.approx(3.2))
    # max |r| * mean((w - M)_+) = 2 * (0.1 + 1.7) / 5
    assert e.clip_bias_bound == pytest.approx(2 * 1.8 / 5)
    assert ips(log, TARGET).clip_bias_bound is None
    assert snips(log, TARGET, clip=1.5).clip_bias_bound is None
    with pytest.raises(ValueError, match=r"clip must be in \(0, inf\)"):
        ips(log, TARGET, clip=0.0)


def test_warnings_for_unreliable_propensities() -> None:
    rng = np.random.default_rng(0)
    n = 2000
    # The logging policy almost never picks "b"; the target always does.
    actions = np.where(rng.random(n) < 0.002, 1, 0)
    props = np.where(actions == 1, 0.002, 0.998)
    log = BanditLog.from_records(["a", "b"], actions, props, rng.random(n))
    e = ips(log, np.tile([0.0, 1.0], (n, 1)))
    assert e.warning
    assert e.reason is not None
    assert "effective sample size" in e.reason
    assert "of the total importance weight" in e.reason
    fine = ips(log, np.tile([1.0, 0.0], (n, 1)))
    assert not fine.warning
    assert fine.reason is None


def test_a_target_disjoint_from_the_log() -> None:
    log = BanditLog.from_records(["a", "b"], ["a", "a", "a"], [1.0, 1.0, 1.0], [1.0, 0.0, 1.0])
    target = np.tile([0.0, 1.0], (3, 1))
    e = snips(log, target)
    assert (e.value, e.se, e.warning) == (0.0, math.inf, True)
    assert e.reason == "the target puts no probability on any logged action"
    assert json.loads(json.dumps(e.to_dict()))["se"] is None


def test_results_are_json_serialisable(log: BanditLog) -> None:
    for estimate in (ips(log, TARGET), snips(log, TARGET), dm(log, TARGET, Q), dr(log, TARGET, Q)):
        d = json.loads(json.dumps(estimate.to_dict()))
        assert d["estimator"] in ESTIMATORS
        assert d["value"] == estimate.value


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda lg: ips(lg, np.ones((5, 3))), r"shape \(N, K\) = \(5, 2\)"),
        (lambda lg: ips(lg, np.full((5, 2), 0.6)), "sum to 1"),
        (lambda lg: ips(lg, -TARGET), ">= 0"),
        (lambda lg: dr(lg, TARGET, np.ones((5, 3))), "rewards_hat must be a finite"),
        (lambda lg: ips(lg, TARGET, level=1.0), r"level must be in \(0, 1\)"),
    ],
)
def test_invalid_inputs(log: BanditLog, call: object, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        call(log)  # type: ignore[operator]


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"actions": ["a", "z"]}, "unknown arm 'z'"),
        ({"propensities": [0.5, 0.0]}, r"propensities must be in \(0, 1\]"),
        ({"rewards": [1.0, np.nan]}, "rewards must be finite"),
        ({"rewards": [1.0]}, "same length"),
        ({"contexts": np.ones((3, 2))}, r"contexts must have shape \(2, d\)"),
    ],
)
def test_log_validation(kwargs: dict[str, object], fragment: str) -> None:
    base: dict[str, object] = {
        "arms": ["a", "b"],
        "actions": ["a", "b"],
        "propensities": [0.5, 0.5],
        "rewards": [1.0, 0.0],
    }
    with pytest.raises(ValueError, match=fragment):
        BanditLog.from_records(**{**base, **kwargs})  # type: ignore[arg-type]


def test_too_few_records() -> None:
    log = BanditLog.from_records(["a"], ["a"], [1.0], [1.0])
    with pytest.raises(ValueError, match="at least 2 records"):
        ips(log, [[1.0]])


def test_reward_model_matches_sklearn_ridge(synthetic: ModuleType) -> None:
    log, _ = synthetic.simulate(600, seed=3)
    assert log.contexts is not None
    rng = np.random.default_rng(0)
    log = BanditLog.from_records(
        log.arms, log.actions, log.propensities, log.rewards,
        log.contexts + rng.normal(scale=0.3, size=log.contexts.shape),
    )  # fmt: skip
    assert log.contexts is not None
    train, predict = np.arange(400), np.arange(400, 600)
    q = fit_rewards(log, train, predict, ridge=3.0)
    base = log.rewards[train].mean()
    features = np.column_stack([np.ones(600), log.contexts])
    for a in range(3):
        mine = train[log.actions[train] == a]
        model = Ridge(alpha=3.0, fit_intercept=False).fit(features[mine], log.rewards[mine] - base)
        np.testing.assert_allclose(q[:, a], base + model.predict(features[predict]), rtol=1e-9)


def test_cross_fitting_predicts_each_record_from_the_other_folds(synthetic: ModuleType) -> None:
    log, _ = synthetic.simulate(300, seed=4)
    ids = fold_ids(300, 3, seed=1)
    q = cross_fit_rewards(log, ids, ridge=2.0)
    for f in range(3):
        held = np.flatnonzero(ids == f)
        expected = fit_rewards(log, np.flatnonzero(ids != f), held, ridge=2.0)
        np.testing.assert_array_equal(q[held], expected)


def test_reward_model_without_contexts_is_a_shrunk_arm_mean() -> None:
    log = BanditLog.from_records(["a", "b"], ["a", "a", "b", "a"], [0.5] * 4, [1.0, 1.0, 0.0, 0.0])
    q = fit_rewards(log, np.arange(4), np.arange(1), ridge=1.0)
    # ybar = 0.5; arm a: 3 records, mean 2/3 -> 0.5 + 3 (2/3 - 0.5) / 4
    assert q[0].tolist() == pytest.approx([0.5 + 3 * (2 / 3 - 0.5) / 4, 0.5 - 0.5 / 2])


def test_select_ridge_prefers_strong_shrinkage_for_noise() -> None:
    rng = np.random.default_rng(5)
    n = 600
    log = BanditLog.from_records(
        ["a", "b"], rng.integers(0, 2, n), np.full(n, 0.5), rng.random(n) < 0.3,
        rng.normal(size=(n, 10)),
    )  # fmt: skip
    lam, q = select_ridge(log, fold_ids(n, 5, seed=0))
    assert lam >= 100
    np.testing.assert_array_equal(q, cross_fit_rewards(log, fold_ids(n, 5, seed=0), ridge=lam))
    with pytest.raises(ValueError, match="at least one"):
        select_ridge(log, fold_ids(n, 5, seed=0), grid=())


def test_fold_ids() -> None:
    ids = fold_ids(103, 5, seed=2)
    assert sorted(np.bincount(ids).tolist()) == [20, 20, 21, 21, 21]
    np.testing.assert_array_equal(ids, fold_ids(103, 5, seed=2))
    with pytest.raises(ValueError, match="folds must be an integer >= 2"):
        fold_ids(10, 1, seed=0)
    with pytest.raises(ValueError, match="at least folds=5 records"):
        fold_ids(3, 5, seed=0)


def test_log_subsets_and_per_arm_statistics(log: BanditLog) -> None:
    part = log.subset(np.array([0, 2, 4]))
    assert part.actions.tolist() == [0, 0, 0]
    assert part.arm_stats()["a"].reward_sum == 3.0
    assert log.arm_stats(np.array([1, 3]))["b"].feedback == 2
    with pytest.raises(ValueError, match="no contexts"):
        log.ridge_stats()
    with pytest.raises(ValueError, match="read-only"):
        log.rewards[0] = 5.0
