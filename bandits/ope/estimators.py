"""Off-policy value estimators: IPS, self-normalised IPS, direct method, doubly robust.

A log holds records ``(x_i, a_i, p_i, r_i)``: the logging policy chose ``a_i`` with
probability ``p_i`` and earned ``r_i``. A *target* policy is given by its action probabilities
``pi(a | x_i)`` per record, an ``(N, K)`` array. With the importance weights
``w_i = pi(a_i | x_i) / p_i`` and a reward model ``q(x, a)``::

    IPS    V = mean(w r)                                        unbiased
    SNIPS  V = sum(w r) / sum(w)                                consistent, bias O(1/N)
    DM     V = mean(sum_a pi(a | x_i) q(x_i, a))                biased unless q is right
    DR     V = mean(sum_a pi(a | x_i) q(x_i, a) + w_i (r_i - q(x_i, a_i)))
                                                                unbiased if p is right,
                                                                whatever q (given q does not
                                                                depend on record i)

Intervals are normal approximations ``V +- z_{(1+level)/2} se`` with ``se`` from the per-record
influence values ``phi_i`` (``V = mean(phi)`` for IPS, DM and DR, so ``se = sd(phi) / sqrt(N)``;
SNIPS uses the delta method of a ratio, ``se = sqrt(sum(w^2 (r - V)^2) / (N (N - 1))) /
mean(w)``). The DM interval treats ``q`` as fixed: it ignores the model's own error and bias,
so it under-covers whenever the model is wrong; prefer DR.

The approximation needs many records that carry weight. Every estimate reports the effective
sample size of the weights ``ESS = (sum w)^2 / sum w^2`` and the largest weight, and sets
``warning`` with a ``reason`` when ``ESS < max(30, 0.01 N)`` or one record carries more than
5 % of the total weight (or the target puts no probability on any logged action). For DM the
weights are not used, but a small ESS still means the target relies on actions the log
rarely took, where the reward model extrapolates.

Clipping at ``M`` replaces ``w`` by ``min(w, M)``: less variance, some bias. For IPS with
rewards in ``[0, R]`` the bias is ``-E[(w - M)_+ r]``, in ``[-R E[(w - M)_+], 0]``: clipped IPS
is biased *downward*, by at most ``R`` times the target's probability mass on actions with
weight above ``M``. ``clip_bias_bound`` reports ``max |r| mean((w - M)_+)``, the log's estimate
of that bound (for DR the same with the residuals ``r - q``, and the sign is unknown).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt
from scipy.special import ndtri

from bandits._checks import check_real
from bandits.ope.log import BanditLog

__all__ = [
    "ESTIMATORS",
    "MAX_WEIGHT_SHARE",
    "MIN_ESS",
    "MIN_ESS_FRACTION",
    "Estimate",
    "dm",
    "dr",
    "importance_weights",
    "ips",
    "snips",
]

Array = npt.NDArray[np.float64]

MIN_ESS = 30.0
"""Warn when the effective sample size is below this many records ..."""
MIN_ESS_FRACTION = 0.01
"""... or below this fraction of ``N``."""
MAX_WEIGHT_SHARE = 0.05
"""Warn when one record carries more than this share of the total importance weight."""


@dataclass(frozen=True)
class Estimate:
    """One estimator's estimate of one target policy's mean reward per decision.

    Attributes:
        estimator: ``"ips"``, ``"snips"``, ``"dm"`` or ``"dr"``.
        value: The estimate.
        se: Its standard error (``inf`` when undefined).
        ci_low: Lower end of the normal-approximation interval.
        ci_high: Upper end.
        level: Confidence level of the interval.
        n: Records used.
        ess: Effective sample size of the (clipped) importance weights.
        max_weight: Largest (unclipped) importance weight.
        clip: The clipping threshold ``M``, or ``None``.
        clipped: Records whose weight exceeded ``M``.
        clip_bias_bound: Estimated bound on the bias clipping causes (see the module
            docstring); ``None`` without clipping or for SNIPS and DM.
        warning: Whether the estimate is unreliable.
        reason: Why, in words; ``None`` when ``warning`` is false.
        candidate: Label of the target policy (set by :func:`bandits.ope.evaluate`).
    """

    estimator: str
    value: float
    se: float
    ci_low: float
    ci_high: float
    level: float
    n: int
    ess: float
    max_weight: float
    clip: float | None
    clipped: int
    clip_bias_bound: float | None
    warning: bool
    reason: str | None
    candidate: str = ""

    def to_dict(self) -> dict[str, object]:
        """JSON-serialisable dict; non-finite numbers become ``None``."""
        return {
            k: None if isinstance(v, float) and not math.isfinite(v) else v
            for k, v in asdict(self).items()
        }

    def covers(self, value: float) -> bool:
        """Whether the interval contains ``value``."""
        return self.ci_low <= value <= self.ci_high


def _check_target(log: BanditLog, target: npt.ArrayLike) -> Array:
    pi = np.asarray(target, dtype=np.float64)
    if pi.shape != (log.n, log.k):
        raise ValueError(f"target must have shape (N, K) = ({log.n}, {log.k}), got {pi.shape}")
    if not np.isfinite(pi).all() or (pi < 0).any():
        raise ValueError("target probabilities must be finite and >= 0")
    if log.n and float(np.abs(pi.sum(axis=1) - 1.0).max()) > 1e-6:
        raise ValueError("target probabilities must sum to 1 in every row (within 1e-6)")
    return pi


def importance_weights(log: BanditLog, target: npt.ArrayLike) -> Array:
    """``w_i = pi(a_i | x_i) / p_i`` for every record.

    Example:
        >>> log = BanditLog.from_records(["a", "b"], ["a", "b"], [0.5, 0.25], [1.0, 0.0])
        >>> importance_weights(log, [[1.0, 0.0], [0.5, 0.5]]).tolist()
        [2.0, 2.0]
    """
    pi = _check_target(log, target)
    weights: Array = pi[np.arange(log.n), log.actions] / log.propensities
    return weights


def _z(level: float) -> float:
    check_real("level", level, gt=0, lt=1)
    return float(ndtri(0.5 + level / 2.0))


def _check_clip(clip: float | None) -> float | None:
    return None if clip is None else check_real("clip", clip, gt=0)


def _diagnose(weights: Array, raw_max: float) -> tuple[float, str | None]:
    """ESS of ``weights`` and the reason to warn, if any."""
    n = weights.shape[0]
    total = float(weights.sum())
    if total <= 0.0:
        return 0.0, "the target puts no probability on any logged action"
    ess = total * total / float((weights * weights).sum())
    reasons = []
    threshold = max(MIN_ESS, MIN_ESS_FRACTION * n)
    if ess < threshold:
        reasons.append(
            f"effective sample size {ess:.1f} of {n} records is below {threshold:g}: the "
            "target differs too much from the logging policy"
        )
    share = float(weights.max()) / total
    if share > MAX_WEIGHT_SHARE:
        reasons.append(
            f"one record carries {share:.0%} of the total importance weight (largest weight "
            f"{raw_max:.3g}): the interval is unreliable"
        )
    return ess, "; ".join(reasons) or None


def _finish(
    estimator: str,
    value: float,
    se: float,
    level: float,
    weights: Array,
    raw: Array,
    clip: float | None,
    bias_bound: float | None,
) -> Estimate:
    z = _z(level)
    ess, reason = _diagnose(weights, float(raw.max()) if raw.size else 0.0)
    return Estimate(
        estimator=estimator,
        value=value,
        se=se,
        ci_low=value - z * se,
        ci_high=value + z * se,
        level=level,
        n=int(raw.shape[0]),
        ess=ess,
        max_weight=float(raw.max()) if raw.size else 0.0,
        clip=clip,
        clipped=0 if clip is None else int((raw > clip).sum()),
        clip_bias_bound=bias_bound,
        warning=reason is not None,
        reason=reason,
    )


def _weights(log: BanditLog, pi: Array, clip: float | None) -> tuple[Array, Array]:
    if log.n < 2:
        raise ValueError(f"off-policy estimates need at least 2 records, got {log.n}")
    raw: Array = pi[np.arange(log.n), log.actions] / log.propensities
    return (raw if clip is None else np.minimum(raw, clip)), raw


def _mean_estimate(phi: Array) -> tuple[float, float]:
    return float(phi.mean()), float(phi.std(ddof=1)) / math.sqrt(phi.shape[0])


def _bias_bound(raw: Array, clip: float | None, residual: Array) -> float | None:
    if clip is None:
        return None
    excess = np.maximum(raw - clip, 0.0)
    return float(np.abs(residual).max()) * float(excess.mean())


def ips(
    log: BanditLog, target: npt.ArrayLike, *, clip: float | None = None, level: float = 0.95
) -> Estimate:
    """Inverse propensity scoring: ``V = mean(w r)``, ``phi_i = w_i r_i``.

    Example:
        >>> log = BanditLog.from_records(["a", "b"], ["a", "b", "a", "b"], [0.5] * 4,
        ...                              [1.0, 0.0, 1.0, 1.0])
        >>> round(ips(log, [[1.0, 0.0]] * 4).value, 6)  # always "a": 2 * (1 + 1) / 4
        1.0
    """
    pi = _check_target(log, target)
    clip = _check_clip(clip)
    w, raw = _weights(log, pi, clip)
    value, se = _mean_estimate(w * log.rewards)
    return _finish("ips", value, se, level, w, raw, clip, _bias_bound(raw, clip, log.rewards))


def snips(
    log: BanditLog, target: npt.ArrayLike, *, clip: float | None = None, level: float = 0.95
) -> Estimate:
    """Self-normalised IPS: ``V = sum(w r) / sum(w)``.

    Returns value 0 with an infinite se (and a warning) when every weight is 0.
    """
    pi = _check_target(log, target)
    clip = _check_clip(clip)
    w, raw = _weights(log, pi, clip)
    total = float(w.sum())
    if total <= 0.0:
        return _finish("snips", 0.0, math.inf, level, w, raw, clip, None)
    value = float((w * log.rewards).sum()) / total
    n = log.n
    resid = w * (log.rewards - value)
    se = math.sqrt(float((resid * resid).sum()) / (n * (n - 1))) / (total / n)
    return _finish("snips", value, se, level, w, raw, clip, None)


def _check_model(log: BanditLog, rewards_hat: npt.ArrayLike) -> Array:
    q = np.asarray(rewards_hat, dtype=np.float64)
    if q.shape != (log.n, log.k) or not np.isfinite(q).all():
        raise ValueError(
            f"rewards_hat must be a finite (N, K) = ({log.n}, {log.k}) array, got {q.shape}"
        )
    return q


def dm(
    log: BanditLog, target: npt.ArrayLike, rewards_hat: npt.ArrayLike, *, level: float = 0.95
) -> Estimate:
    """Direct method: ``V = mean(sum_a pi(a | x_i) q(x_i, a))``.

    Args:
        log: The log.
        target: ``pi(a | x_i)``, shape ``(N, K)``.
        rewards_hat: ``q(x_i, a)``, shape ``(N, K)`` (e.g. :func:`cross_fit_rewards`).
        level: Confidence level.
    """
    pi = _check_target(log, target)
    q = _check_model(log, rewards_hat)
    w, raw = _weights(log, pi, None)
    value, se = _mean_estimate((pi * q).sum(axis=1))
    return _finish("dm", value, se, level, w, raw, None, None)


def dr(
    log: BanditLog,
    target: npt.ArrayLike,
    rewards_hat: npt.ArrayLike,
    *,
    clip: float | None = None,
    level: float = 0.95,
) -> Estimate:
    """Doubly robust: DM plus the IPS-weighted residual of the logged action.

    ``q`` must not depend on record ``i`` itself for the unbiasedness to hold: pass
    cross-fitted predictions (:func:`cross_fit_rewards`).
    """
    pi = _check_target(log, target)
    q = _check_model(log, rewards_hat)
    clip = _check_clip(clip)
    w, raw = _weights(log, pi, clip)
    residual = log.rewards - q[np.arange(log.n), log.actions]
    value, se = _mean_estimate((pi * q).sum(axis=1) + w * residual)
    return _finish("dr", value, se, level, w, raw, clip, _bias_bound(raw, clip, residual))


Estimator = Callable[..., Estimate]

ESTIMATORS: dict[str, Estimator] = {"ips": ips, "snips": snips, "dm": dm, "dr": dr}
"""Every estimator by name; ``dm`` and ``dr`` also take ``rewards_hat``."""

NEEDS_MODEL = frozenset({"dm", "dr"})
