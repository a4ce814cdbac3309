"""The Open Inference Protocol (v2) REST endpoints, mixed into the router deployment.

Existing inference clients (``tritonclient``, KServe's, MLServer's, ``curl``) talk to an
experiment as if it were one model (see :mod:`serve_app.ingress.oip_metadata`):

=============================================  ===============================================
``GET /v2``                                    server metadata (extension ``binary_tensor_data``)
``GET /v2/health/live``, ``/v2/health/ready``  liveness; readiness: every experiment has an
                                               arm that can answer (else 503)
``GET /v2/models/{experiment}``                inputs and outputs; ``versions`` are the arms
``GET /v2/models/{experiment}/ready``          an arm can answer (else 503)
``POST /v2/models/{experiment}/infer``         the policy picks the arm, as on ``/predict``
``POST .../versions/{arm}/infer``              that arm (forcing: the control or QA token)
=============================================  ===============================================

``/v2/models/{experiment}/versions/{arm}`` and ``.../versions/{arm}/ready`` answer for one arm.

An inference is an ordinary bandit-serve request: authentication before the body is read
(the data-plane rules of ``/predict``; forcing needs what ``X-Bandit-Arm`` needs), the same
body limit, Host and content-type rules (the request guard lets the binary extension's
bodies through: :func:`allow_binary_body`), and :meth:`Router.serve_rows
<serve_app.ingress.router.Router.serve_rows>` decides, calls and records exactly as for
``/predict``. The response's ``parameters`` carry ``decision_id`` (for ``POST /feedback``),
``arm``, ``propensity``, ``experiment``, ``fallback``, ``forced`` and the registry
``model_version``; its ``model_version`` is the arm. A request parameter ``unit_id`` is the
``unit_id`` of ``/predict`` (sticky assignments, a fixed split per unit), and ``context`` its
``context`` (what a contextual experiment routes on).

Errors are the protocol's ``{"error": "<message>"}``, with the messages of our own API and
its status codes, except that a malformed request (the protocol has no 422, and a batch over
the limits is malformed too) is 400.
"""

# No `from __future__ import annotations` here: FastAPI reads the endpoint annotations.
import asyncio
import logging
import re
import time
from dataclasses import dataclass
from importlib import metadata as package_metadata
from typing import Any

import numpy as np
from fastapi import Request
from fastapi.responses import JSONResponse, Response

from serve_app.errors import (
    BanditServeError,
    InvalidRequest,
    NotFound,
    Unavailable,
    UnsupportedMediaType,
)
from serve_app.ingress import oip_codec as codec
from serve_app.ingress.features import check_features
from serve_app.ingress.http import app, read_body
from serve_app.ingress.oip_metadata import (
    ModelTensors,
    experiment_tensors,
    metadata_document,
    read_tensors,
)
from serve_app.ingress.schemas import checked_context

__all__ = [
    "OpenInferenceCore",
    "OpenInferenceEndpoints",
    "allow_binary_body",
    "v2_error",
]

logger = logging.getLogger("ray.serve")

TAG = "Open Inference Protocol (v2)"
SERVER_NAME = "bandit-serve"
EXTENSIONS = ["binary_tensor_data"]
INFER_PATH = re.compile(r"^/v2/models/[^/]+(?:/versions/[^/]+)?/infer$")
BINARY_MEDIA_TYPES = frozenset({"", "application/octet-stream"})
RETRY_METADATA_S = 60.0
"""How long metadata made without some arm's signature (unreadable?) is kept before a
re-read."""

PROBE = {"tags": [TAG], "include_in_schema": False}
"""Readiness answers 503 when not ready (what probes and tritonclient read): a probe, not an
operation for the OpenAPI schema (whose fuzzing treats any 5xx as a failure)."""

V2_STATUS = {413: 400, 422: 400}
"""Our statuses the protocol does not have: a malformed or oversized request is a 400."""

