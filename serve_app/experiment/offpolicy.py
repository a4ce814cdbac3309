"""Off-policy evaluation of candidate policies on an experiment's decision log.

``GET /experiments/{name}/ope?policy=...``, ``bandit-serve ope`` and the report ask the same
question: what mean reward per decision would this other policy have earned on the traffic
the experiment served? :func:`evaluate_log` answers it with :func:`bandits.ope.evaluate` on
the decisions the policy chose and learned from (forced, fallback and paused ones were not
drawn with their logged propensity; :meth:`ExperimentStore.policy_log` leaves them out).

Candidates are written as (:func:`parse_candidate`):

- ``uniform``: an equal split; ``always:<arm>``: every request to one arm;
- ``fixed:a=0.3,b=0.7``: a fixed split;
- ``policy:<name>``: a registered context-free policy (``thompson``, ``ucb1``, ...), trained on
  the log (cross-fitted) and frozen;
- ``contextual:<name>``: a contextual policy over the experiment's context vectors;
- ``experiment``: the experiment's own policy with its parameters;
- any of the last three followed by a JSON object of parameters, e.g.
  ``contextual:lin_ucb{"alpha": 0.5}``, or a JSON candidate object
  (:func:`bandits.ope.candidate_from_dict`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from bandits import PolicyConfigError
from bandits.ope import (
    DEFAULT_ESTIMATORS,
    ESTIMATORS,
    AlwaysArm,
    BanditLog,
    Candidate,
    ContextualCandidate,
    FixedWeights,
    RegisteredPolicy,
    candidate_from_dict,
    evaluate,
)
from serve_app.config import ExperimentConfig
from serve_app.errors import Conflict, InvalidRequest

MAX_CANDIDATES = 16
MAX_CANDIDATE_CHARS = 2000
MAX_LOG_ROWS = 200_000
"""The newest decisions one evaluation reads at most."""
MIN_LOG_ROWS = 10


def _params(text: str, where: str) -> dict[str, Any]:
    if not text:
        return {}
    try:
        params = json.loads(text)
    except json.JSONDecodeError as error:
        raise InvalidRequest(
            f"policy: {where!r}: parameters must be a JSON object: {error}", field="policy"
        ) from None
    if not isinstance(params, dict):
        raise InvalidRequest(f"policy: {where!r}: parameters must be a JSON object", field="policy")
    return params


def _split_name(rest: str) -> tuple[str, str]:
    brace = rest.find("{")
    return (rest, "") if brace < 0 else (rest[:brace], rest[brace:])


def parse_candidate(spec: str, config: ExperimentConfig) -> Candidate:
    """One candidate from its text (see the module docstring).

    Raises:
        InvalidRequest: Unknown form, arm or policy, or bad parameters (422, field
            ``policy``).

    Example:
        >>> from serve_app.config import ExperimentConfig
        >>> config = ExperimentConfig.model_validate({"name": "e", "arms": [
        ...     {"name": "a", "model_uri": "/m/a"}, {"name": "b", "model_uri": "/m/b"}]})
        >>> parse_candidate("fixed:a=0.25,b=0.75", config).label
        'fixed:a=0.25,b=0.75'
        >>> parse_candidate("always:c", config)
        Traceback (most recent call last):
        ...
        serve_app.errors.InvalidRequest: policy: 'always:c' names arm 'c', not an arm of 'e' \
