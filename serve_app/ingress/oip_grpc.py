"""The Open Inference Protocol's gRPC service, ``inference.GRPCInferenceService``, mixed
into the router deployment.

Ray Serve's gRPC proxy serves it once the Serve config registers the service's stubs
(``grpc_options`` at the top of ``configs/local.yaml``)::

    grpc_options:
      port: 9000
      grpc_servicer_functions:
        - serve_app.ingress.oip_pb.inference_pb2_grpc.add_GRPCInferenceServiceServicer_to_server

The proxy calls the router's method of the RPC's name (``ServerLive``, ``ServerReady``,
``ServerMetadata``, ``ModelReady``, ``ModelMetadata``, ``ModelInfer``). With more than one
Serve application, a client names the app in the metadata ``application``.

The stubs (:mod:`serve_app.ingress.oip_pb`) are generated from our own ``inference.proto``,
written from the specification; they share the protobuf package ``inference`` with every
other v2 client (``tritonclient.grpc``, KServe), so one Python process cannot import both.

Everything else is the REST endpoints' (:class:`~serve_app.ingress.oip.OpenInferenceCore`):
the metadata ``authorization: Bearer <token>`` is checked as the header is (forcing an arm
with ``model_version`` as ``/versions/{arm}/infer``), requests larger than
``router.max_body_bytes`` are refused, the policy decides exactly as for ``/predict``, and
the decision is in the response ``parameters`` (``propensity`` as ``double_param``, the
extension Triton's clients read). Tensors come as ``raw_input_contents`` or typed
``contents``; outputs go as ``raw_output_contents``. Errors are gRPC status codes with our
messages: a malformed request ``INVALID_ARGUMENT``, an unknown experiment or arm
``NOT_FOUND``, no token ``UNAUTHENTICATED``, a refused one ``PERMISSION_DENIED``, nothing
that can answer ``UNAVAILABLE``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import grpc

from serve_app.errors import BanditServeError, PayloadTooLarge
from serve_app.ingress import oip_codec as codec
from serve_app.ingress.oip import (
    EXTENSIONS,
    SERVER_NAME,
    OpenInferenceCore,
    as_request_error,
    decision_parameters,
    server_version,
)
from serve_app.ingress.oip_metadata import PLATFORM, ModelTensors
from serve_app.ingress.oip_pb import inference_pb2 as pb

__all__ = [
    "GRPC_CODES",
    "SERVICER_FUNCTION",
    "OpenInferenceGrpc",
    "parameters_from_proto",
    "request_from_proto",
    "response_to_proto",
]

logger = logging.getLogger("ray.serve")

SERVICER_FUNCTION = (
    "serve_app.ingress.oip_pb.inference_pb2_grpc.add_GRPCInferenceServiceServicer_to_server"
)
"""The entry of ``grpc_options.grpc_servicer_functions`` that serves this service."""

GRPC_CODES: dict[int, grpc.StatusCode] = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    409: grpc.StatusCode.FAILED_PRECONDITION,
    410: grpc.StatusCode.FAILED_PRECONDITION,
    413: grpc.StatusCode.INVALID_ARGUMENT,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    503: grpc.StatusCode.UNAVAILABLE,
}
"""Our HTTP statuses as gRPC status codes (anything else is INTERNAL)."""

# Which typed field of InferTensorContents holds each datatype (FP16: raw contents only).
CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


def parameters_from_proto(parameters: Mapping[str, pb.InferParameter]) -> dict[str, Any]:
    """A ``map<string, InferParameter>`` as plain values (unset ones are left out).

    >>> parameters_from_proto({"unit_id": pb.InferParameter(string_param="u-1")})
    {'unit_id': 'u-1'}
    """
    values = {}
    for key, parameter in parameters.items():
        choice = parameter.WhichOneof("parameter_choice")
        if choice is not None:
            values[key] = getattr(parameter, choice)
    return values


def parameter_to_proto(value: Any) -> pb.InferParameter:
    """One plain value as an ``InferParameter`` (a float as ``double_param``)."""
    if isinstance(value, bool):
        return pb.InferParameter(bool_param=value)
    if isinstance(value, int):
        return pb.InferParameter(int64_param=value)
    if isinstance(value, float):
        return pb.InferParameter(double_param=value)
    return pb.InferParameter(string_param=str(value))


def request_from_proto(request: pb.ModelInferRequest) -> codec.InferenceRequest:
    """A ``ModelInferRequest`` as the codec's request.

    Raises:
        TensorError: the tensors do not follow the protocol (a 400 / INVALID_ARGUMENT).
    """
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(request.inputs):
        raise codec.TensorError(
            f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} inputs; "
            "give one per input, in the order of inputs",
            field="raw_input_contents",
        )
    inputs = []
    for index, tensor in enumerate(request.inputs):
        where = f"inputs[{index}] ({tensor.name!r})"
        shape = list(tensor.shape)
        if raw:
            if tensor.HasField("contents"):
                raise codec.TensorError(
                    f"{where} has contents while raw_input_contents is used", field="inputs"
                )
            decoded = codec.tensor_from_bytes(
                tensor.name, tensor.datatype, shape, raw[index], where=where
            )
        else:
            field = CONTENTS_FIELD.get(tensor.datatype)
            if field is None and tensor.datatype in codec.DATATYPES:
                raise codec.TensorError(
                    f"{where}: {tensor.datatype} travels in raw_input_contents only",
                    field="raw_input_contents",
                )
            values = list(getattr(tensor.contents, field)) if field else []
            decoded = codec.tensor_from_values(
                tensor.name, tensor.datatype, shape, values, where=where
            )
        parameters = parameters_from_proto(tensor.parameters)
        inputs.append(codec.Tensor(tensor.name, tensor.datatype, decoded.data, parameters))
    if not inputs:
        raise codec.TensorError("inputs: required, one or more tensors", field="inputs")
    outputs = tuple(codec.RequestedOutput(output.name) for output in request.outputs)
    return codec.InferenceRequest(
        inputs=tuple(inputs),
        outputs=outputs,
        id=request.id or None,
        parameters=parameters_from_proto(request.parameters),
    )


def response_to_proto(
    model_name: str,
    model_version: str,
    request_id: str | None,
    parameters: Mapping[str, Any],
    outputs: list[codec.Tensor],
) -> pb.ModelInferResponse:
    """A ``ModelInferResponse`` with the outputs as ``raw_output_contents``."""
    response = pb.ModelInferResponse(
        model_name=model_name, model_version=model_version, id=request_id or ""
    )
    for key, value in parameters.items():
        response.parameters[key].CopyFrom(parameter_to_proto(value))
    for tensor in outputs:
        response.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
        response.raw_output_contents.append(codec.tensor_bytes(tensor.data, tensor.datatype))
    return response


def metadata_to_proto(
    config: Any, tensors: ModelTensors, arm: str | None
) -> pb.ModelMetadataResponse:
    response = pb.ModelMetadataResponse(
        name=config.name,
        versions=[arm] if arm else list(config.arm_names),
        platform=PLATFORM,
    )
    for group, specs in ((response.inputs, tensors.inputs), (response.outputs, tensors.outputs)):
        for spec in specs:
            group.add(name=spec.name, datatype=spec.datatype, shape=list(spec.shape))
    return response


def _fail(grpc_context: Any, error: BanditServeError, empty: Any) -> Any:
    """Answer with our error as a gRPC status (the message as the details)."""
    if grpc_context is not None:
        grpc_context.set_code(GRPC_CODES.get(error.status, grpc.StatusCode.INTERNAL))
        grpc_context.set_details(error.message)
    return empty


def _authorization(grpc_context: Any) -> str | None:
    if grpc_context is None:
        return None
    for key, value in grpc_context.invocation_metadata():
        if key.lower() == "authorization":
            return str(value)
    return None


class OpenInferenceGrpc(OpenInferenceCore):
    """The RPCs of ``inference.GRPCInferenceService`` (Serve calls them by name)."""

    async def ServerLive(  # noqa: N802 - the RPC's name
        self, request: pb.ServerLiveRequest, grpc_context: Any = None
    ) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(  # noqa: N802
        self, request: pb.ServerReadyRequest, grpc_context: Any = None
    ) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=not self.v2_unready())

    async def ServerMetadata(  # noqa: N802
        self, request: pb.ServerMetadataRequest, grpc_context: Any = None
    ) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(
            name=SERVER_NAME, version=server_version(), extensions=EXTENSIONS
        )

    async def ModelReady(  # noqa: N802
        self, request: pb.ModelReadyRequest, grpc_context: Any = None
    ) -> pb.ModelReadyResponse:
        try:
            self.auth.data(_authorization(grpc_context))  # type: ignore[attr-defined]
            arm = request.version or None
            routed = self.v2_routed(request.name, arm)
        except BanditServeError as error:
            return _fail(grpc_context, error, pb.ModelReadyResponse())
        return pb.ModelReadyResponse(ready=self.v2_ready(routed, arm))

    async def ModelMetadata(  # noqa: N802
        self, request: pb.ModelMetadataRequest, grpc_context: Any = None
    ) -> pb.ModelMetadataResponse:
        try:
            self.auth.data(_authorization(grpc_context))  # type: ignore[attr-defined]
            arm = request.version or None
            routed = self.v2_routed(request.name, arm)
            tensors = await self.v2_tensors(routed)
        except BanditServeError as error:
            return _fail(grpc_context, error, pb.ModelMetadataResponse())
        return metadata_to_proto(routed.config, tensors, arm)

    async def ModelInfer(  # noqa: N802
        self, request: pb.ModelInferRequest, grpc_context: Any = None
    ) -> pb.ModelInferResponse:
        try:
            authorization = _authorization(grpc_context)
            arm = request.model_version or None
            if arm is None:
                self.auth.data(authorization)  # type: ignore[attr-defined]
            else:
                self.auth.force(authorization)  # type: ignore[attr-defined]
            limit = self.limits.max_body_bytes  # type: ignore[attr-defined]
            size = request.ByteSize()
            if size > limit:
                raise PayloadTooLarge(
                    f"request is {size} bytes; the limit is {limit}", field="body"
                )
            routed = self.v2_routed(request.model_name, arm)
            try:
                parsed = request_from_proto(request)
            except codec.TensorError as error:
                raise as_request_error(error) from None
            served, outputs = await self.v2_serve(routed, arm, parsed)
        except BanditServeError as error:
            return _fail(grpc_context, error, pb.ModelInferResponse())
        except Exception as error:  # a bug: INTERNAL with a message, never a traceback
            logger.exception("ModelInfer failed")
            failure = BanditServeError(f"internal error ({type(error).__name__}); see the logs")
            return _fail(grpc_context, failure, pb.ModelInferResponse())
        return response_to_proto(
            routed.name,
            served.arm,
            parsed.id,
            decision_parameters(served),
            [tensor for tensor, _ in outputs],
        )