_ERROR_BODY = {
    "application/json": {
        "schema": {
            "type": "object",
            "properties": {"error": {"type": "string"}},
            "required": ["error"],
        }
    }
}
V2_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"description": description, "content": _ERROR_BODY}
    for status, description in [
        (400, "malformed request, or one the experiment cannot take"),
        (401, "no bearer token where one is required"),
        (403, "a bearer token that is not accepted"),
        (404, "unknown experiment or arm"),
        (415, "a body that is neither JSON nor the binary tensor extension"),
        (503, "no arm can answer now; retry"),
    ]
}
_TENSOR = {
    "type": "object",
    "required": ["name", "datatype", "shape"],
    "properties": {
        "name": {"type": "string"},
        "datatype": {"type": "string", "enum": list(codec.DATATYPES)},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "parameters": {"type": "object"},
        "data": {"type": "array"},
    },
}
INFER_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["inputs"],
                    "properties": {
                        "id": {"type": "string"},
                        "parameters": {"type": "object"},
                        "inputs": {"type": "array", "items": _TENSOR, "minItems": 1},
                        "outputs": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["name"],
                                "properties": {
                                    "name": {"type": "string"},
                                    "parameters": {"type": "object"},
                                },
                            },
                        },
                    },
                }
            },
            "application/octet-stream": {
                "schema": {
                    "type": "string",
                    "format": "binary",
                    "description": "the JSON request, then the inputs' binary data; the "
                    "header Inference-Header-Content-Length gives the JSON's length",
                }
            },
        },
    }
}


def allow_binary_body(path: str, content_type: str) -> bool:
    """May the request guard let this non-JSON body through? Only to the infer endpoints,
    and only as the binary tensor extension sends it: ``application/octet-stream``, or no
    Content-Type at all (``tritonclient.http`` sends none).

    >>> allow_binary_body("/v2/models/digits/infer", "application/octet-stream")
    True
    >>> allow_binary_body("/v2/models/digits/versions/mlp/infer", "")
    True
    >>> allow_binary_body("/predict", ""), allow_binary_body("/v2/models/d/infer", "text/plain")
    (False, False)
    """
    media = content_type.split(";", 1)[0].strip().lower()
    return media in BINARY_MEDIA_TYPES and INFER_PATH.match(path) is not None


def v2_error(error: BanditServeError) -> JSONResponse:
    """``{"error": message}`` with the protocol's status for our error."""
    headers = {"Retry-After": "1"} if error.status == 503 else None
    if error.status == 401:
        headers = {"WWW-Authenticate": "Bearer"}
    status = V2_STATUS.get(error.status, error.status)
    return JSONResponse({"error": error.message}, status_code=status, headers=headers)


def as_request_error(error: codec.TensorError) -> InvalidRequest:
    return InvalidRequest(error.message, field=error.field)


def server_version() -> str:
    try:
        return package_metadata.version(SERVER_NAME)
    except package_metadata.PackageNotFoundError:  # pragma: no cover - running from a tree
        return "0"


def decision_parameters(served: Any) -> dict[str, Any]:
    """The response parameters of a served request (a :class:`~serve_app.ingress.router.
    Served`): what ``/predict`` answers beside the predictions."""
    parameters: dict[str, Any] = {
        "decision_id": served.decision_id,
        "arm": served.arm,
        "propensity": served.propensity,
        "experiment": served.experiment,
        "fallback": served.fallback,
        "forced": served.forced,
    }
    if served.model_version is not None:
        parameters["model_version"] = str(served.model_version)
    return parameters


@dataclass
class _CachedTensors:
    key: tuple[Any, ...]
    task: "asyncio.Task[tuple[ModelTensors, bool]]"
    expires: float | None


