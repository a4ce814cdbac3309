"""Thompson sampling for continuous rewards with a Normal-Gamma posterior.

Unknown mean *and* variance per arm: each decision draws ``tau ~ Gamma(alpha_n, rate=beta_n)``
then ``mu ~ N(mu_n, 1/(kappa_n tau))`` for every arm and routes to the largest ``mu``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from bandits.arm_stats import ArmStats
from bandits.base import PolicyParams
from bandits.errors import PolicyConfigError
from bandits.posteriors import NormalGammaPosterior, Posterior, check_normal_gamma_prior
from bandits.thompson import ThompsonSampling, ThompsonSamplingParams

__all__ = ["GaussianThompson", "GaussianThompsonParams"]


@dataclass(frozen=True)
class GaussianThompsonParams(ThompsonSamplingParams):
    """Parameters of :class:`GaussianThompson`: a Normal-Gamma prior.

    Attributes:
        prior_mean: Prior guess of the mean reward ``mu0`` (finite).
        prior_kappa: Pseudo-observations behind ``prior_mean``, ``> 0``.
        prior_alpha: Shape of the precision prior, ``> 0``.
        prior_beta: Rate of the precision prior, ``> 0``.
    """

    prior_mean: float = 0.0
    prior_kappa: float = 1.0
    prior_alpha: float = 1.0
    prior_beta: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        try:
            values = check_normal_gamma_prior(
                self.prior_mean, self.prior_kappa, self.prior_alpha, self.prior_beta
            )
        except ValueError as err:
            raise PolicyConfigError(str(err)) from err
        for name, value in zip(
            ("prior_mean", "prior_kappa", "prior_alpha", "prior_beta"), values, strict=True
        ):
            self._set(name, value)


class GaussianThompson(ThompsonSampling):
    """Thompson sampling for continuous rewards (revenue, latency score, ...).

    Example:
        >>> policy = GaussianThompson(["a", "b"], seed=0)
        >>> policy.update({"a": ArmStats.from_rewards([1.0, 1.2, 0.8] * 10),
        ...                "b": ArmStats.from_rewards([2.0, 2.2, 1.8] * 10)})
        >>> policy.select().arm
        'b'
    """

    name: ClassVar[str] = "gaussian_thompson"
    params_type: ClassVar[type[PolicyParams]] = GaussianThompsonParams
    params: GaussianThompsonParams

    def _posterior(self, stats: ArmStats) -> Posterior:
        p = self.params
        return NormalGammaPosterior.from_stats(
            stats, p.prior_mean, p.prior_kappa, p.prior_alpha, p.prior_beta
        )
