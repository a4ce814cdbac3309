"""Request and response bodies of the public HTTP API (they also make the OpenAPI docs).

Requests are strict: an unknown field, a wrong type, NaN or infinity is a 422 that names the
field. Limits that depend on the config (rows per batch, features per row, body size) are
checked by the router, which knows them.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints


class StrictBody(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


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
        description="force this arm (QA; also the X-Bandit-Arm header); not learned from",
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


METRIC_NAME = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$"
MAX_FEEDBACK_METRICS = 32


class FeedbackRequest(StrictBody):
    decision_id: str = Field(min_length=1, max_length=2048)
    reward: float = Field(description="binary experiments: 0..1; continuous: any finite number")
    metrics: dict[Annotated[str, StringConstraints(pattern=METRIC_NAME)], float] | None = Field(
        None,
        max_length=MAX_FEEDBACK_METRICS,
        description="guardrail metrics of this decision's outcome (e.g. refund, latency_ms)",
        examples=[{"refund": 0.0}],
    )


class FeedbackResponse(BaseModel):
    status: str = "recorded"
    experiment: str
    arm: str
    reward: float
    learned: bool = Field(description="false for fallback answers, kept out of learning")


class ArmSummary(BaseModel):
    name: str
    model_uri: str
    requests: int = Field(description="decisions the policy routed to the arm")
    forced: int = Field(description="requests that forced the arm (not learned from)")
    errors: int
    fallbacks: int = Field(description="requests the default arm answered for this arm")
    feedback: int
    reward_sum: float
    reward_mean: float
    weight: float = Field(description="current routing probability")
    prob_best: float = Field(description="posterior probability the arm has the best mean")
    guardrail_breached: bool = Field(description="the arm breaches a configured guardrail")
    excluded: bool = Field(False, description="rolled back by a guardrail: weight 0")
    exclusion_reason: str | None = None


class ShadowSummary(BaseModel):
    name: str
    model_uri: str
    percent: float
    requests: int
    errors: int
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
    """An experiment as in the app config (name, reward, policy, arms, ...), plus a reason."""

    model_config = ConfigDict(extra="allow")
    reason: str = Field("", max_length=1000)


class UpdateRequest(ControlRequest):
    description: str | None = None
    policy_params: dict[str, Any] | None = None
    default_arm: str | None = None
    feedback_window_s: float | None = Field(None, gt=0)


class AuditEntry(BaseModel):
    id: int
    at: float
    experiment: str
    action: str
    detail: str
    actor: str = Field(description="'startup' or the fingerprint of the token used")


class ErrorBody(BaseModel):
    error: str
    message: str
    field: str | None = None
