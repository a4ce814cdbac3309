from __future__ import annotations

import math

import numpy as np
import pytest

from bandits import (
    ArmStats,
    GaussianThompson,
    GaussianThompsonParams,
    NormalGammaPosterior,
    PolicyConfigError,
)

STATS = {
    "a": ArmStats.from_rewards([1.0, 2.0, 0.5, 1.5]),
    "b": ArmStats.from_rewards([2.0, 1.8, 2.6]),
    "c": ArmStats.from_rewards([0.2, 3.0]),
}
PRIOR = {"prior_mean": 1.0, "prior_kappa": 0.5, "prior_alpha": 2.0, "prior_beta": 1.5}


def test_pinned_sequence() -> None:
    policy = GaussianThompson(["a", "b", "c"], seed=42)
    policy.set_stats(
        {
            "a": ArmStats.from_rewards([1, 0, 0, 1, 0]),
            "b": ArmStats.from_rewards([1, 1, 0, 1]),
            "c": ArmStats.from_rewards([0, 0, 1]),
        }
    )
    assert "".join(policy.select().arm for _ in range(30)) == "abbbbaccbbcacbcaaabbbaabcbaabb"


def test_choice_is_argmax_of_gamma_then_normal_draws() -> None:
    policy = GaussianThompson(list(STATS), PRIOR, seed=9)
    policy.set_stats(STATS)
    posts = {arm: NormalGammaPosterior.from_stats(s, **PRIOR) for arm, s in STATS.items()}
    assert policy.posteriors() == posts
    rng = np.random.default_rng(9)
    for _ in range(200):
        draws = {}
        for arm, p in posts.items():
            tau = rng.gamma(p.alpha, 1 / p.beta)
            draws[arm] = rng.normal(p.mu, 1 / math.sqrt(p.kappa * tau))
        assert policy.select().arm == max(draws, key=draws.__getitem__)


@pytest.mark.parametrize("name", ["prior_kappa", "prior_alpha", "prior_beta"])
def test_params_validation_names_the_parameter(name: str) -> None:
    with pytest.raises(PolicyConfigError, match=rf"{name} must be in \(0, inf\)"):
        GaussianThompsonParams(**{name: 0.0})
    with pytest.raises(PolicyConfigError, match="prior_mean must be finite"):
        GaussianThompsonParams(prior_mean=math.inf)


def test_prefers_the_higher_mean() -> None:
    policy = GaussianThompson(["low", "high"], seed=0)
    rng = np.random.default_rng(0)
    policy.update(
        {
            "low": ArmStats.from_rewards(rng.normal(10.0, 1.0, 200)),
            "high": ArmStats.from_rewards(rng.normal(10.5, 1.0, 200)),
        }
    )
    assert policy.weights()["high"] > 0.99
