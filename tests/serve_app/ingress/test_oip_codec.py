"""The Open Inference Protocol tensor codec, against numpy and, as an independent reference,
tritonclient's own request builder and response parser (``tritonclient.http``: the same code
that talks to a Triton server)."""

from __future__ import annotations

import gzip
import json
import re
import zlib

import numpy as np
import pytest
import tritonclient.http as triton

from serve_app.ingress import oip_codec as codec
from serve_app.ingress.oip_codec import Tensor, TensorError

NUMERIC = [name for name in codec.DATATYPES if name != "BYTES"]


def sample(datatype: str, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Values across the datatype's range (extremes included), seeded."""
    rng = np.random.default_rng(seed)
    dtype = codec.DATATYPES[datatype]
    count = int(np.prod(shape))
    if datatype == "BOOL":
        return rng.random(count).reshape(shape) < 0.5
    if datatype == "BYTES":
        words = [b"", b"a", "\u00e9t\u00e9".encode(), b"x" * 300, b"tab\tnl\n"]
        values = np.empty(count, dtype=object)
        values[:] = [words[int(i)] for i in rng.integers(0, len(words), count)]
        return values.reshape(shape)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        values = rng.integers(info.min, info.max, count, dtype=dtype, endpoint=True)
        values[:2] = [info.min, info.max]
        return values.reshape(shape)
    values = rng.standard_normal(count) * 1000
    return values.astype(dtype).reshape(shape)


def triton_request(
    tensors: dict[str, np.ndarray], binary: bool, outputs: list[triton.InferRequestedOutput]
) -> tuple[bytes, int | None]:
    inputs = []
    for name, data in tensors.items():
        datatype = codec.datatype_of(data.dtype) if data.dtype != object else "BYTES"
        tensor = triton.InferInput(name, list(data.shape), datatype)
        tensor.set_data_from_numpy(data, binary_data=binary)
        inputs.append(tensor)
    return triton.InferenceServerClient.generate_request_body(
        inputs, outputs=outputs or None, request_id="req-1", parameters={"unit_id": "u-7"}
    )


# --------------------------------------------------------------------------- requests


@pytest.mark.parametrize("datatype", list(codec.DATATYPES))
@pytest.mark.parametrize("binary", [True, False])
def test_every_datatype_decodes_as_tritonclient_encodes_it(datatype: str, binary: bool) -> None:
    data = sample(datatype, (3, 4), seed=len(datatype))
    body, json_size = triton_request({"x": data}, binary, [])
    request = codec.decode_request(body, json_size)
    (tensor,) = request.inputs
    assert (tensor.name, tensor.datatype, tensor.shape) == ("x", datatype, [3, 4])
    if datatype == "BYTES":
        assert tensor.data.tolist() == data.tolist()
    else:
        assert tensor.data.dtype == codec.DATATYPES[datatype]
        np.testing.assert_array_equal(tensor.data, data)
    assert request.id == "req-1"
    assert request.parameters["unit_id"] == "u-7"
    assert request.binary_output  # no outputs named: tritonclient asks for binary ones


def test_a_batch_of_rows_in_several_inputs_keeps_their_order() -> None:
    tensors = {
        "a": sample("FP32", (32, 64)),
        "b": sample("INT64", (32, 1), seed=1),
        "c": sample("FP64", (32, 64), seed=2),
    }
    body, json_size = triton_request(tensors, True, [])
    request = codec.decode_request(body, json_size)
    assert [t.name for t in request.inputs] == ["a", "b", "c"]
    for tensor in request.inputs:
        np.testing.assert_array_equal(tensor.data, tensors[tensor.name])


def test_requested_outputs_say_how_they_want_their_data() -> None:
    outputs = [
        triton.InferRequestedOutput("y", binary_data=False),
        triton.InferRequestedOutput("z", binary_data=True),
    ]
    body, json_size = triton_request({"x": sample("FP64", (1, 2))}, False, outputs)
    request = codec.decode_request(body, json_size)
    assert request.outputs == (codec.RequestedOutput("y", False), codec.RequestedOutput("z", True))
    assert not request.binary_output


def test_nested_and_flat_json_data_are_the_same_tensor() -> None:
    flat = codec.tensor_from_json("x", "FP64", [2, 3], [1, 2, 3, 4, 5, 6])
    nested = codec.tensor_from_json("x", "FP64", [2, 3], [[1, 2, 3], [4, 5, 6]])
    np.testing.assert_array_equal(flat.data, nested.data)
    assert flat.data.shape == (2, 3)
    strings = codec.tensor_from_json("s", "BYTES", [2, 1], [["a"], ["b"]])
    assert strings.data.tolist() == [[b"a"], [b"b"]]


@pytest.mark.parametrize(
    ("datatype", "shape", "data", "message"),
    [
        ("FP64", [2, 2], [1, 2, 3], "data has 3 elements but shape [2, 2] needs 4"),
        ("FP64", [3, 2], [[1, 2, 3], [4, 5, 6]], "nested as [2, 3] but shape is [3, 2]"),
        ("FP64", [2], [[1, 2], [3]], "not a regular (rectangular) array"),
        ("INT64", [2], [[1, 2], [3]], "not a regular (rectangular) array"),
        ("FP64", [1], ["1.5"], "FP64 data must be numbers, got strings"),
        ("FP64", [1], [None], "must be numbers"),
        ("FP64", [1], 1.5, "data must be a list"),
        ("FP32", [1], [1e39], "outside the FP32 range"),
        ("FP16", [1], [70000], "outside the FP16 range"),
        ("INT8", [1], [128], "128 is outside the INT8 range -128..127"),
        ("UINT64", [1], [-1], "-1 is outside the UINT64 range"),
        ("INT64", [1], [2**63], "outside the INT64 range"),
        ("UINT32", [1], [0.5], "UINT32 data must be whole numbers, got 0.5"),
        ("INT32", [1], [2**70], "outside the INT32 range"),
        ("UINT64", [1], [2**64], "18446744073709551616 is outside the UINT64 range"),
        ("INT64", [2], [1, 2.5], "INT64 data must be whole numbers, got 2.5"),
        ("BOOL", [2], [1, 0], "BOOL data must be true or false"),
        ("BYTES", [1], [1], "BYTES data must be strings"),
        ("FP128", [1], [1], "unknown datatype 'FP128'"),
        ("FP64", [-1, 2], [1, 2], "has a negative dimension"),
    ],
)
def test_malformed_json_tensors_say_what_is_wrong(
    datatype: str, shape: list[int], data: object, message: str
) -> None:
    with pytest.raises(TensorError, match=re.escape(message)):
        codec.tensor_from_json("x", datatype, shape, data)


def test_integral_floats_and_the_extremes_of_each_integer_type_are_accepted() -> None:
    assert codec.tensor_from_json("x", "INT64", [2], [2.0, -3]).data.tolist() == [2, -3]
    for datatype in ("INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"):
        info = np.iinfo(codec.DATATYPES[datatype])
        tensor = codec.tensor_from_json("x", datatype, [2], [int(info.min), int(info.max)])
        assert tensor.data.tolist() == [info.min, info.max]


def body(document: dict, *blobs: bytes) -> tuple[bytes, int | None]:
    header = json.dumps(document).encode()
    return header + b"".join(blobs), len(header) if blobs else None


def binary_input(name: str, datatype: str, shape: list[int], size: int) -> dict:
    return {
        "name": name,
        "datatype": datatype,
        "shape": shape,
        "parameters": {"binary_data_size": size},
    }


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: body({"inputs": [binary_input("x", "FP64", [2], 16)]}, b"\0" * 8), "truncated"),
        (
            lambda: body({"inputs": [binary_input("x", "FP64", [2], 8)]}, b"\0" * 8),
            r"shape \[2\] of FP64 needs 16 bytes, got 8",
        ),
        (
            lambda: body({"inputs": [binary_input("x", "FP64", [1], 8)]}, b"\0" * 12),
            "the body has 12 bytes after the JSON header but the inputs' binary_data_size "
            "add up to 8",
        ),
        (
            lambda: (json.dumps({"inputs": [binary_input("x", "FP64", [1], 8)]}).encode(), None),
            "has binary_data_size but the request has no Inference-Header-Content-Length",
        ),
        (
            lambda: (
                json.dumps({"inputs": [binary_input("x", "FP64", [1], 8)]}).encode() + b"x",
                None,
            ),
            "needs Inference-Header-Content-Length",
        ),
        (
            lambda: body({"inputs": [binary_input("x", "BOOL", [2], 2)]}, b"\x01\x02"),
            "BOOL elements must be the bytes 0 or 1",
        ),
        (
            lambda: body({"inputs": [binary_input("x", "BYTES", [1], 6)]}, b"\x05\0\0\0ab"),
            "BYTES element 0 says 5 bytes but 2 are left",
        ),
        (
            lambda: body({"inputs": [binary_input("x", "BYTES", [2], 6)]}, b"\x02\0\0\0ab"),
            "data has 1 elements but shape",
        ),
        (lambda: (b'{"inputs": [NaN]}', None), "NaN is not a JSON number"),
        (lambda: (b"[]", None), "must be a JSON object"),
        (lambda: (b'{"inputs": []}', None), "inputs: required"),
        (lambda: (b'{"inputs": [{"name": "x", "shape": [1]}]}', None), "datatype: required"),
        (
            lambda: (b'{"inputs": [{"name": "x", "datatype": "FP64", "shape": [1]}]}', None),
            "data is required",
        ),
        (lambda: (b'{"inputs": [{"name": "x"}], "oops": 1}', None), "unknown field 'oops'"),
        (lambda: (b'{"id": 7, "inputs": []}', None), "id must be a string"),
        (
            lambda: (
                b'{"inputs": [{"name": "x", "datatype": "FP64", "shape": [1], "data": [1]}],'
                b' "outputs": [{"name": "y", "parameters": {"binary_data": 1}}]}',
                None,
            ),
            "binary_data must be true or false",
        ),
        (lambda: (b"\xff\xfe", None), "not valid JSON"),
    ],
)
def test_malformed_requests_say_what_is_wrong(make, message: str) -> None:
    raw, length = make()
    with pytest.raises(TensorError, match=message):
        codec.decode_request(raw, length)


