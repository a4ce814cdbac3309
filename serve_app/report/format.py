"""Formatting shared by the report's plots, HTML page and tables.

Every key of the report schema is present but any value may be null: these helpers turn a
missing, null or non-finite value into a dash (:data:`MISSING`) instead of failing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

DEFAULT_PSI_THRESHOLD = 0.2
"""PSI above which a feature counts as shifted, unless the drift block names its own
``psi_threshold`` (0.1 to 0.2 is the usual "moderate" band, above 0.2 "significant")."""

TOP_FEATURES = 20
MISSING = "-"


def arms_of(report: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [a for a in report.get("arms") or [] if isinstance(a, Mapping)]


def arm_names_of(report: Mapping[str, Any]) -> list[str]:
    """Arm names in report order, then any extra arms seen only in the timeline."""
    names = [str(a.get("name")) for a in arms_of(report)]
    for point in report.get("timeline") or []:
        arm = str(point.get("arm"))
        if arm not in names:
            names.append(arm)
    return names


def finite_or_none(value: Any) -> float | None:
    """``value`` as a finite float, else None (null, NaN, non-numeric)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def fmt_num(value: Any, digits: int = 4) -> str:
    """Format a number for display: ``digits`` significant digits, a dash for null.

    Example:
        >>> fmt_num(0.912345), fmt_num(1200), fmt_num(None), fmt_num(True), fmt_num(float("nan"))
        ('0.9123', '1200', '-', 'yes', 'nan')
    """
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.{digits}g}"
    return str(value)


def fmt_pct(value: Any, signed: bool = True) -> str:
    """A ratio as a percentage (``0.05`` -> ``+5.00%``), a dash for null.

    Example:
        >>> fmt_pct(0.05), fmt_pct(-0.1234), fmt_pct(None), fmt_pct(0.3, signed=False)
        ('+5.00%', '-12.34%', '-', '30.00%')
    """
    number = finite_or_none(value)
    if number is None:
        return MISSING
    return f"{number:+.2%}" if signed else f"{number:.2%}"


def fmt_interval(value: Any) -> str:
    """A ``[low, high]`` pair of relative lifts as percentages.

    Example:
        >>> fmt_interval([0.03, 0.07]), fmt_interval(None)
        ('[+3.00%, +7.00%]', '-')
    """
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 2:
        return MISSING
    return f"[{fmt_pct(value[0])}, {fmt_pct(value[1])}]"


def fmt_when(value: Any) -> str:
    """A unix time in seconds as a UTC timestamp.

    Example:
        >>> fmt_when(0.0), fmt_when(None)
        ('1970-01-01 00:00:00 UTC', '-')
    """
    number = finite_or_none(value)
    if number is None:
        return MISSING
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(number))


def fmt_duration(value: Any) -> str:
    """Seconds as ``1h 02m 03s`` (leading zero units dropped).

    Example:
        >>> fmt_duration(3723.4), fmt_duration(59), fmt_duration(None)
        ('1h 02m 03s', '59s', '-')
    """
    number = finite_or_none(value)
    if number is None:
        return MISSING
    total = round(number)
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m {seconds:02d}s"
    if minutes:
        return f"{minutes}m {seconds:02d}s"
    return f"{seconds}s"


# --------------------------------------------------------------------------- drift


def psi_threshold(drift: Mapping[str, Any]) -> float:
    """The drift block's PSI threshold (``thresholds.psi`` or ``psi_threshold``), else 0.2."""
    thresholds = drift.get("thresholds")
    nested = thresholds.get("psi") if isinstance(thresholds, Mapping) else None
    return (
        finite_or_none(nested)
        or finite_or_none(drift.get("psi_threshold"))
        or DEFAULT_PSI_THRESHOLD
    )


def psi_of(item: Mapping[str, Any]) -> float | None:
    """A PSI value; the drift detector writes an infinite PSI as the string ``"inf"``.

    Example:
        >>> psi_of({"psi": 0.1}), psi_of({"psi": "inf"}), psi_of({"psi": None})
        (0.1, inf, None)
    """
    value = item.get("psi")
    if value == "inf" or (isinstance(value, float) and value == math.inf):
        return math.inf
    return finite_or_none(value)


def top_features(drift: Mapping[str, Any], limit: int = TOP_FEATURES) -> list[Mapping[str, Any]]:
    """Drift features with a PSI, highest PSI first, at most ``limit``."""
    features = [f for f in drift.get("features") or [] if psi_of(f) is not None]
    features.sort(key=lambda f: psi_of(f) or 0.0, reverse=True)
    return features[:limit]


def drift_arms(drift: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Per-arm prediction drift, from a list of dicts or an ``{arm: verdict}`` mapping."""
    arms = drift.get("arms") or []
    if isinstance(arms, Mapping):
        return [{**verdict, "arm": arm} for arm, verdict in arms.items()]
    return [a for a in arms if isinstance(a, Mapping)]
