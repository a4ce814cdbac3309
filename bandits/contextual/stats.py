"""Additive sufficient statistics of one arm's ridge-regression reward model.

A contextual router learns, per arm, a linear model ``r = x'theta + noise`` from the contexts
``x`` of the requests routed to the arm and their rewards ``r``. Everything the ridge posterior
needs is four sums over those observations::

    n     = number of observations
    X'X   = sum x x'        (d x d)
    X'y   = sum r x         (d)
    y'y   = sum r^2         (the noise variance: see fit_ridge)

Each is a plain sum, so statistics from many routers merge by addition, and merging is
order-free: ``a + b == b + a`` exactly (IEEE addition commutes), ``(a + b) + c == a + (b + c)``
exactly for integer-valued contexts and rewards and to float rounding otherwise, as for
:class:`bandits.ArmStats`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.linalg

from bandits._checks import check_int, check_real

__all__ = ["RidgeFit", "RidgeStats", "fit_ridge"]

Array = npt.NDArray[np.float64]

# X'X must be symmetric; sums computed by BLAS may differ from exact symmetry by rounding.
_SYMMETRY_RTOL = 1e-10


def _frozen(values: npt.ArrayLike) -> Array:
    array = np.array(values, dtype=np.float64)  # always a copy: callers keep their arrays
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class RidgeStats:
    """Sufficient statistics of one arm's linear reward model (see the module docstring).

    Arrays are stored as read-only float64 copies; ``X'X`` is made exactly symmetric by
    mirroring its upper triangle (it must be symmetric to ``1e-10`` relative).

    Attributes:
        n: Observations, ``>= 0``.
        xtx: ``X'X``, shape ``(d, d)``, symmetric with a non-negative diagonal.
        xty: ``X'y``, shape ``(d,)``.
        yty: ``y'y``, ``>= 0``.

    Raises:
        ValueError: A shape, sign or non-finite value; the message names the field.

    Example:
        >>> a = RidgeStats.from_observations([[1.0, 0.0], [1.0, 2.0]], [1.0, 0.0])
        >>> a.n, a.xtx.tolist(), a.xty.tolist(), a.yty
        (2, [[2.0, 2.0], [2.0, 4.0]], [1.0, 0.0], 1.0)
        >>> b = RidgeStats.from_observation([1.0, 1.0], 3.0)
        >>> (a + b).xty.tolist(), a + b == b + a
        ([4.0, 3.0], True)
        >>> RidgeStats.from_dict((a + b).to_dict()) == a + b
        True
    """

    n: int
    xtx: Array
    xty: Array
    yty: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "n", check_int("n", self.n, ge=0))
        object.__setattr__(self, "yty", check_real("yty", self.yty, ge=0))
        xty = _frozen(self.xty)
        if xty.ndim != 1 or xty.shape[0] == 0:
            raise ValueError(f"xty must be a non-empty vector, got shape {xty.shape}")
        d = xty.shape[0]
        xtx = np.array(self.xtx, dtype=np.float64)
        if xtx.shape != (d, d):
            raise ValueError(f"xtx must have shape ({d}, {d}) to match xty, got {xtx.shape}")
        if not (np.isfinite(xtx).all() and np.isfinite(xty).all()):
            raise ValueError("xtx and xty must be finite")
        if (np.diag(xtx) < 0).any():
            raise ValueError("xtx must have a non-negative diagonal (it is a sum of x x')")
        scale = max(float(np.abs(xtx).max()), 1.0)
        if float(np.abs(xtx - xtx.T).max()) > _SYMMETRY_RTOL * scale:
            raise ValueError("xtx must be symmetric (X'X); got an asymmetric matrix")
        upper = np.triu(xtx)
        xtx = upper + np.triu(xtx, 1).T
        xtx.setflags(write=False)
        object.__setattr__(self, "xtx", xtx)
        object.__setattr__(self, "xty", xty)

    @classmethod
    def _trusted(cls, n: int, xtx: Array, xty: Array, yty: float) -> RidgeStats:
        """Build without validation from values known to be valid (sums of valid stats)."""
        stats = object.__new__(cls)
        xtx.setflags(write=False)
        xty.setflags(write=False)
        for name, value in (("n", n), ("xtx", xtx), ("xty", xty), ("yty", yty)):
            object.__setattr__(stats, name, value)
        return stats

    # ----------------------------------------------------------------- construction

    @classmethod
    def zeros(cls, dim: int) -> RidgeStats:
        """No observations in ``dim`` dimensions.

        Example:
            >>> RidgeStats.zeros(3)
            RidgeStats(dim=3, n=0, yty=0.0)
        """
        d = check_int("dim", dim, ge=1)
        return cls._trusted(0, np.zeros((d, d)), np.zeros(d), 0.0)

    @classmethod
    def from_observation(cls, context: npt.ArrayLike, reward: float) -> RidgeStats:
        """Statistics of one observation: the rank-one term ``x x'``.

        Raises:
            ValueError: ``context`` is not a non-empty finite vector, or ``reward`` not finite.
        """
        x = np.array(context, dtype=np.float64)
        if x.ndim != 1 or x.shape[0] == 0 or not np.isfinite(x).all():
            raise ValueError(f"context must be a non-empty finite vector, got shape {x.shape}")
        r = check_real("reward", reward)
        # outer(x, x) is exactly symmetric: x_i x_j and x_j x_i round identically.
        return cls._trusted(1, np.outer(x, x), r * x, r * r)

    @classmethod
    def from_observations(cls, contexts: npt.ArrayLike, rewards: npt.ArrayLike) -> RidgeStats:
        """Statistics of a batch: ``contexts`` of shape ``(n, d)``, ``rewards`` of shape ``(n,)``.

        Equals the sum of :meth:`from_observation` over the rows exactly for integer-valued
        data and to float rounding otherwise (BLAS sums in its own order).

        Raises:
            ValueError: Shapes do not match, ``n == 0`` without ``d`` (pass a ``(0, d)`` array),
                or a value is not finite.
        """
        x = np.asarray(contexts, dtype=np.float64)
        r = np.asarray(rewards, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] == 0 or r.shape != (x.shape[0],):
            raise ValueError(
                f"contexts must have shape (n, d) with d >= 1 and rewards shape (n,), got "
                f"{x.shape} and {r.shape}"
            )
        if not (np.isfinite(x).all() and np.isfinite(r).all()):
            raise ValueError("contexts and rewards must be finite")
        return cls(n=x.shape[0], xtx=x.T @ x, xty=x.T @ r, yty=math.fsum(r * r))

    # ----------------------------------------------------------------- algebra

    @property
    def dim(self) -> int:
        """Context dimension ``d``."""
        return int(self.xty.shape[0])

    def __add__(self, other: RidgeStats) -> RidgeStats:
        if not isinstance(other, RidgeStats):
            return NotImplemented
        if other.dim != self.dim:
            raise ValueError(f"cannot add RidgeStats of dimensions {self.dim} and {other.dim}")
        xtx = self.xtx + other.xtx
        xty = self.xty + other.xty
        yty = self.yty + other.yty
        if not (math.isfinite(yty) and np.isfinite(xtx).all() and np.isfinite(xty).all()):
            raise ValueError("RidgeStats sum overflowed")
        return RidgeStats._trusted(self.n + other.n, xtx, xty, yty)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RidgeStats):
            return NotImplemented
        return (
            self.n == other.n
            and self.yty == other.yty
            and np.array_equal(self.xty, other.xty)
            and np.array_equal(self.xtx, other.xtx)
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"RidgeStats(dim={self.dim}, n={self.n}, yty={self.yty!r})"

    # ----------------------------------------------------------------- serialisation

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (floats round-trip exactly); :meth:`from_dict` inverts it."""
        return {
            "n": self.n,
            "xtx": self.xtx.tolist(),
            "xty": self.xty.tolist(),
            "yty": self.yty,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RidgeStats:
        """Inverse of :meth:`to_dict`.

        Raises:
            ValueError: A key is missing or unknown, or a value is invalid.
        """
        expected = {"n", "xtx", "xty", "yty"}
        if set(d) != expected:
            raise ValueError(
                f"RidgeStats dict must have exactly the keys {sorted(expected)}, got {sorted(d)}"
            )
        return cls(n=d["n"], xtx=np.asarray(d["xtx"]), xty=np.asarray(d["xty"]), yty=d["yty"])


@dataclass(frozen=True, eq=False)
class RidgeFit:
    """The ridge posterior of one arm (result of :func:`fit_ridge`).

    Attributes:
        coef: ``mu = A^-1 X'y`` with ``A = lambda I + X'X``.
        inverse: ``A^-1`` (symmetric).
        residual: Ridge-penalised residual sum of squares
            ``y'y - mu'X'y = |y - X mu|^2 + lambda |mu|^2`` (clipped at 0 against rounding).
        n: Observations behind the fit.
    """

    coef: Array
    inverse: Array
    residual: float
    n: int


def fit_ridge(stats: RidgeStats, ridge: float) -> RidgeFit:
    """Solve the ridge regression ``A mu = X'y``, ``A = ridge I + X'X``, by Cholesky (``A = L L'``).

    ``mu`` minimises ``|y - X mu|^2 + ridge |mu|^2``; under the prior ``theta ~ N(0, s^2/ridge I)``
    and noise ``N(0, s^2)`` the posterior is ``N(mu, s^2 A^-1)``. ``A`` is positive definite
    for ``ridge > 0``, so the fit always exists; no data gives ``mu = 0``, ``A^-1 = I / ridge``.

    Raises:
        ValueError: ``ridge`` is not ``> 0``.

    Example:
        >>> fit = fit_ridge(RidgeStats.from_observations([[1.0], [2.0]], [1.0, 2.0]), ridge=1.0)
        >>> fit.coef.round(6).tolist(), fit.inverse.round(6).tolist(), round(fit.residual, 6)
        ([0.833333], [[0.166667]], 0.833333)
    """
    lam = check_real("ridge", ridge, gt=0)
    d = stats.dim
    identity = np.eye(d)
    lower = np.linalg.cholesky(stats.xtx + lam * identity)
    # A^-1 = L^-T L^-1 through one triangular solve and one product: potri and a solve with d
    # right-hand sides can be ~100x slower in multi-threaded OpenBLAS on small matrices.
    lower_inv = scipy.linalg.solve_triangular(lower, identity, lower=True, check_finite=False)
    inverse = lower_inv.T @ lower_inv
    inverse = 0.5 * (inverse + inverse.T)  # exact symmetry: x'A^-1 x must not depend on order
    coef = lower_inv.T @ (lower_inv @ stats.xty)
    residual = max(stats.yty - float(coef @ stats.xty), 0.0)
    coef.setflags(write=False)
    inverse.setflags(write=False)
    return RidgeFit(coef=coef, inverse=inverse, residual=residual, n=stats.n)
