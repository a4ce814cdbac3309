"""Exceptions raised by :mod:`bandits`.

The tree is deliberately shallow::

    ValueError
     └── PolicyConfigError   a policy or its parameters are misconfigured

Statistics and posteriors raise plain :class:`ValueError` for invalid numbers; anything that a
user writes in a config (policy name, parameter names and values, arms) raises
:class:`PolicyConfigError`, so the serving layer can turn exactly those into a startup error.
"""

from __future__ import annotations

__all__ = ["PolicyConfigError"]


class PolicyConfigError(ValueError):
    """A policy name, arm list or parameter is invalid.

    The message always names the offending parameter (or arm) and what is allowed.

    Example:
        >>> from bandits import make_policy
        >>> make_policy("epsilon_greedy", ["a", "b"], {"epsilon": 2.0})
        Traceback (most recent call last):
        ...
        bandits.errors.PolicyConfigError: epsilon must be in [0, 1], got 2.0
    """
