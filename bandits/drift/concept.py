"""Concept drift: has an arm's reward rate dropped against its own reference?

Data drift watches the inputs; concept drift watches the outcome. For every arm, the first
``reference`` rewards after it starts (or a configured ``baseline``) fix its reference mean
``mu0``; from then on Page's CUSUM accumulates the log-likelihood ratio of "the mean dropped
by ``drop``" against "it is still ``mu0``" and raises an alarm when it crosses ``h``::

    S_0 = 0,   S_t = max(0, S_{t-1} + l(x_t)),   alarm when S_t >= h

    binary rewards (Bernoulli, p1 = mu0 - drop):
        l(x) = x log(p1 / mu0) + (1 - x) log((1 - p1) / (1 - mu0))
    continuous rewards (Gaussian with the reference's sd sigma, mu1 = mu0 - drop):
        l(x) = (mu1 - mu0) / sigma^2 (x - (mu0 + mu1) / 2)

The statistic only ever looks at the past and restarts at zero whenever the evidence
favours "no drop", so evaluating it after every observation is what it is made for
(there is no peeking problem). At an alarm, the last time the statistic was zero estimates
when the drop began (``change_at``, the maximum-likelihood change point of Page's
procedure). Lorden's bound gives the expected number of observations
between false alarms as at least ``e^h`` when the reference is exact, so ``h = log(arl)``
sets the false alarm rate. An estimated reference is lowered by its standard error before
it is used (an estimate that came out high would read as a drop);
``tests/bandits/drift/test_concept.py`` measures the false alarm rate on seeded stationary
streams and the delay after a drop.

Labels: when feedback carries the true label, :class:`LabelShift` compares the live label
distribution with the model's training profile (the distribution of its training
predictions, the closest record the profile keeps) by PSI and a chi-square homogeneity test.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> detector = CusumDetector(ConceptParams(reference=300, drop=0.2, arl=10_000))
    >>> detector.update(rng.random(600) < 0.9)  # stationary at 0.9
    >>> detector.alarm
    False
    >>> detector.update(rng.random(400) < 0.6)  # the rate drops to 0.6
    >>> detector.alarm, detector.alarm_at - 600 < 100, abs(detector.change_at - 600) < 30
    (True, True, True)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from bandits._checks import check_int, check_real
from bandits.drift.statistics import chi_square_homogeneity, psi

__all__ = ["ConceptParams", "CusumDetector", "LabelShift"]

_EPS = 1e-6


@dataclass(frozen=True)
class ConceptParams:
    """How a reward drop is detected.

    Attributes:
        reference: Rewards that fix the reference mean (and sd), ``>= 10``.
        drop: The drop in mean reward to detect (absolute, ``> 0``).
        arl: Expected rewards between false alarms, ``> 1``; the threshold is
            ``h = log(arl)``.
        reward: ``binary`` (Bernoulli likelihood) or ``continuous`` (Gaussian).
        baseline: A configured reference mean instead of the first ``reference`` rewards.
    """

    reference: int = 500
    drop: float = 0.1
    arl: float = 100_000.0
    reward: Literal["binary", "continuous"] = "binary"
    baseline: float | None = None

    def __post_init__(self) -> None:
        check_int("reference", self.reference, ge=10)
        check_real("drop", self.drop, gt=0)
        check_real("arl", self.arl, gt=1)
        if self.reward not in ("binary", "continuous"):
            raise ValueError(f"reward must be binary or continuous, got {self.reward!r}")
        if self.baseline is not None:
            check_real("baseline", self.baseline)

    @property
    def threshold(self) -> float:
        return math.log(self.arl)


class CusumDetector:
    """One arm's Page CUSUM for a drop in mean reward (see the module docstring)."""

    def __init__(self, params: ConceptParams) -> None:
        self.params = params
        self.n = 0  # rewards seen
        self._ref_n = 0
        self._ref_sum = 0.0
        self._ref_squares = 0.0
        self.statistic = 0.0
        self.peak = 0.0
        self.alarm_at: int | None = None
        self.change_at: int | None = None  # the change-point estimate of the alarm
        self._calm_at = 0  # rewards seen when the statistic was last zero
        self.recent_sum = 0.0
        self.recent_n = 0

    @property
    def alarm(self) -> bool:
        return self.alarm_at is not None

    @property
    def ready(self) -> bool:
        """Is the reference fixed (the detector judging)?"""
        return self.params.baseline is not None or self._ref_n >= self.params.reference

    @property
    def reference_mean(self) -> float | None:
        if self.params.baseline is not None:
            return self.params.baseline
        return self._ref_sum / self._ref_n if self._ref_n else None

    def _sd(self) -> float:
        n = self._ref_n
        if n < 2:
            return 1.0
        variance = (self._ref_squares - self._ref_sum**2 / n) / (n - 1)
        return math.sqrt(max(variance, _EPS))

    def _judged_mean(self) -> float:
        """The reference mean the statistic uses: a configured baseline as it is, an
        estimated one lowered by its standard error (an estimate that happens to come out
        high would otherwise read as a drop: about 7 % false alarms per 20,000 rewards at
        ``reference=500, arl=1e5`` instead of 1 %)."""
        if self.params.baseline is not None:
            return self.params.baseline
        return self._ref_sum / self._ref_n - self._sd() / math.sqrt(self._ref_n)

    def _increments(self, values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64] | None:
        mu0 = self._judged_mean()
        drop = self.params.drop
        if self.params.reward == "binary":
            p0 = min(max(mu0, _EPS), 1 - _EPS)
            p1 = p0 - drop
            if p1 <= _EPS:
                return None  # the reference is already below the drop: nothing to detect
            return np.asarray(
                values * math.log(p1 / p0) + (1 - values) * math.log((1 - p1) / (1 - p0)),
                dtype=np.float64,
            )
        sigma = self._sd()
        mu1 = mu0 - drop
        return np.asarray((mu1 - mu0) / sigma**2 * (values - (mu0 + mu1) / 2), dtype=np.float64)

    def update(self, rewards: Sequence[float] | npt.ArrayLike) -> None:
        """Add rewards in the order they were received."""
        values = np.asarray(rewards, dtype=np.float64).ravel()
        if values.size == 0:
            return
        if not self.ready:
            take = min(self.params.reference - self._ref_n, values.size)
            head = values[:take]
            self._ref_n += take
            self._ref_sum += float(head.sum())
            self._ref_squares += float((head * head).sum())
            self.n += take
            values = values[take:]
            if values.size == 0:
                return
        increments = self._increments(values)
        self.recent_sum += float(values.sum())
        self.recent_n += int(values.size)
        if increments is None:
            self.n += int(values.size)
            return
        statistic, threshold = self.statistic, self.params.threshold
        for i, step in enumerate(increments):
            statistic = max(0.0, statistic + float(step))
            if statistic == 0.0:
                self._calm_at = self.n + i + 1
            if statistic > self.peak:
                self.peak = statistic
            if self.alarm_at is None and statistic >= threshold:
                self.alarm_at = self.n + i + 1
                self.change_at = self._calm_at
        self.statistic = statistic
        self.n += int(values.size)

    def live_mean(self) -> float | None:
        """The mean reward since the reference was fixed (None before)."""
        return self.recent_sum / self.recent_n if self.recent_n else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "alarm": self.alarm,
            "alarm_at": self.alarm_at,
            "change_at": self.change_at,
            "rewards": self.n,
            "ready": self.ready,
            "reference_mean": self.reference_mean,
            "live_mean": self.live_mean(),
            "statistic": round(self.statistic, 6),
            "threshold": round(self.params.threshold, 6),
            "drop": self.params.drop,
        }


