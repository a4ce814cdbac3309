"""Bayesian read-out of an experiment: chance to win, credible interval, risk, P(best).

Two arms use the Gaussian approximation of GrowthBook's gbstats: the effect (absolute or
relative, with the same delta-method standard error as :func:`~bandits.stats.welch_ttest`) is
``N(estimate, se**2)``, optionally combined with a Normal prior. ``K`` arms use conjugate
posteriors and Monte Carlo (:func:`prob_best`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats as sps

from bandits._checks import check_int, check_real
from bandits.posteriors import BetaPosterior
from bandits.stats._effect import check_alpha, check_pair, effect
from bandits.stats.summaries import MetricStats, ProportionStats, RatioStats, SampleStats

__all__ = [
    "BayesianResult",
    "ProbBestResult",
    "bayesian_effect",
    "normal_expected_loss",
    "prob_best",
]


@dataclass(frozen=True, slots=True)
class BayesianResult:
    """Result of :func:`bayesian_effect`; all values are on the effect's scale.

    Attributes:
        chance_to_win: ``P(effect > 0)``.
        mean: Posterior mean of the effect.
        sd: Posterior standard deviation of the effect.
        ci: Equal-tailed ``1 - alpha`` credible interval.
        risk: ``(E[max(0, effect)], E[max(0, -effect)])``: the expected loss of keeping control
            and the expected loss of shipping treatment.
    """

    chance_to_win: float
    mean: float
    sd: float
    ci: tuple[float, float]
    risk: tuple[float, float]


NO_INFORMATION = BayesianResult(chance_to_win=0.5, mean=0.0, sd=0.0, ci=(0.0, 0.0), risk=(0.0, 0.0))
"""Documented default for degenerate data without a prior."""


def normal_expected_loss(mu: float, sd: float) -> float:
    """``E[max(0, -X)]`` for ``X ~ N(mu, sd**2)``: ``sd phi(mu/sd) - mu Phi(-mu/sd)``.

    ``max(0, -mu)`` when ``sd == 0``.

    Example:
        >>> round(normal_expected_loss(0.0, 1.0), 6)  # 1 / sqrt(2 pi)
        0.398942
    """
    if sd == 0.0:
        return max(0.0, -mu)
    z = mu / sd
    return float(sd * sps.norm.pdf(z) - mu * sps.norm.sf(z))


def bayesian_effect(
    control: MetricStats,
    treatment: MetricStats,
    *,
    relative: bool = True,
    prior_mean: float | None = None,
    prior_sd: float | None = None,
    alpha: float = 0.05,
) -> BayesianResult:
    """Posterior of the treatment effect under a Gaussian approximation (gbstats' approach).

    The data give ``d ~ N(estimate, se**2)`` (see :func:`~bandits.stats.welch_ttest` for
    ``estimate`` and ``se``, absolute or relative; for :class:`RatioStats` the delta-method
    normal approximation of the ratio's effect). With a prior ``N(m0, s0**2)`` the
    posterior is Normal with::

        precision = 1/se**2 + 1/s0**2
        mean      = (estimate/se**2 + m0/s0**2) / precision,   sd = precision**-0.5

    and without one, ``mean = estimate``, ``sd = se`` (flat prior). Then, with ``phi`` and
    ``Phi`` the standard Normal pdf and cdf::

        chance_to_win = Phi(mean / sd)
        ci            = mean -/+ z_{1 - alpha/2} sd
        risk          = (E[max(0, X)], E[max(0, -X)]),  X ~ N(mean, sd**2)
        E[max(0, -X)] = sd phi(mean/sd) - mean Phi(-mean/sd)
        E[max(0,  X)] = sd phi(mean/sd) + mean Phi(mean/sd)

    The risk is in the effect's units: a fraction of the control mean when ``relative`` (so
    ``risk * |mA|`` is in metric units), metric units otherwise.

    Degenerate data (see :func:`~bandits.stats.welch_ttest`) carry no information: the result
    is the prior's (``mean = m0``, ``sd = s0``), or ``NO_INFORMATION`` without a prior (chance
    to win 0.5, everything else 0), never NaN.

    Args:
        control: Summary of arm A.
        treatment: Summary of arm B, of the same kind.
        relative: Model the relative lift instead of the absolute difference.
        prior_mean: Mean of the Normal prior on the effect; give both or neither.
        prior_sd: Standard deviation of the prior, ``> 0``; give both or neither.
        alpha: ``1 - alpha`` is the credible interval's mass, in ``(0, 1)``.

    Raises:
        ValueError: Only one prior parameter is given, ``prior_sd <= 0``, ``alpha`` is out of
            range, or the arms are of different kinds.

    Example:
        >>> from bandits.stats import ProportionStats
        >>> r = bayesian_effect(ProportionStats(1000, 100), ProportionStats(1000, 130))
        >>> round(r.chance_to_win, 4), round(r.mean, 4), round(r.sd, 4)
        (0.9673, 0.3, 0.1628)
        >>> [round(x, 4) for x in r.risk]
        [0.3021, 0.0021]
    """
    check_pair(control, treatment)
    a = check_alpha(alpha)
    if (prior_mean is None) != (prior_sd is None):
        raise ValueError("give both prior_mean and prior_sd, or neither")
    eff = effect(control, treatment, relative=relative)
    if prior_mean is not None and prior_sd is not None:
        m0 = check_real("prior_mean", prior_mean)
        s0 = check_real("prior_sd", prior_sd, gt=0)
        if eff is None:
            mean, sd = m0, s0
        else:
            precision = 1.0 / eff.variance + 1.0 / s0**2
            mean = (eff.estimate / eff.variance + m0 / s0**2) / precision
            sd = 1.0 / math.sqrt(precision)
    elif eff is None:
        return NO_INFORMATION
    else:
        mean, sd = eff.estimate, math.sqrt(eff.variance)
    q = float(sps.norm.ppf(1 - a / 2))
    return BayesianResult(
        chance_to_win=float(sps.norm.cdf(mean / sd)),
        mean=mean,
        sd=sd,
        ci=(mean - q * sd, mean + q * sd),
        risk=(normal_expected_loss(-mean, sd), normal_expected_loss(mean, sd)),
    )


@dataclass(frozen=True, slots=True)
class ProbBestResult:
    """Result of :func:`prob_best`, keyed by arm.

    Attributes:
        prob_best: ``P(arm has the highest mean)``; sums to 1 (ties split evenly).
        expected_loss: ``E[max_k mu_k - mu_arm]``, what choosing the arm costs on average.
        draws: Monte Carlo draws; the standard error of ``p`` is ``sqrt(p (1 - p) / draws)``.
    """

    prob_best: Mapping[str, float]
    expected_loss: Mapping[str, float]
    draws: int


def _draws(
    arm: str, stats: MetricStats, rng: np.random.Generator, size: int
) -> npt.NDArray[np.float64]:
    if isinstance(stats, ProportionStats):
        # Beta(1 + s, 1 + n - s): uniform prior.
        return BetaPosterior(1.0 + stats.successes, 1.0 + stats.n - stats.successes).sample_many(
            rng, size
        )
    if isinstance(stats, SampleStats | RatioStats):
        if stats.n < 2:
            raise ValueError(f"arm {arm!r} needs n >= 2 for a Gaussian posterior, got {stats.n}")
        if isinstance(stats, RatioStats) and stats.denominator_sum == 0.0:
            raise ValueError(f"arm {arm!r} has a ratio with denominator sum 0: no posterior")
        return rng.normal(stats.mean, math.sqrt(stats.variance / stats.n), size=size)
    raise ValueError(
        f"arm {arm!r} must be SampleStats, ProportionStats or RatioStats, got {stats!r}"
    )


def prob_best(
    arms: Mapping[str, MetricStats], draws: int = 10_000, seed: int = 0
) -> ProbBestResult:
    """``P(arm is best)`` and expected loss for ``K`` arms, by seeded Monte Carlo.

    Posteriors of each arm's mean: ``Beta(1 + s, 1 + n - s)`` for :class:`ProportionStats`
    (uniform prior, as :func:`bandits.posteriors.prob_best`), ``N(mean, variance / n)`` for
    :class:`SampleStats` and :class:`RatioStats` (the Gaussian approximation of
    :func:`bayesian_effect`, flat prior; for a ratio, the delta-method variance).
    From ``draws`` joint samples ``mu[k, j]``::

        prob_best[k]     = mean_j 1[mu[k, j] = max_i mu[i, j]]  (ties share the credit)
        expected_loss[k] = mean_j (max_i mu[i, j] - mu[k, j])

    Args:
        arms: Summaries per arm, at least one.
        draws: Joint samples, ``>= 1``.
        seed: Seed of the generator; the same inputs give the same result.

    Raises:
        ValueError: No arms, ``draws < 1``, a :class:`SampleStats` or :class:`RatioStats` arm
            with ``n < 2``, or a ratio arm whose denominator sums to 0.

    Example:
        >>> from bandits.stats import ProportionStats
        >>> r = prob_best({"a": ProportionStats(100, 10), "b": ProportionStats(100, 20)})
        >>> round(r.prob_best["b"], 2), round(r.expected_loss["b"], 4)
        (0.98, 0.0004)
    """
    if not arms:
        raise ValueError("prob_best needs at least one arm")
    n = check_int("draws", draws, ge=1)
    names = list(arms)
    rng = np.random.default_rng(seed)
    samples = np.stack([_draws(name, arms[name], rng, n) for name in names])
    best = samples.max(axis=0)
    is_max = samples == best
    credit = (is_max / is_max.sum(axis=0)).sum(axis=1) / n
    loss = (best - samples).mean(axis=1)
    return ProbBestResult(
        prob_best={k: float(c) for k, c in zip(names, credit, strict=True)},
        expected_loss={k: float(x) for k, x in zip(names, loss, strict=True)},
        draws=n,
    )
