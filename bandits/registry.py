"""Policy registry: config chooses a policy by name from :data:`POLICIES`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bandits.base import Policy, PolicyParams
from bandits.epsilon_greedy import EpsilonGreedy
from bandits.errors import PolicyConfigError
from bandits.fixed_split import FixedSplit
from bandits.gaussian_thompson import GaussianThompson
from bandits.thompson import BetaThompson
from bandits.ucb1 import UCB1

__all__ = ["POLICIES", "get_policy_class", "make_policy"]

POLICIES: dict[str, type[Policy]] = {
    cls.name: cls for cls in (FixedSplit, BetaThompson, GaussianThompson, EpsilonGreedy, UCB1)
}
"""Every policy by its registry name."""


def get_policy_class(name: str) -> type[Policy]:
    """The policy class registered as ``name``.

    Raises:
        PolicyConfigError: Unknown name; the message lists the known ones.
    """
    try:
        return POLICIES[name]
    except (KeyError, TypeError):
        known = ", ".join(sorted(POLICIES))
        raise PolicyConfigError(f"unknown policy {name!r}; known policies: {known}") from None


def make_policy(
    name: str,
    arms: Sequence[str],
    params: PolicyParams | Mapping[str, Any] | None = None,
    *,
    seed: int | None = None,
) -> Policy:
    """Build a policy by registry name.

    Example:
        >>> make_policy("thompson", ["control", "treatment"], {"floor": 0.05}, seed=7)
        BetaThompson(arms=['control', 'treatment'], params=ThompsonParams(floor=0.05, \
weight_draws=4000, prior_alpha=1.0, prior_beta=1.0))
        >>> make_policy("softmax", ["a"])
        Traceback (most recent call last):
        ...
        bandits.errors.PolicyConfigError: unknown policy 'softmax'; known policies: \
epsilon_greedy, fixed, gaussian_thompson, thompson, ucb1

    Raises:
        PolicyConfigError: Unknown name, or invalid arms/parameters.
    """
    return get_policy_class(name)(arms, params, seed=seed)
