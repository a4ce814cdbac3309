"""detect_drift: the three gates, per-arm predictions, the report, the sliding window."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bandits.drift import (
    DriftThresholds,
    DriftWindows,
    ReferenceProfile,
    compare_column,
    detect_drift,
)
from bandits.stats import adjust_pvalues


@pytest.fixture(scope="module")
def profile() -> ReferenceProfile:
    rng = np.random.default_rng(0)
    x = np.column_stack([rng.normal(size=(4000, 3)), rng.integers(0, 4, size=4000)])
    return ReferenceProfile.from_data(x, rng.integers(0, 3, size=4000), seed=0)


def _live(n: int, seed: int, shift: tuple[float, ...] = (0, 0, 0)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.normal(size=(n, 3)) + shift, rng.integers(0, 4, size=n)])


def test_thresholds_are_validated() -> None:
    assert DriftThresholds() == DriftThresholds(0.01, 0.2, 200, "holm")
    with pytest.raises(ValueError, match="psi must be in"):
        DriftThresholds(psi=-0.1)
    with pytest.raises(ValueError, match="min_samples must be an integer >= 1"):
        DriftThresholds(min_samples=0)
    with pytest.raises(ValueError, match="correction must be one of"):
        DriftThresholds(correction="fdr")  # type: ignore[arg-type]


def test_no_drift_no_alert_and_every_column_reported(profile: ReferenceProfile) -> None:
    w = DriftWindows(4, size=1000)
    w.add("a", _live(1000, 1), np.random.default_rng(2).integers(0, 3, size=1000))
    report = detect_drift(profile, w, arm_references={"a": profile})
    assert not report.alert
    assert report.reasons == ()
    assert [(c.name, c.kind, c.test) for c in report.features] == [
        ("f0", "continuous", "ks"), ("f1", "continuous", "ks"), ("f2", "continuous", "ks"),
        ("f3", "categorical", "chi2"),
    ]  # fmt: skip
    assert report.arms["a"].test == "chi2"
    assert all(c.psi < 0.05 for c in [*report.features, report.arms["a"]])
    assert (report.n, report.count) == (1000, 1000)


def test_shift_in_one_feature_alerts_on_that_feature(profile: ReferenceProfile) -> None:
    w = DriftWindows(4, size=500)
    w.add("a", _live(500, 3, shift=(0, 1.0, 0)))
    report = detect_drift(profile, w)
    assert report.alert
    assert report.drifted_features == ("f1",)
    assert report.reasons[0].startswith("feature 'f1' drifted: KS D=")
    assert report.max_psi == report.features[1].psi > 0.5


def test_holm_family_spans_features_and_arms(profile: ReferenceProfile) -> None:
    w = DriftWindows(4, size=600)
    w.add("a", _live(600, 4, shift=(0.3, 0, 0)), np.zeros(600, dtype=int))
    report = detect_drift(profile, w, arm_references={"a": profile})
    columns = [*report.features, report.arms["a"]]
    expected = adjust_pvalues([c.p_value for c in columns], "holm").p_values
    assert [c.p_adjusted for c in columns] == pytest.approx(expected, rel=1e-12)
    bonf = detect_drift(profile, w, DriftThresholds(correction="bonferroni"))
    assert [c.p_adjusted for c in bonf.features] == pytest.approx(
        [min(1.0, 4 * c.p_value) for c in bonf.features]
    )
    none = detect_drift(profile, w, DriftThresholds(correction="none"))
    assert [c.p_adjusted for c in none.features] == [c.p_value for c in none.features]


def test_prediction_drift_per_arm(profile: ReferenceProfile) -> None:
    rng = np.random.default_rng(5)
    w = DriftWindows(4, size=800)
    w.add("steady", _live(400, 6), rng.integers(0, 3, size=400))
    w.add("skewed", _live(400, 7), rng.choice(3, size=400, p=[0.8, 0.1, 0.1]))
    w.add("no-profile", _live(10, 8), [0] * 10)
    report = detect_drift(profile, w, arm_references={"steady": profile, "skewed": profile})
    assert report.alert
    assert not report.arms["steady"].drifted
    assert report.arms["skewed"].drifted
    assert report.arms["skewed"].name == "skewed"
    assert report.arms["no-profile"].test is None
    assert report.arms["no-profile"].reason == "no reference profile for this arm's predictions"
    assert report.reasons == (report.reasons[0],)
    assert report.reasons[0].startswith("arm 'skewed' predictions drifted: chi2=")
    assert report.drifted_features == ()


def test_min_samples_gate(profile: ReferenceProfile) -> None:
    w = DriftWindows(4, size=500)
    w.add("a", _live(150, 9, shift=(3, 3, 3)))
    report = detect_drift(profile, w)
    assert not report.alert
    assert report.features[0].reason == "150 live values < min_samples 200"
    assert report.features[0].psi > 1  # computed, shown, but not allowed to alarm
    assert report.reasons == ("fewer than min_samples=200 live values: nothing tested",)
    assert detect_drift(profile, w, DriftThresholds(min_samples=100)).alert


def test_psi_gate_silences_significant_but_trivial_shifts() -> None:
    rng = np.random.default_rng(10)
    big = ReferenceProfile.from_data(rng.normal(size=(20_000, 1)), sample_size=20_000)
    w = DriftWindows(1, size=20_000)
    w.add("a", rng.normal(0.1, size=(20_000, 1)))  # 0.1 sd: PSI about 0.01
    column = detect_drift(big, w).features[0]
    assert column.p_adjusted < 1e-6
    assert column.psi < 0.05
    assert not column.drifted
    assert detect_drift(big, w, DriftThresholds(psi=0.0)).alert


def test_alert_clears_once_the_window_has_moved_on(profile: ReferenceProfile) -> None:
    w = DriftWindows(4, size=400)
    w.add("a", _live(400, 11, shift=(1.5, 0, 0)))
    assert detect_drift(profile, w).alert
    w.add("a", _live(400, 12))  # the drift is fixed; the window forgets it
    assert not detect_drift(profile, w).alert
    assert w.features.count == 800


def test_many_drifted_features_are_summarised() -> None:
    rng = np.random.default_rng(13)
    ref = ReferenceProfile.from_data(rng.normal(size=(2000, 9)))
    w = DriftWindows(9, size=300)
    w.add("a", rng.normal(2.0, size=(300, 9)))
    report = detect_drift(ref, w)
    assert len(report.drifted_features) == 9
    assert len(report.reasons) == 6
    assert report.reasons[-1] == "and 4 more drifted features"


def test_no_reference_and_width_mismatch(profile: ReferenceProfile) -> None:
    w = DriftWindows(4, size=300)
    w.add("a", _live(300, 14))
    report = detect_drift(None, w)
    assert report.features == ()
    assert report.reasons[0] == "no reference profile for the features"
    with pytest.raises(ValueError, match="4 features, the live window 2"):
        detect_drift(profile, DriftWindows(2))


def test_report_is_json_ready(profile: ReferenceProfile) -> None:
    w = DriftWindows(4, size=300)
    w.add("a", _live(300, 15, shift=(2, 0, 0)), ["oops"] * 300)  # labels never seen
    data = detect_drift(profile, w, arm_references={"a": profile}).to_dict()
    text = json.dumps(data, allow_nan=False)
    assert json.loads(text)["alert"] is True
    assert data["drifted_features"] == ["f0"]
    assert data["arms"]["a"]["drifted"] is True
    assert data["thresholds"] == {"alpha": 0.01, "psi": 0.2, "min_samples": 200,
                                  "correction": "holm"}  # fmt: skip


def test_compare_column_reports_values_that_do_not_fit(profile: ReferenceProfile) -> None:
    c = compare_column(profile.features[0], ["a", "b"])
    assert c.test is None
    assert c.reason is not None
    assert "non-numeric" in c.reason
