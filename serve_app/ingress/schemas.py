"""Request and response bodies of the public HTTP API (they also make the OpenAPI docs).

Requests are strict: an unknown field, a wrong type (``"0.5"`` for a number, ``true`` or
``"1"`` for a reward), NaN or infinity is a 422 that names the field. Limits that depend on
the config (rows per batch, features per row and their range, body size, declared metrics)
are checked by the router, which knows them.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
)

from serve_app.errors import InvalidRequest


class StrictBody(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)


MAX_CONTEXT_STRING = 256


def _context_value(value: Any) -> Any:
    """A context value is a JSON scalar: a string (at most 256 characters), a finite
    number, a boolean or null (what a contextual experiment's spec then checks by field)."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value
    if isinstance(value, str):
        if len(value) > MAX_CONTEXT_STRING:
            raise ValueError(f"must be at most {MAX_CONTEXT_STRING} characters")
        return value
    raise ValueError("must be a string, a number, a boolean or null")


ContextValue = Annotated[Any, AfterValidator(_context_value)]
ContextObject = Annotated[
    dict[Annotated[str, StringConstraints(min_length=1, max_length=64)], ContextValue],
    Field(max_length=64),
]
_CONTEXT: TypeAdapter[dict[str, Any]] = TypeAdapter(ContextObject)


def checked_context(value: Any, where: str) -> dict[str, Any] | None:
    """A ``context`` that arrived outside :class:`PredictRequest` (the Open Inference
    Protocol's ``parameters.context``), checked as that field is.

    Raises:
        InvalidRequest: Not an object of at most 64 scalar fields (422 naming ``where``).
    """
    if value is None:
        return None
    try:
        return _CONTEXT.validate_python(value, strict=True)
    except ValidationError as error:
        first = error.errors()[0]
        path = ".".join(str(part) for part in first["loc"] if part != "[key]")
        field = f"{where}.{path}" if path else where
        raise InvalidRequest(f"{field}: {first['msg']}", field=field) from None


class PredictRequest(StrictBody):
    features: list[list[float]] = Field(
        min_length=1,
        description="a batch of rows, each a list of finite numbers",
        examples=[[[0.0, 0.1, 0.5]]],
    )
    unit_id: str | None = Field(
        None,
        min_length=1,
        max_length=256,
        description="user or session id; a fixed split keeps a unit on one arm",
    )
    experiment: str | None = Field(
        None, min_length=1, max_length=64, description="experiment name; default: the first"
    )
    arm: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        description="force this arm (QA; also the X-Bandit-Arm header); needs the control or "
        "QA token; not learned from",
    )
    context: ContextObject | None = Field(
        None,
        description="named fields a contextual experiment routes on (its 'context' spec "
        "says which, and their types); other experiments ignore it",
        examples=[{"device": "ios", "age": 31}],
    )


class PredictResponse(BaseModel):
    predictions: list[Any]
    arm: str = Field(description="the arm whose model answered")
    decision_id: str = Field(description="signed receipt; send it back with the feedback")
    propensity: float = Field(description="probability the policy gave this arm")
    experiment: str
    fallback: bool = Field(
        False, description="true when the chosen arm failed and the default arm answered"
    )
    forced: bool = Field(False, description="true when the request forced the arm")
    model_version: str | None = Field(
        None, description="the model version that answered (registry version, when known)"
    )


METRIC_NAME = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$"
MAX_FEEDBACK_METRICS = 32


class FeedbackRequest(StrictBody):
    decision_id: str = Field(min_length=1, max_length=2048)
    reward: float = Field(description="binary experiments: 0..1; continuous: any finite number")
    metrics: dict[Annotated[str, StringConstraints(pattern=METRIC_NAME)], float] | None = Field(
        None,
        max_length=MAX_FEEDBACK_METRICS,
        description="metrics of this decision's outcome the experiment declares (its "
        "'metrics' and guardrail metrics, e.g. refund, latency_ms)",
        examples=[{"refund": 0.0}],
    )
    label: int | float | str | bool | None = Field(
        None,
        description="the true label of the decision's input, when known (accuracy, label "
        "drift, and the rows retraining learns from)",
        examples=[7],
    )
    covariate: float | None = Field(
        None,
        description="the unit's pre-experiment value of the reward (last month's spend): "
        "CUPED variance reduction in the analysis; finite, |value| <= 1e15",
        examples=[12.5],
    )


class FeedbackResponse(BaseModel):
    status: str = "recorded"
    experiment: str
    arm: str
    reward: float
    learned: bool = Field(description="false for fallback answers, kept out of learning")
    replayed: bool = Field(
        False,
        description="true when this exact feedback was stored by an earlier request (a retry "
        "after a lost answer): nothing changed",
    )


