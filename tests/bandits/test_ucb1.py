from __future__ import annotations

import math
from collections import Counter

import pytest

from bandits import UCB1, ArmStats, PolicyConfigError, UCB1Params

ARMS = ["a", "b", "c"]


def _policy(stats: dict[str, ArmStats], exploration: float = 2.0, seed: int = 0) -> UCB1:
    policy = UCB1(ARMS, {"exploration": exploration}, seed=seed)
    policy.set_stats(stats)
    return policy


@pytest.mark.parametrize("exploration", [0.5, 2.0])
def test_index_closed_form(exploration: float) -> None:
    stats = {
        "a": ArmStats.from_rewards([1, 0, 1, 1]),
        "b": ArmStats.from_rewards([0, 1]),
        "c": ArmStats.from_rewards([1] * 3 + [0] * 7),
    }
    policy = _policy(stats, exploration)
    n_total = 16
    for arm, s in stats.items():
        expected = s.reward_mean + math.sqrt(exploration * math.log(n_total) / s.feedback)
        assert policy.indices()[arm] == pytest.approx(expected, rel=1e-15)
    best = max(policy.indices(), key=policy.indices().__getitem__)
    assert policy.weights() == {arm: float(arm == best) for arm in ARMS}
    assert all(policy.select().arm == best for _ in range(20))


def test_untried_arms_first_split_uniformly() -> None:
    policy = _policy({"a": ArmStats.from_rewards([1] * 100)})
    assert policy.indices()["b"] == math.inf
    assert policy.weights() == {"a": 0.0, "b": 0.5, "c": 0.5}
    counts = Counter(policy.select().arm for _ in range(4000))
    assert set(counts) == {"b", "c"}
    assert abs(counts["b"] - 2000) <= 4 * math.sqrt(4000 * 0.25)


def test_exact_ties_split_uniformly() -> None:
    same = ArmStats.from_rewards([1, 0])
    policy = _policy({"a": same, "b": same, "c": ArmStats.from_rewards([0, 0])})
    assert policy.weights() == {"a": 0.5, "b": 0.5, "c": 0.0}


def test_pulls_without_feedback_do_not_count_as_tried() -> None:
    policy = _policy({"a": ArmStats(pulls=50), "b": ArmStats.from_rewards([1])})
    assert policy.best_arms() == ("a", "c")


@pytest.mark.parametrize("exploration", [0.0, -1.0, float("inf")])
def test_exploration_range(exploration: float) -> None:
    with pytest.raises(PolicyConfigError, match="exploration must be"):
        UCB1Params(exploration=exploration)
