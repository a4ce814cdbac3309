"""Shared fixtures for the bandits tests."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pytest

from bandits import ArmStats

StatsFactory = Callable[[np.random.Generator, Sequence[str]], dict[str, ArmStats]]


def _random_stats(rng: np.random.Generator, arms: Sequence[str]) -> dict[str, ArmStats]:
    """Random binary-reward stats, some arms without feedback, pulls not tied to feedback."""
    stats = {}
    for arm in arms:
        n = int(rng.integers(0, 40)) if rng.random() < 0.8 else 0
        rewards = rng.binomial(1, rng.random(), size=n).astype(float)
        stats[arm] = ArmStats.from_rewards(rewards, pulls=n + int(rng.integers(0, 5)))
    return stats


@pytest.fixture
def random_stats() -> StatsFactory:
    """Factory of random per-arm stats with integer-valued rewards."""
    return _random_stats
