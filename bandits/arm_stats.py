"""Per-arm sufficient statistics that add exactly.

Routers count locally and ship *deltas*; the shared state adds them. Because every field is a
plain sum, merging is order-free: ``a + b == b + a`` and ``(a + b) + c == a + (b + c)`` (exactly
for integer-valued rewards, to float rounding otherwise).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from bandits._checks import check_int, check_real

__all__ = ["ArmStats"]


@dataclass(frozen=True, slots=True)
class ArmStats:
    """Sufficient statistics of one arm.

    ``pulls`` (assignments) and ``feedback`` (rewards received) are tracked separately: they
    are synced on different paths and feedback may arrive late or never, so ``pulls >=
    feedback`` is *not* required.

    Attributes:
        pulls: Decisions routed to the arm.
        feedback: Rewards received, ``n``.
        reward_sum: ``sum(x)`` over received rewards.
        reward_sum_squares: ``sum(x**2)`` over received rewards.

    Example:
        >>> a = ArmStats.from_rewards([1.0, 0.0, 1.0])
        >>> b = ArmStats(pulls=2, feedback=1, reward_sum=1.0, reward_sum_squares=1.0)
        >>> a + b
        ArmStats(pulls=5, feedback=4, reward_sum=3.0, reward_sum_squares=3.0)
        >>> (a + b).reward_mean
        0.75
    """

    pulls: int = 0
    feedback: int = 0
    reward_sum: float = 0.0
    reward_sum_squares: float = 0.0

    def __post_init__(self) -> None:
        # Normalise numpy scalars and ints to plain int/float so equality, hashing and JSON
        # behave the same whatever the caller passed.
        object.__setattr__(self, "pulls", check_int("pulls", self.pulls, ge=0))
        object.__setattr__(self, "feedback", check_int("feedback", self.feedback, ge=0))
        object.__setattr__(self, "reward_sum", check_real("reward_sum", self.reward_sum))
        object.__setattr__(
            self,
            "reward_sum_squares",
            check_real("reward_sum_squares", self.reward_sum_squares, ge=0),
        )

    def __add__(self, other: ArmStats) -> ArmStats:
        if not isinstance(other, ArmStats):
            return NotImplemented
        return ArmStats(
            pulls=self.pulls + other.pulls,
            feedback=self.feedback + other.feedback,
            reward_sum=self.reward_sum + other.reward_sum,
            reward_sum_squares=self.reward_sum_squares + other.reward_sum_squares,
        )

    @property
    def reward_mean(self) -> float:
        """Sample mean ``sum(x) / n``; ``0.0`` when there is no feedback (never NaN).

        Example:
            >>> ArmStats().reward_mean
            0.0
        """
        if self.feedback == 0:
            return 0.0
        return self.reward_sum / self.feedback

    @property
    def reward_variance(self) -> float:
        """Unbiased sample variance ``(sum(x**2) - sum(x)**2 / n) / (n - 1)``.

        ``0.0`` when ``n < 2``; clipped at 0 because the subtraction can round below zero.

        Example:
            >>> ArmStats.from_rewards([1.0, 2.0, 3.0]).reward_variance
            1.0
        """
        n = self.feedback
        if n < 2:
            return 0.0
        centred = self.reward_sum_squares - self.reward_sum * self.reward_sum / n
        return max(centred, 0.0) / (n - 1)

    @classmethod
    def from_rewards(cls, rewards: Iterable[float], pulls: int | None = None) -> ArmStats:
        """Build statistics from raw rewards.

        Args:
            rewards: Observed rewards.
            pulls: Assignments; defaults to the number of rewards.

        Example:
            >>> ArmStats.from_rewards([0.5, 1.5], pulls=10)
            ArmStats(pulls=10, feedback=2, reward_sum=2.0, reward_sum_squares=2.5)
        """
        values = [float(x) for x in rewards]
        # fsum keeps the sums correctly rounded, so stats built in one go equal the sum of
        # stats built per reward whenever the rewards are integer-valued.
        return cls(
            pulls=len(values) if pulls is None else pulls,
            feedback=len(values),
            reward_sum=math.fsum(values),
            reward_sum_squares=math.fsum(x * x for x in values),
        )

    def to_dict(self) -> dict[str, float | int]:
        """Return a JSON-serialisable dict; :meth:`from_dict` inverts it.

        Example:
            >>> ArmStats.from_dict(ArmStats(pulls=3).to_dict())
            ArmStats(pulls=3, feedback=0, reward_sum=0.0, reward_sum_squares=0.0)
        """
        return {
            "pulls": self.pulls,
            "feedback": self.feedback,
            "reward_sum": self.reward_sum,
            "reward_sum_squares": self.reward_sum_squares,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ArmStats:
        """Inverse of :meth:`to_dict`; missing fields default to 0, unknown keys raise.

        Raises:
            ValueError: A key is not an ArmStats field, or a value is invalid.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown ArmStats field(s) {unknown}; allowed: {sorted(known)}")
        return cls(**d)
