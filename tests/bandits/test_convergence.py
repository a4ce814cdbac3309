"""Slow tier: statistical behaviour on simulated Bernoulli arms."""

from __future__ import annotations

import numpy as np
import pytest

from bandits import ArmStats, make_policy

MEANS = {"low": 0.3, "mid": 0.4, "high": 0.6}
BEST = max(MEANS.values())
HORIZON = 3000
UNIFORM_REGRET = HORIZON * (BEST - float(np.mean(list(MEANS.values()))))

pytestmark = pytest.mark.slow


def _simulate(name: str, seed: int, batch: int = 1) -> tuple[np.ndarray, float]:
    """Run ``HORIZON`` rounds; return per-round expected regret and the best arm's late share."""
    # select() reports a propensity, and Thompson re-estimates its weights after every
    # update; the minimum weight_draws keeps per-round updates cheap here.
    params = {"weight_draws": 100} if "thompson" in name else {}
    policy = make_policy(name, list(MEANS), params, seed=seed)
    env = np.random.default_rng(seed + 1000)
    regret = np.empty(HORIZON)
    chosen = []
    pending: dict[str, list[float]] = {}
    for t in range(HORIZON):
        arm = policy.select().arm
        chosen.append(arm)
        regret[t] = BEST - MEANS[arm]
        pending.setdefault(arm, []).append(float(env.random() < MEANS[arm]))
        if (t + 1) % batch == 0:
            policy.update({a: ArmStats.from_rewards(r) for a, r in pending.items()})
            pending = {}
    late = chosen[-500:]
    return regret, late.count("high") / len(late)


@pytest.mark.parametrize(
    ("name", "min_share"),
    [("thompson", 0.9), ("gaussian_thompson", 0.9), ("ucb1", 0.85)],
)
@pytest.mark.parametrize("seed", [0, 1])
def test_converges_to_best_arm_with_sublinear_regret(
    name: str, min_share: float, seed: int
) -> None:
    regret, share = _simulate(name, seed=seed)
    assert share >= min_share
    first, second = regret[: HORIZON // 2].sum(), regret[HORIZON // 2 :].sum()
    # Sublinear: the second half costs much less than the first; and far below uniform routing.
    assert second < 0.6 * first
    assert regret.sum() < 0.25 * UNIFORM_REGRET


@pytest.mark.parametrize("seed", [0, 1])
def test_epsilon_greedy_regret_is_only_the_exploration_cost(seed: int) -> None:
    """A fixed epsilon explores forever, so its regret is linear by design, at rate
    ``epsilon * mean gap``; what must vanish is the regret of exploiting the wrong arm."""
    regret, share = _simulate("epsilon_greedy", seed=seed)
    assert share >= 0.85
    exploration_cost = 0.1 * np.mean([BEST - m for m in MEANS.values()]) * (HORIZON // 2)
    assert regret[HORIZON // 2 :].sum() < 1.5 * exploration_cost
    assert regret.sum() < 0.25 * UNIFORM_REGRET


def test_batched_thompson_still_converges() -> None:
    regret, share = _simulate("thompson", seed=1, batch=100)
    assert share >= 0.9
    assert regret[HORIZON // 2 :].sum() < 0.6 * regret[: HORIZON // 2].sum()


def test_fixed_split_never_learns() -> None:
    _, share = _simulate("fixed", seed=2)
    assert abs(share - 1 / 3) < 0.1
