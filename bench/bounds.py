"""The Lai-Robbins (1985) asymptotic lower bound on the regret of consistent policies.

For arms with means ``mu_i`` and best mean ``mu*``, every uniformly good policy has::

    liminf_t R(t) / ln t >= sum_{i: mu_i < mu*} (mu* - mu_i) / KL(mu_i, mu*)

where ``KL`` is the Kullback-Leibler divergence between the reward distributions of arm ``i``
and the best arm. For Bernoulli rewards ``KL(p, q) = p ln(p/q) + (1-p) ln((1-p)/(1-q))``; for
Gaussian rewards with a known common ``sigma``, ``KL = (mu* - mu_i)^2 / (2 sigma^2)``, so each
arm contributes ``2 sigma^2 / (mu* - mu_i) ln t``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

__all__ = ["kl_bernoulli", "lai_robbins", "lai_robbins_coefficient"]


def kl_bernoulli(p: float, q: float) -> float:
    """``KL(Bernoulli(p) || Bernoulli(q))``, with ``0 ln 0 = 0``.

    Example:
        >>> round(kl_bernoulli(0.5, 0.25), 6)
        0.143841
    """
    if not 0.0 < q < 1.0:
        raise ValueError(f"q must be in (0, 1), got {q}")
    total = 0.0
    if p > 0.0:
        total += p * math.log(p / q)
    if p < 1.0:
        total += (1.0 - p) * math.log((1.0 - p) / (1.0 - q))
    return total


def lai_robbins_coefficient(
    means: Sequence[float], reward: str = "bernoulli", sigma: float = 1.0
) -> float:
    """``C = sum_{i: mu_i < mu*} (mu* - mu_i) / KL(mu_i, mu*)``: the bound is ``C ln t``.

    Example:
        >>> round(lai_robbins_coefficient([0.5, 0.25]), 4)
        1.9111
        >>> lai_robbins_coefficient([1.0, 0.5], reward="gaussian", sigma=1.0)
        4.0
    """
    best = max(means)
    total = 0.0
    for mu in means:
        gap = best - mu
        if gap <= 0.0:
            continue
        if reward == "bernoulli":
            total += gap / kl_bernoulli(mu, best)
        elif reward == "gaussian":
            total += gap / (gap * gap / (2.0 * sigma * sigma))
        else:
            raise ValueError(f"reward must be 'bernoulli' or 'gaussian', got {reward!r}")
    return total


def lai_robbins(
    means: Sequence[float],
    t: npt.ArrayLike,
    reward: str = "bernoulli",
    sigma: float = 1.0,
) -> npt.NDArray[np.float64]:
    """The bound ``C ln t`` at each ``t`` (0 where ``t <= 1``)."""
    steps = np.asarray(t, dtype=np.float64)
    return lai_robbins_coefficient(means, reward, sigma) * np.log(np.maximum(steps, 1.0))