class LabelShift:
    """Live label counts against a reference distribution of labels (see module docstring).

    Args:
        reference: Label -> reference probability (e.g. the model's training predictions).
        alpha: Significance level of the chi-square homogeneity test.
        psi_gate: PSI that must also be reached (an effect-size gate).
        min_samples: Labels needed before it judges.
        reference_n: The reference's sample size (the test compares two samples).
    """

    def __init__(
        self,
        reference: dict[str, float],
        *,
        alpha: float = 0.01,
        psi_gate: float = 0.2,
        min_samples: int = 200,
        reference_n: int = 1000,
    ) -> None:
        total = sum(reference.values())
        if total <= 0:
            raise ValueError("reference label distribution is empty")
        self.reference = {str(k): v / total for k, v in reference.items()}
        self.alpha, self.psi_gate, self.min_samples = alpha, psi_gate, min_samples
        self.reference_n = reference_n
        self.counts: dict[str, int] = {}

    def update(self, labels: Sequence[Any]) -> None:
        for label in labels:
            key = str(label)
            self.counts[key] = self.counts.get(key, 0) + 1

    def verdict(self) -> dict[str, Any]:
        """``{"drifted", "psi", "p_value", "labels"}`` (not drifted below ``min_samples``)."""
        n = sum(self.counts.values())
        keys = sorted(set(self.reference) | set(self.counts))
        live = np.array([self.counts.get(k, 0) for k in keys], dtype=np.float64)
        ref = np.array([self.reference.get(k, 0.0) for k in keys]) * self.reference_n
        if n < self.min_samples:
            return {"drifted": False, "psi": None, "p_value": None, "labels": n}
        score = float(psi(ref, live))
        p_value = float(chi_square_homogeneity(ref, live).p_value)
        drifted = p_value <= self.alpha and score >= self.psi_gate
        return {"drifted": drifted, "psi": score, "p_value": p_value, "labels": n}
