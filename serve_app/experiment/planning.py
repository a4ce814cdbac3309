"""How many users and how many days an experiment needs, from its own traffic.

``GET /experiments/{name}/plan`` and ``bandit-serve plan`` answer "to detect a lift of X with
power P, how many users per arm, and how many days at today's traffic?" for the three rules
the product can decide with: the fixed-horizon Welch test (closed form,
:func:`bandits.stats.sample_size`), the always-valid sequential rule
(:func:`bandits.stats.plan_sequential`, numerical integration) and the Bayesian rule
(:func:`bandits.stats.plan_bayesian`, a seeded simulation capped at :data:`BAYESIAN_REPS`
experiments so that a plan answers in well under a second).

The experiment's own numbers come from :func:`observed_traffic`: the control's pooled mean
(the baseline), its per-observation standard deviation (continuous rewards) and the decisions
per day since the experiment started. Each can be overridden; :func:`make_plan` is pure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from bandits.stats import SampleStats, plan_bayesian, plan_sequential, sample_size
from serve_app.config import StoppingConfig

if TYPE_CHECKING:
    from serve_app.experiment.live import LiveExperiment

Rule = Literal["all", "fixed", "sequential", "bayesian"]
RULES: tuple[str, ...] = ("fixed", "sequential", "bayesian")
BAYESIAN_REPS = 1000
"""Simulated experiments behind a Bayesian plan of up to 4 arms (power's Monte Carlo error
<= 0.016); with more arms ``4000 / arms`` (at least 200), so the cost stays bounded."""
BAYESIAN_LOOKS = 60
MAX_N_PER_ARM = 5e6
"""Beyond this many users per arm for the fixed-horizon test, the stopping rules (which need
more) are not planned: few experiments run that long, and their search would cost seconds."""
SEQUENTIAL_REACH = 16.0
"""The sequential rule is first evaluated once at this multiple of the fixed-horizon size: a
rule that does not reach the power there (rare events, whose early looks mislead) is
reported as such without the full search, which would cost seconds to fail."""
SECONDS_PER_DAY = 86_400.0


class PlanError(ValueError):
    """A plan that cannot be made; ``field`` names the input to change."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Traffic:
    """What an experiment has seen: the planning inputs it provides.

    Attributes:
        baseline: The control's mean reward (None: no feedback yet).
        sd: The control's per-observation standard deviation (continuous rewards; None for
            binary ones or with fewer than 2 rewards).
        daily_traffic: Decisions per day over all arms since the start (None: not started,
            or no decisions yet).
        arms: Arms still in the experiment, the control included.
        control_feedback: Feedback the control's numbers rest on.
    """

    baseline: float | None
    sd: float | None
    daily_traffic: float | None
    arms: int
    control_feedback: int


def observed_traffic(
    control: SampleStats,
    reward: str,
    decisions: int,
    started_at: float | None,
    now: float,
    arms: int,
) -> Traffic:
    """The planning inputs of an experiment from its control's feedback and its decisions.

    ``daily_traffic = decisions / (now - started_at) * 86400``; the baseline is the
    control's mean and (continuous) ``sd`` its ``n - 1`` sample standard deviation.

    >>> t = observed_traffic(SampleStats(4, 2.0, 2.0), "binary", 500, 0.0, 43_200.0, 2)
    >>> t.baseline, t.sd, t.daily_traffic
    (0.5, None, 1000.0)
    """
    baseline = control.mean if control.n else None
    sd = None
    if reward == "continuous" and control.n >= 2:
        sd = math.sqrt(control.variance)
    daily = None
    if started_at is not None and now > started_at and decisions > 0:
        daily = decisions / (now - started_at) * SECONDS_PER_DAY
    return Traffic(baseline, sd, daily, arms, control.n)


