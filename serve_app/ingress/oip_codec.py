"""Open Inference Protocol (v2) tensors: JSON and binary, decoded to numpy and back.

Pure functions over bytes and numpy arrays (no Ray, no HTTP framework), shared by the REST
endpoints (:mod:`serve_app.ingress.oip`) and the gRPC service
(:mod:`serve_app.ingress.oip_grpc`):

- :func:`decode_request`: an inference request body (JSON, optionally followed by the binary
  tensor data of Triton's binary tensor extension) to an :class:`InferenceRequest`;
- :func:`tensor_from_json`, :func:`tensor_from_bytes`, :func:`tensor_from_values`: one
  tensor from JSON ``data`` (flat or nested), from raw little-endian bytes, or from a flat
  sequence (gRPC's typed contents);
- :func:`prediction_tensor`: the predictions of one served request as an output tensor;
- :func:`encode_response`: the response body, with the outputs asked for in binary after the
  JSON (and the JSON's length for the ``Inference-Header-Content-Length`` header).

Every malformed input is a :class:`TensorError` with a message that names the tensor and
says what is wrong (the endpoints answer 400), never an exception from numpy.

Datatypes (the specification's table) and their numpy types; binary data is little-endian,
row-major, without padding; BOOL is one byte (0 or 1); a BYTES element is a 4-byte
little-endian length and then its bytes.

Example:
    >>> tensor = tensor_from_json("x", "INT32", [2, 2], [[1, 2], [3, 4]])
    >>> tensor.data
    array([[1, 2],
           [3, 4]], dtype=int32)
    >>> tensor_from_bytes("x", "FP64", [1, 2], tensor_bytes(np.array([[0.5, 2.0]]))).data
    array([[0.5, 2. ]])
    >>> tensor_from_json("x", "UINT8", [2], [1, 256])
    Traceback (most recent call last):
    ...
    serve_app.ingress.oip_codec.TensorError: input 'x': 256 is outside the UINT8 range 0..255
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "BINARY_HEADER",
    "DATATYPES",
    "InferenceRequest",
    "RequestedOutput",
    "Tensor",
    "TensorError",
    "datatype_of",
    "decode_request",
    "decompress",
    "encode_response",
    "header_length",
    "prediction_tensor",
    "tensor_bytes",
    "tensor_from_bytes",
    "tensor_from_json",
    "tensor_from_values",
]

BINARY_HEADER = "inference-header-content-length"
"""The header that gives the JSON part's length when binary tensor data follows it."""

DATATYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "BYTES": np.dtype(object),
}
"""Every datatype of the specification that a model input can take, as numpy stores it."""

_BY_KIND_SIZE = {
    (dtype.kind, dtype.itemsize): name for name, dtype in DATATYPES.items() if name != "BYTES"
}
_LENGTH = struct.Struct("<I")


class TensorError(ValueError):
    """A tensor or request that does not follow the protocol; the message says why."""

    def __init__(self, message: str, field: str = "inputs") -> None:
        super().__init__(message)
        self.message = message
        self.field = field