class ArmSummary(BaseModel):
    name: str
    model_uri: str
    requests: int = Field(description="decisions the policy routed to the arm")
    forced: int = Field(description="requests that forced the arm (not learned from)")
    forced_errors: int = Field(0, description="failed forced requests (no guardrail counts them)")
    errors: int = Field(description="failed calls of routed decisions (the error guardrail)")
    fallbacks: int = Field(description="requests the default arm answered for this arm")
    feedback: int
    reward_sum: float
    reward_mean: float
    weight: float = Field(description="current routing probability")
    prob_best: float | None = Field(
        description="posterior probability the arm has the best mean (null: too little data)"
    )
    expected_loss: float | None = Field(
        None, description="posterior expected shortfall of the arm's mean from the best"
    )
    guardrail_breached: bool = Field(description="the arm breaches a configured guardrail")
    excluded: bool = Field(False, description="rolled back by a guardrail: weight 0")
    exclusion_reason: str | None = None


class ShadowSummary(BaseModel):
    name: str
    model_uri: str
    percent: float
    requests: int
    errors: int
    timeouts: int = Field(0, description="mirrored calls that ran past the shadow's timeout")
    dropped: int = Field(description="mirror copies skipped because too many were in flight")
    mean_latency_ms: float | None
    rows: int = Field(description="rows compared with the served prediction")
    agree_rows: int = Field(description="rows where the shadow predicted the same")
    agreement: float | None = Field(description="share of rows equal to the served prediction")


class ExperimentSummary(BaseModel):
    name: str
    description: str
    status: str = Field(description="draft, running, paused or concluded")
    outcome: str | None = Field(description="promoted, rolled_back or stopped once concluded")
    winner: str | None
    revision: int
    policy: str
    policy_params: dict[str, Any]
    reward: str
    default_arm: str
    feedback_window_s: float
    srm_p_value: float | None = Field(
        description="sample-ratio-mismatch p-value of routed counts against logged weights"
    )
    started_at: float | None = Field(None, description="when it first ran (unix seconds)")
    stopping: dict[str, Any] | None = Field(
        None, description="the stopping rule's status now: met, winner, reason, rules"
    )
    recommendation: dict[str, Any] | None = Field(
        None, description="stopping action 'recommend': the standing winner and why"
    )
    mlflow_run_id: str | None = Field(None, description="MLflow run recording the conclusion")
    drift: dict[str, Any] | None = Field(
        None,
        description="drift tracking: alert, max_psi, drifted_features, drifted_arms, rows, "
        "reference (model or warmup); details at GET /experiments/{name}/drift",
    )
    analysis: dict[str, Any] | None = Field(
        None,
        description="estimator (pooled or period_weighted) that the comparisons and stopping "
        "rule use and why; CUPED-adjusted effects (null without covariates); ratio metrics",
    )
    delegate: str | None = Field(
        None, description="the retraining challenger that serves this experiment's traffic now"
    )
    parent: str | None = Field(None, description="the experiment whose retraining made this one")
    arms: list[ArmSummary]
    shadows: list[ShadowSummary]


class ExperimentList(BaseModel):
    experiments: list[ExperimentSummary]


class ControlRequest(StrictBody):
    reason: str = Field("", max_length=1000, description="why; kept in the audit log")


class WeightsRequest(ControlRequest):
    weights: dict[str, float] = Field(description="every arm's new share; they add up to 1")


class PromoteRequest(ControlRequest):
    arm: str = Field(min_length=1, max_length=64)


class CreateRequest(BaseModel):
    """An experiment as in the app config (name, reward, policy, arms, ...), plus a reason;
    the experiment part is validated by the experiment schema itself."""

    model_config = ConfigDict(extra="allow", strict=True)
    reason: str = Field("", max_length=1000)


class ArmChange(StrictBody):
    """A new model for an existing arm (loaded before the change applies)."""

    name: str = Field(min_length=1, max_length=64)
    model_uri: str = Field(min_length=1, max_length=2048)
    placement: Literal["pool", "dedicated", "router"] | None = None


class UpdateRequest(ControlRequest):
    description: str | None = Field(None, max_length=10_000)
    policy_params: dict[str, Any] | None = None
    default_arm: str | None = Field(None, max_length=64)
    feedback_window_s: float | None = Field(None, gt=0)
    arms: list[ArmChange] | None = Field(None, max_length=64)


class AuditEntry(BaseModel):
    id: int
    at: float
    experiment: str
    action: str
    detail: str
    actor: str = Field(
        description="'startup', 'lifecycle' or the keyed fingerprint of the token used"
    )


class ErrorBody(BaseModel):
    error: str
    message: str
    field: str | None = None
