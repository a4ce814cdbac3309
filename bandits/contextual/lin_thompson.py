"""Linear Thompson sampling (Agrawal & Goyal 2013) with disjoint per-arm ridge models.

Each arm ``k`` has the ridge posterior ``theta_k ~ N(mu_k, v_k^2 A_k^-1)`` (:func:`fit_ridge`). A
decision draws one ``theta_k`` per arm and routes to ``argmax_k x'theta_k``. Only the scores
matter, and for a fixed context ``x'theta_k`` is exactly the univariate normal
``N(x'mu_k, v_k^2 x'A_k^-1 x)``, independent across arms: :meth:`select` draws one scalar per arm
(``O(K d^2)`` instead of a ``d``-dimensional draw per arm), and the propensity
``P(k has the largest score)`` is the 1-D integral of :func:`prob_max_normal`, computed by
deterministic quadrature to about ``1e-8``.

The noise scale ``v_k`` is either fixed (``noise_scale``) or learned per arm from ``y'y``::

    v_k^2 = (1 + residual_k / 2) / (1 + n_k / 2),  residual_k = y'y - mu_k'X'y

which is ``b_n / a_n`` of the inverse-gamma posterior of the noise variance under an
``IG(1, 1)`` prior (Normal-inverse-gamma ridge regression): it starts at 1 and tends to the
residual variance, so the exploration adapts to the scale of the rewards.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from bandits._checks import check_real
from bandits.contextual.base import Array, ContextualParams, ContextualPolicy
from bandits.contextual.propensity import floor_sd, prob_max_floored, prob_max_trusted
from bandits.errors import PolicyConfigError

__all__ = ["LinThompson", "LinThompsonParams"]


@dataclass(frozen=True)
class LinThompsonParams(ContextualParams):
    """Parameters of :class:`LinThompson`.

    Attributes:
        noise_scale: The posterior scale ``v > 0`` (``v^2`` multiplies ``A^-1``), or ``None`` to
            learn it per arm from the residuals (see the module docstring).

    Example:
        >>> LinThompsonParams(noise_scale=0.0)
        Traceback (most recent call last):
        ...
        bandits.errors.PolicyConfigError: noise_scale must be in (0, inf), got 0.0
    """

    noise_scale: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.noise_scale is not None:
            self._set(
                "noise_scale",
                check_real("noise_scale", self.noise_scale, gt=0, exc=PolicyConfigError),
            )


class LinThompson(ContextualPolicy):
    """Linear Thompson sampling; propensities by quadrature (see the module docstring).

    Example:
        >>> policy = LinThompson(["a", "b"], dim=2, params={"noise_scale": 0.5}, seed=0)
        >>> for _ in range(2):
        ...     policy.observe("a", [1.0, 0.0], 1.0)
        ...     policy.observe("b", [1.0, 0.0], 0.0)
        >>> decision = policy.select([1.0, 0.0])
        >>> decision.arm, round(decision.propensity, 4)
        ('a', 0.9488)
        >>> {arm: round(p, 4) for arm, p in policy.probabilities([1.0, 0.0]).items()}
        {'a': 0.9488, 'b': 0.0512}
    """

    name: ClassVar[str] = "lin_thompson"
    params_type: ClassVar[type[ContextualParams]] = LinThompsonParams
    params: LinThompsonParams

    def __init__(
        self,
        arms: Sequence[str],
        dim: int,
        params: ContextualParams | Mapping[str, Any] | None = None,
        *,
        seed: int | None = None,
    ) -> None:
        super().__init__(arms, dim, params, seed=seed)
        self._scales_cache: Array | None = None

    def _stats_changed(self, arms: Sequence[str]) -> None:
        super()._stats_changed(arms)
        if arms:
            self._scales_cache = None

    def noise_scales(self) -> dict[str, float]:
        """The posterior scale ``v_k`` of every arm."""
        return {arm: float(v) for arm, v in zip(self.arms, self._scales(), strict=True)}

    def _scales(self) -> Array:
        if self._scales_cache is None:
            fixed = self.params.noise_scale
            if fixed is not None:
                self._scales_cache = np.full(len(self.arms), fixed)
            else:
                fits = self._fits()
                self._scales_cache = np.sqrt((1.0 + fits.residual / 2) / (1.0 + fits.n / 2))
        return self._scales_cache

    def _decide(self, mean: Array, width: Array) -> tuple[int, Array]:
        # The draw uses the same floored sd as the quadrature: the propensity is this draw's.
        sd = floor_sd(mean, width * self._scales())
        index = int((mean + sd * self._rng.standard_normal(len(mean))).argmax())
        return index, prob_max_floored(mean, sd)

    def _base_probabilities(self, mean: Array, width: Array) -> Array:
        return prob_max_trusted(mean, width * self._scales())
