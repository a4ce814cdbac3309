"""LinUCB with disjoint per-arm ridge models (Li, Chu, Langford & Schapire 2010).

For a context ``x`` every arm gets the upper confidence score::

    score_k = x'mu_k + alpha sqrt(x'A_k^-1 x)

and the policy routes to the largest. The choice is deterministic given the statistics and
the context, so the propensity is exact: ``1/|T|`` for each arm of the tie set ``T`` (scores
within ``1e-12`` relative of the maximum: equal statistics give equal scores up to the
rounding of the matrix products) and 0 for the others, then the traffic floor. With
``floor = 0`` the arms outside ``T`` have propensity 0 for this context: off-policy estimates
of other policies need a floor (or a stochastic policy) in the log.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import numpy.typing as npt

from bandits._checks import check_real
from bandits.contextual.base import Array, ContextualParams, ContextualPolicy
from bandits.errors import PolicyConfigError

__all__ = ["LinUCB", "LinUCBParams"]

_TIE_RTOL = 1e-12


@dataclass(frozen=True)
class LinUCBParams(ContextualParams):
    """Parameters of :class:`LinUCB`.

    Attributes:
        alpha: Width multiplier of the confidence bonus, ``>= 0`` (0 is greedy).

    Example:
        >>> LinUCBParams(alpha=-1)
        Traceback (most recent call last):
        ...
        bandits.errors.PolicyConfigError: alpha must be in [0, inf), got -1.0
    """

    alpha: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        self._set("alpha", check_real("alpha", self.alpha, ge=0, exc=PolicyConfigError))


class LinUCB(ContextualPolicy):
    """LinUCB; ties split evenly, so propensities are exact.

    Example:
        >>> policy = LinUCB(["a", "b", "c"], dim=1, seed=0)
        >>> policy.probabilities([1.0])  # no data: a three-way tie
        {'a': 0.3333333333333333, 'b': 0.3333333333333333, 'c': 0.3333333333333333}
        >>> policy.observe("c", [1.0], 5.0)
        >>> policy.select([1.0])
        Decision(arm='c', propensity=1.0)
    """

    name: ClassVar[str] = "lin_ucb"
    params_type: ClassVar[type[ContextualParams]] = LinUCBParams
    params: LinUCBParams

    def scores(self, context: Array) -> dict[str, float]:
        """Upper confidence score of every arm for one context."""
        mean, width = self._moments(self._context(context))
        score = mean + self.params.alpha * width
        return {arm: float(s) for arm, s in zip(self.arms, score, strict=True)}

    def _ties(self, mean: Array, width: Array) -> npt.NDArray[np.bool_]:
        score = mean + self.params.alpha * width
        top = score.max(axis=-1, keepdims=True)
        ties: npt.NDArray[np.bool_] = score >= top - _TIE_RTOL * np.maximum(np.abs(top), 1.0)
        return ties

    def _decide(self, mean: Array, width: Array) -> tuple[int, Array]:
        ties = self._ties(mean, width)
        count = int(ties.sum())
        chosen = np.flatnonzero(ties)
        index = int(chosen[0]) if count == 1 else int(chosen[int(self._rng.integers(count))])
        return index, ties.astype(np.float64) / count

    def _base_probabilities(self, mean: Array, width: Array) -> Array:
        ties = self._ties(mean, width).astype(np.float64)
        shares: Array = ties / ties.sum(axis=-1, keepdims=True)
        return shares
