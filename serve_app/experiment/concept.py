"""Concept drift of one experiment inside the state deployment.

Every learned reward the state commits reaches :meth:`ConceptDrift.add` in commit order:
one :class:`~bandits.drift.CusumDetector` per arm watches the arm's reward against its own
reference, and with ``labels`` a :class:`~bandits.drift.LabelShift` per arm compares the
labels feedback carries with the label distribution of that arm's training profile (its
predictions on the training data, which is what the profile keeps). Detectors live in
memory: after a restart each arm takes a new reference from its next rewards.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bandits.drift import ConceptParams, CusumDetector, LabelShift, ReferenceProfile
from serve_app.config import ConceptDriftConfig


def label_distribution(profile: ReferenceProfile | None) -> dict[str, float] | None:
    """The prediction column's categories and shares of a model's profile (None: the
    profile has none, or its predictions are not categorical)."""
    column = profile.prediction if profile is not None else None
    if column is None or column.kind != "categorical" or not column.categories:
        return None
    return {str(c): float(n) for c, n in zip(column.categories, column.counts, strict=False)}


@dataclass
class ConceptDrift:
    """Per-arm reward-drop detectors and label-shift tests of one experiment."""

    config: ConceptDriftConfig
    reward: str
    detectors: dict[str, CusumDetector] = field(default_factory=dict)
    labels: dict[str, LabelShift] = field(default_factory=dict)
    rose_at: dict[str, float] = field(default_factory=dict)  # arm -> S_t last left 0
    changed_at: dict[str, float] = field(default_factory=dict)  # arm -> change estimate

    @classmethod
    def create(
        cls,
        config: ConceptDriftConfig,
        reward: str,
        arms: list[str],
        profiles: Mapping[str, ReferenceProfile | None],
    ) -> ConceptDrift:
        params = ConceptParams(
            reference=config.reference,
            drop=config.drop,
            arl=config.arl,
            reward="binary" if reward == "binary" else "continuous",
            baseline=config.baseline,
        )
        tracker = cls(config, reward, {arm: CusumDetector(params) for arm in arms})
        if config.labels:
            for arm in arms:
                reference = label_distribution(profiles.get(arm))
                if reference is not None:
                    tracker.labels[arm] = LabelShift(
                        reference, min_samples=config.label_min_samples
                    )
        return tracker

    def add(self, arm: str, reward: float, label: Any = None, at: float = 0.0) -> None:
        """One learned reward (and its label) of a decision made at ``at``."""
        detector = self.detectors.get(arm)
        if detector is not None:
            alarmed, calm = detector.alarm, detector.statistic == 0.0
            detector.update([reward])
            if calm and detector.statistic > 0.0:  # the first reward after the last zero
                self.rose_at[arm] = at
            if detector.alarm and not alarmed:
                self.changed_at[arm] = self.rose_at.get(arm, at)
        if label is not None and arm in self.labels:
            self.labels[arm].update([label])

    @property
    def alert(self) -> bool:
        return any(d.alarm for d in self.detectors.values()) or any(
            shift.verdict()["drifted"] for shift in self.labels.values()
        )

    def changed_since(self) -> float | None:
        """When the earliest detected reward drop began, or None without one: the decision
        time of the first reward after the statistic was last zero (the change-point
        estimate of Page's procedure)."""
        return min(self.changed_at.values(), default=None)

    def drifted_arms(self) -> list[str]:
        return [
            arm
            for arm, detector in self.detectors.items()
            if detector.alarm or (arm in self.labels and self.labels[arm].verdict()["drifted"])
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "alert": self.alert,
            "drifted_arms": self.drifted_arms(),
            "arms": {
                arm: {
                    **detector.to_dict(),
                    "changed_at": self.changed_at.get(arm),
                    "labels": self.labels[arm].verdict() if arm in self.labels else None,
                }
                for arm, detector in self.detectors.items()
            },
        }
