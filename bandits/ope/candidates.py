"""Candidate policies to evaluate offline, each turned into ``pi(a | x_i)`` for a log.

* :class:`AlwaysArm`: all traffic to one arm.
* :class:`FixedWeights`: a fixed split (equal shares when no weights are given).
* :class:`RegisteredPolicy`: any context-free policy of :data:`bandits.POLICIES` with given
  parameters.
* :class:`ContextualCandidate`: a contextual policy of
  :data:`bandits.contextual.CONTEXTUAL_POLICIES`.

A learning policy is evaluated as the policy it *becomes* after learning from the log, then
frozen: ``pi(a | x)`` is its routing probability (floor included) given statistics built from
the logged records, exactly as a router would have fed them (per-arm :class:`ArmStats` or
:class:`RidgeStats`). That is the value of deploying it now, trained on data like this; it is
not the reward it would have earned while learning (that needs replay, unbiased only for
uniformly logged data, Li et al. 2011).

The policy is *cross-fitted*: records of fold ``f`` are scored by the policy trained on the
other folds. Trained and scored on the same records, a policy would look better than it is
(it favours arms whose rewards in *these* records were lucky). The estimate is then the
fold-size-weighted mean value of the ``folds`` trained policies, each trained on
``(folds - 1) / folds`` of the log.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from bandits._checks import check_real
from bandits.contextual.registry import make_contextual_policy
from bandits.errors import PolicyConfigError
from bandits.ope.log import BanditLog
from bandits.registry import make_policy

__all__ = [
    "AlwaysArm",
    "Candidate",
    "ContextualCandidate",
    "FixedWeights",
    "RegisteredPolicy",
    "candidate_from_dict",
]

Array = npt.NDArray[np.float64]
Indices = npt.NDArray[np.intp]


class Candidate(ABC):
    """A target policy for off-policy evaluation."""

    kind: ClassVar[str]

    @property
    @abstractmethod
    def label(self) -> str:
        """Short name shown in results."""

    @abstractmethod
    def probabilities(self, log: BanditLog, folds: Indices, seed: int) -> Array:
        """``pi(a | x_i)`` for every record, shape ``(N, K)``; rows sum to 1.

        Args:
            log: The log to evaluate on.
            folds: Fold of every record, for learning candidates' cross-fitting.
            seed: Seed of any policy built here.
        """

    @abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable spec; :func:`candidate_from_dict` inverts it."""


@dataclass(frozen=True)
class AlwaysArm(Candidate):
    """Send every request to ``arm``.

    Example:
        >>> AlwaysArm("b").probabilities(
        ...     BanditLog.from_records(["a", "b"], ["a"], [1.0], [0.0]), np.zeros(1, int), 0
        ... ).tolist()
        [[0.0, 1.0]]
    """

    arm: str
    kind: ClassVar[str] = "always"

    @property
    def label(self) -> str:
        return f"always:{self.arm}"

    def probabilities(self, log: BanditLog, folds: Indices, seed: int) -> Array:
        if self.arm not in log.arms:
            raise PolicyConfigError(f"candidate arm {self.arm!r} is not in the log's arms")
        out = np.zeros((log.n, log.k))
        out[:, log.arms.index(self.arm)] = 1.0
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.kind, "arm": self.arm}


@dataclass(frozen=True)
class FixedWeights(Candidate):
    """A fixed split: shares per arm summing to 1; empty means equal shares."""

    weights: Mapping[str, float] = field(default_factory=dict)
    kind: ClassVar[str] = "fixed"

    def __post_init__(self) -> None:
        clean = {
            str(a): check_real(f"weights[{a!r}]", w, ge=0, exc=PolicyConfigError)
            for a, w in dict(self.weights).items()
        }
        if clean and abs(math.fsum(clean.values()) - 1.0) > 1e-9:
            raise PolicyConfigError(
                f"weights must sum to 1 (within 1e-09), got {math.fsum(clean.values()):.12g}"
            )
        object.__setattr__(self, "weights", MappingProxyType(clean))

    @property
    def label(self) -> str:
        if not self.weights:
            return "uniform"
        return "fixed:" + ",".join(f"{a}={w:g}" for a, w in self.weights.items())

    def probabilities(self, log: BanditLog, folds: Indices, seed: int) -> Array:
        if not self.weights:
            return np.full((log.n, log.k), 1.0 / log.k)
        unknown = sorted(set(self.weights) - set(log.arms))
        if unknown:
            raise PolicyConfigError(f"candidate weights name arms not in the log: {unknown}")
        row = np.array([self.weights.get(a, 0.0) for a in log.arms])
        return np.tile(row / row.sum(), (log.n, 1))

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.kind, "weights": dict(self.weights)}