def test_the_header_length_is_checked_against_the_body() -> None:
    assert codec.header_length(" 12 ", 20) == 12
    with pytest.raises(TensorError, match="must be a byte count"):
        codec.header_length("-3", 20)
    with pytest.raises(TensorError, match="the body has only 20 bytes"):
        codec.header_length("21", 20)


# --------------------------------------------------------------------------- compression


def test_gzip_and_deflate_bodies_inflate_within_the_limit() -> None:
    raw = b'{"inputs": []}' * 10
    assert codec.decompress(gzip.compress(raw), "gzip", 1000) == raw
    assert codec.decompress(zlib.compress(raw), "deflate", 1000) == raw
    raw_deflate = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    assert codec.decompress(raw_deflate.compress(raw) + raw_deflate.flush(), "deflate", 1000) == raw
    assert codec.decompress(raw, None, 10) == raw  # no encoding: the guard's limit applies
    with pytest.raises(TensorError, match="exceeds 100 bytes once inflated"):
        codec.decompress(gzip.compress(b"0" * 1_000_000), "gzip", 100)
    with pytest.raises(TensorError, match="not valid gzip data"):
        codec.decompress(b"not gzip", "gzip", 100)
    with pytest.raises(TensorError, match="'br' is not supported"):
        codec.decompress(raw, "br", 100)


