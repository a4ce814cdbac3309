"""Data and prediction drift: is the live traffic still what the models were trained on?

Pieces, all pure (numpy and scipy):

* :class:`ReferenceProfile`: per-feature bins, counts and a bounded sorted sample of the
  training data, and the same for the model's predictions on it; built when the model is
  trained, stored with it as JSON.
* :class:`RowSampler` (router) and :class:`DriftWindows` / :class:`LiveWindow` (state):
  bounded live samples; features shared by all arms, predictions per arm.
* :func:`ks_2samp`, :func:`chi_square_homogeneity`, :func:`psi`: the two-sample statistics.
* :func:`detect_drift`: per-column verdicts, one correction, one :class:`DriftReport` with
  an ``alert`` flag, under :class:`DriftThresholds`.
* :class:`CusumDetector` (:mod:`bandits.drift.concept`): concept drift, a drop in an arm's
  reward rate against its own reference (Page's CUSUM), and :class:`LabelShift`.

Tests per column: two-sample Kolmogorov-Smirnov for a continuous column (reference sample
against the live window), chi-square homogeneity on the bin counts for a categorical one,
and the population stability index (PSI) on the bins for both. The reference sample and the
live window are finite samples of one distribution under "no drift", so two-sample
p-values are valid.

Many features without a flood of false alarms, three gates, all required for a column to
count as drifted:

1. **Family-wise error control.** All columns tested in one report (``d`` features plus one
   prediction column per arm) form one family; their p-values are adjusted with Holm's
   step-down method (``q_(i) = max_{j<=i} min(1, (m - j + 1) p_(j))``), so the probability
   that a report raises *any* alert when nothing drifted is at most ``alpha`` (default
   0.01), however many features there are. KS on tied (discrete) data is conservative, so
   the real rate is lower still.
2. **Effect size.** A column's PSI must also reach ``psi`` (default 0.2, a "moderate to
   major" shift). With large windows a test detects shifts too small to matter; the PSI gate
   keeps those quiet. It also protects against repeated looks: the state evaluates the
   same sliding window again and again, and while p-values of overlapping windows are
   not independent, under no drift PSI stays near its noise floor ``(K - 1)(1/n + 1/N)``
   (about 0.03 for 10 bins, ``n = 500``, ``N = 1000``), far below 0.2.
3. **Minimum sample.** A column is tested only with ``min_samples`` (default 200) live values,
   so the first few requests cannot alarm on noise.

Delay: with a sliding window of ``W`` rows and a shift that moves PSI to ``P``, a fraction
``f`` of shifted rows in the window gives PSI about ``f**2 P``, so an alert needs
``f >= sqrt(psi / P)`` of the window to be new: roughly ``0.9 W`` rows for a 0.5 standard
deviation shift (``P`` about 0.25), ``0.5 W`` for 1 standard deviation. A smaller window
alerts sooner and clears sooner, at the cost of noisier statistics.

Example:
    >>> import numpy as np
    >>> from bandits.drift import DriftWindows, ReferenceProfile, detect_drift
    >>> rng = np.random.default_rng(1)
    >>> profile = ReferenceProfile.from_data(rng.normal(size=(3000, 4)), rng.integers(0, 3, 3000))
    >>> windows = DriftWindows(n_features=4, size=500)
    >>> windows.add("a", rng.normal(size=(500, 4)), rng.integers(0, 3, 500))
    >>> report = detect_drift(profile, windows, arm_references={"a": profile})
    >>> report.alert, report.arms["a"].test
    (False, 'chi2')
"""

from __future__ import annotations

from bandits.drift.concept import ConceptParams, CusumDetector, LabelShift
from bandits.drift.detect import (
    ColumnDrift,
    Correction,
    DriftReport,
    DriftThresholds,
    compare_column,
    detect_drift,
)
from bandits.drift.profile import Category, ColumnKind, ColumnProfile, ReferenceProfile
from bandits.drift.statistics import (
    PSI_EPSILON,
    TwoSampleResult,
    chi_square_homogeneity,
    ks_2samp,
    psi,
)
from bandits.drift.window import DriftWindows, LiveWindow, RowSampler, SampledBatch

__all__ = [
    "PSI_EPSILON",
    "Category",
    "ColumnDrift",
    "ColumnKind",
    "ColumnProfile",
    "ConceptParams",
    "Correction",
    "CusumDetector",
    "DriftReport",
    "DriftThresholds",
    "DriftWindows",
    "LabelShift",
    "LiveWindow",
    "ReferenceProfile",
    "RowSampler",
    "SampledBatch",
    "TwoSampleResult",
    "chi_square_homogeneity",
    "compare_column",
    "detect_drift",
    "ks_2samp",
    "psi",
]
