"""Conjugate posteriors over an arm's mean reward, built from :class:`ArmStats`.

* Binary (or fractional, in ``[0, 1]``) rewards: Beta-Bernoulli.
* Continuous rewards with unknown mean and variance: Normal-Gamma.

:func:`prob_best` turns posteriors into ``P(arm has the highest mean)`` by Monte Carlo; that is
the Bayesian verdict of an experiment and the routing weight of Thompson sampling.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt

from bandits._checks import check_int, check_real
from bandits.arm_stats import ArmStats

__all__ = [
    "BetaPosterior",
    "NormalGammaPosterior",
    "Posterior",
    "RewardModel",
    "check_beta_prior",
    "check_normal_gamma_prior",
    "posterior_for",
    "prob_best",
    "prob_best_of",
]

RewardModel = Literal["binary", "continuous"]
"""Reward likelihood: ``"binary"`` (Beta-Bernoulli) or ``"continuous"`` (Normal-Gamma)."""


class Posterior(Protocol):
    """What every posterior over an arm's mean offers."""

    @property
    def mean(self) -> float:
        """Posterior mean of the arm's mean reward."""
        ...

    def sample(self, rng: np.random.Generator) -> float:
        """One draw of the arm's mean reward."""
        ...

    def sample_many(self, rng: np.random.Generator, size: int) -> npt.NDArray[np.float64]:
        """``size`` independent draws of the arm's mean reward."""
        ...


def check_beta_prior(prior_alpha: float, prior_beta: float) -> tuple[float, float]:
    """Validate a Beta prior; both parameters must be finite and ``> 0``.

    Example:
        >>> check_beta_prior(1, 2)
        (1.0, 2.0)
    """
    return check_real("prior_alpha", prior_alpha, gt=0), check_real("prior_beta", prior_beta, gt=0)


def check_normal_gamma_prior(
    prior_mean: float, prior_kappa: float, prior_alpha: float, prior_beta: float
) -> tuple[float, float, float, float]:
    """Validate a Normal-Gamma prior: finite mean, positive ``kappa``, ``alpha``, ``beta``.

    Example:
        >>> check_normal_gamma_prior(0, 1, 1, 0)
        Traceback (most recent call last):
        ...
        ValueError: prior_beta must be in (0, inf), got 0.0
    """
    return (
        check_real("prior_mean", prior_mean),
        check_real("prior_kappa", prior_kappa, gt=0),
        check_real("prior_alpha", prior_alpha, gt=0),
        check_real("prior_beta", prior_beta, gt=0),
    )


@dataclass(frozen=True, slots=True)
class BetaPosterior:
    """Beta posterior of a Bernoulli success rate.

    With prior ``Beta(a0, b0)``, ``n`` rewards in ``[0, 1]`` summing to ``s``::

        alpha = a0 + s
        beta  = b0 + n - s

    Fractional rewards in ``[0, 1]`` are the usual "fractional counts" generalisation.

    Example:
        >>> post = BetaPosterior.from_stats(ArmStats.from_rewards([1, 1, 0]))
        >>> post
        BetaPosterior(alpha=3.0, beta=2.0)
        >>> post.mean
        0.6
        >>> rng = np.random.default_rng(0)
        >>> round(post.sample(rng), 4)
        0.5217
    """

    alpha: float
    beta: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "alpha", check_real("alpha", self.alpha, gt=0))
        object.__setattr__(self, "beta", check_real("beta", self.beta, gt=0))

    @classmethod
    def from_stats(
        cls, stats: ArmStats, prior_alpha: float = 1.0, prior_beta: float = 1.0
    ) -> BetaPosterior:
        """Posterior after observing ``stats`` under a ``Beta(prior_alpha, prior_beta)`` prior.

        Raises:
            ValueError: A prior parameter is not ``> 0``, or the rewards are not in ``[0, 1]``
                (then ``beta`` would not be positive).
        """
        a0, b0 = check_beta_prior(prior_alpha, prior_beta)
        alpha = a0 + stats.reward_sum
        beta = b0 + stats.feedback - stats.reward_sum
        if alpha <= 0 or beta <= 0:
            raise ValueError(
                f"binary rewards must lie in [0, 1]; got reward_sum={stats.reward_sum} over "
                f"feedback={stats.feedback}"
            )
        return cls(alpha, beta)

    @property
    def mean(self) -> float:
        """``alpha / (alpha + beta)``."""
        return self.alpha / (self.alpha + self.beta)

    def sample(self, rng: np.random.Generator) -> float:
        """One draw from ``Beta(alpha, beta)``."""
        return float(rng.beta(self.alpha, self.beta))

    def sample_many(self, rng: np.random.Generator, size: int) -> npt.NDArray[np.float64]:
        """``size`` draws from ``Beta(alpha, beta)``."""
        return rng.beta(self.alpha, self.beta, size=size)


