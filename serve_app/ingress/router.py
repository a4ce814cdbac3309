"""The ingress: parse, decide, call, record.

Per prediction the router touches no shared state: the policy selects on a local snapshot of
the merged posterior (microseconds), the chosen arm's deployment answers (or, when it fails,
the default arm), a share of requests is mirrored to shadow models without waiting for them,
and the decision is counted in a local buffer. A background task syncs the buffer with the
experiment-state deployment every ``sync_interval_s`` or ``sync_max_events`` decisions and
takes the merged snapshot back. Feedback is different: it is acknowledged only once durable,
so concurrent feedback requests are collected for ``feedback_commit_window_s`` and committed
in one call (group commit), then all of them answer.
"""

# No `from __future__ import annotations` here: FastAPI reads the endpoint annotations.
import asyncio
import contextlib
import logging
import time
import uuid
from collections import OrderedDict
from dataclasses import asdict
from typing import Any

import numpy as np
from fastapi import Request
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST
from ray import serve
from ray.serve import metrics as ray_metrics
from ray.serve.handle import DeploymentHandle

from bandits.drift import RowSampler
from serve_app.auth import check_bearer
from serve_app.config import AppConfig, ExperimentConfig
from serve_app.counters import CountBuffer
from serve_app.decisions import DecisionToken, sign, verify
from serve_app.errors import (
    BanditServeError,
    Conflict,
    DuplicateFeedback,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    Unavailable,
)
from serve_app.http_app import ERRORS, app, json_body, parse_body
from serve_app.metrics import LATENCY_BUCKETS, latency_bucket
from serve_app.routing import Route, RoutedExperiment
from serve_app.schemas import (
    AuditEntry,
    ControlRequest,
    CreateRequest,
    ExperimentList,
    ExperimentSummary,
    FeedbackRequest,
    FeedbackResponse,
    PredictRequest,
    PredictResponse,
    PromoteRequest,
    UpdateRequest,
    WeightsRequest,
)
from serve_app.state import REPLICAS_KEY
from serve_app.store import FeedbackRecord

logger = logging.getLogger("ray.serve")

FORCE_ARM_HEADER = "x-bandit-arm"
ASSIGNMENT_CACHE_SIZE = 100_000


async def _resolve(response: Any) -> Any:
    """A coroutine for a DeploymentResponse, so asyncio.wait_for can time it out."""
    return await response


