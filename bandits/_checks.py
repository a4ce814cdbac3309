"""Validation helpers shared by statistics, posteriors and policy parameters.

Every check returns the normalised value (``float`` or ``int``) so callers can store it, and
raises ``exc`` with a message that names the parameter and the allowed range.
"""

from __future__ import annotations

import math
import numbers

__all__ = ["check_int", "check_real"]


def _interval(ge: float | None, gt: float | None, le: float | None, lt: float | None) -> str:
    lower = f"[{ge:g}" if ge is not None else f"({gt:g}" if gt is not None else "(-inf"
    upper = f"{le:g}]" if le is not None else f"{lt:g})" if lt is not None else "inf)"
    return f"{lower}, {upper}"


def check_real(
    name: str,
    value: object,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    exc: type[ValueError] = ValueError,
) -> float:
    """Return ``value`` as a finite float within the given bounds, or raise ``exc``.

    Example:
        >>> check_real("floor", 0.25, ge=0, lt=1)
        0.25
        >>> check_real("floor", 1.0, ge=0, lt=1)
        Traceback (most recent call last):
        ...
        ValueError: floor must be in [0, 1), got 1.0
    """
    # bool is an int subclass: a YAML `true` must not silently become 1.0.
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise exc(f"{name} must be a real number, got {value!r}")
    x = float(value)
    if not math.isfinite(x):
        raise exc(f"{name} must be finite, got {x!r}")
    if (
        (ge is not None and x < ge)
        or (gt is not None and x <= gt)
        or (le is not None and x > le)
        or (lt is not None and x >= lt)
    ):
        raise exc(f"{name} must be in {_interval(ge, gt, le, lt)}, got {x!r}")
    return x


def check_int(
    name: str, value: object, *, ge: int | None = None, exc: type[ValueError] = ValueError
) -> int:
    """Return ``value`` as an int ``>= ge``, or raise ``exc``.

    Example:
        >>> check_int("pulls", -1, ge=0)
        Traceback (most recent call last):
        ...
        ValueError: pulls must be an integer >= 0, got -1
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise exc(f"{name} must be an integer, got {value!r}")
    n = int(value)
    if ge is not None and n < ge:
        raise exc(f"{name} must be an integer >= {ge}, got {n!r}")
    return n
