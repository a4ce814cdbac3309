"""Tiers 1 and 2 for every registered contextual policy: exact seeded values, invariants."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from bandits import Decision, PolicyConfigError
from bandits.contextual import (
    CONTEXTUAL_POLICIES,
    ContextualPolicy,
    LinThompson,
    LinUCB,
    RidgeStats,
    fit_ridge,
    make_contextual_policy,
)

ARMS = ["a", "b", "c"]
X = np.array([[1, 0, 1], [1, 1, 0], [1, 1, 1], [1, 0, 0], [1, 2, 1], [1, 1, 2]], float)
Y = np.array([1, 0, 1, 0, 1, 1], float)
STATS = {
    "a": RidgeStats.from_observations(X[:2], Y[:2]),
    "b": RidgeStats.from_observations(X[2:4], Y[2:4]),
    "c": RidgeStats.from_observations(X[4:], Y[4:]),
}
NAMES = sorted(CONTEXTUAL_POLICIES)


def _contexts(n: int = 30, seed: int = 7) -> np.ndarray:
    ctx = np.random.default_rng(seed).integers(0, 3, size=(n, 3)).astype(float)
    ctx[:, 0] = 1.0
    return ctx


def _policy(name: str, seed: int = 42, **params: float) -> ContextualPolicy:
    policy = make_contextual_policy(name, ARMS, 3, {"floor": 0.05, **params}, seed=seed)
    policy.update(STATS)
    return policy


@pytest.mark.parametrize(
    ("name", "sequence", "first"),
    [
        ("lin_thompson", "bbbabacbaabbbacaccabcaccacabcb", [0.368037, 0.368037, 0.28852]),
        ("lin_ucb", "aacabaacabbbbbaccbbbbbabbcabab", [0.9, 0.9, 0.9]),
    ],
)
def test_pinned_sequence(name: str, sequence: str, first: list[float]) -> None:
    policy = _policy(name)
    decisions = [policy.select(x) for x in _contexts()]
    assert "".join(d.arm for d in decisions) == sequence
    assert [round(d.propensity, 6) for d in decisions[:3]] == first


def test_pinned_probabilities() -> None:
    ts = _policy("lin_thompson").probabilities([1.0, 1.0, 1.0])
    assert {a: round(p, 6) for a, p in ts.items()} == {"a": 0.296989, "b": 0.384858, "c": 0.318153}
    assert _policy("lin_ucb").probabilities([1.0, 1.0, 1.0]) == {"a": 0.05, "b": 0.9, "c": 0.05}


@pytest.mark.parametrize("name", NAMES)
def test_propensity_is_the_probability_of_the_chosen_arm(name: str) -> None:
    policy = _policy(name, seed=3)
    for x in _contexts(40, seed=1):
        probabilities = policy.probabilities(x)
        decision = policy.select(x)
        assert isinstance(decision, Decision)
        assert decision.propensity == probabilities[decision.arm]
        assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-12)
        assert min(probabilities.values()) >= 0.05 - 1e-12


@pytest.mark.parametrize("name", NAMES)
def test_probability_matrix_matches_per_context_probabilities(name: str) -> None:
    policy = _policy(name)
    ctx = np.random.default_rng(0).normal(size=(50, 3))
    matrix = policy.probability_matrix(ctx)
    rows = np.array([list(policy.probabilities(x).values()) for x in ctx])
    np.testing.assert_allclose(matrix, rows, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("floor", [0.0, 0.1, 1 / 3])
def test_choice_frequencies_match_the_probabilities(name: str, floor: float) -> None:
    """The logged propensity is the real routing probability (draws and floor included)."""
    policy = _policy(name, seed=5, floor=floor)
    x = np.array([1.0, 1.0, 0.5])
    p = policy.probabilities(x)
    draws = 20_000
    counts = dict.fromkeys(ARMS, 0)
    for _ in range(draws):
        counts[policy.select(x).arm] += 1
    for arm in ARMS:
        se = np.sqrt(max(p[arm] * (1 - p[arm]), 1e-9) / draws)
        assert counts[arm] / draws == pytest.approx(p[arm], abs=5 * se + 1e-9)


@pytest.mark.parametrize("name", NAMES)
def test_batched_update_equals_sequential_rank_one_updates(name: str) -> None:
    rng = np.random.default_rng(8)
    ctx = rng.integers(-2, 3, size=(60, 3)).astype(float)
    arms = rng.choice(ARMS, size=60)
    rewards = rng.integers(0, 2, 60).astype(float)
    one = make_contextual_policy(name, ARMS, 3, seed=0)
    for x, arm, r in zip(ctx, arms, rewards, strict=True):
        one.observe(str(arm), x, r)
    batched = make_contextual_policy(name, ARMS, 3, seed=0)
    batched.update(
        {a: RidgeStats.from_observations(ctx[arms == a], rewards[arms == a]) for a in ARMS}
    )
    split = make_contextual_policy(name, ARMS, 3, seed=0)
    for half in (slice(0, 25), slice(25, 60)):
        c, a_, r_ = ctx[half], arms[half], rewards[half]
        split.update({a: RidgeStats.from_observations(c[a_ == a], r_[a_ == a]) for a in ARMS})
    contexts = _contexts(10)
    expected = [one.select(x) for x in contexts]
    for other in (batched, split):
        assert dict(other.stats) == dict(one.stats)
        assert [other.probabilities(x) for x in contexts] == [
            one.probabilities(x) for x in contexts
        ]
        assert [other.select(x) for x in contexts] == expected


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip_repeats_the_select_sequence(name: str) -> None:
    policy = _policy(name, seed=9)
    for x in _contexts(5):
        policy.select(x)
    state = json.loads(json.dumps(policy.state_dict()))
    for rebuilt in (ContextualPolicy.from_state_dict(state), type(policy).from_state_dict(state)):
        assert rebuilt.params == policy.params
        assert dict(rebuilt.stats) == dict(policy.stats)
    rebuilt = ContextualPolicy.from_state_dict(state)
    later = _contexts(30, seed=2)
    assert [rebuilt.select(x) for x in later] == [policy.select(x) for x in later]


def test_state_dict_errors() -> None:
    state = _policy("lin_ucb").state_dict()
    with pytest.raises(PolicyConfigError, match="not 'lin_thompson'"):
        LinThompson.from_state_dict(state)
    with pytest.raises(PolicyConfigError, match="missing key"):
        ContextualPolicy.from_state_dict({"policy": "lin_ucb"})


@pytest.mark.parametrize("name", NAMES)
def test_set_stats_replaces_and_defaults_missing_arms_to_zero(name: str) -> None:
    policy = _policy(name)
    policy.set_stats({"a": STATS["b"]})
    assert policy.stats["a"] == STATS["b"]
    assert policy.stats["b"] == RidgeStats.zeros(3)
    rebuilt = make_contextual_policy(name, ARMS, 3, {"floor": 0.05}, seed=42)
    rebuilt.update({"a": STATS["b"]})
    assert policy.probabilities([1.0, 0.0, 2.0]) == rebuilt.probabilities([1.0, 0.0, 2.0])


@pytest.mark.parametrize("name", NAMES)
def test_bad_inputs_change_nothing(name: str) -> None:
    policy = _policy(name)
    before = dict(policy.stats)
    with pytest.raises(KeyError, match="unknown arm 'z'"):
        policy.update({"a": STATS["a"], "z": STATS["a"]})
    with pytest.raises(ValueError, match="dimension 2"):
        policy.set_stats({"a": RidgeStats.zeros(2)})
    with pytest.raises(TypeError, match="must be RidgeStats"):
        policy.update({"a": 1})  # type: ignore[dict-item]
    with pytest.raises(KeyError, match="unknown arm"):
        policy.observe("z", [1.0, 0.0, 0.0], 1.0)
    assert dict(policy.stats) == before
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        policy.select([1.0, 2.0])
    with pytest.raises(ValueError, match="finite"):
        policy.select([1.0, np.nan, 0.0])
    with pytest.raises(ValueError, match=r"shape \(N, 3\)"):
        policy.probability_matrix(np.zeros(3))


@pytest.mark.parametrize(
    ("name", "params", "fragment"),
    [
        ("lin_thompson", {"ridge": -1.0}, r"ridge must be in \(0, inf\)"),
        ("lin_thompson", {"noise_scale": 0.0}, r"noise_scale must be in \(0, inf\)"),
        ("lin_thompson", {"floor": 0.5}, r"floor must be in \[0, 1/K\] = \[0, 0.333333\]"),
        ("lin_ucb", {"alpha": -0.5}, r"alpha must be in \[0, inf\)"),
        ("lin_ucb", {"floor": 1.0}, r"floor must be in \[0, 1\)"),
        ("lin_ucb", {"noise_scale": 1.0}, "unknown parameter 'noise_scale'.*allowed: floor"),
        ("lin_ucb", {"alpha": "wide"}, "alpha must be a real number"),
    ],
)
def test_params_validation_names_the_parameter(
    name: str, params: dict[str, object], fragment: str
) -> None:
    with pytest.raises(PolicyConfigError, match=fragment):
        make_contextual_policy(name, ARMS, 3, params)


def test_construction_errors() -> None:
    with pytest.raises(PolicyConfigError, match="dim must be an integer >= 1"):
        make_contextual_policy("lin_ucb", ARMS, 0)
    with pytest.raises(PolicyConfigError, match="'a' appears twice"):
        make_contextual_policy("lin_ucb", ["a", "a"], 2)
    with pytest.raises(PolicyConfigError, match="list of arm names"):
        make_contextual_policy("lin_ucb", "ab", 2)
    with pytest.raises(PolicyConfigError, match="unknown contextual policy 'linear'"):
        make_contextual_policy("linear", ARMS, 2)
    with pytest.raises(PolicyConfigError, match="takes LinUCBParams"):
        LinUCB(ARMS, 2, LinThompson.params_type())


def test_lin_ucb_scores_are_mean_plus_alpha_width() -> None:
    policy = _policy("lin_ucb", alpha=0.7)
    x = np.array([1.0, 2.0, 0.5])
    for arm, score in policy.scores(x).items():
        a = STATS[arm].xtx + np.eye(3)
        mu = np.linalg.solve(a, STATS[arm].xty)
        assert score == pytest.approx(x @ mu + 0.7 * np.sqrt(x @ np.linalg.solve(a, x)))


def test_lin_ucb_splits_ties_and_alpha_zero_is_greedy() -> None:
    policy = make_contextual_policy("lin_ucb", ARMS, 2, seed=0)
    assert policy.probabilities([1.0, 0.0]) == dict.fromkeys(ARMS, 1 / 3)
    assert {policy.select([1.0, 0.0]).arm for _ in range(60)} == set(ARMS)
    greedy = make_contextual_policy("lin_ucb", ARMS, 2, {"alpha": 0.0}, seed=0)
    greedy.observe("b", [1.0, 0.0], 0.5)
    assert greedy.select([1.0, 0.0]) == Decision("b", 1.0)


def test_lin_thompson_noise_scale() -> None:
    learned = _policy("lin_thompson")
    fits = learned.fits()
    assert isinstance(learned, LinThompson)
    for arm, v in learned.noise_scales().items():
        fit = fits[arm]
        assert v == pytest.approx(np.sqrt((1 + fit.residual / 2) / (1 + fit.n / 2)))
    fixed = _policy("lin_thompson", noise_scale=0.3)
    assert isinstance(fixed, LinThompson)
    assert fixed.noise_scales() == dict.fromkeys(ARMS, 0.3)


def test_lin_thompson_scores_are_the_marginals_of_the_posterior() -> None:
    """Drawing theta_k ~ N(mu_k, v^2 A_k^-1) and scoring x'theta_k gives the same winner
    frequencies as the propensities (which use the univariate marginals)."""
    policy = _policy("lin_thompson", floor=0.0, noise_scale=0.8)
    x = np.array([1.0, 0.5, 1.5])
    rng = np.random.default_rng(0)
    draws = 100_000
    scores = []
    for arm in ARMS:
        fit = fit_ridge(STATS[arm], 1.0)
        theta = rng.multivariate_normal(fit.coef, 0.64 * fit.inverse, size=draws)
        scores.append(theta @ x)
    freq = np.bincount(np.argmax(scores, axis=0), minlength=3) / draws
    p = np.array(list(policy.probabilities(x).values()))
    assert np.abs(freq - p).max() < 5 * np.sqrt(0.25 / draws)


def test_select_cost_guard() -> None:
    """bench/contextual.py measures select() (K = 3, d = 64: budget 50 us); this guard is
    loose so that a loaded CI machine does not fail it."""
    rng = np.random.default_rng(0)
    for name in NAMES:
        policy = make_contextual_policy(name, ARMS, 64, {"floor": 0.01}, seed=0)
        x = rng.normal(size=(3000, 64))
        policy.update(
            {a: RidgeStats.from_observations(x[i::3], rng.random(1000)) for i, a in enumerate(ARMS)}
        )
        contexts = rng.normal(size=(2000, 64))
        policy.select(contexts[0])
        timings = []
        for c in contexts:
            start = time.perf_counter()
            policy.select(c)
            timings.append(time.perf_counter() - start)
        assert np.median(timings) < 500e-6, (name, np.median(timings))
