"""Seeded repetitions: false alarm rate with no drift, detection delay after a shift.

Measured (recorded so a regression shows), window 500, alpha 0.01, Holm, PSI gate 0.2:

* false alarms, 200 reps: synthetic normal data, 16 features: 0 with the default gates and
  0 with the PSI gate off (Holm alone); digits hold-out rows (64 pixel features) against a
  profile of other digits rows: 0 and 0.
* delay, 1 of 16 features shifted by 0.5 sd at once (50 reps): median 450 rows, 95th
  percentile 605, worst 850; growing linearly to 1 sd over 1000 rows (30 reps): median
  725 rows after it starts, worst 800. Alerts are checked every 50 rows (one sync).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from bandits.drift import DriftReport, DriftThresholds, DriftWindows, ReferenceProfile, detect_drift

pytestmark = pytest.mark.slow

REPS = 200
WINDOW = 500
BATCH = 50  # rows per state sync in the delay simulations


def _alerts(report: DriftReport, psi_gate: float) -> tuple[bool, bool]:
    """(alert with the PSI gate at ``psi_gate``, alert with no gate) from one report.

    The report is computed with the gate off; the adjusted p-values do not depend on the
    gate, so the gated verdict is read off the same columns (one evaluation, not two).
    """
    alpha = report.thresholds.alpha
    gated = any(c.p_adjusted <= alpha and c.psi >= psi_gate for c in report.features)
    return gated, report.alert


NO_GATE = DriftThresholds(psi=0.0)


def test_false_alarm_rate_synthetic() -> None:
    d = 16
    alerts = alerts_no_gate = 0
    for rep in range(REPS):
        rng = np.random.default_rng(rep)
        profile = ReferenceProfile.from_data(rng.normal(size=(2000, d)), seed=rep)
        windows = DriftWindows(d, size=WINDOW)
        windows.add("a", rng.normal(size=(WINDOW, d)))
        gated, no_gate = _alerts(detect_drift(profile, windows, NO_GATE), DriftThresholds().psi)
        alerts += gated
        alerts_no_gate += no_gate
    assert alerts == 0
    # Holm alone keeps the family-wise rate at alpha = 0.01 (2 of 200 expected at most;
    # 5 would be a 5 % binomial tail).
    assert alerts_no_gate / REPS <= 0.02, alerts_no_gate


def test_false_alarm_rate_digits_64_features() -> None:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = np.asarray(digits.data, dtype=np.float64) / 16.0
    order = np.random.default_rng(0).permutation(len(x))
    train, live = x[order[:1200]], x[order[1200:]]
    profile = ReferenceProfile.from_data(train, digits.target[order[:1200]])
    alerts = alerts_no_gate = 0
    for rep in range(REPS):
        pick = np.random.default_rng(rep).choice(len(live), size=300, replace=False)
        windows = DriftWindows(64, size=WINDOW)
        windows.add("a", live[pick])
        gated, no_gate = _alerts(detect_drift(profile, windows, NO_GATE), DriftThresholds().psi)
        alerts += gated
        alerts_no_gate += no_gate
    assert alerts == 0
    assert alerts_no_gate / REPS <= 0.02, alerts_no_gate


def _delays(shift_at: Callable[[np.ndarray], np.ndarray], reps: int, d: int = 16) -> np.ndarray:
    """Rows after the drift starts until the first alert (checked every BATCH rows)."""
    delays = []
    for rep in range(reps):
        rng = np.random.default_rng(10_000 + rep)
        profile = ReferenceProfile.from_data(rng.normal(size=(2000, d)), seed=rep)
        windows = DriftWindows(d, size=WINDOW)
        windows.add("a", rng.normal(size=(WINDOW, d)))  # a full window of normal traffic
        assert not detect_drift(profile, windows).alert
        delay = np.inf
        for start in range(0, 4 * WINDOW, BATCH):
            x = rng.normal(size=(BATCH, d))
            x[:, 0] += shift_at(np.arange(start, start + BATCH))  # one feature of d drifts
            windows.add("a", x)
            report = detect_drift(profile, windows)
            if report.alert:
                assert report.drifted_features == ("f0",)
                delay = start + BATCH
                break
        delays.append(delay)
    return np.asarray(delays)


def test_step_shift_of_half_a_standard_deviation_is_caught_within_one_window() -> None:
    delays = _delays(lambda i: np.full(i.shape, 0.5), reps=50)
    assert np.quantile(delays, 0.95) <= 650, np.sort(delays)
    assert np.median(delays) <= 500
    assert np.all(delays <= 2 * WINDOW)


def test_gradual_shift_is_caught_within_a_bounded_delay() -> None:
    # The shift grows linearly from 0 to 1 sd over 1000 rows, then stays.
    delays = _delays(lambda i: np.minimum(1.0, (i + 1) / 1000), reps=30)
    assert np.all(delays <= 900), np.sort(delays)
    assert np.median(delays) <= 800
