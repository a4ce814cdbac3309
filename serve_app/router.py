"""The ingress: parse, decide, call, record.

Per prediction the router touches no shared state: the policy selects on a local snapshot of
the merged posterior (microseconds), the chosen arm's deployment answers, and the decision is
counted in a local buffer. A background task syncs the buffer with the experiment-state
deployment every ``sync_interval_s`` or ``sync_max_events`` decisions and takes the merged
snapshot back. Feedback is different: it is acknowledged only once durable, so concurrent
feedback requests are collected for ``feedback_commit_window_s`` and committed in one call
(group commit), then all of them answer.
"""

# No `from __future__ import annotations` here: FastAPI reads the endpoint annotations.
import asyncio
import contextlib
import logging
import time
import uuid
from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from ray import serve
from ray.serve.handle import DeploymentHandle

from bandits import ArmStats, Policy, make_policy
from serve_app.config import AppConfig, ExperimentConfig, format_location
from serve_app.decisions import DecisionToken, sign, verify
from serve_app.errors import (
    BanditServeError,
    DuplicateFeedback,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    Unavailable,
)
from serve_app.schemas import (
    ErrorBody,
    ExperimentList,
    ExperimentSummary,
    FeedbackRequest,
    FeedbackResponse,
    PredictRequest,
    PredictResponse,
)
from serve_app.store import FeedbackRecord

logger = logging.getLogger("ray.serve")

ERRORS = {status: {"model": ErrorBody} for status in (400, 403, 404, 409, 410, 413, 422, 503)}

app = FastAPI(
    title="bandit-serve",
    summary="A/B tests and multi-armed bandits for ML models on Ray Serve",
    version="0.1.0",
)


@app.exception_handler(BanditServeError)
async def _project_error(_request: Request, error: BanditServeError) -> JSONResponse:
    headers = {"Retry-After": "1"} if error.status == 503 else None
    return JSONResponse(error.to_json(), status_code=error.status, headers=headers)


@app.exception_handler(RequestValidationError)
async def _validation_error(_request: Request, error: RequestValidationError) -> JSONResponse:
    problems = []
    for problem in error.errors():
        location = tuple(part for part in problem["loc"] if part != "body")
        if problem["type"] == "json_invalid":
            problems.append({"field": "body", "message": f"not valid JSON: {problem['msg']}"})
            continue
        field = format_location(location) if location else "body"
        message = problem["msg"]
        if problem["type"] == "missing":
            message = "required field is missing"
        elif problem["type"] == "extra_forbidden":
            message = "unknown field"
        problems.append({"field": field, "message": message})
    first = problems[0] if problems else {"field": "body", "message": "invalid request"}
    body = InvalidRequest(f"{first['field']}: {first['message']}", field=first["field"])
    return JSONResponse({**body.to_json(), "problems": problems}, status_code=422)


BodyT = TypeVar("BodyT", bound=BaseModel)


