"""UCB1 (Auer, Cesa-Bianchi & Fischer 2002): optimism in the face of uncertainty.

Every arm is tried once; then the arm with the largest upper confidence index is chosen::

    index_i = mean_i + sqrt(exploration * ln(N) / n_i)

with ``n_i`` the feedback of arm ``i`` and ``N`` the total feedback (``exploration = 2`` is the
textbook bound). The choice is deterministic given the stats, so between two syncs a router
sends all its traffic to one arm; use a floor, or Thompson sampling, when syncs are slow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from bandits._checks import check_real
from bandits.base import Policy, PolicyParams
from bandits.errors import PolicyConfigError

__all__ = ["UCB1", "UCB1Params"]


@dataclass(frozen=True)
class UCB1Params(PolicyParams):
    """Parameters of :class:`UCB1`.

    Attributes:
        exploration: Multiplier ``c`` inside the bonus ``sqrt(c ln N / n_i)``, ``> 0``.
    """

    exploration: float = 2.0

    def __post_init__(self) -> None:
        super().__post_init__()
        self._set(
            "exploration", check_real("exploration", self.exploration, gt=0, exc=PolicyConfigError)
        )


class UCB1(Policy):
    """UCB1 over observed mean rewards; ties (and untried arms) split uniformly.

    Example:
        >>> from bandits import ArmStats
        >>> policy = UCB1(["a", "b"], seed=0)
        >>> policy.update({"a": ArmStats.from_rewards([1, 1, 0, 1]),
        ...                "b": ArmStats.from_rewards([0])})
        >>> {arm: round(i, 4) for arm, i in policy.indices().items()}
        {'a': 1.6471, 'b': 1.7941}
        >>> policy.select()
        Decision(arm='b', propensity=1.0)
    """

    name: ClassVar[str] = "ucb1"
    params_type: ClassVar[type[PolicyParams]] = UCB1Params
    params: UCB1Params

    def indices(self) -> dict[str, float]:
        """Upper confidence index per arm; ``inf`` for arms without feedback."""
        total = sum(s.feedback for s in self._stats.values())
        log_total = math.log(total) if total > 0 else 0.0
        c = self.params.exploration
        return {
            arm: s.reward_mean + math.sqrt(c * log_total / s.feedback) if s.feedback else math.inf
            for arm, s in self._stats.items()
        }

    def best_arms(self) -> tuple[str, ...]:
        """Arms sharing the largest index (all untried arms, while any remain)."""
        return self._derived("best", self._best)

    def _best(self) -> tuple[str, ...]:
        indices = self.indices()
        top = max(indices.values())
        return tuple(arm for arm, i in indices.items() if i == top)

    def _choose(self, unit_id: str | None) -> str:
        best = self.best_arms()
        return best[0] if len(best) == 1 else best[int(self._rng.integers(len(best)))]

    def _base_weights(self) -> dict[str, float]:
        best = self.best_arms()
        share = 1.0 / len(best)
        return {arm: share if arm in best else 0.0 for arm in self.arms}
