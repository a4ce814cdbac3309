"""Contextual bandits: linear Thompson sampling and LinUCB over disjoint per-arm ridge models.

Pure numpy/scipy, like the rest of :mod:`bandits`. An experiment declares how a request's
``{"context": {...}}`` becomes a vector (:class:`ContextSpec`), builds a policy with
:func:`make_contextual_policy`, calls :meth:`ContextualPolicy.select` per request and feeds
merged per-arm :class:`RidgeStats` back with :meth:`ContextualPolicy.set_stats`. Every decision
carries the probability the policy gave the chosen arm for that context, for off-policy
evaluation (:mod:`bandits.ope`).

Example:
    >>> from bandits.contextual import ContextSpec, make_contextual_policy
    >>> spec = ContextSpec.from_dict({"fields": [
    ...     {"name": "age", "type": "numeric", "mean": 40, "sd": 10},
    ...     {"name": "device", "type": "categorical", "vocabulary": ["ios", "android"]}]})
    >>> spec.columns
    ('intercept', 'age', 'device=ios', 'device=android')
    >>> x = spec.encode({"age": 50, "device": "ios"})
    >>> x.tolist()
    [1.0, 1.0, 1.0, 0.0]
    >>> policy = make_contextual_policy("lin_thompson", ["a", "b"], spec.dim, seed=0)
    >>> decision = policy.select(x)
    >>> decision.propensity == policy.probabilities(x)[decision.arm]
    True
"""

from __future__ import annotations

from bandits.contextual.base import ContextualParams, ContextualPolicy
from bandits.contextual.encoding import (
    CategoricalField,
    ContextError,
    ContextSpec,
    FeatureColumns,
    HashedField,
    NumericField,
)
from bandits.contextual.lin_thompson import LinThompson, LinThompsonParams
from bandits.contextual.lin_ucb import LinUCB, LinUCBParams
from bandits.contextual.propensity import prob_max_normal
from bandits.contextual.registry import (
    CONTEXTUAL_POLICIES,
    get_contextual_policy_class,
    make_contextual_policy,
)
from bandits.contextual.stats import RidgeFit, RidgeStats, fit_ridge

__all__ = [
    "CONTEXTUAL_POLICIES",
    "CategoricalField",
    "ContextError",
    "ContextSpec",
    "ContextualParams",
    "ContextualPolicy",
    "FeatureColumns",
    "HashedField",
    "LinThompson",
    "LinThompsonParams",
    "LinUCB",
    "LinUCBParams",
    "NumericField",
    "RidgeFit",
    "RidgeStats",
    "fit_ridge",
    "get_contextual_policy_class",
    "make_contextual_policy",
    "prob_max_normal",
]
