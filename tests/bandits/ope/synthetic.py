"""A synthetic logged bandit with an exactly known value for every target policy.

Four context types with probabilities ``TYPE_P``; three arms with Bernoulli rewards of mean
``MEANS[t, a]``; the logging policy ``LOGGING[t]`` (propensities >= 0.1). The value of a target
``pi(a | t)`` is ``sum_t TYPE_P[t] sum_a pi(a | t) MEANS[t, a]``, exactly.
"""

from __future__ import annotations

import numpy as np

from bandits.ope import BanditLog

ARMS = ("a", "b", "c")
TYPE_P = np.array([0.4, 0.3, 0.2, 0.1])
MEANS = np.array([[0.2, 0.5, 0.3], [0.6, 0.3, 0.2], [0.3, 0.3, 0.8], [0.9, 0.1, 0.5]])
LOGGING = np.array([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6], [0.5, 0.4, 0.1], [0.1, 0.1, 0.8]])
ORACLE = np.eye(3)[MEANS.argmax(axis=1)]


def true_value(target_by_type: np.ndarray) -> float:
    """Exact value of a target given per type, shape ``(4, 3)``."""
    return float(TYPE_P @ (target_by_type * MEANS).sum(axis=1))


def simulate(n: int, seed: int, logging: np.ndarray = LOGGING) -> tuple[BanditLog, np.ndarray]:
    """A log of ``n`` records and the context type of each record."""
    rng = np.random.default_rng(seed)
    types = rng.choice(4, size=n, p=TYPE_P)
    cumulative = logging[types].cumsum(axis=1)
    actions = (rng.random(n)[:, None] > cumulative).sum(axis=1).clip(max=2)
    rewards = (rng.random(n) < MEANS[types, actions]).astype(float)
    contexts = np.eye(4)[types]
    log = BanditLog.from_records(ARMS, actions, logging[types, actions], rewards, contexts)
    return log, types
