"""Request and response bodies of the public HTTP API (they also make the OpenAPI docs).

Requests are strict: an unknown field, a wrong type, NaN or infinity is a 422 that names the
field. Limits that depend on the config (rows per batch, features per row, body size) are
checked by the router, which knows them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


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


class PredictResponse(BaseModel):
    predictions: list[Any]
    arm: str = Field(description="the arm whose model answered")
    decision_id: str = Field(description="signed receipt; send it back with the feedback")
    propensity: float = Field(description="probability the policy gave this arm")
    experiment: str
    fallback: bool = Field(
        False, description="true when the chosen arm failed and the default arm answered"
    )


class FeedbackRequest(StrictBody):
    decision_id: str = Field(min_length=1, max_length=2048)
    reward: float = Field(description="binary experiments: 0..1; continuous: any finite number")


class FeedbackResponse(BaseModel):
    status: str = "recorded"
    experiment: str
    arm: str
    reward: float
    learned: bool = Field(description="false for fallback answers, kept out of learning")


class ArmSummary(BaseModel):
    name: str
    model_uri: str
    requests: int
    errors: int
    feedback: int
    reward_sum: float
    reward_mean: float
    weight: float = Field(description="current routing probability")
    prob_best: float = Field(description="posterior probability the arm has the best mean")


class ExperimentSummary(BaseModel):
    name: str
    description: str
    status: str
    revision: int
    policy: str
    policy_params: dict[str, Any]
    reward: str
    default_arm: str
    feedback_window_s: float
    arms: list[ArmSummary]


class ExperimentList(BaseModel):
    experiments: list[ExperimentSummary]


class ErrorBody(BaseModel):
    error: str
    message: str
    field: str | None = None