def _days(n_per_arm: float, arms: int, daily: float | None) -> float | None:
    if daily is None or not math.isfinite(n_per_arm):
        return None
    return arms * n_per_arm / daily


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def make_plan(
    traffic: Traffic,
    reward: str,
    *,
    mde: float,
    relative: bool = True,
    power: float = 0.8,
    alpha: float = 0.05,
    alternative: str = "two-sided",
    rule: Rule = "all",
    stopping: StoppingConfig | None = None,
) -> dict[str, Any]:
    """The plan: per rule, users per arm (and in all), days at ``traffic.daily_traffic``,
    and a sentence a product manager reads.

    ``alpha`` is the family-wise level: with ``K`` arms each challenger is tested at
    ``alpha / (K - 1)`` (the sequential rule's Bonferroni; conservative for the report's
    Holm). A one-sided fixed-horizon test at ``a`` is the two-sided one at ``2 a``. The
    sequential rule uses the stopping config's ``tuning`` and ``min_samples_per_arm``; the
    Bayesian rule its ``prob_best``, ``expected_loss`` and ``min_samples_per_arm`` (defaults
    of :class:`~serve_app.config.StoppingConfig` without one). A rule that cannot reach the
    power (a loss threshold too strict for the metric) reports ``error`` instead.

    Raises:
        PlanError: The baseline or a standard deviation is missing or out of range.
    """
    rules = stopping or StoppingConfig()
    baseline, sd, arms = traffic.baseline, traffic.sd, traffic.arms
    if baseline is None:
        raise PlanError("baseline", "the control has no feedback yet; pass a baseline")
    if reward == "binary":
        sd = None
        if not 0.0 < baseline < 1.0:
            raise PlanError(
                "baseline", f"a binary baseline must be a rate in (0, 1), got {baseline:g}"
            )
    elif sd is None or not sd > 0.0:
        raise PlanError(
            "sd", "the control needs 2 different rewards for a standard deviation; pass sd"
        )
    if relative and baseline == 0.0:
        raise PlanError("baseline", "a relative effect needs a nonzero baseline")
    daily = traffic.daily_traffic
    level = alpha / max(arms - 1, 1)
    two_sided_level = level if alternative == "two-sided" else min(2 * level, 0.999)
    wanted = RULES if rule == "all" else (rule,)
    plans: dict[str, dict[str, Any]] = {}
    try:
        fixed_n = sample_size(
            baseline, mde, sd=sd, relative=relative, alpha=two_sided_level, power=power
        ).n_control
    except (ValueError, ArithmeticError):
        fixed_n = math.nan  # each rule reports its own error below
    for name in wanted:
        if name != "fixed" and not fixed_n <= MAX_N_PER_ARM:
            plans[name] = {
                "error": f"the fixed-horizon test already needs more than {MAX_N_PER_ARM:,.0f} "
                "users per arm (or none reaches the power); a larger mde is needed"
            }
            continue
        try:
            plans[name] = _rule_plan(
                name,
                baseline,
                sd,
                mde,
                relative,
                power,
                alpha,
                two_sided_level,
                alternative,
                arms,
                daily,
                rules,
            )
        except (ValueError, ArithmeticError) as error:
            plans[name] = {"error": str(error) or type(error).__name__}
    return {
        "inputs": {
            "mde": mde,
            "relative": relative,
            "power": power,
            "alpha": alpha,
            "alternative": alternative,
            "baseline": baseline,
            "sd": sd,
            "daily_traffic": daily,
            "arms": arms,
            "control_feedback": traffic.control_feedback,
        },
        "rules": plans,
        "summary": _sentence(plans, mde, relative, power, daily),
    }


