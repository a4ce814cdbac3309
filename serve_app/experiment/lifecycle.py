"""The automated experiment lifecycle: what to do next with a running experiment.

``draft -> running -> paused -> concluded (promoted | rolled_back | stopped)``. The state
deployment calls :func:`judge` for every running experiment once per
``lifecycle.evaluate_interval_s`` and carries out the actions it returns, each one transaction
with its audit-log entry (actor ``lifecycle``). In order:

1. Guardrails: a challenger that breaches one (with ``auto_rollback``) is rolled back: weight
   0, the other arms renormalised. When no challenger is left, or the ramped canary is the one
   rolled back, the experiment concludes ``rolled_back``.
2. Ramp: when the canary had ``min_samples`` requests and ``min_duration_s`` in its current
   step with no breach, its share moves to the next step; the step to 100 % promotes it.
3. Stopping rule: when it names a winner, the winner is promoted (the control winning is a
   ``rolled_back``); past ``max_duration_s`` with no answer the experiment is ``stopped`` on
   the control. With ``action: recommend`` the decision is only recorded (once per change).

:func:`judge` is pure: it reads a :class:`~serve_app.experiment.live.LiveExperiment`, never
writes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from serve_app.config import ramp_weights
from serve_app.experiment.analysis import (
    GuardrailCheck,
    StoppingDecision,
    evaluate_guardrails,
    evaluate_stopping,
)
from serve_app.experiment.live import LiveExperiment

ActionKind = Literal["exclude", "ramp", "promote", "rollback", "stop", "recommend"]
ACTOR = "lifecycle"


@dataclass(frozen=True)
class Action:
    """One change the lifecycle makes: ``exclude`` an arm, move a ``ramp`` step (``weights``),
    ``promote`` ``arm``, ``rollback``, ``stop`` or ``recommend``; ``reason`` goes to the audit
    log."""

    kind: ActionKind
    reason: str
    arm: str | None = None
    weights: dict[str, float] | None = None


@dataclass(frozen=True)
class Judgement:
    """The lifecycle's view of one experiment now, and what to do about it."""

    guardrails: list[GuardrailCheck]
    stopping: StoppingDecision | None
    actions: list[Action] = field(default_factory=list)


def judge(live: LiveExperiment, now: float) -> Judgement:
    """What to do with ``live`` now (nothing unless it is running)."""
    config = live.config
    control = live.control
    # rolled-back arms are judged too, so the report keeps showing why they went
    challengers = [arm for arm in config.arm_names if arm != control]
    checks = []
    if config.guardrails.any:
        checks = evaluate_guardrails(
            config.guardrails, control, challengers, live.calls(), live.latency, live.metrics
        )
    stopping = None
    if config.stopping is not None and live.active_arms:
        stats = {arm: live.policy.stats[arm] for arm in live.active_arms}
        elapsed = now - (live.started_at or now)
        estimate = live.estimate(live.active_arms)
        stopping = evaluate_stopping(
            config.stopping,
            stats,
            control,
            config.reward,
            elapsed,
            live.verdict(),
            summaries=estimate.summaries,
            estimator=estimate.estimator,
        )
    if live.status != "running":
        return Judgement(checks, stopping)
    actions = _guardrail_actions(live, checks)
    if actions:
        return Judgement(checks, stopping, actions)
    if config.ramp is not None:
        ramp = _ramp_action(live, now)
        if ramp is not None:
            return Judgement(checks, stopping, [ramp])
    if stopping is not None and stopping.met:
        return Judgement(checks, stopping, _stopping_actions(live, stopping))
    return Judgement(checks, stopping)


def _guardrail_actions(live: LiveExperiment, checks: list[GuardrailCheck]) -> list[Action]:
    if not live.config.guardrails.auto_rollback:
        return []
    breaches: dict[str, list[str]] = {}
    for check in checks:
        if check.breached and check.arm not in live.excluded:
            breaches.setdefault(check.arm, []).append(check.detail)
    if not breaches:
        return []
    actions = [
        Action("exclude", f"guardrail breached: {'; '.join(details)}", arm=arm)
        for arm, details in breaches.items()
    ]
    left = [arm for arm in live.active_arms if arm != live.control and arm not in breaches]
    ramp = live.config.ramp
    if ramp is not None and ramp.arm in breaches:
        actions.append(Action("rollback", f"canary {ramp.arm} rolled back: {actions[0].reason}"))
    elif not left:
        reasons = "; ".join(f"{action.arm}: {action.reason}" for action in actions)
        actions.append(Action("rollback", f"no challenger left ({reasons})"))
    return actions


def ramp_step(percent: float, steps: list[float]) -> int:
    """Index of the step the canary is on (``-1`` below the first).

    >>> ramp_step(25.0, [5.0, 25.0, 50.0, 100.0])
    1
    """
    return max((i for i, step in enumerate(steps) if step <= percent + 1e-9), default=-1)


def _ramp_action(live: LiveExperiment, now: float) -> Action | None:
    ramp = live.config.ramp
    assert ramp is not None
    if ramp.arm in live.excluded:
        return None
    weights = {arm.name: float(arm.weight or 0.0) for arm in live.config.arms}
    step = ramp_step(100.0 * weights[ramp.arm], ramp.steps)
    if step + 1 >= len(ramp.steps):
        return None
    seen = live.period_counts.get(ramp.arm)
    requests = seen.pulls if seen else 0
    waited = now - live.period_started_at
    if requests < ramp.min_samples or waited < ramp.min_duration_s:
        return None
    rules = live.config.guardrails
    if rules.any and live.calls().get(ramp.arm, (0, 0))[0] < rules.min_requests:
        return None  # the guardrails must have judged the canary before it grows
    target = ramp.steps[step + 1]
    evidence = f"{requests} requests and {waited:.0f} s at {ramp.steps[max(step, 0)]:g}%"
    if target >= 100.0:
        return Action("promote", f"ramp complete: {evidence}, guardrails held", arm=ramp.arm)
    others = {arm: w for arm, w in weights.items() if arm != ramp.arm}
    return Action(
        "ramp",
        f"ramp {ramp.arm} to {target:g}% after {evidence}, guardrails held",
        arm=ramp.arm,
        weights=ramp_weights(live.config.arm_names, ramp.arm, target, others),
    )


def _stopping_actions(live: LiveExperiment, stopping: StoppingDecision) -> list[Action]:
    rules = live.config.stopping
    assert rules is not None
    if rules.action == "recommend":
        recommendation = {"winner": stopping.winner, "reason": stopping.reason}
        if live.recommendation == recommendation:
            return []
        return [Action("recommend", stopping.reason, arm=stopping.winner)]
    if stopping.winner is None:
        return [Action("stop", stopping.reason)]
    if stopping.winner == live.control:
        return [Action("rollback", f"stopping rule: {stopping.reason}")]
    return [Action("promote", f"stopping rule: {stopping.reason}", arm=stopping.winner)]
