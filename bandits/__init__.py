"""Pure-Python multi-armed-bandit and A/B routing policies.

Only the standard library, numpy and scipy: importable and testable in milliseconds, with no
serving framework in sight. The serving layer builds a policy with :func:`make_policy`, calls
:meth:`Policy.select` per request on a local snapshot, and feeds merged :class:`ArmStats` back
with :meth:`Policy.set_stats`.

Example:
    >>> import bandits
    >>> policy = bandits.make_policy("thompson", ["a", "b"], seed=0)
    >>> decision = policy.select()
    >>> decision.arm in policy.arms and 0 < decision.propensity <= 1
    True
"""

from __future__ import annotations

from bandits.arm_stats import ArmStats
from bandits.base import Decision, Policy, PolicyParams
from bandits.epsilon_greedy import EpsilonGreedy, EpsilonGreedyParams
from bandits.errors import PolicyConfigError
from bandits.fixed_split import FixedSplit, FixedSplitParams
from bandits.gaussian_thompson import GaussianThompson, GaussianThompsonParams
from bandits.posteriors import (
    BetaPosterior,
    NormalGammaPosterior,
    RewardModel,
    posterior_for,
    prob_best,
)
from bandits.registry import POLICIES, make_policy
from bandits.thompson import BetaThompson, ThompsonParams
from bandits.ucb1 import UCB1, UCB1Params

__all__ = [
    "POLICIES",
    "UCB1",
    "ArmStats",
    "BetaPosterior",
    "BetaThompson",
    "Decision",
    "EpsilonGreedy",
    "EpsilonGreedyParams",
    "FixedSplit",
    "FixedSplitParams",
    "GaussianThompson",
    "GaussianThompsonParams",
    "NormalGammaPosterior",
    "Policy",
    "PolicyConfigError",
    "PolicyParams",
    "RewardModel",
    "ThompsonParams",
    "UCB1Params",
    "make_policy",
    "posterior_for",
    "prob_best",
]
