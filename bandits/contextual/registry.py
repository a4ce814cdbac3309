"""Contextual policy registry: config chooses a policy by name from :data:`CONTEXTUAL_POLICIES`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bandits.contextual.base import ContextualParams, ContextualPolicy
from bandits.contextual.lin_thompson import LinThompson
from bandits.contextual.lin_ucb import LinUCB
from bandits.errors import PolicyConfigError

__all__ = ["CONTEXTUAL_POLICIES", "get_contextual_policy_class", "make_contextual_policy"]

CONTEXTUAL_POLICIES: dict[str, type[ContextualPolicy]] = {
    cls.name: cls for cls in (LinThompson, LinUCB)
}
"""Every contextual policy by its registry name."""


def get_contextual_policy_class(name: str) -> type[ContextualPolicy]:
    """The contextual policy class registered as ``name``.

    Raises:
        PolicyConfigError: Unknown name; the message lists the known ones.
    """
    try:
        return CONTEXTUAL_POLICIES[name]
    except (KeyError, TypeError):
        known = ", ".join(sorted(CONTEXTUAL_POLICIES))
        raise PolicyConfigError(
            f"unknown contextual policy {name!r}; known contextual policies: {known}"
        ) from None


def make_contextual_policy(
    name: str,
    arms: Sequence[str],
    dim: int,
    params: ContextualParams | Mapping[str, Any] | None = None,
    *,
    seed: int | None = None,
) -> ContextualPolicy:
    """Build a contextual policy by registry name.

    Example:
        >>> make_contextual_policy("lin_thompson", ["a", "b"], 4, {"floor": 0.05}, seed=7)
        LinThompson(arms=['a', 'b'], dim=4, params=LinThompsonParams(floor=0.05, ridge=1.0, \
noise_scale=None))
        >>> make_contextual_policy("neural", ["a"], 4)
        Traceback (most recent call last):
        ...
        bandits.errors.PolicyConfigError: unknown contextual policy 'neural'; known contextual \
policies: lin_thompson, lin_ucb

    Raises:
        PolicyConfigError: Unknown name, or invalid arms, dimension or parameters.
    """
    return get_contextual_policy_class(name)(arms, dim, params, seed=seed)