@dataclass(frozen=True)
class Tensor:
    """One tensor: ``data`` has ``shape`` and the numpy type of ``datatype`` (BYTES: an
    object array of ``bytes``)."""

    name: str
    datatype: str
    data: np.ndarray
    parameters: Mapping[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> list[int]:
        return [int(n) for n in self.data.shape]


@dataclass(frozen=True)
class RequestedOutput:
    """An output the client asked for; ``binary`` is None when it did not say how."""

    name: str
    binary: bool | None = None


@dataclass(frozen=True)
class InferenceRequest:
    """A decoded inference request."""

    inputs: tuple[Tensor, ...]
    outputs: tuple[RequestedOutput, ...] = ()
    id: str | None = None
    parameters: Mapping[str, Any] = field(default_factory=dict)

    @property
    def binary_output(self) -> bool:
        """``binary_data_output``: outputs in binary unless an output says otherwise."""
        return self.parameters.get("binary_data_output") is True


def datatype_of(dtype: np.dtype | str) -> str:
    """The protocol datatype of a numpy dtype (strings and objects are BYTES).

    >>> datatype_of("float64"), datatype_of(np.dtype("int8")), datatype_of("<U3")
    ('FP64', 'INT8', 'BYTES')
    """
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        return "BOOL"
    return _BY_KIND_SIZE.get((dtype.kind, dtype.itemsize), "BYTES")


# --------------------------------------------------------------------------- decoding


def header_length(value: str | None, body_size: int) -> int | None:
    """The ``Inference-Header-Content-Length`` header as a length within the body.

    >>> header_length(None, 10), header_length("4", 10)
    (None, 4)
    >>> header_length("11", 10)
    Traceback (most recent call last):
    ...
    serve_app.ingress.oip_codec.TensorError: Inference-Header-Content-Length is 11 but the \
body has only 10 bytes
    """
    if value is None:
        return None
    text = value.strip()
    if not text.isdigit():
        raise TensorError(
            f"Inference-Header-Content-Length must be a byte count, got {text[:40]!r}",
            field="inference-header-content-length",
        )
    length = int(text)
    if length > body_size:
        raise TensorError(
            f"Inference-Header-Content-Length is {length} but the body has only {body_size} bytes",
            field="inference-header-content-length",
        )
    return length


def decompress(body: bytes, encoding: str | None, limit: int) -> bytes:
    """A body sent with ``Content-Encoding: gzip`` or ``deflate`` (tritonclient's
    ``request_compression_algorithm``), inflated to at most ``limit`` bytes.

    Raises:
        TensorError: an unknown encoding, data that does not inflate, or more than
            ``limit`` bytes once inflated (the body limit holds for what the server reads).
    """
    name = (encoding or "identity").strip().lower()
    if name == "identity":
        return body
    if name not in ("gzip", "deflate"):
        raise TensorError(
            f"Content-Encoding {name[:40]!r} is not supported; use gzip, deflate or none",
            field="content-encoding",
        )
    # gzip: a gzip header (wbits 16+); deflate: zlib-wrapped as HTTP says, or raw (wbits -)
    attempts = [16 + zlib.MAX_WBITS] if name == "gzip" else [zlib.MAX_WBITS, -zlib.MAX_WBITS]
    for wbits in attempts:
        inflater = zlib.decompressobj(wbits)
        try:
            inflated = inflater.decompress(body, limit + 1)
        except zlib.error:
            continue
        if len(inflated) > limit or inflater.unconsumed_tail:
            raise TensorError(
                f"request body exceeds {limit} bytes once inflated", field="content-encoding"
            )
        if inflater.eof:
            return inflated
    raise TensorError(f"request body is not valid {name} data", field="content-encoding")


def _reject_constant(name: str) -> Any:
    raise TensorError(f"not valid JSON: {name} is not a JSON number", field="body")


def decode_request(body: bytes, json_length: int | None = None) -> InferenceRequest:
    """An inference request: the JSON object, then (with ``json_length``, the
    ``Inference-Header-Content-Length``) the binary data of the inputs that have a
    ``binary_data_size`` parameter, in the order of ``inputs``.

    Example:
        >>> header = b'{"id": "7", "inputs": [{"name": "x", "datatype": "FP32", "shape": [2],'
        >>> header += b' "parameters": {"binary_data_size": 8}}]}'
        >>> raw = np.array([1.5, -2.0], dtype="<f4").tobytes()
        >>> request = decode_request(header + raw, len(header))
        >>> request.id, request.inputs[0].data
        ('7', array([ 1.5, -2. ], dtype=float32))
        >>> decode_request(header + raw[:5], len(header))
        Traceback (most recent call last):
        ...
        serve_app.ingress.oip_codec.TensorError: inputs[0] ('x'): binary_data_size is 8 but \
only 5 bytes of binary data are left in the body (truncated?)

    Raises:
        TensorError: the body is not a valid inference request.
    """
    end = len(body) if json_length is None else json_length
    try:
        document = json.loads(body[:end], parse_constant=_reject_constant)
    except TensorError:
        raise
    except (ValueError, UnicodeDecodeError) as error:
        hint = ""
        if json_length is None and "Extra data" in str(error):
            hint = " (binary tensor data after the JSON needs Inference-Header-Content-Length)"
        raise TensorError(f"not valid JSON: {error}{hint}", field="body") from None
    if not isinstance(document, dict):
        raise TensorError("the request must be a JSON object", field="body")
    unknown = sorted(set(document) - {"id", "parameters", "inputs", "outputs", "model_name"})
    if unknown:
        raise TensorError(
            f"unknown field {unknown[0]!r}; an inference request has id, parameters, "
            "inputs and outputs",
            field=unknown[0],
        )
    request_id = document.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise TensorError("id must be a string", field="id")
    parameters = _parameters(document.get("parameters"), "parameters")
    inputs_json = document.get("inputs")
    if not isinstance(inputs_json, list) or not inputs_json:
        raise TensorError("inputs: required, a non-empty list of tensors", field="inputs")
    binary = memoryview(body)[end:]
    offset = 0
    inputs = []
    for index, item in enumerate(inputs_json):
        where = f"inputs[{index}]"
        if not isinstance(item, dict):
            raise TensorError(f"{where} must be an object", field=where)
        name, datatype, shape = _tensor_head(item, where)
        label = f"{where} ({name!r})"
        tensor_parameters = _parameters(item.get("parameters"), f"{where}.parameters")
        size = tensor_parameters.get("binary_data_size")
        if size is not None:
            if isinstance(size, bool) or not isinstance(size, int) or size < 0:
                raise TensorError(
                    f"{label}: binary_data_size must be a byte count",
                    field=f"{where}.parameters.binary_data_size",
                )
            if json_length is None:
                raise TensorError(
                    f"{label} has binary_data_size but the request has no "
                    "Inference-Header-Content-Length header",
                    field="inference-header-content-length",
                )
            if "data" in item:
                raise TensorError(f"{label} has both data and binary_data_size", field=where)
            if offset + size > len(binary):
                raise TensorError(
                    f"{label}: binary_data_size is {size} but only {len(binary) - offset} "
                    "bytes of binary data are left in the body (truncated?)",
                    field=f"{where}.parameters.binary_data_size",
                )
            raw = binary[offset : offset + size]
            offset += size
            tensor = tensor_from_bytes(name, datatype, shape, raw, where=label)
        elif "data" in item:
            tensor = tensor_from_json(name, datatype, shape, item["data"], where=label)
        else:
            raise TensorError(f"{label}: data is required", field=f"{where}.data")
        inputs.append(Tensor(name, datatype, tensor.data, tensor_parameters))
    if offset != len(binary):
        raise TensorError(
            f"the body has {len(binary)} bytes after the JSON header but the inputs' "
            f"binary_data_size add up to {offset}",
            field="inference-header-content-length",
        )
    return InferenceRequest(
        inputs=tuple(inputs),
        outputs=_requested_outputs(document.get("outputs")),
        id=request_id,
        parameters=parameters,
    )


def _parameters(value: Any, where: str) -> dict[str, Any]:
    """``$parameters``: an object of string, number and boolean values."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TensorError(f"{where} must be an object", field=where)
    for key, item in value.items():
        if not isinstance(item, str | int | float | bool):
            raise TensorError(
                f"{where}.{key} must be a string, number or boolean", field=f"{where}.{key}"
            )
    return value


def _tensor_head(item: Mapping[str, Any], where: str) -> tuple[str, str, list[int]]:
    name, datatype, shape = item.get("name"), item.get("datatype"), item.get("shape")
    if not isinstance(name, str) or not name:
        raise TensorError(f"{where}.name: required, a string", field=f"{where}.name")
    if not isinstance(datatype, str):
        raise TensorError(f"{where}.datatype: required, a string", field=f"{where}.datatype")
    if not isinstance(shape, list) or not all(
        isinstance(n, int) and not isinstance(n, bool) for n in shape
    ):
        raise TensorError(f"{where}.shape: required, a list of dimensions", field=f"{where}.shape")
    unknown = sorted(set(item) - {"name", "datatype", "shape", "parameters", "data"})
    if unknown:
        raise TensorError(f"{where}: unknown field {unknown[0]!r}", field=f"{where}.{unknown[0]}")
    return name, datatype, shape


def _requested_outputs(value: Any) -> tuple[RequestedOutput, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise TensorError("outputs must be a list", field="outputs")
    outputs = []
    for index, item in enumerate(value):
        where = f"outputs[{index}]"
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise TensorError(f"{where}: an object with a name", field=where)
        parameters = _parameters(item.get("parameters"), f"{where}.parameters")
        binary = parameters.get("binary_data")
        if binary is not None and not isinstance(binary, bool):
            raise TensorError(
                f"{where}.parameters.binary_data must be true or false",
                field=f"{where}.parameters.binary_data",
            )
        outputs.append(RequestedOutput(item["name"], binary))
    return tuple(outputs)


def _check_head(name: str, datatype: str, shape: Sequence[int], where: str) -> int:
    """The element count of a valid (datatype, shape)."""
    if datatype not in DATATYPES:
        raise TensorError(
            f"{where}: unknown datatype {datatype[:40]!r}; one of {', '.join(DATATYPES)}",
            field=f"{where}.datatype",
        )
    if any(n < 0 for n in shape):
        raise TensorError(
            f"{where}: shape {list(shape)} has a negative dimension", field=f"{where}.shape"
        )
    return math.prod(shape)


def tensor_from_json(
    name: str, datatype: str, shape: Sequence[int], data: Any, *, where: str | None = None
) -> Tensor:
    """A tensor from JSON ``data``: row-major, flat or nested exactly as ``shape``.

    Numbers must fit the datatype (integers: whole numbers within its range; FP16 and FP32:
    within its range); BOOL takes true/false, BYTES takes strings (sent as their UTF-8).

    >>> tensor_from_json("x", "FP32", [1, 2], [0.5, 1]).data
    array([[0.5, 1. ]], dtype=float32)
    >>> tensor_from_json("x", "INT64", [2, 2], [1, 2, 3])
    Traceback (most recent call last):
    ...
    serve_app.ingress.oip_codec.TensorError: input 'x': data has 3 elements but shape \
[2, 2] needs 4
    """
    where = where or f"input {name!r}"
    count = _check_head(name, datatype, shape, where)
    if not isinstance(data, list):
        raise TensorError(f"{where}: data must be a list", field=f"{where}.data")
    if datatype == "BYTES":
        flat = _flatten_strings(data, where)
        array = np.empty(len(flat), dtype=object)
        array[:] = flat
        return _shaped(name, datatype, shape, array, count, where)
    try:
        values = np.asarray(data)
    except (ValueError, TypeError, OverflowError):
        raise TensorError(
            f"{where}: data is not a regular (rectangular) array of numbers",
            field=f"{where}.data",
        ) from None
    if values.ndim > 1 and list(values.shape) != list(shape):
        raise TensorError(
            f"{where}: data is nested as {list(values.shape)} but shape is {list(shape)}",
            field=f"{where}.data",
        )
    if DATATYPES[datatype].kind in "iu" and values.dtype.kind in "fO":
        # numpy turns integers beyond int64 into floats (rounded): read them exactly
        values = np.asarray(data, dtype=object)
    return tensor_from_values(name, datatype, shape, values.reshape(-1), where=where)


def _flatten_strings(data: list[Any], where: str) -> list[bytes]:
    flat: list[bytes] = []
    stack: list[Iterable[Any]] = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            if not isinstance(item, str):
                raise TensorError(
                    f"{where}: BYTES data must be strings, got {type(item).__name__}",
                    field=f"{where}.data",
                )
            flat.append(item.encode())
        else:
            stack.pop()
    return flat


def tensor_from_values(
    name: str, datatype: str, shape: Sequence[int], values: Any, *, where: str | None = None
) -> Tensor:
    """A tensor from a flat sequence of elements (checked against the datatype's range).

    >>> tensor_from_values("x", "BOOL", [3], [True, False, True]).data
    array([ True, False,  True])
    >>> tensor_from_values("x", "INT8", [1], [2.5])
    Traceback (most recent call last):
    ...
    serve_app.ingress.oip_codec.TensorError: input 'x': INT8 data must be whole numbers, \
got 2.5
    """
    where = where or f"input {name!r}"
    count = _check_head(name, datatype, shape, where)
    if datatype == "BYTES":
        array = np.empty(len(values), dtype=object)
        array[:] = [bytes(v) if not isinstance(v, str) else v.encode() for v in values]
        return _shaped(name, datatype, shape, array, count, where)
    array = np.asarray(values).reshape(-1)
    if DATATYPES[datatype].kind in "iu" and array.dtype.kind == "f" and array.size:
        array = np.asarray(values, dtype=object).reshape(-1)  # exact integers (see above)
    if array.size != count:
        return _shaped(name, datatype, shape, array, count, where)  # raises: wrong count
    if array.size == 0:
        return _shaped(name, datatype, shape, array.astype(DATATYPES[datatype]), count, where)
    target = DATATYPES[datatype]
    kind = array.dtype.kind
    if datatype == "BOOL":
        if kind != "b":
            raise TensorError(f"{where}: BOOL data must be true or false", field=f"{where}.data")
        return _shaped(name, datatype, shape, array, count, where)
    if kind == "O" and target.kind in "iu":
        return _shaped(name, datatype, shape, _exact_integers(array, datatype, where), count, where)
    if kind not in "biuf":
        what = "strings" if kind in "US" else "values of mixed or unsupported types"
        raise TensorError(
            f"{where}: {datatype} data must be numbers, got {what}", field=f"{where}.data"
        )
    if target.kind in "iu":
        if kind == "f":
            whole = np.isfinite(array) & (array == np.floor(array))
            if not whole.all():
                bad = array[~whole][0]
                raise TensorError(
                    f"{where}: {datatype} data must be whole numbers, got {bad:g}",
                    field=f"{where}.data",
                )
        info = np.iinfo(target)
        low, high = int(array.min()), int(array.max())
        if low < info.min or high > info.max:
            bad = low if low < info.min else high
            raise TensorError(
                f"{where}: {bad} is outside the {datatype} range {info.min}..{info.max}",
                field=f"{where}.data",
            )
    elif target.itemsize < 8 and kind in "iuf":
        limit = float(np.finfo(target).max)
        finite = array[np.isfinite(array)] if kind == "f" else array
        peak = float(np.abs(finite.astype(np.float64)).max()) if finite.size else 0.0
        if peak > limit:
            raise TensorError(
                f"{where}: {peak:g} is outside the {datatype} range (+-{limit:g})",
                field=f"{where}.data",
            )
    return _shaped(name, datatype, shape, array.astype(target), count, where)


def _exact_integers(items: np.ndarray, datatype: str, where: str) -> np.ndarray:
    """Python numbers as ``datatype`` without a detour through float64."""
    values = []
    for item in items.tolist():
        if isinstance(item, float) and item.is_integer():
            item = int(item)
        if not isinstance(item, int):
            shown = f"{item:g}" if isinstance(item, float) else type(item).__name__
            raise TensorError(
                f"{where}: {datatype} data must be whole numbers, got {shown}",
                field=f"{where}.data",
            )
        values.append(item)
    info = np.iinfo(DATATYPES[datatype])
    for bad in (min(values), max(values)):
        if not info.min <= bad <= info.max:
            raise TensorError(
                f"{where}: {bad} is outside the {datatype} range {info.min}..{info.max}",
                field=f"{where}.data",
            )
    return np.array(values, dtype=DATATYPES[datatype])


def _shaped(
    name: str, datatype: str, shape: Sequence[int], flat: np.ndarray, count: int, where: str
) -> Tensor:
    if flat.size != count:
        raise TensorError(
            f"{where}: data has {flat.size} elements but shape {list(shape)} needs {count}",
            field=f"{where}.shape",
        )
    return Tensor(name, datatype, flat.reshape(tuple(shape)))


def tensor_from_bytes(
    name: str,
    datatype: str,
    shape: Sequence[int],
    raw: bytes | memoryview,
    *,
    where: str | None = None,
) -> Tensor:
    """A tensor from its binary form (the binary extension's, gRPC's raw contents).

    >>> tensor_from_bytes("s", "BYTES", [2], b"\\x02\\x00\\x00\\x00hi\\x00\\x00\\x00\\x00").data
    array([b'hi', b''], dtype=object)
    >>> tensor_from_bytes("x", "INT32", [2], b"\\x01\\x00\\x00\\x00")
    Traceback (most recent call last):
    ...
    serve_app.ingress.oip_codec.TensorError: input 'x': shape [2] of INT32 needs 8 bytes, \
got 4
    """
    where = where or f"input {name!r}"
    count = _check_head(name, datatype, shape, where)
    raw = memoryview(raw).cast("B")
    if datatype == "BYTES":
        return _shaped(name, datatype, shape, _bytes_elements(raw, count, where), count, where)
    target = DATATYPES[datatype]
    if len(raw) != count * target.itemsize:
        raise TensorError(
            f"{where}: shape {list(shape)} of {datatype} needs {count * target.itemsize} "
            f"bytes, got {len(raw)}",
            field=f"{where}.parameters.binary_data_size",
        )
    if datatype == "BOOL":
        octets = np.frombuffer(raw, dtype=np.uint8)
        if octets.size and octets.max() > 1:
            raise TensorError(
                f"{where}: BOOL elements must be the bytes 0 or 1", field=f"{where}.data"
            )
        return _shaped(name, datatype, shape, octets.view(np.bool_), count, where)
    return _shaped(name, datatype, shape, np.frombuffer(raw, dtype=target), count, where)


def _bytes_elements(raw: memoryview, count: int, where: str) -> np.ndarray:
    """BYTES elements: each a 4-byte little-endian length, then that many bytes."""
    elements: list[bytes] = []
    offset = 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise TensorError(
                f"{where}: BYTES element {len(elements)} is truncated (its length prefix)",
                field=f"{where}.data",
            )
        (length,) = _LENGTH.unpack_from(raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise TensorError(
                f"{where}: BYTES element {len(elements)} says {length} bytes but "
                f"{len(raw) - offset} are left (truncated?)",
                field=f"{where}.data",
            )
        elements.append(bytes(raw[offset : offset + length]))
        offset += length
        if len(elements) > count:
            break
    array = np.empty(len(elements), dtype=object)
    array[:] = elements
    return array


# --------------------------------------------------------------------------- encoding


def tensor_bytes(data: np.ndarray, datatype: str | None = None) -> bytes:
    """The binary form of a tensor (little-endian, row-major; BYTES length-prefixed).

    >>> tensor_bytes(np.array([1, 2], dtype=np.int16))
    b'\\x01\\x00\\x02\\x00'
    >>> tensor_bytes(np.array([b"ab"], dtype=object), "BYTES")
    b'\\x02\\x00\\x00\\x00ab'
    """
    datatype = datatype or datatype_of(data.dtype)
    if datatype == "BYTES":
        parts = []
        for item in data.reshape(-1):
            value = item if isinstance(item, bytes) else str(item).encode()
            parts.append(_LENGTH.pack(len(value)))
            parts.append(value)
        return b"".join(parts)
    return np.ascontiguousarray(data, dtype=DATATYPES[datatype]).tobytes()


def _json_data(tensor: Tensor) -> list[Any]:
    flat = tensor.data.reshape(-1)
    if tensor.datatype == "BYTES":
        return [v.decode(errors="replace") if isinstance(v, bytes) else str(v) for v in flat]
    return flat.tolist()  # type: ignore[no-any-return]


def prediction_tensor(name: str, predictions: Sequence[Any], datatype: str | None) -> Tensor:
    """The predictions of one request (one per row) as an output tensor.

    Numeric predictions take ``datatype`` (the output's datatype in the model metadata) when
    every value survives the cast unchanged, else their own type (bool BOOL, int INT64, float
    FP64); strings are BYTES; anything else (dicts, ragged lists, None) is BYTES holding each
    row's JSON.

    >>> prediction_tensor("y", [3, 1], "INT64").data
    array([3, 1])
    >>> prediction_tensor("y", [3, 1], "FP64").datatype
    'FP64'
    >>> prediction_tensor("y", [0.5, 1.0], "INT64").datatype
    'FP64'
    >>> prediction_tensor("y", ["cat", "dog"], None).data
    array([b'cat', b'dog'], dtype=object)
    """
    try:
        array = np.asarray(predictions)
    except (ValueError, TypeError, OverflowError):
        array = np.asarray([None])  # ragged: JSON rows below
    if array.dtype.kind in "biuf" and array.ndim >= 1:
        target = DATATYPES.get(datatype or "")
        if target is not None and target.kind in "biuf" and target != array.dtype:
            with np.errstate(all="ignore"):
                cast = array.astype(target)
            # floats may round to a narrower float (what the signature says the model gives);
            # anything else must survive the cast unchanged
            rounded = target.kind == "f" and array.dtype.kind == "f"
            fits = np.array_equal(np.isfinite(cast), np.isfinite(array)) if rounded else False
            if fits or np.array_equal(cast, array):
                return Tensor(name, str(datatype), cast)
        natural = datatype_of(array.dtype)
        return Tensor(name, natural, array.astype(DATATYPES[natural], copy=False))
    if array.dtype.kind in "US" and array.ndim >= 1:
        encoded = np.empty(array.shape, dtype=object)
        encoded.reshape(-1)[:] = [str(v).encode() for v in array.reshape(-1)]
        return Tensor(name, "BYTES", encoded)
    rows = np.empty(len(predictions), dtype=object)
    rows[:] = [json.dumps(row, default=str).encode() for row in predictions]
    return Tensor(name, "BYTES", rows)


def encode_response(
    document: dict[str, Any], outputs: Sequence[Tensor], binary: Sequence[bool]
) -> tuple[bytes, int | None]:
    """The response body: ``document`` (model_name, id, parameters, ...) with ``outputs``,
    those marked ``binary`` as binary data after the JSON.

    Returns:
        The body, and the JSON part's length when binary data follows (the value of the
        ``Inference-Header-Content-Length`` header), else None.

    >>> body, length = encode_response(
    ...     {"model_name": "m"}, [Tensor("y", "INT32", np.array([7], dtype=np.int32))], [True])
    >>> body[:length]
    b'{"model_name":"m","outputs":[{"name":"y","datatype":"INT32","shape":[1],\
"parameters":{"binary_data_size":4}}]}'
    >>> body[length:]
    b'\\x07\\x00\\x00\\x00'
    """
    described, blobs = [], []
    for tensor, as_binary in zip(outputs, binary, strict=True):
        entry: dict[str, Any] = {
            "name": tensor.name,
            "datatype": tensor.datatype,
            "shape": tensor.shape,
        }
        if as_binary:
            blob = tensor_bytes(tensor.data, tensor.datatype)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = _json_data(tensor)
        described.append(entry)
    header = json.dumps({**document, "outputs": described}, separators=(",", ":")).encode()
    if not blobs:
        return header, None
    return header + b"".join(blobs), len(header)
