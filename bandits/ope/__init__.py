"""Off-policy evaluation from logged propensities: IPS, SNIPS, direct method, doubly robust.

Pure numpy/scipy. A :class:`BanditLog` holds the logged ``(context, arm, propensity, reward)``
records; :func:`evaluate` estimates the mean reward per decision of candidate policies
(always one arm, a fixed split, a registered context-free policy, a contextual policy) had
they routed the logged traffic, each with a normal-approximation interval, the effective
sample size of the importance weights and a warning when the propensities make the estimate
unreliable.

Example:
    >>> import numpy as np
    >>> from bandits.ope import BanditLog, evaluate
    >>> rng = np.random.default_rng(1)
    >>> chosen = rng.integers(0, 2, 1000)
    >>> log = BanditLog.from_records(["a", "b"], chosen, np.full(1000, 0.5),
    ...                              rng.random(1000) < np.where(chosen == 0, 0.3, 0.5))
    >>> uniform, = evaluate(log, ["uniform"], ["snips"])
    >>> uniform.covers(0.4), uniform.to_dict()["estimator"]
    (True, 'snips')
"""

from __future__ import annotations

from bandits.ope.candidates import (
    AlwaysArm,
    Candidate,
    ContextualCandidate,
    FixedWeights,
    RegisteredPolicy,
    candidate_from_dict,
)
from bandits.ope.estimators import ESTIMATORS, Estimate, dm, dr, importance_weights, ips, snips
from bandits.ope.evaluate import DEFAULT_ESTIMATORS, evaluate
from bandits.ope.log import BanditLog
from bandits.ope.reward_model import (
    RIDGE_GRID,
    cross_fit_rewards,
    fit_rewards,
    fold_ids,
    select_ridge,
)

__all__ = [
    "DEFAULT_ESTIMATORS",
    "ESTIMATORS",
    "RIDGE_GRID",
    "AlwaysArm",
    "BanditLog",
    "Candidate",
    "ContextualCandidate",
    "Estimate",
    "FixedWeights",
    "RegisteredPolicy",
    "candidate_from_dict",
    "cross_fit_rewards",
    "dm",
    "dr",
    "evaluate",
    "fit_rewards",
    "fold_ids",
    "importance_weights",
    "ips",
    "select_ridge",
    "snips",
]
