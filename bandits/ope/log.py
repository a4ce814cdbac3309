"""A log of routing decisions, as off-policy evaluation reads it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from bandits.arm_stats import ArmStats
from bandits.contextual.stats import RidgeStats

__all__ = ["BanditLog"]

Array = npt.NDArray[np.float64]
Indices = npt.NDArray[np.intp]


def _readonly(array: npt.NDArray[np.generic]) -> None:
    array.setflags(write=False)


@dataclass(frozen=True, eq=False)
class BanditLog:
    """``N`` logged decisions ``(x_i, a_i, p_i, r_i)`` over ``K`` named arms.

    Build it with :meth:`from_records`; arrays are read-only copies.

    Attributes:
        arms: The arm names; column ``j`` of every ``(N, K)`` array is ``arms[j]``.
        actions: Index of the chosen arm per record, shape ``(N,)``.
        propensities: Probability the logging policy gave the chosen arm, in ``(0, 1]``.
        rewards: Observed reward per record (only records whose reward arrived).
        contexts: Context vector per record, shape ``(N, d)``, or ``None`` (context-free).
    """

    arms: tuple[str, ...]
    actions: Indices
    propensities: Array
    rewards: Array
    contexts: Array | None = None

    @classmethod
    def from_records(
        cls,
        arms: Sequence[str],
        actions: Sequence[str | int] | npt.NDArray[np.integer[Any]],
        propensities: npt.ArrayLike,
        rewards: npt.ArrayLike,
        contexts: npt.ArrayLike | None = None,
    ) -> BanditLog:
        """Validate and store a log.

        Args:
            arms: Unique arm names.
            actions: Chosen arm per record, by name (or by index into ``arms``).
            propensities: Logged propensity per record, in ``(0, 1]``.
            rewards: Reward per record, finite.
            contexts: Optional ``(N, d)`` context vectors, finite.

        Raises:
            ValueError: Lengths differ, an unknown arm, a propensity outside ``(0, 1]`` or a
                non-finite value; the message says which.

        Example:
            >>> log = BanditLog.from_records(["a", "b"], ["a", "b", "a"], [0.5, 0.5, 0.8],
            ...                              [1.0, 0.0, 1.0])
            >>> log.n, log.actions.tolist()
            (3, [0, 1, 0])
        """
        names = tuple(arms)
        if not names or len(set(names)) != len(names):
            raise ValueError(f"arms must be unique and non-empty, got {list(names)}")
        index = {arm: i for i, arm in enumerate(names)}
        raw: list[object] = actions.tolist() if isinstance(actions, np.ndarray) else list(actions)
        chosen = []
        for a in raw:
            if isinstance(a, int) and not isinstance(a, bool):
                chosen.append(a)
            elif isinstance(a, str) and a in index:
                chosen.append(index[a])
            else:
                raise ValueError(f"actions name an unknown arm {a!r}; arms are {list(names)}")
        act = np.array(chosen, dtype=np.intp)
        if len(act) and (act.min() < 0 or act.max() >= len(names)):
            raise ValueError(f"action indices must be in [0, {len(names)})")
        p = np.array(propensities, dtype=np.float64)
        r = np.array(rewards, dtype=np.float64)
        n = len(act)
        if p.shape != (n,) or r.shape != (n,):
            raise ValueError(
                f"actions, propensities and rewards must have the same length, got {n}, "
                f"{p.shape} and {r.shape}"
            )
        if not np.all((p > 0) & (p <= 1)):
            raise ValueError("propensities must be in (0, 1]")
        if not np.isfinite(r).all():
            raise ValueError("rewards must be finite")
        x = None
        if contexts is not None:
            x = np.array(contexts, dtype=np.float64)
            if x.ndim != 2 or x.shape[0] != n or x.shape[1] == 0:
                raise ValueError(f"contexts must have shape ({n}, d) with d >= 1, got {x.shape}")
            if not np.isfinite(x).all():
                raise ValueError("contexts must be finite")
            _readonly(x)
        for array in (act, p, r):
            _readonly(array)
        return cls(names, act, p, r, x)

    @property
    def n(self) -> int:
        """Number of records ``N``."""
        return int(self.actions.shape[0])

    @property
    def k(self) -> int:
        """Number of arms ``K``."""
        return len(self.arms)

    def subset(self, rows: Indices) -> BanditLog:
        """The records at ``rows`` (integer indices), same arms."""
        x = None if self.contexts is None else self.contexts[rows]
        return BanditLog.from_records(
            self.arms, self.actions[rows], self.propensities[rows], self.rewards[rows], x
        )

    def arm_stats(self, rows: Indices | None = None) -> dict[str, ArmStats]:
        """Per-arm :class:`ArmStats` of the records at ``rows`` (all by default), as a router
        would have fed them to a context-free policy."""
        chosen = self.actions if rows is None else self.actions[rows]
        rewards = self.rewards if rows is None else self.rewards[rows]
        return {arm: ArmStats.from_rewards(rewards[chosen == j]) for j, arm in enumerate(self.arms)}

    def ridge_stats(self, rows: Indices | None = None) -> dict[str, RidgeStats]:
        """Per-arm :class:`RidgeStats` of the records at ``rows`` (all by default).

        Raises:
            ValueError: The log has no contexts.
        """
        if self.contexts is None:
            raise ValueError("the log has no contexts; contextual policies need them")
        idx = np.arange(self.n) if rows is None else rows
        chosen, x, r = self.actions[idx], self.contexts[idx], self.rewards[idx]
        return {
            arm: RidgeStats.from_observations(x[chosen == j], r[chosen == j])
            for j, arm in enumerate(self.arms)
        }
