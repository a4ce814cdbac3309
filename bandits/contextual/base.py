"""The contract shared by contextual routing policies with disjoint per-arm ridge models.

A contextual policy owns its arms, the context dimension ``d``, frozen parameters, one
:class:`RidgeStats` per arm and one random generator. For a context ``x`` every arm ``k`` has a
ridge fit ``mu_k``, ``A_k^-1`` (see :func:`fit_ridge`), hence a predicted reward
``m_k = x'mu_k`` and an uncertainty ``u_k = sqrt(x'A_k^-1 x)``. The public methods do the shared
bookkeeping (validation, the traffic floor, caching the fits, serialisation) and call two
private hooks that each algorithm implements:

* ``_decide(m, u)``: the algorithm's own pick for one context, without the floor, and its
  probability of every pick;
* ``_base_probabilities(m, u)``: those probabilities alone, for one or many contexts.

With a floor ``f`` over ``K`` arms the routed probability is exactly ``p = f + (1 - K f) w``, as
for the context-free policies, and every :class:`Decision` carries ``p`` of the chosen arm for
its context: the propensity that off-policy estimates (:mod:`bandits.ope`) divide by.

The fits are a pure function of the statistics (recomputed by Cholesky, per changed arm, at
the next decision): two routers holding equal statistics make identical decisions and log
identical propensities, and a policy rebuilt from :meth:`ContextualPolicy.state_dict` repeats
the original's choices exactly. (A Sherman-Morrison update of ``A^-1`` would make a single
observation cost ``O(d^2)`` instead of ``O(d^3)``, but the fit would then depend on the order
of past updates; at ``d = 64`` a refit costs ~0.1 ms with one BLAS thread, and routers learn
in batches at syncs.)
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from bandits._checks import check_int, check_real
from bandits.base import Decision, PolicyParams, check_arms, check_floor, coerce_params
from bandits.contextual.stats import RidgeFit, RidgeStats, fit_ridge
from bandits.errors import PolicyConfigError

__all__ = ["ContextualParams", "ContextualPolicy"]

Array = npt.NDArray[np.float64]


@dataclass(frozen=True)
class ContextualParams(PolicyParams):
    """Parameters common to contextual policies.

    Attributes:
        floor: Minimum traffic share of every arm for every context, ``0 <= floor < 1``; the
            policy also checks ``floor <= 1/K``.
        ridge: Ridge penalty ``lambda > 0``: the prior precision of every coefficient, in units
            of observations (``lambda = 1`` weighs like one observation of each unit vector).

    Example:
        >>> ContextualParams(ridge=0.0)
        Traceback (most recent call last):
        ...
        bandits.errors.PolicyConfigError: ridge must be in (0, inf), got 0.0
    """

    ridge: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        self._set("ridge", check_real("ridge", self.ridge, gt=0, exc=PolicyConfigError))


@dataclass(frozen=True, eq=False)
class _Fits:
    """Per-arm fits stacked for vectorised scoring: ``stacked @ x`` gives ``[A^-1 x ; m]``."""

    stacked: Array  # (K, d + 1, d): rows 0..d-1 are A_k^-1, row d is mu_k
    flat: Array  # the same, (K (d + 1), d) and C-contiguous, for one matrix-vector product
    residual: Array  # (K,)
    n: Array  # (K,)


class ContextualPolicy(ABC):
    """A routing policy that chooses an arm per context vector.

    Args:
        arms: At least one unique, non-empty arm name.
        dim: Context dimension ``d >= 1`` (``ContextSpec.dim`` of the experiment's encoding;
            structural, so an argument rather than a tunable parameter).
        params: A ``params_type`` instance, a mapping of its fields (unknown keys raise), or
            ``None`` for the defaults.
        seed: Seed of the policy's generator, created once here and never per call.

    Raises:
        PolicyConfigError: Invalid arms, dimension or parameters; the message names it.

    Example:
        >>> from bandits.contextual import make_contextual_policy
        >>> policy = make_contextual_policy("lin_ucb", ["a", "b"], 2, {"alpha": 0.1}, seed=0)
        >>> policy.observe("a", [1.0, 0.0], 1.0)
        >>> policy.observe("b", [1.0, 1.0], 1.0)
        >>> policy.select([1.0, 1.0])
        Decision(arm='b', propensity=1.0)
        >>> policy.probabilities([1.0, 0.0])
        {'a': 1.0, 'b': 0.0}
    """

    name: ClassVar[str]
    params_type: ClassVar[type[ContextualParams]] = ContextualParams
    _by_name: ClassVar[dict[str, type[ContextualPolicy]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:  # a concrete algorithm: findable by from_state_dict
            ContextualPolicy._by_name[cls.name] = cls

    arms: tuple[str, ...]
    dim: int
    params: ContextualParams

    def __init__(
        self,
        arms: Sequence[str],
        dim: int,
        params: ContextualParams | Mapping[str, Any] | None = None,
        *,
        seed: int | None = None,
    ) -> None:
        self.arms = check_arms(arms)
        self.dim = check_int("dim", dim, ge=1, exc=PolicyConfigError)
        self.params = self._coerce_params(params)
        self._check_params()
        self._rng = np.random.default_rng(seed)
        self._index = {arm: i for i, arm in enumerate(self.arms)}
        self._stats: dict[str, RidgeStats] = {arm: RidgeStats.zeros(self.dim) for arm in self.arms}
        self._arm_fits: dict[str, RidgeFit] = {}
        self._fits_cache: _Fits | None = None

    @classmethod
    def _coerce_params(
        cls, params: ContextualParams | Mapping[str, Any] | None
    ) -> ContextualParams:
        return coerce_params(cls.name, cls.params_type, params)

    def _check_params(self) -> None:
        """Validate parameters against the arms. Overrides must call super()."""
        check_floor(self.params.floor, len(self.arms))

    # ----------------------------------------------------------------- learned state

    @property
    def stats(self) -> Mapping[str, RidgeStats]:
        """Read-only view of the statistics of every arm."""
        return MappingProxyType(self._stats)

    def observe(self, arm: str, context: npt.ArrayLike, reward: float) -> None:
        """Add one observation: the rank-one update ``X'X += x x'``, ``X'y += r x``.

        Equals ``update({arm: RidgeStats.from_observation(context, reward)})``.

        Raises:
            KeyError: Unknown arm.
            ValueError: The context has the wrong shape or a non-finite value, or the reward
                is not finite.
        """
        if arm not in self._index:
            raise KeyError(f"unknown arm {arm!r}; arms are {list(self.arms)}")
        x = self._context(context)
        delta = RidgeStats.from_observation(x, reward)
        self._stats[arm] = self._stats[arm] + delta
        self._stats_changed((arm,))

    def update(self, deltas: Mapping[str, RidgeStats]) -> None:
        """Add a batch of per-arm deltas; one batch equals any split into smaller batches.

        Raises:
            KeyError: A delta names an unknown arm (nothing is applied then).
            ValueError: A delta has the wrong dimension (nothing is applied then).
        """
        self._check_known(deltas)
        for arm, delta in deltas.items():
            self._stats[arm] = self._stats[arm] + delta
        self._stats_changed(tuple(deltas))

    def set_stats(self, stats: Mapping[str, RidgeStats]) -> None:
        """Replace the statistics with a merged snapshot; arms it omits get zero stats.

        Raises:
            KeyError: The snapshot names an unknown arm (nothing is replaced then).
            ValueError: A snapshot entry has the wrong dimension (nothing is replaced then).
        """
        self._check_known(stats)
        new = {arm: stats.get(arm, RidgeStats.zeros(self.dim)) for arm in self.arms}
        changed = tuple(arm for arm in self.arms if new[arm] != self._stats[arm])
        self._stats = new
        self._stats_changed(changed)

    def _check_known(self, stats: Mapping[str, RidgeStats]) -> None:
        for arm, value in stats.items():
            if arm not in self._index:
                raise KeyError(f"unknown arm {arm!r}; arms are {list(self.arms)}")
            if not isinstance(value, RidgeStats):
                raise TypeError(f"stats for arm {arm!r} must be RidgeStats, got {value!r}")
            if value.dim != self.dim:
                raise ValueError(
                    f"stats for arm {arm!r} have dimension {value.dim}, the policy {self.dim}"
                )

    def _stats_changed(self, arms: Sequence[str]) -> None:
        """Hook: drop fits derived from the given arms' statistics. Overrides call super()."""
        for arm in arms:
            self._arm_fits.pop(arm, None)
        if arms:
            self._fits_cache = None

    def _fits(self) -> _Fits:
        if self._fits_cache is None:
            ridge = self.params.ridge
            for arm in self.arms:
                if arm not in self._arm_fits:
                    self._arm_fits[arm] = fit_ridge(self._stats[arm], ridge)
            per_arm = [self._arm_fits[arm] for arm in self.arms]
            stacked = np.stack([np.vstack([f.inverse, f.coef]) for f in per_arm])
            self._fits_cache = _Fits(
                stacked=stacked,
                flat=stacked.reshape(-1, self.dim),
                residual=np.array([f.residual for f in per_arm]),
                n=np.array([float(f.n) for f in per_arm]),
            )
        return self._fits_cache

    def fits(self) -> dict[str, RidgeFit]:
        """Current ridge fit of every arm."""
        self._fits()
        return {arm: self._arm_fits[arm] for arm in self.arms}

    # ----------------------------------------------------------------- decisions

    def _context(self, context: npt.ArrayLike) -> Array:
        x = np.asarray(context, dtype=np.float64)
        if x.shape != (self.dim,):
            raise ValueError(f"context must have shape ({self.dim},), got {x.shape}")
        # One dot product instead of isfinite(x).all(): NaN and inf propagate, and entries
        # above 1e150 (which would overflow x'A^-1 x anyway) are rejected with them.
        if not math.isfinite(float(x @ x)):
            raise ValueError("context must be finite (and below 1e150 in magnitude)")
        return x

    def _moments(self, contexts: Array) -> tuple[Array, Array]:
        """Predicted reward ``m = x'mu_k`` and ``u = sqrt(x'A_k^-1 x)``, shape ``(..., K)``."""
        fits = self._fits()
        d = self.dim
        if contexts.ndim == 1:
            # One matrix-vector product: rows k (d + 1) .. give [A_k^-1 x ; x'mu_k].
            out = (fits.flat @ contexts).reshape(len(self.arms), d + 1)
            mean = out[:, d]
            quad = out[:, :d] @ contexts
        else:
            out = contexts @ fits.stacked.transpose(0, 2, 1)  # (K, N, d + 1)
            mean = out[:, :, d].T
            quad = np.einsum("knd,nd->nk", out[:, :, :d], contexts)
        # x'A^-1 x > 0 for x != 0; the clip only guards rounding for near-zero contexts.
        return mean, np.sqrt(np.maximum(quad, 0.0))

    def select(self, context: npt.ArrayLike) -> Decision:
        """Choose an arm for one request's context vector.

        Returns:
            The arm and its propensity ``probabilities(context)[arm]``, floor included.

        Raises:
            ValueError: The context is not a finite vector of length ``dim``.
        """
        mean, width = self._moments(self._context(context))
        k = len(self.arms)
        floor = self.params.floor
        # A uniform draw with probability K f gives every arm f on top of (1 - K f) w_k.
        if floor > 0.0 and self._rng.random() < k * floor:
            index = int(self._rng.integers(k))
            base = self._base_probabilities(mean, width)
        else:
            index, base = self._decide(mean, width)
        return Decision(self.arms[index], floor + (1.0 - k * floor) * float(base[index]))

    def probabilities(self, context: npt.ArrayLike) -> dict[str, float]:
        """Routing probability of every arm for this context: ``p = f + (1 - K f) w``.

        Sums to 1 (to rounding); ``select(context).propensity`` is the chosen arm's entry.
        """
        mean, width = self._moments(self._context(context))
        floor = self.params.floor
        row = floor + (1.0 - len(self.arms) * floor) * self._base_probabilities(mean, width)
        return {arm: float(p) for arm, p in zip(self.arms, row, strict=True)}

    def probability_matrix(self, contexts: npt.ArrayLike) -> Array:
        """:meth:`probabilities` for many contexts: shape ``(N, d)`` in, ``(N, K)`` out.

        Columns follow :attr:`arms`. Off-policy evaluation uses this as ``pi(a | x_i)``.
        """
        x = np.asarray(contexts, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"contexts must have shape (N, {self.dim}), got {x.shape}")
        if not np.isfinite(x).all():
            raise ValueError("contexts must be finite")
        mean, width = self._moments(x)
        floor = self.params.floor
        return floor + (1.0 - len(self.arms) * floor) * self._base_probabilities(mean, width)

    @abstractmethod
    def _decide(self, mean: Array, width: Array) -> tuple[int, Array]:
        """The algorithm's own pick for one context and its probability of every pick.

        Args:
            mean: ``x'mu_k`` per arm, shape ``(K,)``.
            width: ``sqrt(x'A_k^-1 x)`` per arm, shape ``(K,)``.

        Returns:
            The chosen arm's index and ``_base_probabilities(mean, width)``.
        """

    @abstractmethod
    def _base_probabilities(self, mean: Array, width: Array) -> Array:
        """The algorithm's own probability of each arm, without the floor; ``(K,)`` (one
        context) or ``(N, K)`` in and out, rows summing to 1."""

    # ----------------------------------------------------------------- serialisation

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable snapshot: name, arms, dim, params, stats and the generator state."""
        return {
            "policy": self.name,
            "arms": list(self.arms),
            "dim": self.dim,
            "params": self.params.to_dict(),
            "stats": {arm: s.to_dict() for arm, s in self._stats.items()},
            "rng": self._rng.bit_generator.state,
        }

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> ContextualPolicy:
        """Rebuild a policy from :meth:`state_dict`.

        The result has the same probabilities and makes the same subsequent ``select()``
        sequence. Called on :class:`ContextualPolicy` itself it dispatches on
        ``state["policy"]`` through :data:`bandits.contextual.CONTEXTUAL_POLICIES`.

        Raises:
            PolicyConfigError: A key is missing, or the policy name does not match.
        """
        missing = [k for k in ("policy", "arms", "dim", "params", "stats", "rng") if k not in state]
        if missing:
            raise PolicyConfigError(f"state dict is missing key(s) {missing}")
        target: type[ContextualPolicy] = cls
        if cls is ContextualPolicy:
            found = ContextualPolicy._by_name.get(state["policy"])
            if found is None:
                known = ", ".join(sorted(ContextualPolicy._by_name))
                raise PolicyConfigError(
                    f"unknown contextual policy {state['policy']!r}; known: {known}"
                )
            target = found
        elif state["policy"] != cls.name:
            raise PolicyConfigError(
                f"state dict is for policy {state['policy']!r}, not {cls.name!r}"
            )
        policy = target(state["arms"], state["dim"], state["params"], seed=0)
        policy.set_stats({arm: RidgeStats.from_dict(d) for arm, d in state["stats"].items()})
        policy._rng.bit_generator.state = state["rng"]
        return policy

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(arms={list(self.arms)!r}, dim={self.dim}, "
            f"params={self.params!r})"
        )