# --------------------------------------------------------------------------- responses


@pytest.mark.parametrize("datatype", list(codec.DATATYPES))
@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_reads_every_datatype_we_answer(datatype: str, binary: bool) -> None:
    data = sample(datatype, (5, 2), seed=3)
    tensor = Tensor("y", datatype, data)
    raw, length = codec.encode_response({"model_name": "m", "id": "7"}, [tensor], [binary])
    assert (length is not None) == binary
    result = triton.InferenceServerClient.parse_response_body(raw, header_length=length)
    got = result.as_numpy("y")
    if datatype == "BYTES":  # binary: bytes; JSON: the strings they encode
        as_bytes = [[v if isinstance(v, bytes) else v.encode() for v in row] for row in got]
        assert as_bytes == data.tolist()
    else:
        np.testing.assert_array_equal(got, data)
        assert got.shape == (5, 2)
    response = result.get_response()
    assert response["model_name"] == "m"
    assert response["id"] == "7"


def test_mixed_binary_and_json_outputs_keep_their_order() -> None:
    a = Tensor("a", "INT64", np.arange(6).reshape(3, 2))
    b = Tensor("b", "FP32", np.linspace(0, 1, 3, dtype=np.float32))
    c = Tensor("c", "BYTES", np.array([b"x", b"yy", b""], dtype=object))
    raw, length = codec.encode_response({}, [a, b, c], [True, False, True])
    result = triton.InferenceServerClient.parse_response_body(raw, header_length=length)
    np.testing.assert_array_equal(result.as_numpy("a"), a.data)
    np.testing.assert_array_equal(result.as_numpy("b"), b.data)
    assert result.as_numpy("c").tolist() == [b"x", b"yy", b""]


@pytest.mark.parametrize(
    ("predictions", "hint", "datatype", "shape"),
    [
        ([3, 1, 4], "INT64", "INT64", [3]),
        ([3, 1, 4], "INT32", "INT32", [3]),
        ([3, 1, 4], "FP64", "FP64", [3]),  # no signature: numbers as FP64
        ([3, 1, 300], "INT8", "INT64", [3]),  # the hint would lose 300: its own type
        ([0.5, 2.0], "INT64", "FP64", [2]),
        ([True, False], "BOOL", "BOOL", [2]),
        ([[0.1, 0.9], [0.8, 0.2]], "FP32", "FP32", [2, 2]),  # rounds as the signature says
        ([1e300], "FP32", "FP64", [1]),  # but never to infinity
        (["cat", "dog"], "BYTES", "BYTES", [2]),
        ([{"label": 1}, {"label": 2}], "FP64", "BYTES", [2]),
        ([[1, 2], [3]], None, "BYTES", [2]),
    ],
)
def test_predictions_become_an_output_tensor(predictions, hint, datatype, shape) -> None:
    tensor = codec.prediction_tensor("y", predictions, hint)
    assert (tensor.datatype, tensor.shape) == (datatype, shape)
    raw, length = codec.encode_response({}, [tensor], [True])
    back = triton.InferenceServerClient.parse_response_body(raw, header_length=length)
    assert back.as_numpy("y").shape == tuple(shape)
    if datatype == "BYTES" and isinstance(predictions[0], dict):
        assert [json.loads(v) for v in back.as_numpy("y")] == predictions


def test_encoding_then_decoding_is_the_identity_for_every_datatype() -> None:
    for datatype in codec.DATATYPES:
        data = sample(datatype, (4, 3), seed=7)
        raw = codec.tensor_bytes(data, datatype)
        back = codec.tensor_from_bytes("x", datatype, [4, 3], raw)
        assert back.data.tolist() == data.tolist()
        if datatype != "BYTES":
            assert back.data.dtype == data.dtype
