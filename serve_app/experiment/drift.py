"""Drift tracking of one experiment inside the state deployment.

Routers sample rows (:class:`~bandits.drift.RowSampler`, at most ``drift.sample_per_sync``
per sync) and send them with their batched sync; :class:`ExperimentDrift` merges them into
bounded windows (the last ``drift.window`` feature rows, and per arm its predictions) and
tests them against the references every ``drift.evaluate_interval_s``:

- features: the profile stored with the default (control) arm's model, else one taken from
  the first ``warmup_rows`` live rows (kept in the store, so a restart keeps it);
- predictions: each arm's own model profile, else its first ``warmup_rows`` predictions.

Windows live in memory only: after a restart they refill, and ``min_samples`` keeps the first
rows from alarming.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bandits.drift import (
    ColumnProfile,
    DriftReport,
    DriftThresholds,
    DriftWindows,
    ReferenceProfile,
    SampledBatch,
    detect_drift,
)
from serve_app.config import DriftConfig

logger = logging.getLogger("ray.serve")

FEATURES = ""  # the store's arm key of the experiment's feature reference


@dataclass
class ExperimentDrift:
    """Windows, references and the latest report of one experiment."""

    config: DriftConfig
    references: dict[str, ReferenceProfile | None]  # arm -> its model's profile
    control: str
    features_reference: ReferenceProfile | None = None
    warmed: dict[str, ReferenceProfile] = field(default_factory=dict)  # taken from traffic
    windows: DriftWindows | None = None
    report: DriftReport | None = None
    evaluated_at: float = 0.0

    @classmethod
    def create(
        cls,
        config: DriftConfig,
        control: str,
        references: dict[str, ReferenceProfile | None],
        stored: Mapping[str, str],
    ) -> ExperimentDrift:
        """``references``: each arm's model profile; ``stored``: warm-up profiles by arm."""
        warmed = {arm: ReferenceProfile.from_json(text) for arm, text in stored.items()}
        model_features = references.get(control)
        features = model_features if model_features is not None else warmed.get(FEATURES)
        return cls(config, references, control, features, warmed)

    @property
    def thresholds(self) -> DriftThresholds:
        c = self.config
        return DriftThresholds(
            alpha=c.alpha, psi=c.psi, min_samples=c.min_samples, correction=c.correction
        )

    @property
    def reference_source(self) -> str | None:
        if self.references.get(self.control) is not None:
            return "model"
        return "warmup" if self.features_reference is not None else None

    def add(self, batches: Mapping[str, SampledBatch]) -> None:
        """Merge one router's sample (arm -> rows and predictions)."""
        for batch in batches.values():
            if len(batch.rows) == 0:
                continue
            if self.windows is None:
                self.windows = DriftWindows(int(batch.rows.shape[1]), self.config.window)
            if batch.rows.shape[1] != self.windows.n_features:
                return  # a malformed sample must not poison the window
        if self.windows is not None:
            self.windows.add_batch(batches)

    def warm_up(
        self, save: Callable[[str, str], None], windows: DriftWindows | None = None
    ) -> None:
        """Take references from live traffic for what has no model profile, once the
        windows (default: the live ones) have seen ``warmup_rows`` rows; ``save(arm, json)``
        keeps them."""
        windows = windows or self.windows
        if windows is None:
            return
        need = self.config.warmup_rows
        if self.features_reference is None and windows.features.count >= need:
            profile = ReferenceProfile.from_data(windows.features.values())
            self.features_reference = self.warmed[FEATURES] = profile
            save(FEATURES, profile.to_json())
            logger.info("drift: feature reference taken from %d live rows", windows.features.n)
        for arm, window in windows.predictions.items():
            if self._arm_reference(arm) is not None or window.count < need:
                continue
            column = ColumnProfile.from_values("prediction", window.column(0))
            profile = ReferenceProfile((), column, window.n)
            self.warmed[arm] = profile
            save(arm, profile.to_json())

    def _arm_reference(self, arm: str) -> ReferenceProfile | None:
        model = self.references.get(arm)
        if model is not None and model.prediction is not None:
            return model
        return self.warmed.get(arm)

    def due(self, now: float) -> bool:
        return now - self.evaluated_at >= self.config.evaluate_interval_s

    def evaluate(
        self, now: float | None = None, windows: DriftWindows | None = None
    ) -> DriftReport | None:
        """Test the windows (default: the live ones; the state passes a copy) against the
        references (None until a feature reference and a window exist)."""
        self.evaluated_at = now or time.time()
        windows = windows or self.windows
        if windows is None or self.features_reference is None:
            return self.report
        if self.features_reference.n_features != windows.n_features:
            logger.warning(
                "drift: reference has %d features, traffic %d: not tested",
                self.features_reference.n_features,
                windows.n_features,
            )
            return self.report
        arm_references = {arm: self._arm_reference(arm) for arm in windows.predictions}
        self.report = detect_drift(
            self.features_reference,
            windows,
            self.thresholds,
            arm_references=arm_references,
        )
        return self.report

    def summary(self) -> dict[str, Any]:
        """Compact view for the experiment summary."""
        report = self.report
        return {
            "alert": bool(report and report.alert),
            "max_psi": report.max_psi if report else None,
            "drifted_features": list(report.drifted_features) if report else [],
            "drifted_arms": [arm for arm, c in report.arms.items() if c.drifted] if report else [],
            "rows": self.windows.features.count if self.windows else 0,
            "reference": self.reference_source,
            "evaluated_at": self.evaluated_at or None,
        }

    def full(self) -> dict[str, Any]:
        """Everything: per-feature and per-arm scores, thresholds and reasons."""
        if self.report is None:
            waiting = (
                "waiting for traffic"
                if self.windows is None
                else f"waiting for a reference ({self.config.warmup_rows} rows)"
            )
            return {
                **self.summary(),
                "n": self.windows.features.n if self.windows else 0,
                "count": self.windows.features.count if self.windows else 0,
                "reasons": [waiting],
                "features": [],
                "arms": {},
                "thresholds": self.thresholds_dict(),
            }
        return {**self.report.to_dict(), **self.summary()}

    def thresholds_dict(self) -> dict[str, Any]:
        t = self.thresholds
        return {
            "alpha": t.alpha,
            "psi": t.psi,
            "min_samples": t.min_samples,
            "correction": t.correction,
        }

    def psi_by_feature(self) -> dict[str, float]:
        if self.report is None:
            return {}
        return {c.name: float(c.psi) for c in self.report.features if c.n}

    def psi_by_arm(self) -> dict[str, float]:
        if self.report is None:
            return {}
        return {arm: float(c.psi) for arm, c in self.report.arms.items() if c.n}