class OpenInferenceCore:
    """What the REST endpoints and the gRPC service (:mod:`serve_app.ingress.oip_grpc`)
    share: the experiment's tensors, features from an input tensor, serving, outputs.

    Uses the router's ``auth``, ``limits``, ``config``, ``experiments``, ``_experiment`` and
    ``serve_rows``."""

    # ------------------------------------------------------------ metadata

    async def v2_tensors(self, routed: Any) -> ModelTensors:
        """The experiment's tensors, from its arms' signatures (read once per revision's
        models, off the event loop; concurrent first requests share the read)."""
        config = routed.config
        uris = tuple(arm.serving_uri for arm in config.arms)
        key = (uris, config.n_features, config.feature_dtype)
        cache: dict[str, _CachedTensors] = self.__dict__.setdefault("_v2_cache", {})
        cached = cache.get(config.name)
        now = time.monotonic()
        if cached is None or cached.key != key or (cached.expires and now > cached.expires):
            task = asyncio.get_running_loop().create_task(self._v2_read(config, uris))
            cached = _CachedTensors(key, task, None)
            cache[config.name] = cached
            tensors, complete = await task
            cached.expires = None if complete else now + RETRY_METADATA_S
            return tensors
        tensors, _ = await cached.task
        return tensors

    async def _v2_read(self, config: Any, uris: tuple[str, ...]) -> tuple[ModelTensors, bool]:
        tracking = self.config.mlflow_tracking_uri  # type: ignore[attr-defined]
        found = await asyncio.gather(
            *(asyncio.to_thread(read_tensors, uri, tracking) for uri in uris)
        )
        by_arm = dict(zip(config.arm_names, found, strict=True))
        return experiment_tensors(config, by_arm), all(f is not None for f in found)

    def v2_ready(self, routed: Any, arm: str | None = None) -> bool:
        """Can the experiment (or that arm) answer now? Some arm's circuit takes calls."""
        arms = [arm] if arm is not None else list(routed.breakers)
        return any(not routed.breakers[name].refuses() for name in arms)

    def v2_routed(self, name: str, arm: str | None = None) -> Any:
        """The experiment called ``name`` (404 otherwise), and ``arm`` one of its arms."""
        if not name:  # the router's default experiment is /predict's, not a model name
            raise InvalidRequest("the model name is required: an experiment's name", field="name")
        routed = self._experiment(name, field="name")  # type: ignore[attr-defined]
        if arm is not None and arm not in routed.config.arm_names:
            raise NotFound(
                f"arm {arm!r} is not an arm of experiment {routed.name!r}; "
                f"arms: {', '.join(routed.config.arm_names)}",
                field="version",
            )
        return routed

    def v2_unready(self) -> list[str]:
        """The experiments that cannot answer now (server readiness)."""
        experiments = self.experiments  # type: ignore[attr-defined]
        return [name for name, routed in experiments.items() if not self.v2_ready(routed)]

    # ------------------------------------------------------------ inference

    def v2_features(
        self, request: codec.InferenceRequest, tensors: ModelTensors, routed: Any
    ) -> np.ndarray:
        """The feature rows of the request's one input, checked as ``/predict`` checks them.

        Raises:
            InvalidRequest: the wrong input(s), a non-numeric or non-2-D tensor, a value that
                is not finite, or rows that do not fit the experiment (400 on /v2).
            PayloadTooLarge: more rows or values per row than the limits allow (400 on /v2).
        """
        expected = tensors.inputs[0]
        experiment = routed.name
        names = [tensor.name for tensor in request.inputs]
        if names != [expected.name]:
            shown = ", ".join(repr(name) for name in names)
            raise InvalidRequest(
                f"experiment {experiment!r} takes one input, {expected.describe()}; got {shown}",
                field="inputs",
            )
        tensor = request.inputs[0]
        where = f"input {tensor.name!r}"
        if tensor.datatype == "BYTES":
            raise InvalidRequest(
                f"{where} is BYTES; experiment {experiment!r} takes numbers "
                f"({expected.datatype} {list(expected.shape)})",
                field="inputs[0].datatype",
            )
        data = tensor.data
        if data.ndim != 2 or data.shape[0] == 0:
            raise InvalidRequest(
                f"{where} has shape {list(data.shape)}; experiment {experiment!r} takes a "
                f"batch of one or more rows, {list(expected.shape)}",
                field="inputs[0].shape",
            )
        if data.dtype.kind == "f":
            finite = np.isfinite(data)
            if not finite.all():
                row, column = (int(i) for i in np.argwhere(~finite)[0])
                raise InvalidRequest(
                    f"{where}[{row}][{column}] is {data[row, column]}; features must be "
                    "finite numbers",
                    field=f"inputs[0].data[{row}][{column}]",
                )
        # check_features reads rows as lists (its empty-row test is not array-safe).
        return check_features(data.tolist(), routed.config, self.limits)  # type: ignore[attr-defined]

    def v2_output_plan(
        self, request: codec.InferenceRequest, tensors: ModelTensors, routed: Any
    ) -> list[tuple[str, bool]]:
        """The outputs to send, each with whether it goes as binary data (checked before
        anything is served: an unknown output is a 400, not a counted decision)."""
        spec = tensors.outputs[0]
        if not request.outputs:
            return [(spec.name, request.binary_output)]
        plan: dict[str, bool] = {}
        for wanted in request.outputs:
            if wanted.name != spec.name:
                raise InvalidRequest(
                    f"unknown output {wanted.name!r}; experiment {routed.name!r} has one "
                    f"output, {spec.describe()}",
                    field="outputs",
                )
            binary = request.binary_output if wanted.binary is None else wanted.binary
            plan.setdefault(wanted.name, binary)
        return list(plan.items())

    async def v2_serve(
        self, routed: Any, arm: str | None, request: codec.InferenceRequest
    ) -> tuple[Any, list[tuple[codec.Tensor, bool]]]:
        """Decide, call and record one inference, as ``/predict`` does.

        Returns:
            What was served (:class:`~serve_app.ingress.router.Served`) and the output
            tensors, each with whether the client wants it in binary.
        """
        tensors = await self.v2_tensors(routed)
        features = self.v2_features(request, tensors, routed)
        plan = self.v2_output_plan(request, tensors, routed)
        unit_id = request.parameters.get("unit_id")
        if unit_id is not None and not isinstance(unit_id, str):
            raise InvalidRequest("parameters.unit_id must be a string", field="parameters")
        context = checked_context(request.parameters.get("context"), "parameters.context")
        extra = {} if context is None else {"context": context}
        served = await self.serve_rows(  # type: ignore[attr-defined]
            routed, features, unit_id=unit_id, forced_arm=arm, **extra
        )
        spec = tensors.outputs[0]
        tensor = codec.prediction_tensor(spec.name, served.predictions, spec.datatype)
        return served, [(tensor, binary) for _, binary in plan]


