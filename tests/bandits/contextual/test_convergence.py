"""Slow tier: contextual policies learn which arm suits which context.

Three arms whose mean reward depends on a 2-D context ``z ~ N(0, I)``: each arm is best in
its own third of the plane, and every arm earns 0.5 on average, so no single arm (and no
context-free policy) can beat 0.5 per decision, while routing by context can reach ~0.75.
"""

from __future__ import annotations

import numpy as np
import pytest

from bandits import ArmStats, make_policy
from bandits.contextual import make_contextual_policy

pytestmark = pytest.mark.slow

ARMS = ["a", "b", "c"]
DIRECTIONS = np.array([[1.0, 0.0], [-0.5, 0.866], [-0.5, -0.866]])
HORIZON = 2000


def _means(z: np.ndarray) -> np.ndarray:
    return np.clip(0.5 + 0.25 * z @ DIRECTIONS.T, 0.0, 1.0)


def _run(kind: str, seed: int) -> float:
    """Mean expected reward per decision over the horizon."""
    env = np.random.default_rng(seed)
    z = env.standard_normal((HORIZON, 2))
    means = _means(z)
    noise = env.random(HORIZON)
    contexts = np.column_stack([np.ones(HORIZON), z])
    if kind == "thompson":
        policy = make_policy("thompson", ARMS, {"weight_draws": 100}, seed=seed + 1)

        def choose(t: int) -> str:
            return policy.select().arm

        def learn(t: int, arm: str, reward: float) -> None:
            policy.update({arm: ArmStats.from_rewards([reward])})
    else:
        contextual = make_contextual_policy(kind, ARMS, 3, {"floor": 0.01}, seed=seed + 1)

        def choose(t: int) -> str:
            return contextual.select(contexts[t]).arm

        def learn(t: int, arm: str, reward: float) -> None:
            contextual.observe(arm, contexts[t], reward)

    earned = 0.0
    for t in range(HORIZON):
        arm = choose(t)
        k = ARMS.index(arm)
        earned += means[t, k]
        learn(t, arm, float(noise[t] < means[t, k]))
    return earned / HORIZON


@pytest.mark.parametrize("seed", [0, 1])
def test_contextual_policies_beat_the_best_single_arm_and_thompson(seed: int) -> None:
    z = np.random.default_rng(99).standard_normal((200_000, 2))
    best_single = _means(z).mean(axis=0).max()
    oracle = _means(z).max(axis=1).mean()
    thompson = _run("thompson", seed)
    assert thompson < best_single + 0.02
    for kind in ("lin_thompson", "lin_ucb"):
        value = _run(kind, seed)
        assert value > best_single + 0.15, (kind, value, best_single)
        assert value > thompson + 0.15, (kind, value, thompson)
        assert value > oracle - 0.08, (kind, value, oracle)
