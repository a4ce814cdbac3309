"""Fixed traffic split: an A/B(/n) test as a policy whose weights never change.

With a unit id (user, session) and ``sticky=True`` the arm is chosen by weighted rendezvous
hashing (Schindelhauer & Schomaker 2005): for each arm ``i`` draw a stable pseudo-uniform
``u_i`` in ``(0, 1)`` from ``blake2b(salt, arm, unit)`` and pick the arm maximising::

    score_i = -w_i / ln(u_i)

``-ln(u_i) / w_i`` is exponential with rate ``w_i``, so the minimum (our maximum of the
inverse) lands on arm ``i`` with probability exactly ``w_i / sum(w)``. A unit keeps its arm
while the weights stand, and a weight change moves only the units it must. ``hashlib`` rather
than ``hash()`` because ``hash()`` of a string is salted per process: routers must agree.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import ClassVar

from bandits._checks import check_real
from bandits.base import Policy, PolicyParams
from bandits.errors import PolicyConfigError

__all__ = ["FixedSplit", "FixedSplitParams", "rendezvous_uniform"]

_PERSON = b"bandit-rdv"  # blake2b personalisation: these hashes never collide with other uses
_TWO_POW_53 = float(2**53)


@dataclass(frozen=True)
class FixedSplitParams(PolicyParams):
    """Parameters of :class:`FixedSplit`.

    Attributes:
        weights: Share of each arm, ``>= 0`` and summing to 1 (within 1e-9); the keys must be
            exactly the policy's arms. Empty (the default) means an equal split.
        sticky: Hash a given ``unit_id`` to a stable arm instead of drawing at random.
        salt: Mixed into the hash; use e.g. ``"experiment:revision"`` so that different
            experiments assign units independently.

    Example:
        >>> FixedSplitParams(weights={"a": 0.7, "b": 0.2})
        Traceback (most recent call last):
        ...
        bandits.errors.PolicyConfigError: weights must sum to 1 (within 1e-09), got 0.9
    """

    weights: Mapping[str, float] = field(default_factory=dict)
    sticky: bool = True
    salt: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.weights, Mapping):
            raise PolicyConfigError(f"weights must be a mapping arm -> share, got {self.weights!r}")
        clean = {
            str(arm): check_real(f"weights[{arm!r}]", w, ge=0, exc=PolicyConfigError)
            for arm, w in self.weights.items()
        }
        if clean:
            total = math.fsum(clean.values())
            if abs(total - 1.0) > 1e-9:
                raise PolicyConfigError(f"weights must sum to 1 (within 1e-09), got {total:.12g}")
        # A read-only view keeps the "frozen" promise for the mapping too.
        self._set("weights", MappingProxyType(clean))
        if not isinstance(self.sticky, bool):
            raise PolicyConfigError(f"sticky must be true or false, got {self.sticky!r}")
        if not isinstance(self.salt, str):
            raise PolicyConfigError(f"salt must be a string, got {self.salt!r}")


def rendezvous_uniform(salt: str, arm: str, unit_id: str) -> float:
    """Stable pseudo-uniform number in the open interval ``(0, 1)`` for ``(salt, arm, unit)``.

    Example:
        >>> rendezvous_uniform("exp1", "a", "user-42") == rendezvous_uniform("exp1", "a", "user-42")
        True
        >>> 0.0 < rendezvous_uniform("", "a", "u") < 1.0
        True
    """
    # Length-prefix every part so ("ab", "c") and ("a", "bc") hash differently.
    parts = [s.encode() for s in (salt, arm, unit_id)]
    data = b"".join(len(p).to_bytes(4, "big") + p for p in parts)
    h = int.from_bytes(hashlib.blake2b(data, digest_size=8, person=_PERSON).digest(), "big")
    # Top 53 bits, shifted by half a step: exactly representable and never 0 or 1.
    return ((h >> 11) + 0.5) / _TWO_POW_53


class FixedSplit(Policy):
    """Route by fixed shares; updates are recorded but never change the weights.

    Example:
        >>> policy = FixedSplit(["a", "b"], {"weights": {"a": 0.9, "b": 0.1}}, seed=0)
        >>> policy.select("user-1") == policy.select("user-1")  # sticky
        True
        >>> policy.weights()
        {'a': 0.9, 'b': 0.1}
    """

    name: ClassVar[str] = "fixed"
    params_type: ClassVar[type[PolicyParams]] = FixedSplitParams
    params: FixedSplitParams

    def _setup(self) -> None:
        configured = self.params.weights
        if configured:
            total = math.fsum(configured.values())
            # Renormalise the (1e-9-tolerant) config so the routing weights sum to 1 exactly.
            self._weights = {arm: configured[arm] / total for arm in self.arms}
        else:
            self._weights = {arm: 1.0 / len(self.arms) for arm in self.arms}
        self._positive = [(arm, w) for arm, w in self._weights.items() if w > 0]

    def _check_params(self) -> None:
        super()._check_params()
        configured = self.params.weights
        if not configured:
            return
        for arm in self.arms:
            if arm not in configured:
                raise PolicyConfigError(f"weights has no entry for arm {arm!r}")
        for arm in configured:
            if arm not in self.arms:
                raise PolicyConfigError(
                    f"weights names unknown arm {arm!r}; arms are {list(self.arms)}"
                )

    def _draw(self, unit_id: str | None) -> str:
        if unit_id is not None and self.params.sticky:
            # Hash on the floored weights: the floor must not break stickiness.
            return self._rendezvous(unit_id, self._current_weights())
        return super()._draw(unit_id)

    def _rendezvous(self, unit_id: str, weights: Mapping[str, float]) -> str:
        salt = self.params.salt
        best_arm, best_score = self.arms[0], -1.0
        for arm in self.arms:
            w = weights[arm]
            if w <= 0.0:
                continue
            score = -w / math.log(rendezvous_uniform(salt, arm, unit_id))
            if score > best_score:
                best_arm, best_score = arm, score
        return best_arm

    def _choose(self, unit_id: str | None) -> str:
        u = self._rng.random()
        cumulative = 0.0
        for arm, w in self._positive:
            cumulative += w
            if u < cumulative:
                return arm
        # Only reachable when rounding leaves the cumulative sum a hair below 1.
        return self._positive[-1][0]

    def _base_weights(self) -> dict[str, float]:
        return dict(self._weights)
