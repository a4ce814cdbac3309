from __future__ import annotations

import numpy as np
import pytest

from bandits import ArmStats, BetaPosterior, BetaThompson, PolicyConfigError, ThompsonParams
from bandits.posteriors import prob_best_of

STATS = {
    "a": ArmStats.from_rewards([1, 0, 0, 1, 0]),
    "b": ArmStats.from_rewards([1, 1, 0, 1]),
    "c": ArmStats.from_rewards([0, 0, 1]),
}


def _policy(seed: int = 42, **params: float) -> BetaThompson:
    policy = BetaThompson(list(STATS), params, seed=seed)
    policy.set_stats(STATS)
    return policy


def test_pinned_sequence() -> None:
    policy = _policy()
    assert "".join(policy.select().arm for _ in range(30)) == "bbbabbbbbcbbbbabcbbbabbabbbbaa"


def test_choice_is_argmax_of_scalar_beta_draws() -> None:
    policy = _policy(seed=5, prior_alpha=2.0, prior_beta=0.5)
    rng = np.random.default_rng(5)
    posts = {arm: BetaPosterior.from_stats(s, 2.0, 0.5) for arm, s in STATS.items()}
    for _ in range(200):
        draws = {arm: rng.beta(p.alpha, p.beta) for arm, p in posts.items()}
        assert policy.select().arm == max(draws, key=draws.__getitem__)


def test_posteriors_use_the_priors() -> None:
    policy = _policy(prior_alpha=2.0, prior_beta=3.0)
    assert policy.posteriors()["b"] == BetaPosterior(5.0, 4.0)


def test_weights_are_prob_best_and_independent_of_the_policy_seed() -> None:
    weights = _policy(seed=1, weight_draws=1000).weights()
    assert weights == _policy(seed=2, weight_draws=1000).weights()
    posts = {arm: BetaPosterior.from_stats(s) for arm, s in STATS.items()}
    reference = prob_best_of(posts, draws=100_000, rng=np.random.default_rng(0))
    for arm in STATS:
        assert weights[arm] == pytest.approx(reference[arm], abs=0.06)


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"prior_alpha": 0.0}, r"prior_alpha must be in \(0, inf\)"),
        ({"prior_beta": -1.0}, r"prior_beta must be in \(0, inf\)"),
        ({"weight_draws": 50}, "weight_draws must be an integer >= 100"),
        ({"weight_draws": 500.5}, "weight_draws must be an integer"),
    ],
)
def test_params_validation_names_the_parameter(params: dict[str, float], fragment: str) -> None:
    with pytest.raises(PolicyConfigError, match=fragment):
        ThompsonParams(**params)  # type: ignore[arg-type]


def test_rewards_outside_unit_interval_are_rejected_on_use() -> None:
    policy = BetaThompson(["a", "b"])
    policy.update({"a": ArmStats.from_rewards([5.0])})
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        policy.select()