@serve.deployment
@serve.ingress(app)
class Router:
    """The HTTP ingress of one bandit-serve application."""

    async def __init__(
        self,
        config: dict[str, Any],
        state: DeploymentHandle,
        arms: dict[str, dict[str, DeploymentHandle]],
        shadows: dict[str, dict[str, DeploymentHandle]],
    ) -> None:
        self.config = AppConfig.model_validate(config)
        self.limits = self.config.router
        self._control_token, self._data_token = self.config.auth.tokens()
        self.router_id = uuid.uuid4().hex[:12]
        self._state = state
        registration = await state.register.remote(self.router_id)
        self._secret: bytes = registration["secret"]
        # Every deployed model by URI, so experiments created at runtime find their arms.
        self._models: dict[str, DeploymentHandle] = {}
        for experiment in self.config.experiments:
            for arm in experiment.arms:
                self._models.setdefault(arm.model_uri, arms[experiment.name][arm.name])
            for shadow in experiment.shadows:
                self._models.setdefault(shadow.model_uri, shadows[experiment.name][shadow.name])
        self.experiments: dict[str, RoutedExperiment] = {}
        snapshot = registration["snapshot"]
        running = snapshot.pop(REPLICAS_KEY, None)
        self._add_experiments(snapshot)
        self._default_experiment = self.config.experiments[0].name
        self._counts = CountBuffer()
        self._sync_wanted = asyncio.Event()
        self._last_sync = time.monotonic()
        self._sync_failures = 0
        self._feedback_queue: list[tuple[FeedbackRecord, asyncio.Future[bool]]] = []
        self._feedback_task: asyncio.Task[None] | None = None
        self._mirrors: set[asyncio.Task[None]] = set()
        self._samplers: dict[str, RowSampler] = {}
        self._assignments: OrderedDict[tuple[str, str], tuple[str, float]] = OrderedDict()
        # Ray Serve's own metrics, exported by Ray on every node (the `ray_` prefix there)
        self._ray_requests = ray_metrics.Counter(
            "bandit_router_requests",
            description="Model calls by experiment, arm and outcome (ok, fallback, error).",
            tag_keys=("experiment", "arm", "outcome"),
        )
        self._ray_feedback = ray_metrics.Histogram(
            "bandit_router_reward",
            description="Rewards of acknowledged feedback (count: feedback; sum: reward sum).",
            boundaries=[0.25, 0.5, 0.75, 1.0, 10.0, 100.0, 1000.0],  # Ray: positive only
            tag_keys=("experiment", "arm", "learned"),
        )
        self._ray_latency = ray_metrics.Histogram(
            "bandit_router_latency_ms",
            description="Model call latency seen by the router, in milliseconds.",
            boundaries=[1000.0 * bound for bound in LATENCY_BUCKETS],
            tag_keys=("experiment", "arm"),
        )
        loop = asyncio.get_running_loop()
        self._background = [loop.create_task(self._sync_forever())]
        self._mark_unavailable(running)

    def _add_experiments(self, snapshot: dict[str, Any]) -> None:
        """Start routing experiments this replica does not know yet (created at runtime)."""
        for name, state in snapshot.items():
            if name in self.experiments or "config" not in state:
                continue
            config = ExperimentConfig.model_validate(state["config"])
            try:
                arms = {arm.name: self._models[arm.model_uri] for arm in config.arms}
                shadows = {s.name: self._models[s.model_uri] for s in config.shadows}
            except KeyError as missing:
                logger.error("experiment %s uses undeployed model %s", name, missing)
                continue
            self.experiments[name] = RoutedExperiment.create(
                config, state, arms, shadows, self.limits.circuit
            )

    # ---------------------------------------------------------------- predictions

    @app.post(
        "/predict",
        response_model=PredictResponse,
        responses=ERRORS,
        openapi_extra=json_body(PredictRequest),
    )
    async def predict(self, request: Request) -> PredictResponse:
        """Route a batch of feature rows to one arm and return its predictions.

        A QA client may force an arm with the field ``arm`` or the header ``X-Bandit-Arm``;
        such decisions are counted as forced and kept out of learning.
        """
        self._authorize_data(request)
        body = await parse_body(request, PredictRequest, self.limits.max_body_bytes)
        routed = self._experiment(body.experiment)
        features = self._features(body.features, routed.config)
        name = routed.config.name
        route = routed.route(body.unit_id, body.arm or request.headers.get(FORCE_ARM_HEADER))
        if route.learned and body.unit_id and routed.config.sticky_assignments:
            route = await self._sticky(name, body.unit_id, route)
        self._counts.arm(name, route.arm, "forced" if route.forced else "pulls")
        if route.weights is not None:
            self._counts.expected(name, route.weights)
        if len(self._counts) >= self.limits.sync_max_events:
            self._sync_wanted.set()
        arm, learned = route.arm, route.learned
        started = time.perf_counter()
        try:
            predictions = await self._call_arm(routed, arm, features)
        except Exception as error:
            self._observe(name, arm, "error", time.perf_counter() - started)
            started = time.perf_counter()
            predictions = await self._fall_back(routed, route, features, error)
            arm, learned = routed.config.default, False
        self._observe(
            name,
            arm,
            "ok" if learned or arm == route.arm else "fallback",
            time.perf_counter() - started,
        )
        self._mirror(routed, features, predictions)
        self._sample_for_drift(routed, arm, features, predictions)
        token = DecisionToken.issue(name, routed.revision, arm, route.propensity, learned=learned)
        return PredictResponse(
            predictions=predictions,
            arm=arm,
            decision_id=sign(token, self._secret),
            propensity=token.propensity,
            experiment=name,
            fallback=arm != route.arm,
            forced=route.forced,
        )

    def _sample_for_drift(
        self, routed: RoutedExperiment, arm: str, features: Any, predictions: Any
    ) -> None:
        """Offer the rows to the experiment's drift sample (sent with the next sync).

        Sampling never fails a prediction: predictions that are not one scalar per row (or
        anything else unexpected) leave the request out of the sample."""
        settings = routed.config.drift
        if settings is None or len(features) == 0:
            return
        name = routed.config.name
        sampler = self._samplers.get(name)
        if sampler is None or sampler.capacity != settings.sample_per_sync:
            sampler = self._samplers[name] = RowSampler(len(features[0]), settings.sample_per_sync)
        try:
            sampler.offer(arm, features, predictions)
        except Exception as error:
            logger.debug("drift sample of %s skipped: %r", name, error)

    def _observe(self, experiment: str, arm: str, outcome: str, seconds: float) -> None:
        """Record one model call: the synced histogram and Ray Serve's per-replica metrics."""
        if outcome != "error":
            self._counts.latency(experiment, arm, latency_bucket(seconds), seconds)
        tags = {"experiment": experiment, "arm": arm}
        self._ray_requests.inc(tags={**tags, "outcome": outcome})
        self._ray_latency.observe(seconds * 1000.0, tags=tags)

    async def _sticky(self, experiment: str, unit_id: str, route: Route) -> Route:
        """Keep a unit on its first arm: a local cache, then the store (first writer wins).

        Only a unit's first request on this replica waits for the state; if the state is
        down, the fresh decision is used (and not cached) rather than failing the request.
        """
        key = (experiment, unit_id)
        assigned = self._assignments.get(key)
        if assigned is None:
            try:
                assigned = await asyncio.wait_for(
                    _resolve(
                        self._state.assign.remote(experiment, unit_id, route.arm, route.propensity)
                    ),
                    timeout=1.0,
                )
            except Exception as error:
                logger.warning("sticky assignment for %s unavailable: %r", experiment, error)
                return route
            self._assignments[key] = assigned
            if len(self._assignments) > ASSIGNMENT_CACHE_SIZE:
                self._assignments.popitem(last=False)
        else:
            self._assignments.move_to_end(key)
        return Route(assigned[0], assigned[1], learned=True)

    async def _fall_back(
        self, routed: RoutedExperiment, route: Route, features: np.ndarray, error: Exception
    ) -> Any:
        """Answer with the default arm after ``route.arm`` failed; count it against the arm."""
        name, default = routed.config.name, routed.config.default
        self._counts.arm(name, route.arm, "errors")
        if route.arm == default:
            raise self._arm_unavailable(routed, route.arm, error) from None
        logger.warning(
            "arm %s of %s failed (%r); answering with %s", route.arm, name, error, default
        )
        self._counts.arm(name, route.arm, "fallbacks")
        try:
            return await self._call_arm(routed, default, features)
        except Exception as default_error:
            self._counts.arm(name, default, "errors")
            raise self._arm_unavailable(routed, default, default_error) from None

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
        width = experiment.n_features or len(rows[0])
        if width > self.limits.max_features:
            raise PayloadTooLarge(
                f"features rows have {width} values; at most {self.limits.max_features}",
                field="features",
            )
        for index, row in enumerate(rows):
            if len(row) != width or not row:
                raise InvalidRequest(
                    f"features[{index}] has {len(row)} values; experiment "
                    f"{experiment.name!r} expects rows of {width} numbers",
                    field=f"features[{index}]",
                )
        return np.asarray(rows, dtype=np.float64)

    async def _call_arm(self, routed: RoutedExperiment, arm: str, features: np.ndarray) -> Any:
        """Call one arm (or shadow) with its timeout; feed its circuit breaker."""
        options = routed.options(arm)
        handle = routed.handles.get(arm) or routed.shadow_handles[arm]
        method = handle.predict_batched if options.batching is not None else handle.predict
        breaker = routed.breakers.get(arm)
        response = method.remote(features)
        try:
            predictions = await asyncio.wait_for(_resolve(response), timeout=options.timeout_s)
        except Exception:
            with contextlib.suppress(Exception):
                response.cancel()
            if breaker is not None:
                breaker.record_failure()
            raise
        if breaker is not None:
            breaker.record_success()
        return predictions

    @staticmethod
    def _arm_unavailable(routed: RoutedExperiment, arm: str, error: Exception) -> Unavailable:
        logger.error("arm %s of %s failed: %r", arm, routed.config.name, error)
        return Unavailable(
            f"model arm {arm!r} of experiment {routed.config.name!r} could not answer; retry later",
        )

    # ---------------------------------------------------------------- shadow traffic

    def _mirror(self, routed: RoutedExperiment, features: np.ndarray, served: list[Any]) -> None:
        """Fire-and-forget copies to the shadow models; the client never waits for them."""
        for shadow in routed.config.shadows:
            if routed.rng.random() * 100.0 >= shadow.percent:
                continue
            if len(self._mirrors) >= self.limits.mirror_max_in_flight:
                self._counts.shadow(routed.config.name, shadow.name, dropped=1)
                continue
            task = asyncio.create_task(self._shadow_call(routed, shadow.name, features, served))
            self._mirrors.add(task)
            task.add_done_callback(self._mirrors.discard)

    async def _shadow_call(
        self, routed: RoutedExperiment, shadow: str, features: np.ndarray, served: list[Any]
    ) -> None:
        start = time.perf_counter()
        try:
            predictions = await self._call_arm(routed, shadow, features)
        except Exception as error:
            logger.debug("shadow %s failed: %r", shadow, error)
            self._counts.shadow(routed.config.name, shadow, requests=1, errors=1)
            return
        agree = sum(int(a == b) for a, b in zip(predictions, served, strict=False))
        self._counts.shadow(
            routed.config.name,
            shadow,
            requests=1,
            latency_sum_s=time.perf_counter() - start,
            rows=len(served),
            agree_rows=agree,
        )

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
        counts = self._counts.take()
        revisions = {name: routed.revision for name, routed in self.experiments.items()}
        samples = {name: sampler.drain() for name, sampler in self._samplers.items()}
        samples = {name: batches for name, batches in samples.items() if batches}
        try:
            snapshot = await asyncio.wait_for(
                _resolve(
                    self._state.sync.remote(
                        counts, revisions, self.router_id, self._circuits(), samples or None
                    )
                ),
                timeout=self.limits.feedback_commit_timeout_s,
            )
        except Exception as error:
            self._counts.restore(counts)
            self._sync_failures += 1
            if self._sync_failures in (1, 10) or self._sync_failures % 100 == 0:
                logger.warning("state sync failed %d times: %r", self._sync_failures, error)
            return
        self._sync_failures = 0
        self._last_sync = time.monotonic()
        self._mark_unavailable(snapshot.pop(REPLICAS_KEY, None))
        for name, routed in self.experiments.items():
            if name in snapshot:
                routed.apply(snapshot[name])
        self._add_experiments(snapshot)

    def _circuits(self) -> dict[str, dict[str, str]]:
        return {
            name: {arm: breaker.state() for arm, breaker in routed.breakers.items()}
            for name, routed in self.experiments.items()
        }

    def _mark_unavailable(self, running: dict[str, int] | None) -> None:
        """Hold an arm's circuit open while its deployment has no running replica.

        The state deployment polls ``serve.status()`` (every ``replica_check_interval_s``) and
        sends the running replicas per deployment with every sync: one poll for all routers,
        never in a router's event loop (polling there stalled requests for up to 150 ms)."""
        if running is None:
            return
        for routed in self.experiments.values():
            for arm, handle in routed.handles.items():
                count = running.get(handle.deployment_name)
                routed.breakers[arm].unavailable = count == 0

    async def __del__(self) -> None:
        """On graceful shutdown, flush the last counts."""
        for task in self._background:
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._sync_once(), timeout=2.0)

    # ---------------------------------------------------------------- feedback

    @app.post(
        "/feedback",
        response_model=FeedbackResponse,
        responses=ERRORS,
        openapi_extra=json_body(FeedbackRequest),
    )
    async def feedback(self, request: Request) -> FeedbackResponse:
        """Record the reward of a decision. 200 only once it is durable; 409 on a second use."""
        self._authorize_data(request)
        body = await parse_body(request, FeedbackRequest, self.limits.max_body_bytes)
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
        learned = token.learned and token.arm in routed.policy.stats
        record = FeedbackRecord(
            decision_key=token.nonce,
            experiment=token.experiment,
            revision=token.revision,
            arm=token.arm,
            reward=body.reward,
            propensity=token.propensity,
            issued_at=token.issued_at,
            learned=learned,
            metrics=body.metrics or None,
        )
        if not await self._commit(record):
            raise DuplicateFeedback(
                "this decision already has feedback; a decision takes one reward",
                field="decision_id",
            )
        tags = {"experiment": token.experiment, "arm": token.arm, "learned": str(learned).lower()}
        self._ray_feedback.observe(body.reward, tags=tags)
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
                accepted = await asyncio.wait_for(
                    _resolve(
                        self._state.record_feedback.remote([asdict(record) for record, _ in batch])
                    ),
                    timeout=self.limits.feedback_commit_timeout_s,
                )
            except Exception as error:
                # Unknown whether it committed: the client retries, and gets 200 or 409.
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
    async def list_experiments(self, request: Request) -> dict[str, Any]:
        """Every experiment with per-arm statistics, routing weights and P(best)."""
        self._authorize_data(request)
        return {"experiments": await self._state.experiments_summary.remote()}

    @app.get("/experiments/{name}", response_model=ExperimentSummary, responses=ERRORS)
    async def get_experiment(self, name: str, request: Request) -> dict[str, Any]:
        """One experiment with per-arm statistics, routing weights and P(best)."""
        self._authorize_data(request)
        summary = await self._state.experiment_summary.remote(name)
        if summary is None:
            raise self._unknown(name)
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
            "circuits": self._circuits(),
        }

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics(self) -> PlainTextResponse:
        """Experiment metrics in the Prometheus text format, the same on every replica."""
        text = await self._state.metrics_text.remote()
        return PlainTextResponse(text, media_type=CONTENT_TYPE_LATEST)

    # ---------------------------------------------------------------- control plane

    def _authorize_data(self, request: Request) -> None:
        if self.config.auth.protect_data_plane:
            check_bearer(
                request.headers.get("authorization"),
                self._data_token,
                what="prediction and feedback",
                env=self.config.auth.data_token_env,
            )

    def _authorize_control(self, request: Request) -> str:
        return check_bearer(
            request.headers.get("authorization"),
            self._control_token,
            what="control",
            env=self.config.auth.control_token_env,
        )

    def _unknown(self, name: str) -> NotFound:
        return NotFound(
            f"unknown experiment {name!r}; known: {', '.join(self.experiments)}", field="name"
        )

    async def _control(self, request: Request, name: str, action: str, **kwargs: Any) -> Any:
        actor = self._authorize_control(request)
        if name not in self.experiments and action != "create":
            raise self._unknown(name)
        result = await self._state.control.remote(action, name, actor, **kwargs)
        if "error" in result:
            error_type: type[BanditServeError] = {404: NotFound, 422: InvalidRequest}.get(
                result["status"], Conflict
            )
            raise error_type(result["error"])
        await self._sync_once()  # this replica routes on the change at once; others <= 100 ms
        return result["ok"]

    @app.post(
        "/experiments",
        response_model=ExperimentSummary,
        status_code=201,
        responses=ERRORS,
        openapi_extra=json_body(CreateRequest),
    )
    async def create(self, request: Request) -> Any:
        """Create an experiment whose arms use models this app already deploys.

        The body is an experiment as in the config (name, policy, arms, ...) plus ``reason``.
        """
        self._authorize_control(request)  # 401/403 before reading the body
        body = await parse_body(request, CreateRequest, self.limits.max_body_bytes)
        spec = body.model_dump(exclude={"reason"})
        name = spec.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidRequest("name: required, the new experiment's name", field="name")
        return await self._control(request, name, "create", spec=spec, reason=body.reason)

    @app.patch("/experiments/{name}", response_model=ExperimentSummary, responses=ERRORS)
    async def update(self, name: str, request: Request, body: UpdateRequest) -> Any:
        """Change description, policy parameters, default arm or attribution window."""
        changes = body.model_dump(exclude={"reason"}, exclude_none=True)
        return await self._control(request, name, "update", changes=changes, reason=body.reason)

    @app.post("/experiments/{name}/start", response_model=ExperimentSummary, responses=ERRORS)
    async def start(self, name: str, request: Request, body: ControlRequest | None = None) -> Any:
        """Start a draft: the policy routes and learns from now on."""
        return await self._control(request, name, "start", reason=body.reason if body else "")

    @app.post("/experiments/{name}/stop", response_model=ExperimentSummary, responses=ERRORS)
    async def stop(self, name: str, request: Request, body: ControlRequest | None = None) -> Any:
        """Conclude without a winner: all traffic to the default (control) arm."""
        return await self._control(request, name, "stop", reason=body.reason if body else "")

    @app.post("/experiments/{name}/pause", response_model=ExperimentSummary, responses=ERRORS)
    async def pause(self, name: str, request: Request, body: ControlRequest | None = None) -> Any:
        """Send all traffic to the default arm and stop learning, until resumed."""
        return await self._control(request, name, "pause", reason=body.reason if body else "")

    @app.post("/experiments/{name}/resume", response_model=ExperimentSummary, responses=ERRORS)
    async def resume(self, name: str, request: Request, body: ControlRequest | None = None) -> Any:
        """Route by the policy again."""
        return await self._control(request, name, "resume", reason=body.reason if body else "")

    @app.put("/experiments/{name}/weights", response_model=ExperimentSummary, responses=ERRORS)
    async def set_weights(self, name: str, request: Request, body: WeightsRequest) -> Any:
        """New weights for a fixed split; starts a new revision (a new weight period)."""
        return await self._control(
            request, name, "weights", weights=body.weights, reason=body.reason
        )

    @app.post("/experiments/{name}/promote", response_model=ExperimentSummary, responses=ERRORS)
    async def promote(self, name: str, request: Request, body: PromoteRequest) -> Any:
        """The arm takes all traffic; the experiment is concluded."""
        return await self._control(request, name, "promote", arm=body.arm, reason=body.reason)

    @app.post("/experiments/{name}/rollback", response_model=ExperimentSummary, responses=ERRORS)
    async def rollback(
        self, name: str, request: Request, body: ControlRequest | None = None
    ) -> Any:
        """The default (control) arm takes all traffic; the experiment is concluded."""
        return await self._control(request, name, "rollback", reason=body.reason if body else "")

    @app.get("/experiments/{name}/report", responses=ERRORS)
    async def report(self, name: str, request: Request) -> Any:
        """The full analysis: per-arm results and posteriors, comparisons against the control
        (Welch with Holm, Bayesian, always-valid sequential), SRM, stopping rules, guardrails,
        ramp, traffic and reward history, the audit log and the MLflow run."""
        self._authorize_data(request)
        if name not in self.experiments:
            raise self._unknown(name)
        return await self._state.report.remote(name)

    @app.get("/experiments/{name}/drift", responses=ERRORS)
    async def drift(self, name: str, request: Request) -> Any:
        """Input and prediction drift: per-feature and per-arm scores (KS or chi-square with
        Holm-adjusted p-values, PSI), the alert flag and why; 404 when not tracked."""
        self._authorize_data(request)
        if name not in self.experiments:
            raise self._unknown(name)
        drift = await self._state.drift.remote(name)
        if drift is None:
            raise NotFound(
                f"experiment {name!r} does not track drift; add a 'drift' section to its config",
                field="name",
            )
        return drift

    @app.get("/experiments/{name}/audit", response_model=list[AuditEntry], responses=ERRORS)
    async def audit(self, name: str, request: Request) -> Any:
        """Every create, config change, pause, weight change, promotion and rollback."""
        self._authorize_control(request)
        if name not in self.experiments:
            raise self._unknown(name)
        return await self._state.audit_log.remote(name)
