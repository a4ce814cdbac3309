"""Experiment statistics: what an A/B test or a bandit experiment concludes.

Inputs are additive sufficient statistics per arm (:class:`SampleStats`,
:class:`ProportionStats`, both buildable from :class:`~bandits.arm_stats.ArmStats`;
:class:`RatioStats` for ratio metrics; :class:`CupedStats` for a metric with a pre-experiment
covariate); every function returns a frozen dataclass. Impossible sums (a negative variance,
successes outside ``[0, n]``) are refused at construction with a :class:`ValueError`; degenerate
data never yield NaN: each function documents its default or raises :class:`ValueError`
naming the problem.

* Fixed horizon: :func:`welch_ttest` (means, proportions, ratios; absolute or relative),
  :func:`chi_square_test`, :func:`adjust_pvalues`.
* Variance reduction: :func:`cuped_effect` (CUPED, :class:`CupedResult`).
* Bayesian: :func:`bayesian_effect` (chance to win, risk), :func:`prob_best` (``K`` arms).
* Peeking-safe: :func:`sequential_test` (always-valid p-value, confidence sequence; two- or
  one-sided), :func:`sequential_rho`.
* Planning, fixed horizon: :func:`sample_size`, :func:`power`, :func:`mde`
  (:class:`PowerAnalysis`).
* Planning, the stopping rules: :func:`plan_sequential`, :func:`plan_bayesian`
  (:class:`StoppingPlan`: users, days, stopping-time distribution).
* Health: :func:`srm_test`, :func:`srm_test_periods` (sample ratio mismatch).
* Bandit-aware: :func:`ips_estimate` (Horvitz-Thompson, Hajek), :func:`period_weighted_means`.

Example:
    >>> from bandits.arm_stats import ArmStats
    >>> from bandits.stats import ProportionStats, welch_ttest
    >>> a = ProportionStats.from_arm_stats(ArmStats.from_rewards([1] * 100 + [0] * 900))
    >>> b = ProportionStats(n=1000, successes=130)
    >>> r = welch_ttest(a, b)  # relative lift of b over a
    >>> round(r.estimate, 6), round(r.p_value, 4)
    (0.3, 0.0656)
"""

from __future__ import annotations

from bandits.stats.bayesian import (
    BayesianResult,
    ProbBestResult,
    bayesian_effect,
    normal_expected_loss,
    prob_best,
)
from bandits.stats.cuped import CupedResult, cuped_effect
from bandits.stats.frequentist import (
    AdjustedPValues,
    ChiSquareResult,
    TTestResult,
    adjust_pvalues,
    chi_square_test,
    welch_ttest,
)
from bandits.stats.offpolicy import (
    IPSEstimate,
    PeriodWeightedMean,
    ips_estimate,
    period_weighted_means,
)
from bandits.stats.planning import StoppingPlan, plan_bayesian, plan_sequential
from bandits.stats.power import PowerAnalysis, mde, power, sample_size
from bandits.stats.sequential import SequentialResult, sequential_rho, sequential_test
from bandits.stats.srm import SRMResult, TrafficPeriod, srm_test, srm_test_periods
from bandits.stats.summaries import (
    CupedStats,
    MetricStats,
    ProportionStats,
    RatioStats,
    SampleStats,
)

__all__ = [
    "AdjustedPValues",
    "BayesianResult",
    "ChiSquareResult",
    "CupedResult",
    "CupedStats",
    "IPSEstimate",
    "MetricStats",
    "PeriodWeightedMean",
    "PowerAnalysis",
    "ProbBestResult",
    "ProportionStats",
    "RatioStats",
    "SRMResult",
    "SampleStats",
    "SequentialResult",
    "StoppingPlan",
    "TTestResult",
    "TrafficPeriod",
    "adjust_pvalues",
    "bayesian_effect",
    "chi_square_test",
    "cuped_effect",
    "ips_estimate",
    "mde",
    "normal_expected_loss",
    "period_weighted_means",
    "plan_bayesian",
    "plan_sequential",
    "power",
    "prob_best",
    "sample_size",
    "sequential_rho",
    "sequential_test",
    "srm_test",
    "srm_test_periods",
    "welch_ttest",
]
