"""The reward model ``q(x, a)`` of the direct method and doubly robust, by cross-fitting.

Per arm, a ridge regression (numpy, through :func:`bandits.contextual.fit_ridge`) on the
features ``[1, x]`` of the arm's training records, shrunk towards the mean training reward
``ybar`` of all arms::

    q(x, a) = ybar + [1, x]' beta_a,   beta_a = argmin |y_a - ybar - X_a beta|^2 + ridge |beta|^2

An arm with few records thus predicts close to the overall mean instead of extrapolating
from them (which matters for DR: the records of rarely logged arms carry the largest
weights, and a wild ``q`` there inflates the variance). Without contexts the features are
just ``[1]``: ``q(a) = ybar + n_a (ybar_a - ybar) / (n_a + ridge)``. An arm with no training
record gets ``ybar`` (0 without any record).

The penalty is the prior's weight in units of observations, and the right amount depends on
the data: for sparse clicks (rates ~0.4 %) an arm's lucky click must be shrunk hard, for
rewards with large arm differences hardly at all. :func:`select_ridge` picks it from
:data:`RIDGE_GRID` by the cross-fitted squared error of the logged rewards, using the same
folds (one hyperparameter chosen on all records: a negligible leak).

Cross-fitting (Chernozhukov et al. 2018): the records are split into ``folds`` seeded folds and
the prediction for a record comes from the model fitted on the other folds. Doubly robust is
unbiased only when ``q`` does not depend on the record it corrects; an in-sample fit would
fold the record's own noise into ``q`` and bias DR towards DM.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from bandits._checks import check_int, check_real
from bandits.contextual.stats import RidgeStats, fit_ridge
from bandits.ope.log import BanditLog

__all__ = ["RIDGE_GRID", "cross_fit_rewards", "fit_rewards", "fold_ids", "select_ridge"]

Array = npt.NDArray[np.float64]
Indices = npt.NDArray[np.intp]

RIDGE_GRID = (0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0)
"""Penalties :func:`select_ridge` tries."""


def fold_ids(n: int, folds: int, seed: int) -> Indices:
    """Fold of every record: a seeded permutation dealt round-robin (sizes differ by <= 1).

    Example:
        >>> sorted(np.bincount(fold_ids(10, 3, seed=0)).tolist())
        [3, 3, 4]
    """
    check_int("folds", folds, ge=2)
    if n < folds:
        raise ValueError(f"cross-fitting needs at least folds={folds} records, got {n}")
    ids: Indices = np.random.default_rng(seed).permutation(n) % folds
    return ids.astype(np.intp)


def fit_rewards(log: BanditLog, train: Indices, predict: Indices, *, ridge: float = 1.0) -> Array:
    """``q(x_i, a)`` for the records ``predict`` from the model fitted on the records ``train``.

    Returns:
        Shape ``(len(predict), K)``.
    """
    lam = check_real("ridge", ridge, gt=0)
    actions, rewards = log.actions[train], log.rewards[train]
    base = float(rewards.mean()) if rewards.size else 0.0
    out = np.full((predict.shape[0], log.k), base)
    features = _features(log)
    for a in range(log.k):
        mine = actions == a
        if not mine.any():
            continue
        x = features[train][mine]
        beta = fit_ridge(RidgeStats.from_observations(x, rewards[mine] - base), lam).coef
        out[:, a] = base + features[predict] @ beta
    return out


def _features(log: BanditLog) -> Array:
    ones = np.ones((log.n, 1))
    return ones if log.contexts is None else np.hstack([ones, log.contexts])


def cross_fit_rewards(log: BanditLog, folds: Indices, *, ridge: float = 1.0) -> Array:
    """Out-of-fold ``q(x_i, a)`` for every record and arm, shape ``(N, K)``.

    Args:
        log: The log.
        folds: Fold of every record (:func:`fold_ids`).
        ridge: Ridge penalty of the per-arm models.

    Example:
        >>> log = BanditLog.from_records(["a", "b"], ["a", "b"] * 3, [0.5] * 6,
        ...                              [1.0, 0.0, 1.0, 0.0, 1.0, 0.0])
        >>> cross_fit_rewards(log, fold_ids(6, 3, seed=0))[0].tolist()  # shrunk towards 0.5
        [0.625, 0.0625]
    """
    ids = np.asarray(folds, dtype=np.intp)
    if ids.shape != (log.n,):
        raise ValueError(f"folds must give one fold per record ({log.n}), got {ids.shape}")
    out = np.empty((log.n, log.k))
    for f in np.unique(ids):
        held = np.flatnonzero(ids == f)
        out[held] = fit_rewards(log, np.flatnonzero(ids != f), held, ridge=ridge)
    return out


def select_ridge(
    log: BanditLog, folds: Indices, grid: Sequence[float] = RIDGE_GRID
) -> tuple[float, Array]:
    """The penalty of ``grid`` with the least cross-fitted squared error, and its predictions.

    The error is ``mean((q(x_i, a_i) - r_i)^2)`` over the logged actions; ties go to the
    larger penalty (the simpler model).

    Returns:
        ``(ridge, cross_fit_rewards(log, folds, ridge=ridge))``.

    Example:
        >>> log = BanditLog.from_records(["a", "b"], ["a", "b"] * 20, [0.5] * 40,
        ...                              [1.0, 0.0] * 20)
        >>> select_ridge(log, fold_ids(40, 4, seed=0))[0]
        0.1
    """
    if not grid:
        raise ValueError("grid must hold at least one ridge penalty")
    best: tuple[float, float, Array] | None = None
    rows = np.arange(log.n)
    for lam in sorted(grid, reverse=True):
        q = cross_fit_rewards(log, folds, ridge=lam)
        error = float(np.mean((q[rows, log.actions] - log.rewards) ** 2))
        if best is None or error < best[0]:
            best = (error, lam, q)
    assert best is not None
    return best[1], best[2]
