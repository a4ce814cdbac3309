"""The policy contract shared by every routing policy.

A policy owns its arms, frozen parameters, learned per-arm statistics and one random
generator. The public methods do the shared bookkeeping (validation, the traffic floor,
caching, serialisation) and call two private hooks that each algorithm implements:

* ``_choose(unit_id)``: the algorithm's own pick, without the floor;
* ``_base_weights()``: the algorithm's own probability ``w_i`` of each pick.

Two optional hooks: ``_setup()`` derives what the parameters alone determine (once, at
construction), and :meth:`Policy._derived` caches what the learned statistics determine
(posteriors, the best arms, the weights) until they change, so no algorithm needs its own
``__init__`` or cache invalidation.

With a floor ``f`` over ``K`` arms the routed probability is exactly
``p_i = f + (1 - K f) w_i``: with probability ``K f`` an arm is drawn uniformly, otherwise the
algorithm picks.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import Any, ClassVar, TypeVar

import numpy as np

from bandits._checks import check_real
from bandits.arm_stats import ArmStats
from bandits.errors import PolicyConfigError

__all__ = ["Decision", "Policy", "PolicyParams", "check_arms", "check_floor", "coerce_params"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Decision:
    """One routing decision.

    Attributes:
        arm: The chosen arm.
        propensity: Probability the policy gave this arm at decision time, floor included;
            log it for inverse-propensity estimates and bandit-aware SRM checks.
    """

    arm: str
    propensity: float


@dataclass(frozen=True)
class PolicyParams:
    """Base of every policy's frozen, validated hyperparameters.

    Attributes:
        floor: Minimum traffic share of every arm, ``0 <= floor < 1``; the policy also checks
            ``floor <= 1/K`` for its ``K`` arms.

    Example:
        >>> PolicyParams(floor=0.05).to_dict()
        {'floor': 0.05}
        >>> PolicyParams(floor=-0.1)
        Traceback (most recent call last):
        ...
        bandits.errors.PolicyConfigError: floor must be in [0, 1), got -0.1
    """

    floor: float = 0.0

    def __post_init__(self) -> None:
        self._set("floor", check_real("floor", self.floor, ge=0, lt=1, exc=PolicyConfigError))

    def _set(self, name: str, value: object) -> None:
        # Frozen dataclasses forbid setattr; validation stores normalised values this way.
        object.__setattr__(self, name, value)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable parameters; ``type(self)(**d)`` rebuilds them."""
        return {
            f.name: dict(value) if isinstance(value := getattr(self, f.name), Mapping) else value
            for f in fields(self)
        }


def check_arms(arms: Sequence[str]) -> tuple[str, ...]:
    """Arm names as a tuple: at least one, each a unique, non-empty string.

    Raises:
        PolicyConfigError: naming the offending arm.
    """
    # A bare string is a Sequence[str] too; "ab" meaning arms "a" and "b" is never intended.
    if isinstance(arms, str) or not isinstance(arms, Sequence):
        raise PolicyConfigError(f"arms must be a list of arm names, got {arms!r}")
    if len(arms) == 0:
        raise PolicyConfigError("arms must name at least 1 arm, got none")
    seen: set[str] = set()
    for arm in arms:
        if not isinstance(arm, str) or not arm:
            raise PolicyConfigError(f"arms must be non-empty strings, got {arm!r}")
        if arm in seen:
            raise PolicyConfigError(f"arms must be unique, {arm!r} appears twice")
        seen.add(arm)
    return tuple(arms)


P = TypeVar("P", bound=PolicyParams)


def coerce_params(policy: str, params_type: type[P], params: object) -> P:
    """``params`` as a ``params_type``: the instance itself, a mapping of its fields (an
    unknown key raises, naming the allowed ones), or None for the defaults.

    Raises:
        PolicyConfigError: naming the parameter (or the wrong parameter type).
    """
    if params is None:
        return params_type()
    if isinstance(params, params_type):
        return params
    if isinstance(params, PolicyParams):
        raise PolicyConfigError(
            f"policy {policy!r} takes {params_type.__name__}, got {type(params).__name__}"
        )
    if not isinstance(params, Mapping):
        raise PolicyConfigError(f"params must be a mapping, got {params!r}")
    allowed = [f.name for f in fields(params_type)]
    for key in params:
        if key not in allowed:
            raise PolicyConfigError(
                f"unknown parameter {key!r} for policy {policy!r}; allowed: {', '.join(allowed)}"
            )
    return params_type(**params)