(arms: a, b)
    """
    if not isinstance(spec, str) or not spec.strip() or len(spec) > MAX_CANDIDATE_CHARS:
        raise InvalidRequest(
            f"policy: a candidate is 1 to {MAX_CANDIDATE_CHARS} characters", field="policy"
        )
    spec = spec.strip()
    arms = config.arm_names
    try:
        candidate = _parse(spec, config)
        names = (
            [candidate.arm]
            if isinstance(candidate, AlwaysArm)
            else list(candidate.weights)
            if isinstance(candidate, FixedWeights)
            else []
        )
        unknown = [arm for arm in names if arm not in arms]
        if unknown:
            raise InvalidRequest(
                f"policy: {spec!r} names arm {unknown[0]!r}, not an arm of {config.name!r} "
                f"(arms: {', '.join(arms)})",
                field="policy",
            )
        _check_buildable(candidate, config)
    except PolicyConfigError as error:
        raise InvalidRequest(f"policy: {spec!r}: {error}", field="policy") from None
    return candidate


def _parse(spec: str, config: ExperimentConfig) -> Candidate:
    if spec.startswith("{"):
        return candidate_from_dict(_params(spec, "policy"))
    if spec == "uniform":
        return FixedWeights()
    kind, _, rest = spec.partition(":")
    if kind == "always" and rest:
        return AlwaysArm(rest)
    if kind == "fixed" and rest:
        weights: dict[str, float] = {}
        for part in rest.split(","):
            arm, _, value = part.partition("=")
            try:
                weights[arm.strip()] = float(value)
            except ValueError:
                raise InvalidRequest(
                    f"policy: {spec!r}: write a fixed split as fixed:a=0.3,b=0.7", field="policy"
                ) from None
        return FixedWeights(weights)
    if kind.startswith("experiment"):
        _, params_text = _split_name(spec)
        params = {**config.policy.params, **_params(params_text, spec)}
        if config.policy.contextual:
            return ContextualCandidate(config.policy.name, params)
        if config.policy.name == "fixed":
            return FixedWeights({arm.name: float(arm.weight or 0.0) for arm in config.arms})
        return RegisteredPolicy(config.policy.name, params)
    if kind in ("policy", "contextual") and rest:
        name, params_text = _split_name(rest)
        params = _params(params_text, spec)
        if kind == "policy":
            return RegisteredPolicy(name, params)
        return ContextualCandidate(name, params)
    raise InvalidRequest(
        f"policy: {spec!r} is not a candidate; write uniform, always:<arm>, "
        "fixed:a=0.3,b=0.7, policy:<name>, contextual:<name>, experiment (each of the last "
        'three optionally followed by JSON parameters, e.g. contextual:lin_ucb{"alpha": 1}) '
        "or a JSON candidate object",
        field="policy",
    )


def _check_buildable(candidate: Candidate, config: ExperimentConfig) -> None:
    """Config errors of a learning candidate now, as a 422, rather than in the evaluation."""
    from bandits import make_policy
    from bandits.contextual import make_contextual_policy

    if isinstance(candidate, RegisteredPolicy):
        make_policy(candidate.name, config.arm_names, dict(candidate.params), seed=0)
    elif isinstance(candidate, ContextualCandidate):
        spec = config.context_spec
        if spec is None:
            raise InvalidRequest(
                f"policy: {candidate.label!r} needs a contextual experiment (one with a "
                f"'context'); {config.name!r} logs no contexts",
                field="policy",
            )
        make_contextual_policy(
            candidate.name, config.arm_names, spec.dim, dict(candidate.params), seed=0
        )


def bandit_log(rows: Sequence[Mapping[str, Any]], config: ExperimentConfig) -> BanditLog:
    """The :class:`BanditLog` of :meth:`ExperimentStore.policy_log` rows: arms of the
    experiment only, contexts when every row has one of the experiment's dimension."""
    arms = config.arm_names
    spec = config.context_spec
    kept = [row for row in rows if row["arm"] in arms and 0.0 < row["propensity"] <= 1.0]
    contexts = None
    if spec is not None:
        kept = [
            row
            for row in kept
            if isinstance(row.get("context"), list) and len(row["context"]) == spec.dim
        ]
        contexts = np.array([row["context"] for row in kept], dtype=np.float64).reshape(
            len(kept), spec.dim
        )
    return BanditLog.from_records(
        arms,
        [row["arm"] for row in kept],
        [float(row["propensity"]) for row in kept],
        [float(row["reward"]) for row in kept],
        contexts,
    )


def check_estimators(names: Sequence[str] | None) -> list[str]:
    """The estimators asked for (all by default).

    Raises:
        InvalidRequest: An unknown name (422, field ``estimator``).
    """
    if not names:
        return list(DEFAULT_ESTIMATORS)
    unknown = [name for name in names if name not in ESTIMATORS]
    if unknown:
        raise InvalidRequest(
            f"estimator: {unknown[0]!r} is not an estimator; known: {', '.join(ESTIMATORS)}",
            field="estimator",
        )
    return list(dict.fromkeys(names))


def evaluate_log(
    rows: Sequence[Mapping[str, Any]],
    config: ExperimentConfig,
    candidates: Sequence[Candidate],
    estimators: Sequence[str],
    *,
    level: float = 0.95,
    clip: float | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Every candidate's estimates on the log rows, with what the log holds.

    Returns:
        ``{"experiment", "records", "contextual", "logged_reward", "level", "clip",
        "results": [Estimate.to_dict(), ...]}``; ``logged_reward`` is the mean reward the
        logging policy earned on these records (the on-policy value).

    Raises:
        Conflict: Fewer than :data:`MIN_LOG_ROWS` records with feedback (409).
    """
    log = bandit_log(rows, config)
    if log.n < MIN_LOG_ROWS:
        raise Conflict(
            f"experiment {config.name!r} has {log.n} logged decisions with learned feedback; "
            f"off-policy evaluation needs at least {MIN_LOG_ROWS}"
        )
    try:
        results = evaluate(log, list(candidates), estimators, level=level, clip=clip, seed=seed)
    except PolicyConfigError as error:
        raise InvalidRequest(f"policy: {error}", field="policy") from None
    except ValueError as error:
        raise Conflict(f"off-policy evaluation of {config.name!r} failed: {error}") from None
    return {
        "experiment": config.name,
        "records": log.n,
        "contextual": log.contexts is not None,
        "logged_reward": float(log.rewards.mean()),
        "level": level,
        "clip": clip,
        "results": [result.to_dict() for result in results],
    }


def default_candidates(config: ExperimentConfig) -> list[Candidate]:
    """What the report evaluates: the uniform split and every arm alone."""
    return [FixedWeights(), *(AlwaysArm(arm) for arm in config.arm_names)]