def _json_body(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI request body for endpoints that read and validate the body themselves."""
    schema = {"application/json": {"schema": model.model_json_schema()}}
    return {"requestBody": {"required": True, "content": schema}}


async def _resolve(response: Any) -> Any:
    """A coroutine for a DeploymentResponse, so asyncio.wait_for can time it out."""
    return await response


@dataclass
class RoutedExperiment:
    """What a router needs to route one experiment locally."""

    config: ExperimentConfig
    revision: int
    policy: Policy
    handles: dict[str, DeploymentHandle]

    def arm_options(self, arm: str) -> Any:
        return next(a.deployment for a in self.config.arms if a.name == arm)


@serve.deployment
@serve.ingress(app)
class Router:
    """The HTTP ingress of one bandit-serve application."""

    async def __init__(
        self,
        config: dict[str, Any],
        state: DeploymentHandle,
        arms: dict[str, dict[str, DeploymentHandle]],
    ) -> None:
        self.config = AppConfig.model_validate(config)
        self.limits = self.config.router
        self.router_id = uuid.uuid4().hex[:12]
        self._state = state
        registration = await state.register.remote(self.router_id)
        self._secret: bytes = registration["secret"]
        self.experiments = {
            experiment.name: self._routed(experiment, registration["snapshot"], arms)
            for experiment in self.config.experiments
        }
        self._default_experiment = self.config.experiments[0].name
        self._counts: dict[str, dict[str, dict[str, int]]] = {}
        self._pending_events = 0
        self._sync_wanted = asyncio.Event()
        self._last_sync = time.monotonic()
        self._sync_failures = 0
        self._feedback_queue: list[tuple[FeedbackRecord, asyncio.Future[bool]]] = []
        self._feedback_task: asyncio.Task[None] | None = None
        self._sync_task = asyncio.get_running_loop().create_task(self._sync_forever())

    def _routed(
        self,
        experiment: ExperimentConfig,
        snapshot: dict[str, Any],
        arms: dict[str, dict[str, DeploymentHandle]],
    ) -> RoutedExperiment:
        revision = int(snapshot[experiment.name]["revision"])
        policy = make_policy(
            experiment.policy.name,
            experiment.arm_names,
            experiment.policy_params(revision),
            seed=experiment.seed,
        )
        routed = RoutedExperiment(experiment, revision, policy, arms[experiment.name])
        self._apply_snapshot(routed, snapshot[experiment.name])
        return routed

    @staticmethod
    def _apply_snapshot(routed: RoutedExperiment, snapshot: dict[str, Any]) -> None:
        routed.revision = int(snapshot["revision"])
        routed.policy.set_stats(
            {arm: ArmStats.from_dict(values) for arm, values in snapshot["stats"].items()}
        )

    # ---------------------------------------------------------------- predictions

    @app.post(
        "/predict",
        response_model=PredictResponse,
        responses=ERRORS,
        openapi_extra=_json_body(PredictRequest),
    )
    async def predict(self, request: Request) -> PredictResponse:
        """Route a batch of feature rows to one arm and return its predictions."""
        body = await self._parse(request, PredictRequest)
        routed = self._experiment(body.experiment)
        features = self._features(body.features, routed.config)
        decision = routed.policy.select(body.unit_id)
        self._count(routed.config.name, decision.arm, "pulls")
        arm, fallback = decision.arm, False
        try:
            predictions = await self._call_arm(routed, arm, features)
        except Exception as error:
            self._count(routed.config.name, arm, "errors")
            default = routed.config.default
            if arm == default:
                raise self._arm_unavailable(routed, arm, error) from None
            logger.warning("arm %s failed (%r); answering with %s", arm, error, default)
            arm, fallback = default, True
            try:
                predictions = await self._call_arm(routed, arm, features)
            except Exception as default_error:
                self._count(routed.config.name, arm, "errors")
                raise self._arm_unavailable(routed, arm, default_error) from None
        token = DecisionToken.issue(
            routed.config.name, routed.revision, arm, decision.propensity, fallback=fallback
        )
        return PredictResponse(
            predictions=predictions,
            arm=arm,
            decision_id=sign(token, self._secret),
            propensity=token.propensity,
            experiment=routed.config.name,
            fallback=fallback,
        )

    async def _parse(self, request: Request, model: type[BodyT]) -> BodyT:
        """Read at most ``max_body_bytes`` and validate; 413 or 422 naming the field."""
        limit = self.limits.max_body_bytes
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            raise PayloadTooLarge(
                f"request body is {length} bytes; the limit is {limit}", field="body"
            )
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"request body exceeds {limit} bytes", field="body")
            chunks.append(chunk)
        try:
            return model.model_validate_json(b"".join(chunks))
        except ValidationError as error:
            raise RequestValidationError(error.errors()) from None

    def _experiment(self, name: str | None) -> RoutedExperiment:
        routed = self.experiments.get(name or self._default_experiment)
        if routed is None:
            raise NotFound(
                f"unknown experiment {name!r}; known: {', '.join(self.experiments)}",
                field="experiment",
            )
        return routed

    def _features(self, rows: list[list[float]], experiment: ExperimentConfig) -> np.ndarray:
        if len(rows) > self.limits.max_batch_rows:
            raise PayloadTooLarge(
                f"features has {len(rows)} rows; at most {self.limits.max_batch_rows} per request",
                field="features",
            )
        width = len(rows[0])
        expected = experiment.n_features
        for index, row in enumerate(rows):
            if len(row) != (expected or width) or not row:
                wanted = expected or width
                raise InvalidRequest(
                    f"features[{index}] has {len(row)} values; experiment "
                    f"{experiment.name!r} expects rows of {wanted} numbers",
                    field=f"features[{index}]",
                )
        if width > self.limits.max_features:
            raise PayloadTooLarge(
                f"features rows have {width} values; at most {self.limits.max_features}",
                field="features",
            )
        return np.asarray(rows, dtype=np.float64)

    async def _call_arm(self, routed: RoutedExperiment, arm: str, features: np.ndarray) -> Any:
        options = routed.arm_options(arm)
        handle = routed.handles[arm]
        method = handle.predict_batched if options.batching is not None else handle.predict
        response = method.remote(features)
        try:
            return await asyncio.wait_for(_resolve(response), timeout=options.timeout_s)
        except TimeoutError:
            response.cancel()
            raise

    @staticmethod
    def _arm_unavailable(routed: RoutedExperiment, arm: str, error: Exception) -> Unavailable:
        logger.error("arm %s of %s failed: %r", arm, routed.config.name, error)
        return Unavailable(
            f"model arm {arm!r} of experiment {routed.config.name!r} could not answer; retry later",
        )

    def _count(self, experiment: str, arm: str, what: str) -> None:
        per_arm = self._counts.setdefault(experiment, {}).setdefault(arm, defaultdict(int))
        per_arm[what] += 1
        self._pending_events += 1
        if self._pending_events >= self.limits.sync_max_events:
            self._sync_wanted.set()

    # ---------------------------------------------------------------- state sync

    async def _sync_forever(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._sync_wanted.wait(), timeout=self.limits.sync_interval_s
                )
            self._sync_wanted.clear()
            await self._sync_once()

    async def _sync_once(self) -> None:
        counts, self._counts = self._counts, {}
        self._pending_events = 0
        plain = {name: {arm: dict(c) for arm, c in arms.items()} for name, arms in counts.items()}
        try:
            snapshot = await self._state.sync.remote(plain)
        except Exception as error:
            self._restore_counts(counts)
            self._sync_failures += 1
            if self._sync_failures in (1, 10) or self._sync_failures % 100 == 0:
                logger.warning("state sync failed %d times: %r", self._sync_failures, error)
            return
        self._sync_failures = 0
        self._last_sync = time.monotonic()
        for name, routed in self.experiments.items():
            if name in snapshot:
                self._apply_snapshot(routed, snapshot[name])

    def _restore_counts(self, counts: dict[str, dict[str, dict[str, int]]]) -> None:
        """Put unsent counts back so the next sync retries them."""
        for name, arms in counts.items():
            for arm, values in arms.items():
                for what, value in values.items():
                    per_arm = self._counts.setdefault(name, {}).setdefault(arm, defaultdict(int))
                    per_arm[what] += value

    async def __del__(self) -> None:
        """On graceful shutdown, flush the last counts."""
        self._sync_task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._sync_once(), timeout=2.0)

    # ---------------------------------------------------------------- feedback

    @app.post(
        "/feedback",
        response_model=FeedbackResponse,
        responses=ERRORS,
        openapi_extra=_json_body(FeedbackRequest),
    )
    async def feedback(self, request: Request) -> FeedbackResponse:
        """Record the reward of a decision. 200 only once it is durable; 409 on a second use."""
        body = await self._parse(request, FeedbackRequest)
        token = verify(body.decision_id, self._secret)
        routed = self.experiments.get(token.experiment)
        if routed is None:
            raise NotFound(
                f"decision_id belongs to experiment {token.experiment!r}, which is not served",
                field="decision_id",
            )
        token.check_age(routed.config.feedback_window_s)
        if routed.config.reward == "binary" and not 0.0 <= body.reward <= 1.0:
            raise InvalidRequest(
                f"reward must be between 0 and 1 for binary experiment {token.experiment!r}, "
                f"got {body.reward}",
                field="reward",
            )
        learned = not token.fallback and token.arm in routed.policy.stats
        record = FeedbackRecord(
            decision_key=token.nonce,
            experiment=token.experiment,
            revision=token.revision,
            arm=token.arm,
            reward=body.reward,
            propensity=token.propensity,
            issued_at=token.issued_at,
            learned=learned,
        )
        if not await self._commit(record):
            raise DuplicateFeedback(
                "this decision already has feedback; a decision takes one reward",
                field="decision_id",
            )
        return FeedbackResponse(
            experiment=token.experiment, arm=token.arm, reward=body.reward, learned=learned
        )

    async def _commit(self, record: FeedbackRecord) -> bool:
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._feedback_queue.append((record, future))
        if self._feedback_task is None or self._feedback_task.done():
            self._feedback_task = asyncio.create_task(self._flush_feedback())
        return await asyncio.shield(future)

    async def _flush_feedback(self) -> None:
        await asyncio.sleep(self.limits.feedback_commit_window_s)
        while self._feedback_queue:
            batch, self._feedback_queue = self._feedback_queue[:1000], self._feedback_queue[1000:]
            try:
                accepted = await self._state.record_feedback.remote(
                    [asdict(record) for record, _ in batch]
                )
            except Exception as error:
                logger.warning("feedback commit of %d items failed: %r", len(batch), error)
                failure = Unavailable("feedback could not be stored yet; retry the same request")
                for _, future in batch:
                    if not future.done():
                        future.set_exception(failure)
                continue
            for (_, future), ok in zip(batch, accepted, strict=True):
                if not future.done():
                    future.set_result(bool(ok))

    # ---------------------------------------------------------------- read side

    @app.get("/experiments", response_model=ExperimentList)
    async def list_experiments(self) -> dict[str, Any]:
        """Every experiment with per-arm statistics, routing weights and P(best)."""
        return {"experiments": await self._state.experiments_summary.remote()}

    @app.get("/experiments/{name}", response_model=ExperimentSummary, responses=ERRORS)
    async def get_experiment(self, name: str) -> dict[str, Any]:
        """One experiment with per-arm statistics, routing weights and P(best)."""
        summary = await self._state.experiment_summary.remote(name)
        if summary is None:
            raise NotFound(
                f"unknown experiment {name!r}; known: {', '.join(self.experiments)}",
                field="name",
            )
        return summary

    @app.get("/healthz")
    async def healthz(self) -> dict[str, Any]:
        """Liveness and state-sync freshness of this router replica."""
        age = time.monotonic() - self._last_sync
        return {
            "status": "ok",
            "router": self.router_id,
            "experiments": list(self.experiments),
            "last_sync_age_s": round(age, 3),
            "state_reachable": self._sync_failures == 0,
        }
