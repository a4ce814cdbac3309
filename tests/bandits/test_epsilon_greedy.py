from __future__ import annotations

import pytest

from bandits import ArmStats, EpsilonGreedy, EpsilonGreedyParams, PolicyConfigError

ARMS = ["a", "b", "c", "d"]


def _policy(epsilon: float, stats: dict[str, ArmStats], seed: int = 0) -> EpsilonGreedy:
    policy = EpsilonGreedy(ARMS, {"epsilon": epsilon}, seed=seed)
    policy.set_stats(stats)
    return policy


def _s(*rewards: float) -> ArmStats:
    return ArmStats.from_rewards(rewards)


@pytest.mark.parametrize("epsilon", [0.0, 0.1, 0.25, 1.0])
def test_exact_weights_single_best(epsilon: float) -> None:
    policy = _policy(epsilon, {"a": _s(1, 0), "b": _s(1, 1, 0), "c": _s(0), "d": _s(0, 1)})
    k = 4
    assert policy.best_arms() == ("b",)
    assert policy.weights() == {
        "a": epsilon / k,
        "b": (1 - epsilon) + epsilon / k,
        "c": epsilon / k,
        "d": epsilon / k,
    }


def test_exact_weights_tied_best() -> None:
    policy = _policy(0.2, {"a": _s(1, 0), "b": _s(1), "c": _s(1, 1), "d": _s(0)})
    assert policy.best_arms() == ("b", "c")
    assert policy.weights() == {"a": 0.05, "b": 0.4 + 0.05, "c": 0.4 + 0.05, "d": 0.05}


def test_untried_arms_count_as_best() -> None:
    policy = _policy(0.2, {"a": _s(1, 1, 1), "b": _s(0)})
    assert policy.best_arms() == ("c", "d")
    assert {policy.select().arm for _ in range(200)} >= {"c", "d"}


def test_pinned_sequence() -> None:
    policy = _policy(0.3, {"a": _s(1, 0), "b": _s(1, 1, 0), "c": _s(0), "d": _s(0, 1)}, seed=42)
    assert "".join(policy.select().arm for _ in range(30)) == "bbbbcbbdbbbbbbacbbbbbbbbbcbbbb"


@pytest.mark.parametrize("epsilon", [-0.01, 1.01, float("nan")])
def test_epsilon_range(epsilon: float) -> None:
    with pytest.raises(PolicyConfigError, match="epsilon must be"):
        EpsilonGreedyParams(epsilon=epsilon)