@dataclass(frozen=True, slots=True)
class NormalGammaPosterior:
    """Normal-Gamma posterior for Gaussian rewards with unknown mean and precision.

    Model: ``x ~ N(mu, 1/tau)``, ``tau ~ Gamma(alpha, rate=beta)``,
    ``mu | tau ~ N(mu0, 1/(kappa tau))``. After ``n`` rewards with mean ``xbar`` and centred sum
    of squares ``S = sum(x**2) - n xbar**2``::

        kappa_n = kappa0 + n
        mu_n    = (kappa0 mu0 + sum(x)) / kappa_n
        alpha_n = alpha0 + n / 2
        beta_n  = beta0 + S / 2 + kappa0 n (xbar - mu0)**2 / (2 kappa_n)

    The marginal of ``mu`` is Student-t with ``2 alpha_n`` degrees of freedom, location
    ``mu_n`` and scale ``sqrt(beta_n / (alpha_n kappa_n))``.

    Example:
        >>> post = NormalGammaPosterior.from_stats(ArmStats.from_rewards([1.0, 3.0]))
        >>> post  # doctest: +ELLIPSIS
        NormalGammaPosterior(mu=1.333..., kappa=3.0, alpha=2.0, beta=3.333...)
        >>> round(post.t_scale, 4)
        0.7454
    """

    mu: float
    kappa: float
    alpha: float
    beta: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "mu", check_real("mu", self.mu))
        object.__setattr__(self, "kappa", check_real("kappa", self.kappa, gt=0))
        object.__setattr__(self, "alpha", check_real("alpha", self.alpha, gt=0))
        object.__setattr__(self, "beta", check_real("beta", self.beta, gt=0))

    @classmethod
    def from_stats(
        cls,
        stats: ArmStats,
        prior_mean: float = 0.0,
        prior_kappa: float = 1.0,
        prior_alpha: float = 1.0,
        prior_beta: float = 1.0,
    ) -> NormalGammaPosterior:
        """Posterior after observing ``stats`` under the given Normal-Gamma prior.

        Raises:
            ValueError: A prior parameter is out of range.
        """
        mu0, k0, a0, b0 = check_normal_gamma_prior(prior_mean, prior_kappa, prior_alpha, prior_beta)
        n = stats.feedback
        if n == 0:
            return cls(mu0, k0, a0, b0)
        xbar = stats.reward_sum / n
        # Rounding can push the centred sum of squares slightly below zero for constant rewards.
        centred = max(stats.reward_sum_squares - n * xbar * xbar, 0.0)
        kappa_n = k0 + n
        return cls(
            mu=(k0 * mu0 + stats.reward_sum) / kappa_n,
            kappa=kappa_n,
            alpha=a0 + n / 2,
            beta=b0 + centred / 2 + k0 * n * (xbar - mu0) ** 2 / (2 * kappa_n),
        )

    @property
    def mean(self) -> float:
        """Posterior mean of ``mu``: ``mu_n``."""
        return self.mu

    @property
    def t_scale(self) -> float:
        """Scale of the Student-t marginal of ``mu``: ``sqrt(beta / (alpha kappa))``."""
        return math.sqrt(self.beta / (self.alpha * self.kappa))

    def sample(self, rng: np.random.Generator) -> float:
        """One draw of ``mu``: ``tau ~ Gamma(alpha, rate=beta)``, ``mu ~ N(mu, 1/(kappa tau))``."""
        tau = rng.gamma(self.alpha, 1.0 / self.beta)
        return float(rng.normal(self.mu, 1.0 / math.sqrt(self.kappa * tau)))

    def sample_many(self, rng: np.random.Generator, size: int) -> npt.NDArray[np.float64]:
        """``size`` draws of ``mu`` (same scheme as :meth:`sample`, vectorised)."""
        tau = rng.gamma(self.alpha, 1.0 / self.beta, size=size)
        return self.mu + rng.standard_normal(size) / np.sqrt(self.kappa * tau)


