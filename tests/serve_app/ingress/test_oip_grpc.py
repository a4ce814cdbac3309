"""The Open Inference gRPC service without Ray: the stubs match our proto, messages convert
to the codec's tensors and back, tritonclient.grpc's own messages read as ours (in a
subprocess: its protobuf package ``inference`` is ours too), and the RPCs answer with the
right status codes."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import grpc
import numpy as np
import pytest

from serve_app.config import AppConfig, ExperimentConfig, RouterConfig
from serve_app.errors import Forbidden, Unauthorized
from serve_app.ingress import oip_codec as codec
from serve_app.ingress.circuit import CircuitBreaker
from serve_app.ingress.oip_grpc import (
    OpenInferenceGrpc,
    parameters_from_proto,
    request_from_proto,
    response_to_proto,
)
from serve_app.ingress.oip_pb import inference_pb2 as pb

REPO = Path(__file__).resolve().parents[3]
STUBS = REPO / "serve_app" / "ingress" / "oip_pb"


def test_the_committed_stubs_are_what_grpcio_tools_makes_of_the_proto(tmp_path: Path) -> None:
    from grpc_tools import protoc

    target = tmp_path / "serve_app" / "ingress" / "oip_pb"
    target.mkdir(parents=True)
    shutil.copy(STUBS / "inference.proto", target)
    proto = "serve_app/ingress/oip_pb/inference.proto"
    arguments = ["protoc", f"-I{tmp_path}", f"--python_out={tmp_path}", f"--pyi_out={tmp_path}"]
    assert protoc.main([*arguments, f"--grpc_python_out={tmp_path}", proto]) == 0
    for name in ("inference_pb2.py", "inference_pb2.pyi", "inference_pb2_grpc.py"):
        assert (target / name).read_text() == (STUBS / name).read_text(), (
            f"{name} is stale: regenerate it (the command is in inference.proto)"
        )


def raw_request(tensors: dict[str, np.ndarray]) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="e", id="r-1")
    for name, data in tensors.items():
        datatype = "BYTES" if data.dtype == object else codec.datatype_of(data.dtype)
        request.inputs.add(name=name, datatype=datatype, shape=list(data.shape))
        request.raw_input_contents.append(codec.tensor_bytes(data, datatype))
    return request


@pytest.mark.parametrize("datatype", list(codec.DATATYPES))
def test_raw_and_typed_contents_decode_alike(datatype: str) -> None:
    rng = np.random.default_rng(len(datatype))
    if datatype == "BYTES":
        data = np.array([[b"a", b""], [b"bc", b"\xff"]], dtype=object)
    elif datatype == "BOOL":
        data = rng.random((2, 2)) < 0.5
    else:
        data = (rng.random((2, 2)) * 100).astype(codec.DATATYPES[datatype])
    raw = request_from_proto(raw_request({"x": data}))
    assert raw.inputs[0].data.tolist() == data.tolist()
    assert raw.id == "r-1"
    typed = pb.ModelInferRequest(model_name="e")
    tensor = typed.inputs.add(name="x", datatype=datatype, shape=[2, 2])
    if datatype == "FP16":
        with pytest.raises(codec.TensorError, match="FP16 travels in raw_input_contents only"):
            request_from_proto(typed)
        return
    field = {
        "BOOL": "bool_contents",
        "BYTES": "bytes_contents",
        "FP32": "fp32_contents",
        "FP64": "fp64_contents",
        "INT64": "int64_contents",
        "UINT64": "uint64_contents",
    }.get(datatype, "uint_contents" if datatype.startswith("U") else "int_contents")
    getattr(tensor.contents, field).extend(data.reshape(-1).tolist())
    decoded = request_from_proto(typed).inputs[0].data
    assert decoded.tolist() == data.tolist()


def test_malformed_messages_say_what_is_wrong() -> None:
    request = raw_request({"x": np.zeros((1, 2))})
    request.raw_input_contents.append(b"")
    with pytest.raises(codec.TensorError, match="raw_input_contents has 2 entries for 1 inputs"):
        request_from_proto(request)
    truncated = raw_request({"x": np.zeros((1, 2))})
    truncated.raw_input_contents[0] = b"\0" * 7
    with pytest.raises(codec.TensorError, match="needs 16 bytes, got 7"):
        request_from_proto(truncated)
    typed = pb.ModelInferRequest()
    typed.inputs.add(name="x", datatype="INT8", shape=[1]).contents.int_contents.append(300)
    with pytest.raises(codec.TensorError, match="300 is outside the INT8 range"):
        request_from_proto(typed)
    with pytest.raises(codec.TensorError, match="inputs: required"):
        request_from_proto(pb.ModelInferRequest(model_name="e"))


def test_parameters_and_outputs_convert_both_ways() -> None:
    request = pb.ModelInferRequest()
    request.parameters["unit_id"].string_param = "u-1"
    request.parameters["binary_data_output"].bool_param = True
    request.parameters["unset"].CopyFrom(pb.InferParameter())
    assert parameters_from_proto(request.parameters) == {
        "unit_id": "u-1",
        "binary_data_output": True,
    }
    tensor = codec.Tensor("output-0", "INT64", np.array([3, 1]))
    parameters = {"arm": "a", "propensity": 0.25, "forced": False, "n": 3}
    response = response_to_proto("e", "a", "r-1", parameters, [tensor])
    assert (response.model_name, response.model_version, response.id) == ("e", "a", "r-1")
    assert parameters_from_proto(response.parameters) == parameters
    assert response.parameters["propensity"].WhichOneof("parameter_choice") == "double_param"
    assert list(response.outputs[0].shape) == [2]
    assert np.frombuffer(response.raw_output_contents[0], "<i8").tolist() == [3, 1]


TRITON_SIDE = r"""
import json
import sys

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.grpc import _utils, service_pb2