class OpenInferenceEndpoints(OpenInferenceCore):
    """REST routes of the Open Inference Protocol (the module docstring lists them)."""

    @app.get("/v2", tags=[TAG])
    async def v2_server_metadata(self) -> dict[str, Any]:
        """Server name, version and the protocol extensions it supports."""
        return {"name": SERVER_NAME, "version": server_version(), "extensions": EXTENSIONS}

    @app.get("/v2/health/live", tags=[TAG])
    async def v2_live(self) -> dict[str, Any]:
        """Liveness: this router replica answers."""
        return {"live": True}

    @app.get("/v2/health/ready", **PROBE)
    async def v2_server_ready(self) -> JSONResponse:
        """Readiness: 200 when every experiment has an arm that can answer, else 503."""
        unready = self.v2_unready()
        if not unready:
            return JSONResponse({"ready": True})
        message = f"no arm can answer for experiment(s) {', '.join(unready)}"
        return JSONResponse({"ready": False, "error": message}, status_code=503)

    @app.get("/v2/models/{name}", tags=[TAG], responses=V2_ERRORS)
    async def v2_model_metadata(self, name: str, request: Request) -> Response:
        """The experiment as a model: its input and output tensors; its arms as versions."""
        return await self._v2_metadata(name, None, request)

    @app.get("/v2/models/{name}/versions/{arm}", tags=[TAG], responses=V2_ERRORS)
    async def v2_arm_metadata(self, name: str, arm: str, request: Request) -> Response:
        """One arm as a model version (the experiment's tensors)."""
        return await self._v2_metadata(name, arm, request)

    @app.get("/v2/models/{name}/ready", **PROBE)
    async def v2_model_ready(self, name: str, request: Request) -> Response:
        """200 when an arm of the experiment can answer, else 503."""
        return self._v2_model_ready(name, None, request)

    @app.get("/v2/models/{name}/versions/{arm}/ready", **PROBE)
    async def v2_arm_ready(self, name: str, arm: str, request: Request) -> Response:
        """200 when this arm can answer (its circuit takes calls), else 503."""
        return self._v2_model_ready(name, arm, request)

    @app.post("/v2/models/{name}/infer", tags=[TAG], responses=V2_ERRORS, openapi_extra=INFER_BODY)
    async def v2_infer(self, name: str, request: Request) -> Response:
        """Inference: the experiment's policy picks the arm, exactly as on ``/predict``."""
        return await self._v2_infer(name, None, request)

    @app.post(
        "/v2/models/{name}/versions/{arm}/infer",
        tags=[TAG],
        responses=V2_ERRORS,
        openapi_extra=INFER_BODY,
    )
    async def v2_infer_arm(self, name: str, arm: str, request: Request) -> Response:
        """Inference on one arm (forced: needs the control or QA token; counted as forced
        and kept out of learning, as ``X-Bandit-Arm`` on ``/predict``)."""
        return await self._v2_infer(name, arm, request)

    async def _v2_metadata(self, name: str, arm: str | None, request: Request) -> Response:
        try:
            self.auth.data(request.headers.get("authorization"))  # type: ignore[attr-defined]
            routed = self.v2_routed(name, arm)
            tensors = await self.v2_tensors(routed)
            return JSONResponse(metadata_document(routed.config, tensors, arm))
        except BanditServeError as error:
            return v2_error(error)

    def _v2_model_ready(self, name: str, arm: str | None, request: Request) -> Response:
        try:
            self.auth.data(request.headers.get("authorization"))  # type: ignore[attr-defined]
            routed = self.v2_routed(name, arm)
        except BanditServeError as error:
            return v2_error(error)
        if self.v2_ready(routed, arm):
            return JSONResponse({"name": name, "ready": True})
        what = f"arm {arm!r} of experiment {name!r}" if arm else f"experiment {name!r}"
        error = Unavailable(f"{what} has no arm whose circuit takes calls; retry later")
        return JSONResponse(
            {"name": name, "ready": False, "error": error.message},
            status_code=503,
            headers={"Retry-After": "1"},
        )

    async def _v2_infer(self, name: str, arm: str | None, request: Request) -> Response:
        try:
            authorization = request.headers.get("authorization")
            if arm is None:
                self.auth.data(authorization)  # type: ignore[attr-defined]
            else:
                self.auth.force(authorization)  # type: ignore[attr-defined]
            routed = self.v2_routed(name, arm)
            self._v2_refuse_cross_site(request)
            limit = self.limits.max_body_bytes  # type: ignore[attr-defined]
            raw = await read_body(request, limit)
            try:
                raw = codec.decompress(raw, request.headers.get("content-encoding"), limit)
                length = codec.header_length(request.headers.get(codec.BINARY_HEADER), len(raw))
                parsed = codec.decode_request(raw, length)
            except codec.TensorError as error:
                raise as_request_error(error) from None
            served, outputs = await self.v2_serve(routed, arm, parsed)
        except BanditServeError as error:
            return v2_error(error)
        except Exception as error:  # a bug: a 500 with a message, never a traceback
            logger.exception("v2 inference failed")
            return v2_error(BanditServeError(f"internal error ({type(error).__name__})"))
        document: dict[str, Any] = {"model_name": routed.name, "model_version": served.arm}
        if parsed.id is not None:
            document["id"] = parsed.id
        document["parameters"] = decision_parameters(served)
        body, json_length = codec.encode_response(
            document, [tensor for tensor, _ in outputs], [binary for _, binary in outputs]
        )
        if json_length is None:
            return Response(body, media_type="application/json")
        return Response(
            body,
            media_type="application/octet-stream",
            headers={"Inference-Header-Content-Length": str(json_length)},
        )

    def _v2_refuse_cross_site(self, request: Request) -> None:
        """A body without a Content-Type is a CORS "simple request": a web page may send it
        without a preflight. ``tritonclient.http`` sends one too, but never an ``Origin``;
        a browser always does, so such a body from an origin not in ``http.cors_origins``
        is refused."""
        if request.headers.get("content-type", "").strip():
            return
        origin = request.headers.get("origin")
        allowed = self.config.http.cors_origins  # type: ignore[attr-defined]
        if origin is None or origin in allowed or "*" in allowed:
            return
        raise UnsupportedMediaType(
            "a request body without a Content-Type from a web page is refused; send "
            "Content-Type: application/json or application/octet-stream",
            field="content-type",
        )