def check_floor(floor: float, k: int) -> None:
    """The traffic floor must leave room for every arm: ``floor <= 1/K``.

    Raises:
        PolicyConfigError: ``floor > 1/K``: the floors alone would exceed all traffic.
    """
    if floor > 1.0 / k:
        raise PolicyConfigError(
            f"floor must be in [0, 1/K] = [0, {1.0 / k:g}] for K={k} arms, got {floor!r}"
        )


class Policy(ABC):
    """A routing policy over named arms.

    Args:
        arms: At least one unique, non-empty arm name.
        params: A ``params_type`` instance, a mapping of its fields (unknown keys raise), or
            ``None`` for the defaults.
        seed: Seed of the policy's generator, created once here and never per call.

    Raises:
        PolicyConfigError: Invalid arms or parameters; the message names the parameter.

    Example:
        >>> from bandits import make_policy
        >>> policy = make_policy("epsilon_greedy", ["a", "b"], {"epsilon": 0.2}, seed=1)
        >>> policy.update({"a": ArmStats.from_rewards([1, 1]), "b": ArmStats.from_rewards([0])})
        >>> policy.weights()
        {'a': 0.9, 'b': 0.1}
        >>> policy.select()
        Decision(arm='a', propensity=0.9)
    """

    name: ClassVar[str]
    params_type: ClassVar[type[PolicyParams]] = PolicyParams
    _by_name: ClassVar[dict[str, type[Policy]]] = {}

    arms: tuple[str, ...]
    params: PolicyParams

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:  # a concrete algorithm: findable by from_state_dict
            Policy._by_name[cls.name] = cls

    def __init__(
        self,
        arms: Sequence[str],
        params: PolicyParams | Mapping[str, Any] | None = None,
        *,
        seed: int | None = None,
    ) -> None:
        self.arms = check_arms(arms)
        self.params = self._coerce_params(params)
        self._check_params()
        self._rng = np.random.default_rng(seed)
        self._stats: dict[str, ArmStats] = {arm: ArmStats() for arm in self.arms}
        self._cache: dict[str, Any] = {}
        self._setup()

    def _setup(self) -> None:  # noqa: B027 - an optional hook, empty by design
        """Hook: derive what the parameters alone determine (called once, after validation)."""

    def _derived(self, key: str, compute: Callable[[], T]) -> T:
        """``compute()``, cached under ``key`` until the learned statistics change."""
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]  # type: ignore[no-any-return]

    @classmethod
    def _coerce_params(cls, params: PolicyParams | Mapping[str, Any] | None) -> PolicyParams:
        return coerce_params(cls.name, cls.params_type, params)

    def _check_params(self) -> None:
        """Validate parameters against the arms. Overrides must call super().

        Raises:
            PolicyConfigError: ``floor > 1/K``: the floors alone would exceed all traffic.
        """
        check_floor(self.params.floor, len(self.arms))

    # ----------------------------------------------------------------- learned state

    @property
    def stats(self) -> Mapping[str, ArmStats]:
        """Read-only view of the statistics of every arm."""
        return MappingProxyType(self._stats)

    def update(self, deltas: Mapping[str, ArmStats]) -> None:
        """Add a batch of per-arm deltas; one batch equals any split into smaller batches.

        Raises:
            KeyError: A delta names an unknown arm (nothing is applied then).
        """
        self._check_known(deltas)
        previous = self._learned()
        for arm, delta in deltas.items():
            self._stats[arm] = self._stats[arm] + delta
        if self._learned() != previous:
            self._stats_changed()

    def set_stats(self, stats: Mapping[str, ArmStats]) -> None:
        """Replace the statistics with a merged snapshot; arms it omits get zero stats.

        Routers call this with the global merged statistics from the shared state.

        Raises:
            KeyError: The snapshot names an unknown arm (nothing is replaced then).
        """
        self._check_known(stats)
        previous = self._learned()
        self._stats = {arm: stats.get(arm, ArmStats()) for arm in self.arms}
        if self._learned() != previous:
            self._stats_changed()

    def _check_known(self, stats: Mapping[str, ArmStats]) -> None:
        for arm, value in stats.items():
            if arm not in self._stats:
                raise KeyError(f"unknown arm {arm!r}; arms are {list(self.arms)}")
            if not isinstance(value, ArmStats):
                raise TypeError(f"stats for arm {arm!r} must be ArmStats, got {value!r}")

    def _learned(self) -> tuple[tuple[int, float, float], ...]:
        # Policies learn from feedback only; pull counts change with every router sync and
        # must not force a Monte Carlo recomputation of the weights.
        return tuple((s.feedback, s.reward_sum, s.reward_sum_squares) for s in self._stats.values())

    def _stats_changed(self) -> None:
        # Pull counts alone never get here (see _learned): nothing derived depends on them.
        self._cache.clear()

    # ----------------------------------------------------------------- decisions

    def select(self, unit_id: str | None = None) -> Decision:
        """Choose an arm for one request.

        Args:
            unit_id: Optional user/session id; policies that support stickiness use it.

        Returns:
            The arm and its propensity ``weights()[arm]``.
        """
        arm = self._draw(unit_id)
        return Decision(arm, self._current_weights()[arm])

    def _draw(self, unit_id: str | None) -> str:
        floor = self.params.floor
        if floor > 0.0:
            k = len(self.arms)
            # A uniform draw with probability K f gives every arm f on top of (1 - K f) w_i.
            if self._rng.random() < k * floor:
                return self.arms[int(self._rng.integers(k))]
        return self._choose(unit_id)

    def weights(self) -> dict[str, float]:
        """Routing probability of every arm, floor included: ``p_i = f + (1 - K f) w_i``.

        Cached until the statistics change. Sums to 1 (to rounding).
        """
        return dict(self._current_weights())

    def _current_weights(self) -> dict[str, float]:
        return self._derived("weights", self._floored_weights)

    def _floored_weights(self) -> dict[str, float]:
        base = self._base_weights()
        floor = self.params.floor
        scale = 1.0 - len(self.arms) * floor
        return {arm: floor + scale * base[arm] for arm in self.arms}

    @abstractmethod
    def _choose(self, unit_id: str | None) -> str:
        """The algorithm's own choice, without the floor."""

    @abstractmethod
    def _base_weights(self) -> dict[str, float]:
        """The algorithm's own probability of choosing each arm, without the floor."""

    # ----------------------------------------------------------------- serialisation

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable snapshot: name, arms, params, stats and the generator state."""
        return {
            "policy": self.name,
            "arms": list(self.arms),
            "params": self.params.to_dict(),
            "stats": {arm: s.to_dict() for arm, s in self._stats.items()},
            "rng": self._rng.bit_generator.state,
        }

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> Policy:
        """Rebuild a policy from :meth:`state_dict`.

        The result has the same weights and makes the same subsequent ``select()`` sequence.
        Called on :class:`Policy` itself it dispatches on ``state["policy"]``.

        Raises:
            PolicyConfigError: A key is missing, or the policy name does not match.
        """
        missing = [k for k in ("policy", "arms", "params", "stats", "rng") if k not in state]
        if missing:
            raise PolicyConfigError(f"state dict is missing key(s) {missing}")
        target: type[Policy] = cls
        if cls is Policy:
            found = Policy._by_name.get(state["policy"])
            if found is None:
                known = ", ".join(sorted(Policy._by_name))
                raise PolicyConfigError(
                    f"unknown policy {state['policy']!r}; known policies: {known}"
                )
            target = found
        elif state["policy"] != cls.name:
            raise PolicyConfigError(
                f"state dict is for policy {state['policy']!r}, not {cls.name!r}"
            )
        policy = target(state["arms"], state["params"], seed=0)
        policy.set_stats({arm: ArmStats.from_dict(d) for arm, d in state["stats"].items()})
        policy._rng.bit_generator.state = state["rng"]
        return policy

    def __repr__(self) -> str:
        return f"{type(self).__name__}(arms={list(self.arms)!r}, params={self.params!r})"