rows = np.arange(12, dtype=np.float32).reshape(3, 4)
words = np.array([b"x", b"yz", b""], dtype=object)
inputs = [grpcclient.InferInput("a", [3, 4], "FP32"), grpcclient.InferInput("w", [3], "BYTES")]
inputs[0].set_data_from_numpy(rows)
inputs[1].set_data_from_numpy(words)
outputs = [grpcclient.InferRequestedOutput("output-0")]
request = _utils._get_inference_request(
    model_name="e", inputs=inputs, model_version="forest", request_id="t-1", outputs=outputs,
    sequence_id=0, sequence_start=False, sequence_end=False, priority=0, timeout=None,
    parameters={"unit_id": "u-9"},
)
answer = service_pb2.ModelInferResponse.FromString(open(sys.argv[1], "rb").read())
result = grpcclient.InferResult(answer)
print(json.dumps({
    "request": request.SerializeToString().hex(),
    "labels": result.as_numpy("output-0").tolist(),
    "propensity": answer.parameters["propensity"].double_param,
    "arm": answer.parameters["arm"].string_param,
}))
"""


def test_tritonclient_grpc_messages_read_as_ours_and_ours_as_theirs(tmp_path: Path) -> None:
    tensor = codec.Tensor("output-0", "INT64", np.array([7, 1, 2]))
    response = response_to_proto(
        "e", "forest", "t-1", {"arm": "forest", "propensity": 0.5}, [tensor]
    )
    (tmp_path / "response.bin").write_bytes(response.SerializeToString())
    done = subprocess.run(
        [sys.executable, "-c", TRITON_SIDE, str(tmp_path / "response.bin")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    theirs = json.loads(done.stdout)
    assert theirs["labels"] == [7, 1, 2]
    assert (theirs["arm"], theirs["propensity"]) == ("forest", 0.5)
    message = pb.ModelInferRequest.FromString(bytes.fromhex(theirs["request"]))
    assert (message.model_name, message.model_version, message.id) == ("e", "forest", "t-1")
    request = request_from_proto(message)
    assert request.inputs[0].data.tolist() == np.arange(12, dtype=np.float32).reshape(3, 4).tolist()
    assert request.inputs[1].data.tolist() == [b"x", b"yz", b""]
    assert request.parameters["unit_id"] == "u-9"
    assert [output.name for output in request.outputs] == ["output-0"]


# --------------------------------------------------------------------------- the RPCs


class FakeContext:
    def __init__(self, metadata: dict[str, str] | None = None) -> None:
        self.metadata = metadata or {}
        self.code: grpc.StatusCode | None = None
        self.details = ""

    def invocation_metadata(self) -> list[tuple[str, str]]:
        return list(self.metadata.items())

    def set_code(self, code: grpc.StatusCode) -> None:
        self.code = code

    def set_details(self, details: str) -> None:
        self.details = details


class FakeAuth:
    def data(self, authorization: str | None) -> None:
        return None

    def force(self, authorization: str | None) -> str:
        if authorization is None:
            raise Unauthorized("forcing an arm: these endpoints need 'Authorization: Bearer'")
        if authorization != "Bearer qa":
            raise Forbidden("the bearer token is not accepted")
        return "qa"


class FakeRouter(OpenInferenceGrpc):
    """The router's side of the contract, with one experiment whose arms have no signature
    (``/m/*`` does not exist: the metadata comes from the config)."""

    def __init__(self) -> None:
        arms = [{"name": "a", "model_uri": "/m/a"}, {"name": "b", "model_uri": "/m/b"}]
        config = ExperimentConfig.model_validate({"name": "e", "arms": arms, "n_features": 2})
        self.config = AppConfig.model_validate(
            {"experiments": [config.model_dump()], "check_models": False}
        )
        self.limits = RouterConfig(max_batch_rows=4)
        self.auth = FakeAuth()
        breakers = {"a": CircuitBreaker(), "b": CircuitBreaker()}
        self.experiments = {"e": SimpleNamespace(name="e", config=config, breakers=breakers)}
        self.served: list[tuple[Any, ...]] = []

    def _experiment(self, name: str | None, field: str = "experiment") -> Any:
        from serve_app.errors import NotFound

        if name not in self.experiments:
            raise NotFound(f"unknown experiment {name!r}; known: e", field=field)
        return self.experiments[name]

    async def serve_rows(self, routed: Any, features: np.ndarray, **kwargs: Any) -> Any:
        self.served.append((features, kwargs))
        arm = kwargs["forced_arm"] or "a"
        return SimpleNamespace(
            predictions=[int(row.sum()) for row in features],
            arm=arm,
            decision_id="v1.test",
            propensity=1.0 if kwargs["forced_arm"] else 0.5,
            experiment="e",
            fallback=False,
            forced=kwargs["forced_arm"] is not None,
            model_version=None,
        )


def infer_request(rows: np.ndarray, name: str = "input-0", **fields: Any) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(**{"model_name": "e", **fields})
    request.inputs.add(name=name, datatype="FP64", shape=list(rows.shape))
    request.raw_input_contents.append(codec.tensor_bytes(rows))
    return request


def call(method: str, request: Any, metadata: dict[str, str] | None = None) -> tuple:
    router, context = FakeRouter(), FakeContext(metadata)
    response = asyncio.run(getattr(router, method)(request, grpc_context=context))
    return router, context, response


def test_model_infer_serves_the_rows_and_sends_the_decision() -> None:
    rows = np.array([[1.0, 2.0], [3.0, 4.0]])
    request = infer_request(rows, id="g-1")
    request.parameters["unit_id"].string_param = "user-1"
    router, context, response = call("ModelInfer", request)
    assert context.code is None
    features, kwargs = router.served[0]
    np.testing.assert_array_equal(features, rows)
    assert kwargs == {"unit_id": "user-1", "forced_arm": None}
    assert (response.id, response.model_version) == ("g-1", "a")
    assert np.frombuffer(response.raw_output_contents[0], "<f8").tolist() == [3.0, 7.0]
    assert parameters_from_proto(response.parameters)["decision_id"] == "v1.test"


@pytest.mark.parametrize(
    ("request_", "metadata", "code", "message"),
    [
        (infer_request(np.zeros((1, 2)), name="x"), None, "INVALID_ARGUMENT", "takes one input"),
        (infer_request(np.zeros((1, 3))), None, "INVALID_ARGUMENT", "expects rows of 2"),
        (infer_request(np.zeros((5, 2))), None, "INVALID_ARGUMENT", "at most 4 per request"),
        (infer_request(np.full((1, 2), np.inf)), None, "INVALID_ARGUMENT", "finite numbers"),
        (pb.ModelInferRequest(model_name="nope"), None, "NOT_FOUND", "unknown experiment"),
        (infer_request(np.zeros((1, 2)), model_name=""), None, "INVALID_ARGUMENT", "model name"),
        (
            infer_request(np.zeros((1, 2)), model_version="a"),
            None,
            "UNAUTHENTICATED",
            "Authorization",
        ),
        (
            infer_request(np.zeros((1, 2)), model_version="a"),
            {"authorization": "Bearer no"},
            "PERMISSION_DENIED",
            "not accepted",
        ),
        (
            infer_request(np.zeros((1, 2)), model_version="c"),
            {"authorization": "Bearer qa"},
            "NOT_FOUND",
            "arm 'c' is not an arm of experiment 'e'",
        ),
    ],
)
def test_model_infer_refusals_are_status_codes_with_our_messages(
    request_: Any, metadata: dict[str, str] | None, code: str, message: str
) -> None:
    router, context, response = call("ModelInfer", request_, metadata)
    assert context.code == getattr(grpc.StatusCode, code)
    assert message in context.details
    assert response == pb.ModelInferResponse()
    assert router.served == []


def test_forcing_with_the_token_serves_that_arm() -> None:
    request = infer_request(np.zeros((1, 2)), model_version="b")
    _, context, response = call("ModelInfer", request, {"authorization": "Bearer qa"})
    assert context.code is None
    assert parameters_from_proto(response.parameters)["forced"] is True
    assert response.model_version == "b"


def test_health_and_metadata_rpcs() -> None:
    assert call("ServerLive", pb.ServerLiveRequest())[2].live
    assert call("ServerReady", pb.ServerReadyRequest())[2].ready
    assert call("ModelReady", pb.ModelReadyRequest(name="e"))[2].ready
    _, context, _ = call("ModelReady", pb.ModelReadyRequest(name="e", version="zz"))
    assert context.code == grpc.StatusCode.NOT_FOUND
    metadata = call("ModelMetadata", pb.ModelMetadataRequest(name="e"))[2]
    assert list(metadata.versions) == ["a", "b"]
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.inputs] == [
        ("input-0", "FP64", [-1, 2])
    ]
    server = call("ServerMetadata", pb.ServerMetadataRequest())[2]
    assert list(server.extensions) == ["binary_tensor_data"]
