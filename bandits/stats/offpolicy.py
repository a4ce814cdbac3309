"""Estimates that correct for a bandit's changing traffic split.

A bandit sends more traffic to an arm when it looks good, and "when" matters: if the base rate
drifts (weekday vs weekend), the naive pooled mean of an arm mixes periods in the arm's own
proportions and can rank arms the wrong way round (Simpson's paradox). Two remedies:

* Inverse-propensity weighting of logged ``(arm, reward, propensity)`` decisions
  (:func:`ips_estimate`): each reward counts ``1 / propensity`` times, which re-creates the
  population the arm would have seen had it received all traffic.
* Period weighting of per-period summaries (:func:`period_weighted_means`): every arm's
  per-period means are averaged with the same weights, the periods' total traffic.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from bandits.stats.summaries import MetricStats, ProportionStats, SampleStats

__all__ = ["IPSEstimate", "PeriodWeightedMean", "ips_estimate", "period_weighted_means"]


@dataclass(frozen=True, slots=True)
class IPSEstimate:
    """Inverse-propensity estimates of one arm's mean reward (result of :func:`ips_estimate`).

    Attributes:
        horvitz_thompson: ``sum_{i: a_i = arm} r_i / p_i / N``; unbiased.
        horvitz_thompson_se: Its standard error.
        hajek: ``sum_{i: a_i = arm} (r_i / p_i) / sum_{i: a_i = arm} (1 / p_i)``; self-normalised,
            slightly biased, usually far less variable.
        hajek_se: Its (linearised) standard error.
        n_records: ``N``, all logged decisions.
        n_arm: Decisions that chose ``arm``.
    """

    horvitz_thompson: float
    horvitz_thompson_se: float
    hajek: float
    hajek_se: float
    n_records: int
    n_arm: int


def ips_estimate(
    arms: Sequence[Hashable],
    rewards: Sequence[float],
    propensities: Sequence[float],
    arm: Hashable,
) -> IPSEstimate:
    """Horvitz-Thompson and Hajek estimates of ``arm``'s mean reward from logged decisions.

    Record ``i`` chose arm ``a_i`` with probability ``p_i`` (the logged propensity) and earned
    ``r_i``. With ``w_i = 1[a_i = arm] / p_i`` over all ``N`` records::

        HT    = mean(w r),                    se_HT    = sd(w r) / sqrt(N)
        Hajek = sum(w r) / sum(w),            se_Hajek = sqrt(sum(w**2 (r - Hajek)**2)
                                                              / (N (N - 1))) / mean(w)

    (``sd`` with ``N - 1`` degrees of freedom; the Hajek standard error is the delta-method
    one of a ratio estimator). Pass only records whose reward has been observed.

    Args:
        arms: Chosen arm per record.
        rewards: Reward per record.
        propensities: Probability with which the logging policy chose that arm, in ``(0, 1]``.
        arm: The arm to estimate.

    Raises:
        ValueError: Lengths differ, fewer than 2 records, a propensity outside ``(0, 1]``, a
            non-finite reward, or no record chose ``arm`` (Hajek is then undefined).

    Example:
        >>> e = ips_estimate(["a", "b", "a", "b"], [1.0, 0.0, 0.0, 1.0], [0.5, 0.5, 0.8, 0.2], "a")
        >>> e.horvitz_thompson, e.hajek, e.n_arm
        (0.5, 0.6153846153846154, 2)
    """
    n = len(arms)
    if not n == len(rewards) == len(propensities):
        raise ValueError(
            "arms, rewards and propensities must have the same length, got "
            f"{n}, {len(rewards)} and {len(propensities)}"
        )
    if n < 2:
        raise ValueError(f"ips_estimate needs at least 2 records, got {n}")
    r = np.asarray(rewards, dtype=np.float64)
    p = np.asarray(propensities, dtype=np.float64)
    if not np.all(np.isfinite(r)):
        raise ValueError("rewards must be finite")
    if not np.all((p > 0) & (p <= 1)):
        raise ValueError(f"propensities must be in (0, 1], got min {p.min()!r}, max {p.max()!r}")
    chosen = np.fromiter((a == arm for a in arms), dtype=bool, count=n)
    n_arm = int(chosen.sum())
    if n_arm == 0:
        raise ValueError(f"no record chose arm {arm!r}; its IPS estimate is undefined")
    w = np.where(chosen, 1.0 / p, 0.0)
    wr = w * r
    ht = float(wr.mean())
    ht_se = float(wr.std(ddof=1)) / math.sqrt(n)
    hajek = float(wr.sum() / w.sum())
    resid = w * (r - hajek)
    hajek_se = math.sqrt(float((resid**2).sum()) / (n * (n - 1))) / float(w.mean())
    return IPSEstimate(ht, ht_se, hajek, hajek_se, n, n_arm)


@dataclass(frozen=True, slots=True)
class PeriodWeightedMean:
    """One arm's period-weighted mean (result of :func:`period_weighted_means`).

    Attributes:
        mean: ``sum_t W_t m_t / sum_t W_t`` over the periods where the arm has data.
        se: ``sqrt(sum_t (W_t / sum W)**2 v_t / n_t)``.
        n: Observations of the arm over all periods.
        periods: Periods in which the arm has data.
    """

    mean: float
    se: float
    n: int
    periods: int


def period_weighted_means(
    periods: Sequence[Mapping[str, MetricStats]],
) -> dict[str, PeriodWeightedMean]:
    """Per-period arm means combined with weights proportional to each period's total traffic.

    With ``m_at``, ``v_at``, ``n_at`` the mean, per-observation variance and size of arm ``a``
    in period ``t``, and ``W_t = sum_a n_at`` the period's traffic (all arms)::

        mean_a = sum_{t: n_at > 0} W_t m_at / sum_{t: n_at > 0} W_t
        se_a   = sqrt(sum_t (W_t / sum W)**2 v_at / n_at)

    Every arm is thus averaged over the periods with the *same* weights, whatever share of
    traffic the bandit gave it in each, which removes the confounding of arm and period. An
    arm is compared fairly only over periods in which it has data; an arm absent from some
    periods is averaged over the rest. An arm with no data at all gets mean 0, se 0, n 0.

    Args:
        periods: Per period, the summary of each arm (all of one kind within an arm).

    Raises:
        ValueError: A value is not :class:`SampleStats` or :class:`ProportionStats`.

    Example:
        >>> from bandits.stats import ProportionStats as P
        >>> r = period_weighted_means([{"a": P(900, 108), "b": P(100, 10)},
        ...                            {"a": P(100, 52), "b": P(900, 450)}])
        >>> round(r["a"].mean, 6), round(r["b"].mean, 6)
        (0.32, 0.3)
    """
    weights = []
    for t, period in enumerate(periods):
        for arm, s in period.items():
            if not isinstance(s, SampleStats | ProportionStats):
                raise ValueError(f"periods[{t}][{arm!r}] must be SampleStats or ProportionStats")
        weights.append(float(sum(s.n for s in period.values())))
    names = list(dict.fromkeys(arm for period in periods for arm in period))
    out = {}
    for arm in names:
        used = [(w, p[arm]) for w, p in zip(weights, periods, strict=True) if arm in p and p[arm].n]
        total = math.fsum(w for w, _ in used)
        if total == 0:
            out[arm] = PeriodWeightedMean(0.0, 0.0, 0, 0)
            continue
        mean = math.fsum(w * s.mean for w, s in used) / total
        var = math.fsum((w / total) ** 2 * s.variance / s.n for w, s in used)
        out[arm] = PeriodWeightedMean(mean, math.sqrt(var), sum(s.n for _, s in used), len(used))
    return out
