"""Epsilon-greedy: exploit the best observed mean, explore uniformly with probability eps.

Arms without feedback count as best, so every arm is tried before any is exploited. With
``B`` the set of best arms (ties split uniformly) over ``K`` arms the exact weights are::

    w_i = (1 - eps) / |B| + eps / K   if i in B
    w_i = eps / K                     otherwise
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from bandits._checks import check_real
from bandits.base import Policy, PolicyParams
from bandits.errors import PolicyConfigError

__all__ = ["EpsilonGreedy", "EpsilonGreedyParams"]


@dataclass(frozen=True)
class EpsilonGreedyParams(PolicyParams):
    """Parameters of :class:`EpsilonGreedy`.

    Attributes:
        epsilon: Probability of exploring uniformly, in ``[0, 1]``.
    """

    epsilon: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        self._set("epsilon", check_real("epsilon", self.epsilon, ge=0, le=1, exc=PolicyConfigError))


class EpsilonGreedy(Policy):
    """Epsilon-greedy over observed mean rewards.

    Example:
        >>> from bandits import ArmStats
        >>> policy = EpsilonGreedy(["a", "b", "c"], {"epsilon": 0.3}, seed=0)
        >>> policy.update({"a": ArmStats.from_rewards([1]), "b": ArmStats.from_rewards([0])})
        >>> {arm: round(w, 3) for arm, w in policy.weights().items()}  # c is untried: best
        {'a': 0.1, 'b': 0.1, 'c': 0.8}
    """

    name: ClassVar[str] = "epsilon_greedy"
    params_type: ClassVar[type[PolicyParams]] = EpsilonGreedyParams
    params: EpsilonGreedyParams

    def best_arms(self) -> tuple[str, ...]:
        """Untried arms if any, else the arms with the highest mean reward."""
        return self._derived("best", self._best)

    def _best(self) -> tuple[str, ...]:
        untried = tuple(arm for arm, s in self._stats.items() if s.feedback == 0)
        if untried:
            return untried
        top = max(s.reward_mean for s in self._stats.values())
        return tuple(a for a, s in self._stats.items() if s.reward_mean == top)

    def _choose(self, unit_id: str | None) -> str:
        epsilon = self.params.epsilon
        if epsilon > 0.0 and self._rng.random() < epsilon:
            return self.arms[int(self._rng.integers(len(self.arms)))]
        best = self.best_arms()
        return best[0] if len(best) == 1 else best[int(self._rng.integers(len(best)))]

    def _base_weights(self) -> dict[str, float]:
        epsilon, k = self.params.epsilon, len(self.arms)
        best = self.best_arms()
        exploit = (1.0 - epsilon) / len(best)
        return {arm: (exploit if arm in best else 0.0) + epsilon / k for arm in self.arms}
