"""One entry point for offline evaluation: :func:`evaluate`, for a REST endpoint and a CLI."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from bandits.ope.candidates import Candidate, candidate_from_dict
from bandits.ope.estimators import ESTIMATORS, NEEDS_MODEL, Estimate
from bandits.ope.log import BanditLog
from bandits.ope.reward_model import cross_fit_rewards, fold_ids, select_ridge

__all__ = ["DEFAULT_ESTIMATORS", "evaluate"]

DEFAULT_ESTIMATORS = ("ips", "snips", "dm", "dr")


def evaluate(
    log: BanditLog,
    candidates: Sequence[Candidate | str | Mapping[str, Any]],
    estimators: Sequence[str] = DEFAULT_ESTIMATORS,
    *,
    level: float = 0.95,
    clip: float | None = None,
    folds: int = 5,
    ridge: float | None = None,
    seed: int = 0,
) -> list[Estimate]:
    """Estimate every candidate's mean reward per decision with every estimator.

    The same seeded folds serve the reward model's cross-fitting (DM, DR) and the learning
    candidates' (see :mod:`bandits.ope.candidates`): for a record of fold ``f`` both the
    target's probabilities and ``q`` come from the other folds, so DR stays unbiased.

    Args:
        log: The logged decisions.
        candidates: Candidates or their specs (:func:`candidate_from_dict`).
        estimators: Names from :data:`ESTIMATORS`.
        level: Confidence level of the intervals.
        clip: Optional weight clipping ``M`` for IPS, SNIPS and DR (biased; see
            :mod:`bandits.ope.estimators`).
        folds: Cross-fitting folds, ``>= 2``.
        ridge: Ridge penalty of the reward model; ``None`` picks it by cross-validation
            (:func:`bandits.ope.reward_model.select_ridge`).
        seed: Seed of the folds and of any policy built for a candidate.

    Returns:
        One :class:`Estimate` per candidate and estimator, candidates in order; each has
        ``candidate`` set to the candidate's label and a JSON-able ``to_dict()``.

    Raises:
        ValueError: Unknown estimator, too few records, or invalid inputs.
        bandits.PolicyConfigError: An invalid candidate spec.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> arms = rng.integers(0, 2, 400)
        >>> log = BanditLog.from_records(["a", "b"], arms, [0.5] * 400,
        ...                              rng.random(400) < np.where(arms == 0, 0.2, 0.6))
        >>> results = evaluate(log, ["always:b"], ["ips", "dr"])
        >>> [(r.candidate, r.estimator, round(r.value, 2), r.warning) for r in results]
        [('always:b', 'ips', 0.61, False), ('always:b', 'dr', 0.55, False)]
    """
    unknown = [name for name in estimators if name not in ESTIMATORS]
    if unknown:
        raise ValueError(f"unknown estimator(s) {unknown}; known: {', '.join(ESTIMATORS)}")
    parsed = [candidate_from_dict(c) for c in candidates]
    ids = fold_ids(log.n, folds, seed)
    rewards_hat = None
    if NEEDS_MODEL.intersection(estimators):
        if ridge is None:
            _, rewards_hat = select_ridge(log, ids)
        else:
            rewards_hat = cross_fit_rewards(log, ids, ridge=ridge)
    results = []
    for candidate in parsed:
        target = candidate.probabilities(log, ids, seed)
        for name in estimators:
            if name == "dm":
                estimate = ESTIMATORS[name](log, target, rewards_hat, level=level)
            elif name in NEEDS_MODEL:
                estimate = ESTIMATORS[name](log, target, rewards_hat, clip=clip, level=level)
            else:
                estimate = ESTIMATORS[name](log, target, clip=clip, level=level)
            results.append(dataclasses.replace(estimate, candidate=candidate.label))
    return results