def _check_folds(log: BanditLog, folds: Indices) -> Indices:
    ids = np.asarray(folds, dtype=np.intp)
    if ids.shape != (log.n,):
        raise ValueError(f"folds must give one fold per record ({log.n}), got {ids.shape}")
    if len(np.unique(ids)) < 2:
        raise ValueError("a learning candidate needs at least 2 folds to cross-fit")
    return ids


@dataclass(frozen=True)
class RegisteredPolicy(Candidate):
    """A context-free registered policy, trained on the other folds and frozen.

    ``pi(a | x) = weights()[a]`` of the policy after ``set_stats`` with the other folds'
    per-arm :class:`ArmStats` (the same for every record of a fold).
    """

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)
    kind: ClassVar[str] = "policy"

    @property
    def label(self) -> str:
        return f"policy:{self.name}"

    def probabilities(self, log: BanditLog, folds: Indices, seed: int) -> Array:
        ids = _check_folds(log, folds)
        make_policy(self.name, log.arms, dict(self.params), seed=seed)  # config errors first
        out = np.empty((log.n, log.k))
        for f in np.unique(ids):
            policy = make_policy(self.name, log.arms, dict(self.params), seed=seed)
            policy.set_stats(log.arm_stats(np.flatnonzero(ids != f)))
            weights = policy.weights()
            out[ids == f] = [weights[a] for a in log.arms]
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.kind, "name": self.name, "params": dict(self.params)}


@dataclass(frozen=True)
class ContextualCandidate(Candidate):
    """A contextual policy, trained on the other folds and frozen.

    ``pi(a | x_i)`` is ``probability_matrix`` of the policy after ``set_stats`` with the other
    folds' per-arm :class:`RidgeStats`. The log must have contexts.
    """

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)
    kind: ClassVar[str] = "contextual"

    @property
    def label(self) -> str:
        return f"contextual:{self.name}"

    def probabilities(self, log: BanditLog, folds: Indices, seed: int) -> Array:
        if log.contexts is None:
            raise ValueError(f"candidate {self.label!r} needs a log with contexts")
        ids = _check_folds(log, folds)
        dim = log.contexts.shape[1]
        out = np.empty((log.n, log.k))
        for f in np.unique(ids):
            policy = make_contextual_policy(self.name, log.arms, dim, dict(self.params), seed=seed)
            policy.set_stats(log.ridge_stats(np.flatnonzero(ids != f)))
            held = ids == f
            out[held] = policy.probability_matrix(log.contexts[held])
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.kind, "name": self.name, "params": dict(self.params)}


_KINDS: dict[str, type[Candidate]] = {
    cls.kind: cls for cls in (AlwaysArm, FixedWeights, RegisteredPolicy, ContextualCandidate)
}


def candidate_from_dict(spec: str | Mapping[str, Any] | Candidate) -> Candidate:
    """Parse a candidate from a config/REST spec.

    Strings: ``"uniform"`` or ``"always:<arm>"``. Mappings: ``{"type": "always", "arm": ...}``,
    ``{"type": "fixed", "weights": {...}}``, ``{"type": "policy", "name": ..., "params": {...}}``
    or ``{"type": "contextual", "name": ..., "params": {...}}``.

    Raises:
        PolicyConfigError: Unknown type or keys.

    Example:
        >>> candidate_from_dict("always:b")
        AlwaysArm(arm='b')
        >>> candidate_from_dict({"type": "policy", "name": "thompson"}).label
        'policy:thompson'
    """
    if isinstance(spec, Candidate):
        return spec
    if isinstance(spec, str):
        if spec == "uniform":
            return FixedWeights()
        if spec.startswith("always:") and len(spec) > len("always:"):
            return AlwaysArm(spec[len("always:") :])
        raise PolicyConfigError(
            f"candidate string must be 'uniform' or 'always:<arm>', got {spec!r}"
        )
    if not isinstance(spec, Mapping) or spec.get("type") not in _KINDS:
        raise PolicyConfigError(
            f"candidate must be a string or a mapping with type in {sorted(_KINDS)}, got {spec!r}"
        )
    kwargs = {k: v for k, v in spec.items() if k != "type"}
    try:
        return _KINDS[spec["type"]](**kwargs)
    except TypeError as err:
        raise PolicyConfigError(f"candidate {spec!r}: {err}") from None
