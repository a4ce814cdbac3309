"""Two-sample drift statistics: Kolmogorov-Smirnov, chi-square homogeneity, PSI.

Each function compares a finite *reference* sample (taken from the training data) with a
finite *live* sample (the serving window). Under "no drift" both are samples from one
distribution, so the two-sample tests are the right ones: the reference is not treated as
the true distribution. Degenerate input (an empty side, a single category) returns the
documented default ``statistic 0, p_value 1`` instead of NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats as sps

from bandits._checks import check_real

__all__ = [
    "PSI_EPSILON",
    "TwoSampleResult",
    "chi_square_homogeneity",
    "ks_2samp",
    "psi",
]

PSI_EPSILON = 1e-4
"""Floor for a bin proportion in :func:`psi`, so an empty bin costs a large but finite term."""


@dataclass(frozen=True, slots=True)
class TwoSampleResult:
    """Result of :func:`ks_2samp` or :func:`chi_square_homogeneity`.

    Attributes:
        statistic: KS ``D`` in ``[0, 1]``, or Pearson's chi-square statistic.
        p_value: Probability of a statistic at least this large when both samples come from
            one distribution.
        dof: Degrees of freedom of the chi-square test; 0 for KS and for degenerate input.
    """

    statistic: float
    p_value: float
    dof: int = 0


NO_EVIDENCE = TwoSampleResult(0.0, 1.0, 0)
"""Documented default for degenerate data: nothing to compare."""


def ks_2samp(
    reference: npt.ArrayLike, live: npt.ArrayLike, *, reference_sorted: bool = False
) -> TwoSampleResult:
    """Two-sided two-sample Kolmogorov-Smirnov test with Smirnov's asymptotic p-value.

    With ``F_r``, ``F_l`` the empirical CDFs of the ``n`` reference and ``m`` live values::

        D = max_x |F_r(x) - F_l(x)|,     p = P(D_k >= D),  k = round(n m / (n + m))

    where ``D_k`` has the one-sample two-sided KS distribution ``scipy.stats.kstwo(k)``. It
    equals ``scipy.stats.ks_2samp(reference, live, method="asymp")``; the exact method is
    not used because its cost grows with ``n m`` and the windows here have thousands of
    rows. Ties (discrete data such as pixel intensities) make the test conservative: the
    false alarm rate stays below the nominal level.

    Non-finite values are dropped. An empty side returns ``statistic 0, p_value 1``.

    Args:
        reference: Reference values (the profile's bounded sample).
        live: Live values.
        reference_sorted: Skip sorting ``reference`` (a profile stores it sorted).

    Example:
        >>> r = ks_2samp([1.0, 2.0, 3.0, 4.0], [3.0, 4.0, 5.0, 6.0])
        >>> r.statistic, round(r.p_value, 6)
        (0.5, 0.5)
    """
    ref = _finite(reference)
    cur = np.sort(_finite(live))
    if not reference_sorted:
        ref = np.sort(ref)
    n, m = ref.size, cur.size
    if n == 0 or m == 0:
        return NO_EVIDENCE
    both = np.concatenate([ref, cur])
    cdf_ref = np.searchsorted(ref, both, side="right") / n
    cdf_cur = np.searchsorted(cur, both, side="right") / m
    d = float(np.max(np.abs(cdf_ref - cdf_cur)))
    k = round(n * m / (n + m))
    p_value = float(np.clip(sps.kstwo.sf(d, k), 0.0, 1.0))
    return TwoSampleResult(d, p_value, 0)


def chi_square_homogeneity(
    reference_counts: npt.ArrayLike, live_counts: npt.ArrayLike
) -> TwoSampleResult:
    """Pearson's chi-square test that two count vectors come from one categorical distribution.

    The ``2 x K`` table has the reference counts in row 0 and the live counts in row 1;
    categories empty in both rows are dropped (so an unseen category costs nothing until it
    appears, and a category new in live traffic, counted in an "other" bin that is 0 in the
    reference, is compared like any other)::

        E_ij = row_i col_j / N,   chi2 = sum_ij (O_ij - E_ij)**2 / E_ij,   dof = K' - 1

    with ``K'`` the non-empty categories. It equals
    ``scipy.stats.chi2_contingency(table, correction=False)`` on the reduced table. This is
    the homogeneity test, not the goodness-of-fit test against the reference proportions,
    because the reference is itself a finite sample. No smoothing is needed: every ``E_ij``
    of a kept column is positive. An empty row or fewer than two kept categories returns
    ``statistic 0, p_value 1``.

    Raises:
        ValueError: The vectors differ in length or hold a negative or non-finite count.

    Example:
        >>> r = chi_square_homogeneity([50, 30, 20, 0], [30, 30, 30, 10])
        >>> round(r.statistic, 4), r.dof, round(r.p_value, 6)
        (17.0, 3, 0.000707)
    """
    ref, cur = _paired_counts(reference_counts, live_counts)
    keep = (ref + cur) > 0
    ref, cur = ref[keep], cur[keep]
    n_ref, n_cur = float(ref.sum()), float(cur.sum())
    if ref.size < 2 or n_ref <= 0 or n_cur <= 0:
        return NO_EVIDENCE
    total = n_ref + n_cur
    cols = ref + cur
    statistic = 0.0
    for observed, row in ((ref, n_ref), (cur, n_cur)):
        expected = row * cols / total
        statistic += float(np.sum((observed - expected) ** 2 / expected))
    dof = int(ref.size - 1)
    return TwoSampleResult(statistic, float(sps.chi2.sf(statistic, dof)), dof)


def psi(
    reference_counts: npt.ArrayLike, live_counts: npt.ArrayLike, *, epsilon: float = PSI_EPSILON
) -> float:
    """Population stability index of the live bin counts against the reference bin counts.

    With ``e_i`` and ``a_i`` the reference and live proportions of bin ``i``, each floored at
    ``epsilon`` (not renormalised) so that an empty bin gives a finite term::

        PSI = sum_i (a_i - e_i) ln(a_i / e_i)

    PSI is the symmetrised Kullback-Leibler divergence (Jeffreys) of the binned
    distributions: 0 for identical proportions, about ``delta**2`` for a normal mean shift
    of ``delta`` standard deviations with fine bins. The usual reading: ``< 0.1`` stable,
    ``0.1 - 0.25`` moderate shift, ``> 0.25`` major shift. Its sampling noise under no drift
    is about ``(K - 1) (1/n + 1/m)`` for ``K`` bins, which is why the effect-size gate needs
    a minimum sample. Either side empty gives 0.

    Raises:
        ValueError: Lengths differ, a count is negative or non-finite, or ``epsilon`` is not
            in ``(0, 1)``.

    Example:
        >>> round(psi([50, 50], [40, 60]), 6)  # 0.1 ln(0.6/0.5) - 0.1 ln(0.4/0.5)
        0.040547
    """
    eps = check_real("epsilon", epsilon, gt=0, lt=1)
    ref, cur = _paired_counts(reference_counts, live_counts)
    n_ref, n_cur = float(ref.sum()), float(cur.sum())
    if n_ref <= 0 or n_cur <= 0:
        return 0.0
    e = np.maximum(ref / n_ref, eps)
    a = np.maximum(cur / n_cur, eps)
    value = float(np.sum((a - e) * np.log(a / e)))
    return max(value, 0.0) if math.isfinite(value) else math.inf


def _finite(values: npt.ArrayLike) -> npt.NDArray[np.float64]:
    array = np.asarray(values, dtype=np.float64).ravel()
    return array[np.isfinite(array)]


def _counts(name: str, values: npt.ArrayLike) -> npt.NDArray[np.float64]:
    array = np.asarray(values, dtype=np.float64).ravel()
    if not np.all(np.isfinite(array)) or np.any(array < 0):
        raise ValueError(f"{name} must be finite and >= 0, got {array.tolist()!r}")
    return array


def _paired_counts(
    reference_counts: npt.ArrayLike, live_counts: npt.ArrayLike
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Both count vectors, checked, of one length."""
    ref = _counts("reference_counts", reference_counts)
    cur = _counts("live_counts", live_counts)
    if ref.shape != cur.shape:
        raise ValueError(
            f"reference_counts and live_counts must have the same length, got {ref.size} "
            f"and {cur.size}"
        )
    return ref, cur