def posterior_for(
    stats: ArmStats, reward: RewardModel, **prior: float
) -> BetaPosterior | NormalGammaPosterior:
    """Posterior of the given reward model; ``prior`` goes to its ``from_stats``.

    Example:
        >>> posterior_for(ArmStats.from_rewards([1, 0]), "binary", prior_alpha=2)
        BetaPosterior(alpha=3.0, beta=2.0)

    Raises:
        ValueError: ``reward`` is not ``"binary"`` or ``"continuous"``.
    """
    if reward == "binary":
        return BetaPosterior.from_stats(stats, **prior)
    if reward == "continuous":
        return NormalGammaPosterior.from_stats(stats, **prior)
    raise ValueError(f"reward must be 'binary' or 'continuous', got {reward!r}")


def prob_best_of(
    posteriors: Mapping[str, Posterior], *, draws: int, rng: np.random.Generator
) -> dict[str, float]:
    """Monte Carlo ``P(arm has the highest mean)`` from posteriors.

    Draws ``draws`` joint samples, one per arm, and credits each sample's maximum; exact ties
    split the credit equally, so the result sums to 1 (to rounding).

    Raises:
        ValueError: No posteriors, or ``draws < 1``.
    """
    if not posteriors:
        raise ValueError("prob_best needs at least one arm")
    n = check_int("draws", draws, ge=1)
    names = list(posteriors)
    if len(names) == 1:
        return {names[0]: 1.0}
    samples = np.stack([posteriors[name].sample_many(rng, n) for name in names])
    is_max = samples == samples.max(axis=0)
    credit = (is_max / is_max.sum(axis=0)).sum(axis=1) / n
    return {name: float(c) for name, c in zip(names, credit, strict=True)}


def prob_best(
    stats: Mapping[str, ArmStats],
    reward: RewardModel = "binary",
    *,
    draws: int = 10_000,
    seed: int = 0,
    **prior: float,
) -> dict[str, float]:
    """``P(arm has the highest mean reward)`` for each arm, by seeded Monte Carlo.

    The Monte Carlo standard error of each value is ``sqrt(p (1 - p) / draws)``.

    Args:
        stats: Statistics per arm.
        reward: Reward model choosing the posterior.
        draws: Joint posterior samples.
        seed: Seed of the sampling generator, so the same stats give the same answer.
        **prior: Prior parameters for the posterior's ``from_stats``.

    Example:
        >>> p = prob_best({"a": ArmStats.from_rewards([1] * 10 + [0] * 90),
        ...                "b": ArmStats.from_rewards([1] * 20 + [0] * 80)})
        >>> round(p["b"], 2), round(sum(p.values()), 12)
        (0.98, 1.0)
    """
    posteriors = {arm: posterior_for(s, reward, **prior) for arm, s in stats.items()}
    return prob_best_of(posteriors, draws=draws, rng=np.random.default_rng(seed))