def bayesian_reps(arms: int) -> int:
    """Simulated experiments for a Bayesian plan with ``arms`` arms (see
    :data:`BAYESIAN_REPS`).

    >>> bayesian_reps(2), bayesian_reps(10), bayesian_reps(40)
    (1000, 400, 200)
    """
    return max(200, min(BAYESIAN_REPS, 4000 // arms))


def _rule_plan(
    name: str,
    baseline: float,
    sd: float | None,
    mde: float,
    relative: bool,
    power: float,
    alpha: float,
    two_sided_level: float,
    alternative: str,
    arms: int,
    daily: float | None,
    rules: StoppingConfig,
) -> dict[str, Any]:
    if name == "fixed":
        fixed = sample_size(
            baseline, mde, sd=sd, relative=relative, alpha=two_sided_level, power=power
        )
        if not math.isfinite(fixed.n_control):
            raise ValueError("no finite sample size reaches the power")
        n = math.ceil(fixed.n_control)
        return {
            "n_per_arm": n,
            "n_total": arms * n,
            "days": _days(n, arms, daily),
            "power": fixed.power,
            "method": "closed form: Welch test at the Bonferroni level, delta-method variance "
            "for a relative effect",
        }
    if name == "sequential":
        common: dict[str, Any] = {
            "sd": sd,
            "relative": relative,
            "power": power,
            "alpha": alpha,
            "tuning": rules.tuning,
            "alternative": alternative,
            "arms": arms,
            "min_samples_per_arm": max(rules.min_samples_per_arm, 2),
            "daily_traffic": daily,
        }
        fixed_n = sample_size(
            baseline, mde, sd=sd, relative=relative, alpha=two_sided_level, power=power
        ).n_control
        reach = SEQUENTIAL_REACH * max(fixed_n, 100.0)
        at_reach = plan_sequential(baseline, mde, n_per_arm=reach, **common)
        if at_reach.power < power:
            raise ValueError(
                f"the sequential rule does not reach power {power:.0%} even by {reach:,.0f} "
                f"per arm ({SEQUENTIAL_REACH:g} times the fixed-horizon size; power there "
                f"{at_reach.power:.1%})"
            )
        plan = plan_sequential(baseline, mde, **common)
    else:
        plan = plan_bayesian(
            baseline,
            mde,
            sd=sd,
            relative=relative,
            power=power,
            prob_best=rules.prob_best,
            expected_loss=max(rules.expected_loss, 1e-12),
            arms=arms,
            min_samples_per_arm=max(rules.min_samples_per_arm, 2),
            daily_traffic=daily,
            reps=bayesian_reps(arms),
            looks=BAYESIAN_LOOKS if arms <= 4 else BAYESIAN_LOOKS // 2,
            seed=0,
        )
    n = math.ceil(plan.n_per_arm)
    return {
        "n_per_arm": n,
        "n_total": arms * n,
        "days": _finite(plan.days) if plan.days is not None else None,
        "power": plan.power,
        "wrong_winner": plan.wrong_winner,
        "median_n_per_arm": _finite(plan.median_n_per_arm),
        "median_days": _days(plan.median_n_per_arm, arms, daily),
        "p90_n_per_arm": _finite(plan.p90_n_per_arm),
        "expected_n_per_arm": _finite(plan.expected_n_per_arm),
        "expected_days": _days(plan.expected_n_per_arm, arms, daily),
        "fixed_n_per_arm": _finite(plan.fixed_n_per_arm),
        "method": plan.method,
        "summary": plan.summary(),
    }


def _sentence(
    plans: dict[str, dict[str, Any]],
    mde: float,
    relative: bool,
    power: float,
    daily: float | None,
) -> str:
    """ "to detect a 5% relative lift with 80% power you need ~N users per arm, ...": one
    clause per rule that has a plan."""
    size = f"a {100 * mde:.4g}% relative lift" if relative else f"an absolute lift of {mde:g}"
    parts = []
    labels = {
        "fixed": "fixed-horizon test",
        "sequential": "sequential rule",
        "bayesian": "Bayesian rule",
    }
    for name, plan in plans.items():
        if "error" in plan:
            parts.append(f"the {labels[name]} cannot reach it ({plan['error']})")
            continue
        clause = f"~{plan['n_per_arm']:,} users per arm with the {labels[name]}"
        if plan["days"] is not None:
            clause += f", about {plan['days']:.1f} days"
        if name != "fixed" and plan.get("median_days") is not None:
            clause += f" (half the time it stops by day {plan['median_days']:.1f})"
        parts.append(clause)
    at = f" at today's ~{daily:,.0f} decisions/day" if daily is not None else ""
    return f"To detect {size} with {power:.0%} power you need " + "; ".join(parts) + at + "."


def plan_for(
    live: LiveExperiment,
    now: float,
    *,
    baseline: float | None = None,
    sd: float | None = None,
    daily_traffic: float | None = None,
    **options: Any,
) -> dict[str, Any]:
    """:func:`make_plan` from a live experiment's own traffic, where not overridden: the
    control's pooled feedback, the arms still in, and the routed decisions since the start.

    Raises:
        PlanError: As :func:`make_plan`.
    """
    control = live.policy.stats[live.control]
    decisions = sum(counts.pulls for counts in live.counts.values())
    arms = len({*live.active_arms, live.control})
    try:
        summary = SampleStats(control.feedback, control.reward_sum, control.reward_sum_squares)
    except ValueError as error:  # impossible stored sums: never a plan on them
        raise PlanError("baseline", f"the control's sums cannot be used ({error})") from None
    seen = observed_traffic(summary, live.config.reward, decisions, live.started_at, now, arms)
    traffic = Traffic(
        baseline=seen.baseline if baseline is None else baseline,
        sd=seen.sd if sd is None else sd,
        daily_traffic=seen.daily_traffic if daily_traffic is None else daily_traffic,
        arms=arms,
        control_feedback=seen.control_feedback,
    )
    plan = make_plan(traffic, live.config.reward, stopping=live.config.stopping, **options)
    plan["experiment"] = live.name
    plan["stopping_rule"] = live.config.stopping.rule if live.config.stopping else None
    return plan
