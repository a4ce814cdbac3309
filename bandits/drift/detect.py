"""Drift verdicts: per-feature and per-arm tests, one multiple-testing correction, one alert.

See :mod:`bandits.drift` for how many features are kept from drowning the user in false
alarms.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from bandits._checks import check_int, check_real
from bandits.drift.profile import ColumnKind, ColumnProfile, ReferenceProfile
from bandits.drift.statistics import PSI_EPSILON, chi_square_homogeneity, ks_2samp, psi
from bandits.drift.window import DriftWindows
from bandits.stats import adjust_pvalues

__all__ = [
    "ColumnDrift",
    "Correction",
    "DriftReport",
    "DriftThresholds",
    "compare_column",
    "detect_drift",
]

Correction = Literal["holm", "bonferroni", "bh", "none"]
"""Multiple-testing correction across every column tested in one report."""

_CORRECTIONS = ("holm", "bonferroni", "bh", "none")
_MAX_REASONS = 5


@dataclass(frozen=True, slots=True)
class DriftThresholds:
    """When a column counts as drifted (validated at construction).

    A column drifts when all three hold: its live window has at least ``min_samples``
    values, its p-value adjusted by ``correction`` across all tested columns is at most
    ``alpha``, and its PSI is at least ``psi``.

    Attributes:
        alpha: Family-wise false alarm level of one report, in ``(0, 1)``.
        psi: Effect-size gate: the smallest PSI worth an alert (``0`` turns the gate off).
        min_samples: Fewest live values before a column is tested.
        correction: ``"holm"`` (default; family-wise), ``"bonferroni"`` (family-wise,
            slightly less powerful), ``"bh"`` (false discovery rate; the same false alarm
            rate as Holm when nothing drifts, more power when much does), ``"none"``.
        psi_epsilon: Proportion floor of :func:`~bandits.drift.psi`.

    Example:
        >>> DriftThresholds(alpha=0.05, psi=0.1)
        DriftThresholds(alpha=0.05, psi=0.1, min_samples=200, correction='holm', psi_epsilon=0.0001)
        >>> DriftThresholds(alpha=1.5)
        Traceback (most recent call last):
        ...
        ValueError: alpha must be in (0, 1), got 1.5
    """

    alpha: float = 0.01
    psi: float = 0.2
    min_samples: int = 200
    correction: Correction = "holm"
    psi_epsilon: float = PSI_EPSILON

    def __post_init__(self) -> None:
        object.__setattr__(self, "alpha", check_real("alpha", self.alpha, gt=0, lt=1))
        object.__setattr__(self, "psi", check_real("psi", self.psi, ge=0))
        object.__setattr__(self, "min_samples", check_int("min_samples", self.min_samples, ge=1))
        if self.correction not in _CORRECTIONS:
            raise ValueError(f"correction must be one of {_CORRECTIONS}, got {self.correction!r}")
        eps = check_real("psi_epsilon", self.psi_epsilon, gt=0, lt=1)
        object.__setattr__(self, "psi_epsilon", eps)


@dataclass(frozen=True, slots=True)
class ColumnDrift:
    """Drift verdict for one column (a feature, or one arm's predictions).

    Attributes:
        name: Feature name, or the arm name for predictions.
        kind: ``"continuous"`` or ``"categorical"``; None without a reference.
        test: ``"ks"`` or ``"chi2"``; None when the column was not tested.
        n: Live values in the window.
        statistic: KS ``D`` or the chi-square statistic (0 when not tested).
        p_value: Raw p-value (1 when not tested).
        p_adjusted: p-value after the report's correction (1 when not tested).
        psi: Population stability index of the live bins against the reference bins.
        drifted: ``p_adjusted <= alpha and psi >= psi threshold and n >= min_samples``.
        reason: Why the column was not tested, else None.
    """

    name: str
    kind: ColumnKind | None
    test: Literal["ks", "chi2"] | None
    n: int
    statistic: float
    p_value: float
    p_adjusted: float
    psi: float
    drifted: bool
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (an infinite PSI becomes the string ``"inf"``)."""
        return {
            "name": self.name,
            "kind": self.kind,
            "test": self.test,
            "n": self.n,
            "statistic": self.statistic,
            "p_value": self.p_value,
            "p_adjusted": self.p_adjusted,
            "psi": self.psi if math.isfinite(self.psi) else "inf",
            "drifted": self.drifted,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class DriftReport:
    """Drift of one experiment: every feature, every arm's predictions, one alert flag.

    Attributes:
        features: One verdict per feature, in input order (empty without a profile).
        arms: Arm -> verdict on its predictions (arms with a window).
        alert: Any feature or arm drifted.
        reasons: Human-readable lines naming what drifted (at most a few, then a count),
            or why nothing could be tested.
        n: Rows in the feature window.
        count: Rows the feature window has seen in all.
        thresholds: The thresholds used.
    """

    features: tuple[ColumnDrift, ...]
    arms: Mapping[str, ColumnDrift]
    alert: bool
    reasons: tuple[str, ...]
    n: int
    count: int
    thresholds: DriftThresholds = field(default_factory=DriftThresholds)

    @property
    def drifted_features(self) -> tuple[str, ...]:
        """Names of the drifted features."""
        return tuple(c.name for c in self.features if c.drifted)

    @property
    def max_psi(self) -> float:
        """Largest feature PSI (0 without features)."""
        return max((c.psi for c in self.features), default=0.0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict for ``GET /experiments/{name}``."""
        return {
            "alert": self.alert,
            "reasons": list(self.reasons),
            "n": self.n,
            "count": self.count,
            "drifted_features": list(self.drifted_features),
            "thresholds": {
                "alpha": self.thresholds.alpha,
                "psi": self.thresholds.psi,
                "min_samples": self.thresholds.min_samples,
                "correction": self.thresholds.correction,
            },
            "features": [c.to_dict() for c in self.features],
            "arms": {arm: c.to_dict() for arm, c in self.arms.items()},
        }


def compare_column(
    profile: ColumnProfile, values: Any, *, psi_epsilon: float = PSI_EPSILON
) -> ColumnDrift:
    """Test live values of one column against its reference (no correction, no verdict).

    KS against the reference sample for a continuous column, chi-square homogeneity of the
    reference and live bin counts for a categorical one, and PSI on the bins for both. The
    result has ``p_adjusted = p_value`` and ``drifted = False``; :func:`detect_drift` adds
    the correction and the verdict.

    Example:
        >>> ref = ColumnProfile.from_values("label", [0] * 50 + [1] * 50)
        >>> c = compare_column(ref, [0] * 30 + [1] * 70)
        >>> c.test, c.n, round(c.statistic, 4), round(c.psi, 4)
        ('chi2', 100, 8.3333, 0.1695)
    """
    raw = np.asarray(values, dtype=object if _is_text(values) else None).reshape(-1)
    try:
        live_counts = profile.bin_counts(raw)
    except ValueError as exc:
        return _untested(profile, profile.name, int(raw.size), f"values do not fit: {exc}")
    n = int(live_counts.sum())
    value_psi = psi(profile.counts, live_counts, epsilon=psi_epsilon)
    if profile.kind == "continuous":
        result = ks_2samp(profile.sample, raw.astype(np.float64), reference_sorted=True)
        test: Literal["ks", "chi2"] = "ks"
    else:
        result = chi_square_homogeneity(profile.counts, live_counts)
        test = "chi2"
    return ColumnDrift(
        profile.name,
        profile.kind,
        test,
        n,
        result.statistic,
        result.p_value,
        result.p_value,
        value_psi,
        False,
    )


def detect_drift(
    reference: ReferenceProfile | None,
    windows: DriftWindows,
    thresholds: DriftThresholds | None = None,
    *,
    arm_references: Mapping[str, ReferenceProfile | None] | None = None,
) -> DriftReport:
    """Test an experiment's live windows against the reference profiles.

    Features are tested against ``reference`` (the profile of the data the arms were
    trained on, e.g. the default arm's); each arm's predictions against the ``prediction``
    column of that arm's own profile in ``arm_references``. Every column with at least
    ``min_samples`` live values joins one family; its p-values are adjusted together
    (Holm by default), and a column drifts when its adjusted p-value is at most ``alpha``
    and its PSI is at least ``psi``. ``alert`` is true when any column drifted, so under no
    drift the chance of an alert from one report is at most ``alpha``.

    Args:
        reference: Feature profile, or None (no feature tests).
        windows: The experiment's live windows.
        thresholds: Levels; default :class:`DriftThresholds()`.
        arm_references: Arm -> its model's profile (or None); arms missing here or without
            a prediction profile are reported untested.

    Raises:
        ValueError: ``reference`` has a different number of features than the windows.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> ref = ReferenceProfile.from_data(rng.normal(size=(2000, 3)))
        >>> w = DriftWindows(n_features=3, size=500)
        >>> w.add("a", rng.normal(size=(500, 3)))
        >>> detect_drift(ref, w).alert
        False
        >>> w.add("a", rng.normal(size=(500, 3)) + [1.0, 0.0, 0.0])  # feature f0 shifts 1 sd
        >>> report = detect_drift(ref, w)
        >>> report.alert, report.drifted_features
        (True, ('f0',))
    """
    limits = thresholds if thresholds is not None else DriftThresholds()
    refs = dict(arm_references or {})
    reasons: list[str] = []
    features: list[ColumnDrift] = []
    if reference is None:
        reasons.append("no reference profile for the features")
    else:
        if reference.n_features != windows.n_features:
            raise ValueError(
                f"the reference profile has {reference.n_features} features, the live window "
                f"{windows.n_features}"
            )
        values = windows.features.values()
        for j, column in enumerate(reference.features):
            features.append(compare_column(column, values[:, j], psi_epsilon=limits.psi_epsilon))
    arms: dict[str, ColumnDrift] = {}
    for arm, window in windows.predictions.items():
        profile = refs.get(arm)
        if profile is None or profile.prediction is None:
            arms[arm] = _untested(
                None, arm, window.n, "no reference profile for this arm's predictions"
            )
            continue
        tested = compare_column(
            profile.prediction, window.column(0), psi_epsilon=limits.psi_epsilon
        )
        arms[arm] = replace(tested, name=arm)

    columns = [*features, *arms.values()]
    family = [i for i, c in enumerate(columns) if c.test is not None and c.n >= limits.min_samples]
    adjusted = _adjust([columns[i].p_value for i in family], limits)
    verdicts = list(columns)
    for i, p_adj in zip(family, adjusted, strict=True):
        c = columns[i]
        drifted = p_adj <= limits.alpha and c.psi >= limits.psi
        verdicts[i] = replace(c, p_adjusted=p_adj, drifted=drifted)
    for i, c in enumerate(columns):
        if c.test is not None and c.n < limits.min_samples:
            verdicts[i] = replace(c, reason=f"{c.n} live values < min_samples {limits.min_samples}")
    final_features = tuple(verdicts[: len(features)])
    final_arms = dict(zip(arms, verdicts[len(features) :], strict=True))
    drifted_f = [c for c in final_features if c.drifted]
    drifted_a = [(arm, c) for arm, c in final_arms.items() if c.drifted]
    for c in sorted(drifted_f, key=lambda c: -c.psi)[:_MAX_REASONS]:
        reasons.append(f"feature {c.name!r} drifted: {_describe(c)}")
    if len(drifted_f) > _MAX_REASONS:
        reasons.append(f"and {len(drifted_f) - _MAX_REASONS} more drifted features")
    for arm, c in drifted_a:
        reasons.append(f"arm {arm!r} predictions drifted: {_describe(c)}")
    if not family:
        reasons.append(f"fewer than min_samples={limits.min_samples} live values: nothing tested")
    return DriftReport(
        features=final_features,
        arms=final_arms,
        alert=bool(drifted_f or drifted_a),
        reasons=tuple(reasons),
        n=windows.features.n,
        count=windows.features.count,
        thresholds=limits,
    )


def _adjust(p_values: list[float], limits: DriftThresholds) -> list[float]:
    if not p_values:
        return []
    if limits.correction == "none":
        return list(p_values)
    if limits.correction == "bonferroni":
        return [min(1.0, p * len(p_values)) for p in p_values]
    method: Literal["holm", "bh"] = "holm" if limits.correction == "holm" else "bh"
    return list(adjust_pvalues(p_values, method, alpha=limits.alpha).p_values)


def _describe(c: ColumnDrift) -> str:
    stat = f"KS D={c.statistic:.3f}" if c.test == "ks" else f"chi2={c.statistic:.1f}"
    return f"{stat}, adjusted p={c.p_adjusted:.2g}, PSI={c.psi:.3f}, n={c.n}"


def _untested(profile: ColumnProfile | None, name: str, n: int, reason: str) -> ColumnDrift:
    kind = profile.kind if profile is not None else None
    return ColumnDrift(name, kind, None, n, 0.0, 1.0, 1.0, 0.0, False, reason)


def _is_text(values: Any) -> bool:
    array = np.asarray(values)
    return array.dtype.kind not in "biuf"
