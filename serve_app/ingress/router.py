"""The ingress deployment: thin endpoints that parse, decide, call and record.

Per prediction the router touches no shared state: the policy selects on a local snapshot of
the merged posterior (:mod:`~serve_app.ingress.routing`), the chosen arm answers (or the
default arm, :mod:`~serve_app.ingress.dispatch`), shadows get a copy, and the decision is
counted in the outbox that :mod:`~serve_app.ingress.sync` sends to the state in batches.
Feedback is acknowledged only once the state has committed it (group commit).

Every endpoint authenticates before it reads its body (:mod:`~serve_app.ingress.auth`), then
parses it strictly (:func:`~serve_app.ingress.http.parse_body`); the request guard of
:mod:`~serve_app.ingress.http` has already checked Host, body size and content type.
"""

# No `from __future__ import annotations` here: FastAPI reads the endpoint annotations.
import asyncio
import logging
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import pydantic_core
from fastapi import Query, Request
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel
from ray import serve
from ray.serve.handle import DeploymentHandle

from serve_app.caching import SharedResults
from serve_app.config import AppConfig, ExperimentConfig
from serve_app.errors import (
    BanditServeError,
    Conflict,
    DuplicateFeedback,
    InvalidRequest,
    NotFound,
)
from serve_app.experiment.contextual import encode_request
from serve_app.experiment.records import (
    FeedbackOutcome,
    FeedbackRecord,
    InvalidRecord,
    LoggedDecision,
)
from serve_app.ingress.auth import Authenticator
from serve_app.ingress.backends import DeploymentBackend, PoolBackend
from serve_app.ingress.dispatch import Dispatcher
from serve_app.ingress.features import check_features
from serve_app.ingress.http import ERRORS, GuardSettings, app, configure, json_body, parse_body
from serve_app.ingress.http import LOCAL_HOSTS as DEFAULT_HOSTS
from serve_app.ingress.logbook import DecisionLogEndpoints
from serve_app.ingress.oip import OpenInferenceEndpoints, allow_binary_body
from serve_app.ingress.oip_grpc import OpenInferenceGrpc
from serve_app.ingress.placement import Placements, serving_uris
from serve_app.ingress.planning import PlanEndpoints
from serve_app.ingress.routing import Route, RoutedExperiment
from serve_app.ingress.schemas import (
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
from serve_app.ingress.sync import StateLink, resolve
from serve_app.ingress.tokens import DecisionToken
from serve_app.ui.endpoints import UiEndpoints

logger = logging.getLogger("ray.serve")

FORCE_ARM_HEADER = "x-bandit-arm"
ASSIGNMENT_CACHE_SIZE = 100_000
TIMELINE_POINTS = 500
ROUTER_REPORTS = 16
"""Most report copies one router replica keeps (each can be megabytes)."""


@dataclass(frozen=True)
class Served:
    """What one served request answered (the protocol endpoints format it)."""

    predictions: list[Any]
    arm: str
    decision_id: str
    propensity: float
    experiment: str
    fallback: bool
    forced: bool
    model_version: str | None = None

    def json(self) -> bytes:
        """The body of ``/predict``: :class:`~serve_app.ingress.schemas.PredictResponse`'s
        fields as compact JSON, written as FastAPI's response model would (pydantic's
        encoder: a non-finite prediction is ``null``, dates are ISO strings)."""
        return pydantic_core.to_json(self, inf_nan_mode="null")


@serve.deployment
@serve.ingress(app)
class Router(
    OpenInferenceEndpoints, OpenInferenceGrpc, UiEndpoints, DecisionLogEndpoints, PlanEndpoints
):
    """The HTTP ingress of one bandit-serve application.

    The mixins add the Open Inference Protocol (:mod:`serve_app.ingress.oip`), the live
    page (:mod:`serve_app.ui.endpoints`) and the decision log and retraining runs
    (:mod:`serve_app.ingress.logbook`); they use this class's ``auth``, ``limits``,
    ``experiments``, ``_experiment(name)``, ``serve_rows(...)`` and ``link.state``."""

    async def __init__(
        self,
        config: AppConfig,
        state: DeploymentHandle,
        pool: DeploymentHandle,
        dedicated: dict[str, DeploymentHandle],
    ) -> None:
        self.config = config
        self.limits = config.router
        self.router_id = uuid.uuid4().hex[:12]
        registration = await state.register.remote(self.router_id)
        self.keys = registration["keys"]
        self.auth = Authenticator(config.auth, self.keys)
        configure(
            GuardSettings(
                allowed_hosts=(*DEFAULT_HOSTS, *config.http.allowed_hosts),
                max_body_bytes=self.limits.max_body_bytes,
                authorize_docs=self.auth.docs,
                cors_origins=tuple(config.http.cors_origins),
                allow_body=allow_binary_body,
                direct_posts={"/predict": self.predict},
            )
        )
        self.placements = Placements(config, pool, dedicated)
        self.experiments: dict[str, RoutedExperiment] = {}
        self._default_experiment = config.experiments[0].name
        self.link = StateLink(
            state,
            self.router_id,
            self.limits,
            on_snapshot=self._apply,
            revisions=lambda: {name: e.revision for name, e in self.experiments.items()},
            circuits=self._circuits,
        )
        self.dispatch = Dispatcher(self.link.outbox, self.limits)
        self._assignments: OrderedDict[tuple[str, str], tuple[str, float]] = OrderedDict()
        self._warming: set[asyncio.Task[None]] = set()
        # the state's reports, kept while its copy is fresh: a flood stays in this replica
        self.reports: SharedResults[tuple[str, bool, int], bytes] = SharedResults(
            max_entries=ROUTER_REPORTS
        )
        self._apply(registration["snapshot"])
        # cold starts are explicit: this replica answers once its experiments' models load
        await asyncio.gather(*(task for task in list(self._warming)), return_exceptions=True)
        self.link.start()

    def _warm(self, config: ExperimentConfig, again: frozenset[str] = frozenset()) -> None:
        """Load an experiment's models where they run, in the background (see
        :meth:`Placements.warm`)."""
        task = asyncio.get_running_loop().create_task(self.placements.warm(config, again=again))
        self._warming.add(task)
        task.add_done_callback(self._warming.discard)

    def _apply(self, snapshot: Any) -> None:
        """Route on a state snapshot; start routing experiments created at runtime."""
        for name, state in snapshot.experiments.items():
            routed = self.experiments.get(name)
            if routed is not None:
                if state.config is not None and state.config != routed.config:
                    self._rebind(routed, state.config)
                routed.apply(state)
                continue
            config = state.config
            if config is None:
                continue
            try:
                backends, shadows = self.placements.backends(config)
            except KeyError as missing:
                logger.error("experiment %s uses undeployed model %s", name, missing)
                continue
            self.experiments[name] = RoutedExperiment.create(
                config, state, backends, shadows, self.limits.circuit
            )
            self._warm(config)
        self._mark_unavailable(snapshot.replicas)

    def _rebind(self, routed: RoutedExperiment, config: ExperimentConfig) -> None:
        """A new revision may move models (an alias moved, arms changed): new backends,
        and their versions warmed."""
        try:
            routed.backends, routed.shadow_backends = self.placements.backends(config)
        except KeyError as missing:
            logger.error("experiment %s uses undeployed model %s", config.name, missing)
            return
        self._warm(config, again=serving_uris(config) - serving_uris(routed.config))

    def _mark_unavailable(self, running: dict[str, int] | None) -> None:
        """Hold an arm's circuit open while its deployment has no running replica (the
        state polls Serve once for all routers and sends the counts with every sync)."""
        if not running:
            return
        for routed in self.experiments.values():
            for arm, backend in routed.backends.items():
                if isinstance(backend, DeploymentBackend | PoolBackend):
                    routed.breakers[arm].unavailable = running.get(backend.deployment_name) == 0

    def _circuits(self) -> dict[str, dict[str, str]]:
        return {
            name: {arm: breaker.state() for arm, breaker in routed.breakers.items()}
            for name, routed in self.experiments.items()
        }

    async def __del__(self) -> None:
        """On graceful shutdown, flush the last counts."""
        await self.link.close()

    def _experiment(self, name: str | None, field: str = "experiment") -> RoutedExperiment:
        """The experiment that serves requests for ``name``: the experiment itself, or the
        retraining challenger it delegates to (running, or concluded and serving its winner
        until the experiment follows the winner's version)."""
        routed = self.experiments.get(name or self._default_experiment)
        if routed is None:
            raise NotFound(
                f"unknown experiment {name!r}; known: {', '.join(self.experiments)}", field=field
            )
        child = self.experiments.get(routed.delegate) if routed.delegate else None
        return routed if child is None else child

    # ---------------------------------------------------------------- predictions

    @app.post(
        "/predict",
        response_model=PredictResponse,
        responses=ERRORS,
        openapi_extra=json_body(PredictRequest),
    )
    async def predict(self, request: Request) -> Response:
        """Route a batch of feature rows to one arm and return its predictions.

        A QA client may force an arm with the field ``arm`` or the header ``X-Bandit-Arm``
        (with the control or QA token); such decisions are counted as forced and kept out of
        learning, guardrails and SRM.
        """
        authorization = request.headers.get("authorization")
        forced_header = request.headers.get(FORCE_ARM_HEADER)
        if forced_header is not None:
            self.auth.force(authorization)
        else:
            self.auth.data(authorization)
        body = await parse_body(request, PredictRequest, self.limits.max_body_bytes)
        forced = body.arm or forced_header
        if body.arm is not None and forced_header is None:
            self.auth.force(authorization)
        routed = self._experiment(body.experiment)
        features = check_features(body.features, routed.config, self.limits)
        served = await self.serve_rows(
            routed, features, unit_id=body.unit_id, forced_arm=forced, context=body.context
        )
        # encoded here, not by FastAPI's response_model (which would validate and convert a
        # response built from checked values once more): the hot path's share of the router
        return Response(served.json(), media_type="application/json")

    async def serve_rows(
        self,
        routed: RoutedExperiment,
        features: np.ndarray,
        *,
        unit_id: str | None = None,
        forced_arm: str | None = None,
        context: dict[str, Any] | None = None,
    ) -> Served:
        """Decide, call and record one request of checked feature rows: the core that every
        protocol's endpoint shares (the same decision, counts and learning). A contextual
        experiment routes on ``context`` (and the row) encoded by its spec (422 naming the
        field when they do not fit it)."""
        vector = None
        if routed.context_spec is not None:
            vector = encode_request(routed.context_spec, context, features)
        route = routed.route(unit_id, forced_arm, vector)
        if route.learned and unit_id and routed.config.sticky_assignments:
            route = await self._sticky(routed, unit_id, route)
        self._count(routed, route)
        answer = await self.dispatch.answer(routed, route, features)
        self.dispatch.mirror(routed, features, answer.predictions)
        self._sample_for_drift(routed, answer.arm, features, answer.predictions)
        token = DecisionToken.issue(
            routed.name, routed.revision, answer.arm, route.propensity, learned=answer.learned
        )
        log = routed.config.decision_log
        if log is not None:
            self.link.outbox.log_decision(
                LoggedDecision(
                    decision_key=token.nonce,
                    experiment=routed.name,
                    revision=routed.revision,
                    arm=answer.arm,
                    propensity=token.propensity,
                    issued_at=token.issued_at,
                    features=tuple(map(tuple, features[: log.max_rows_per_request].tolist())),
                    predictions=tuple(answer.predictions[: log.max_rows_per_request]),
                    context=None if vector is None else tuple(vector.tolist()),
                )
            )
        return Served(
            predictions=answer.predictions,
            arm=answer.arm,
            decision_id=self.keys.sign(token),
            propensity=token.propensity,
            experiment=routed.name,
            fallback=answer.fallback,
            forced=route.forced,
            model_version=answer.model_version,
        )

    def _count(self, routed: RoutedExperiment, route: Route) -> None:
        outbox = self.link.outbox
        outbox.count(routed.name, routed.revision, route.arm, "forced" if route.forced else "pulls")
        if route.weights is not None:
            outbox.expected(routed.name, routed.revision, route.weights)
        self.link.counted()

    def _sample_for_drift(
        self, routed: RoutedExperiment, arm: str, features: Any, predictions: list[Any]
    ) -> None:
        """Offer the rows to the experiment's drift sample. Sampling never fails a
        prediction: predictions that are not one scalar per row leave the request out."""
        settings = routed.config.drift
        if settings is None or len(features) == 0:
            return
        try:
            self.link.outbox.sample(
                routed.name, settings.sample_per_sync, arm, features, predictions
            )
        except Exception as error:
            logger.debug("drift sample of %s skipped: %r", routed.name, error)

    async def _sticky(self, routed: RoutedExperiment, unit_id: str, route: Route) -> Route:
        """Keep a unit on its first arm: a local cache, then the store (first writer wins).

        Only a unit's first request on this replica waits for the state; if the state is
        down, the fresh decision is used (and not cached) rather than failing the request.
        """
        key = (routed.name, unit_id)
        assigned = self._assignments.get(key)
        if assigned is None:
            try:
                assigned = await asyncio.wait_for(
                    resolve(
                        self.link.state.assign.remote(
                            routed.name, unit_id, route.arm, route.propensity
                        )
                    ),
                    timeout=1.0,
                )
            except Exception as error:
                logger.warning("sticky assignment for %s unavailable: %r", routed.name, error)
                return route
            self._assignments[key] = assigned
            if len(self._assignments) > ASSIGNMENT_CACHE_SIZE:
                self._assignments.popitem(last=False)
        else:
            self._assignments.move_to_end(key)
        return Route(assigned[0], assigned[1], learned=True)

    # ---------------------------------------------------------------- feedback

    @app.post(
        "/feedback",
        response_model=FeedbackResponse,
        responses=ERRORS,
        openapi_extra=json_body(FeedbackRequest),
    )
    async def feedback(self, request: Request) -> FeedbackResponse:
        """Record the reward of a decision. 200 only once it is durable; the same feedback
        sent again is 200 with ``replayed: true``; another reward for it is 409."""
        self.auth.data(request.headers.get("authorization"))
        body = await parse_body(request, FeedbackRequest, self.limits.max_body_bytes)
        token = self.keys.verify(body.decision_id)
        routed = self.experiments.get(token.experiment)
        if routed is None:
            raise NotFound(
                f"decision_id belongs to experiment {token.experiment!r}, which is not served",
                field="decision_id",
            )
        config = routed.config
        token.check_age(config.feedback_window_s)
        if config.reward == "binary" and not 0.0 <= body.reward <= 1.0:
            raise InvalidRequest(
                f"reward must be between 0 and 1 for binary experiment {token.experiment!r}, "
                f"got {body.reward}",
                field="reward",
            )
        metrics = body.metrics or {}
        declared = config.declared_metrics
        unknown = sorted(set(metrics) - set(declared))
        if unknown:
            raise InvalidRequest(
                f"metric {unknown[0]!r} is not declared by experiment {config.name!r}; "
                f"declared: {', '.join(declared) or 'none'} (add it to the experiment's "
                "'metrics' list)",
                field=f"metrics.{unknown[0]}",
            )
        learned = token.learned and token.arm in routed.policy.stats
        try:
            record = FeedbackRecord(
                decision_key=token.nonce,
                experiment=token.experiment,
                revision=token.revision,
                arm=token.arm,
                reward=body.reward,
                propensity=token.propensity,
                issued_at=token.issued_at,
                learned=learned,
                metrics=tuple(metrics.items()),
                commit_id=uuid.uuid4().hex[:16],
                label=body.label,
                covariate=body.covariate,
                ratios=tuple(
                    (ratio.name, ratio.numerator, ratio.denominator)
                    for ratio in config.ratio_metrics
                    if ratio.numerator in metrics and ratio.denominator in metrics
                ),
            )
        except InvalidRecord as error:
            raise InvalidRequest(str(error), field=error.field) from None
        outcome = await self.link.commit(record)
        if outcome is FeedbackOutcome.CONFLICT:
            raise DuplicateFeedback(
                "this decision already has other feedback; a decision takes one reward",
                field="decision_id",
            )
        replayed = outcome is FeedbackOutcome.REPLAYED
        return FeedbackResponse(
            experiment=token.experiment,
            arm=token.arm,
            reward=body.reward,
            learned=learned,
            replayed=replayed,
        )

    # ---------------------------------------------------------------- read side

    @app.get("/experiments", response_model=ExperimentList)
    async def list_experiments(self, request: Request) -> dict[str, Any]:
        """Every experiment with per-arm statistics, routing weights and P(best)."""
        self.auth.data(request.headers.get("authorization"))
        return {"experiments": await self.link.state.experiments_summary.remote()}

    @app.get("/experiments/{name}", response_model=ExperimentSummary, responses=ERRORS)
    async def get_experiment(self, name: str, request: Request) -> dict[str, Any]:
        """One experiment with per-arm statistics, routing weights and P(best)."""
        self.auth.data(request.headers.get("authorization"))
        summary = await self.link.state.experiment_summary.remote(name)
        if summary is None:
            raise self._unknown(name)
        return summary

    @app.get("/healthz")
    async def healthz(self, request: Request) -> dict[str, Any]:
        """Liveness and state-sync freshness of this router replica (experiments and
        circuits only where the data plane is open or a token is sent)."""
        health: dict[str, Any] = {
            "status": "ok",
            "router": self.router_id,
            "last_sync_age_s": round(time.monotonic() - self.link.last_sync, 3),
            "unsynced": self.link.unsynced,
            "state_reachable": self.link.failures == 0,
        }
        try:
            self.auth.data(request.headers.get("authorization"))
        except BanditServeError:
            return health
        return {
            **health,
            "experiments": list(self.experiments),
            "circuits": self._circuits(),
            "decisions_dropped": self.link.outbox.dropped_decisions,
        }

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics_endpoint(self, request: Request) -> PlainTextResponse:
        """Experiment metrics in the Prometheus text format, the same on every replica."""
        self.auth.metrics(request.headers.get("authorization"))
        text = await self.link.state.metrics_text.remote()
        return PlainTextResponse(text, media_type=CONTENT_TYPE_LATEST)

    @app.get("/experiments/{name}/report", responses=ERRORS)
    async def report(
        self,
        name: str,
        request: Request,
        timeline_points: int = Query(TIMELINE_POINTS, ge=2, le=5000),
    ) -> Any:
        """The full analysis: per-arm results and posteriors, comparisons against the control
        (Welch with Holm, Bayesian, always-valid sequential), SRM, stopping rules, guardrails,
        ramp, traffic and reward history (at most ``timeline_points`` samples) and the MLflow
        run; the audit log only with the control token."""
        authorization = request.headers.get("authorization")
        self.auth.data(authorization)
        if name not in self.experiments:
            raise self._unknown(name)
        audit = self.auth.is_control(authorization)
        encoded, _ = await self.reports.get(
            (name, audit, timeline_points),
            lambda: self.link.state.report.remote(name, audit, timeline_points),
        )
        return Response(encoded, media_type="application/json")

    @app.get("/experiments/{name}/drift", responses=ERRORS)
    async def drift(self, name: str, request: Request) -> Any:
        """Input and prediction drift: per-feature and per-arm scores (KS or chi-square with
        Holm-adjusted p-values, PSI), the alert flag and why; 404 when not tracked."""
        self.auth.data(request.headers.get("authorization"))
        if name not in self.experiments:
            raise self._unknown(name)
        drift = await self.link.state.drift.remote(name)
        if drift is None:
            raise NotFound(
                f"experiment {name!r} does not track drift; add a 'drift' section to its config",
                field="name",
            )
        return drift

    @app.get("/experiments/{name}/audit", response_model=list[AuditEntry], responses=ERRORS)
    async def audit(self, name: str, request: Request) -> Any:
        """Every create, config change, pause, weight change, promotion and rollback."""
        self.auth.control(request.headers.get("authorization"))
        if name not in self.experiments:
            raise self._unknown(name)
        return await self.link.state.audit_log.remote(name)

    # ---------------------------------------------------------------- control plane

    def _unknown(self, name: str) -> NotFound:
        return NotFound(
            f"unknown experiment {name!r}; known: {', '.join(self.experiments)}", field="name"
        )

    async def _control(
        self,
        request: Request,
        name: str | None,
        action: str,
        model: type[BaseModel],
        *,
        optional: bool = False,
    ) -> Any:
        """Authenticate, then read the body, then ask the state to carry out ``action``."""
        actor = self.auth.control(request.headers.get("authorization"))
        body = await parse_body(request, model, self.limits.max_body_bytes, optional=optional)
        arguments = body.model_dump(exclude_none=action == "update")
        reason = arguments.pop("reason", "")
        if action == "create":
            name = arguments.get("name")
            if not isinstance(name, str) or not name:
                raise InvalidRequest("name: required, the new experiment's name", field="name")
            if name in self.experiments:
                raise Conflict(f"experiment {name!r} exists already")
            prepared = await self.placements.prepare(arguments)  # loads every model first
            arguments = {"spec": prepared.model_dump(mode="json")}
        elif name not in self.experiments:
            raise self._unknown(str(name))
        elif action == "update":
            arguments = {"changes": await self._arm_changes(name, arguments)}
        result = await self.link.state.control.remote(
            action, name, actor, reason=reason, **arguments
        )
        if "error" in result:
            error_type: type[BanditServeError] = {404: NotFound, 422: InvalidRequest}.get(
                result["status"], Conflict
            )
            raise error_type(result["error"])
        await self.link.sync_once()  # this replica routes on the change at once
        return result["ok"]

    async def _arm_changes(self, name: str, changes: dict[str, Any]) -> dict[str, Any]:
        """An update that replaces arms' models: the new versions are loaded first (422 with
        the loader's error otherwise), and sent as the experiment's new ``arms``."""
        if not changes.get("arms"):
            return changes
        config = self.experiments[name].config
        replaced = {arm["name"]: arm for arm in changes["arms"]}
        unknown = sorted(set(replaced) - set(config.arm_names))
        if unknown:
            raise InvalidRequest(
                f"arms: {unknown[0]!r} is not an arm of {name!r} (arms: "
                f"{', '.join(config.arm_names)}); an update replaces the models of existing arms",
                field="arms",
            )
        spec = config.model_dump(mode="json")
        for arm in spec["arms"]:
            if arm["name"] in replaced:
                arm.update({k: v for k, v in replaced[arm["name"]].items() if v is not None})
                arm["version"] = None
        prepared = await self.placements.prepare(spec)
        return {**changes, "arms": [arm.model_dump(mode="json") for arm in prepared.arms]}

    @app.post(
        "/experiments",
        response_model=ExperimentSummary,
        status_code=201,
        responses=ERRORS,
        openapi_extra=json_body(CreateRequest),
    )
    async def create(self, request: Request) -> Any:
        """Create an experiment on any MLflow model URIs (placement ``pool`` or ``router``
        need no redeploy; ``dedicated`` ones must be deployed by the app config). Every model
        is loaded first: one that cannot be loaded is a 422 naming the arm, and nothing is
        created. The body is an experiment as in the config plus ``reason``."""
        return await self._control(request, None, "create", CreateRequest)

    @app.patch(
        "/experiments/{name}",
        response_model=ExperimentSummary,
        responses=ERRORS,
        openapi_extra=json_body(UpdateRequest),
    )
    async def update(self, name: str, request: Request) -> Any:
        """Change description, policy parameters, default arm, attribution window, or the
        models of existing arms (``"arms": [{"name": ..., "model_uri": ...}]``, loaded first);
        a new revision."""
        return await self._control(request, name, "update", UpdateRequest)

    def _status_endpoint(action: str, summary: str) -> Any:  # noqa: N805 - builds endpoints
        """``POST /experiments/{name}/<action>`` with an optional ``{"reason": ...}``."""

        async def endpoint(self, name: str, request: Request) -> Any:  # type: ignore[no-untyped-def]
            return await self._control(request, name, action, ControlRequest, optional=True)

        endpoint.__name__ = action
        endpoint.__doc__ = summary
        return app.post(
            f"/experiments/{{name}}/{action}",
            response_model=ExperimentSummary,
            responses=ERRORS,
            openapi_extra=json_body(ControlRequest),
        )(endpoint)

    start = _status_endpoint("start", "Start a draft: the policy routes and learns from now on.")
    stop = _status_endpoint(
        "stop", "Conclude without a winner: all traffic to the default (control) arm."
    )
    pause = _status_endpoint(
        "pause", "Send all traffic to the default arm and stop learning, until resumed."
    )
    resume = _status_endpoint("resume", "Route by the policy again.")
    rollback = _status_endpoint(
        "rollback", "The default (control) arm takes all traffic; the experiment is concluded."
    )
    del _status_endpoint

    @app.put(
        "/experiments/{name}/weights",
        response_model=ExperimentSummary,
        responses=ERRORS,
        openapi_extra=json_body(WeightsRequest),
    )
    async def set_weights(self, name: str, request: Request) -> Any:
        """New weights for a fixed split; starts a new revision (a new weight period)."""
        return await self._control(request, name, "weights", WeightsRequest)

    @app.post(
        "/experiments/{name}/promote",
        response_model=ExperimentSummary,
        responses=ERRORS,
        openapi_extra=json_body(PromoteRequest),
    )
    async def promote(self, name: str, request: Request) -> Any:
        """The arm takes all traffic; the experiment is concluded."""
        return await self._control(request, name, "promote", PromoteRequest)
