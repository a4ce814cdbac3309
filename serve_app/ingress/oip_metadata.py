"""Model metadata of the Open Inference Protocol: an experiment's tensors, from its arms'
MLflow signatures.

To a v2 client an experiment is one model: its name is the experiment's, its ``versions``
are the arms (``/v2/models/{experiment}/versions/{arm}/infer`` forces one), and it has one
input and one output:

- the input is the 2-D batch of feature rows every arm takes, ``[-1, n_features]``, of the
  experiment's ``feature_dtype`` (both filled from the signatures at startup, or set in the
  config); its name is the signature's tensor name when the arms name it alike, else
  ``input-0``. A column-based signature (a DataFrame of ``n`` columns) is the same
  ``[-1, n]`` tensor, columns in signature order;
- the output is the predictions, one per row: the signature's output tensor (``[-1]`` for one
  label per row), named as the signature names it, else ``output-0``;
- arms without a signature say nothing: the input is FP64 (or ``feature_dtype``)
  ``[-1, n_features]`` (``-1`` when the config does not give ``n_features`` either), and the
  output is ``output-0``, FP64 ``[-1]``. Responses then carry numeric predictions as FP64 and
  strings as BYTES.

Arms that have signatures must agree on the datatypes and shapes of both (names do not
matter): :func:`disagreement` says which arms differ, and the app refuses to start on it
(:func:`serve_app.app.check_models`).

Example:
    >>> from mlflow.models import infer_signature
    >>> signature = infer_signature(np.zeros((2, 64)), np.zeros(2, dtype=np.int64))
    >>> print(from_signature(signature).describe())
    input-0 FP64 [-1, 64] -> output-0 INT64 [-1]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from serve_app.config import ExperimentConfig
from serve_app.ingress.oip_codec import datatype_of

__all__ = [
    "DEFAULT_INPUT",
    "DEFAULT_OUTPUT",
    "PLATFORM",
    "ModelTensors",
    "TensorSpec",
    "disagreement",
    "experiment_tensors",
    "from_signature",
    "metadata_document",
    "read_tensors",
]

DEFAULT_INPUT = "input-0"
DEFAULT_OUTPUT = "output-0"
PLATFORM = "mlflow_pyfunc"
"""Every arm is an MLflow model served through its pyfunc flavour."""


@dataclass(frozen=True)
class TensorSpec:
    """A tensor's metadata: ``-1`` marks a dimension of variable size."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def describe(self) -> str:
        return f"{self.name} {self.datatype} {list(self.shape)}"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclass(frozen=True)
class ModelTensors:
    """A model's inputs and outputs."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def describe(self) -> str:
        shown = ", ".join(spec.describe() for spec in self.inputs) or "(no inputs)"
        return f"{shown} -> " + (", ".join(s.describe() for s in self.outputs) or "(nothing)")

    @property
    def layout(self) -> tuple[tuple[tuple[str, tuple[int, ...]], ...], ...]:
        """Datatypes and shapes, without names: what arms must agree on."""
        return tuple(
            tuple((spec.datatype, spec.shape) for spec in group)
            for group in (self.inputs, self.outputs)
        )


def _common_datatype(dtypes: Sequence[np.dtype]) -> str:
    """One datatype for a row of columns: theirs when they agree; mixed numbers the
    narrowest float among them (as ``feature_dtype`` is inferred), else the widest integer;
    anything not numeric BYTES."""
    names = {datatype_of(dtype) for dtype in dtypes}
    if len(names) == 1:
        return names.pop()
    if not dtypes or any(dtype.kind not in "biuf" for dtype in dtypes):
        return "BYTES"
    floats = [dtype for dtype in dtypes if dtype.kind == "f"]
    if floats:
        return datatype_of(min(floats, key=lambda dtype: dtype.itemsize))
    return datatype_of(max(dtypes, key=lambda dtype: dtype.itemsize))


def _schema_tensors(schema: Any, default: str, *, rows: bool) -> tuple[TensorSpec, ...]:
    """The tensors of an MLflow ``Schema``. A column schema is one tensor: ``[-1, n]`` for
    inputs (``rows``), ``[-1]`` for a one-column output."""
    try:
        dtypes = [np.dtype(t) for t in schema.numpy_types()]
    except Exception:
        dtypes = []
    specs = list(schema.inputs)
    if schema.is_tensor_spec():
        return tuple(
            TensorSpec(
                spec.name or (default if len(specs) == 1 else f"{default[:-2]}-{index}"),
                datatype_of(spec.type),
                tuple(int(n) for n in spec.shape),
            )
            for index, spec in enumerate(specs)
        )
    datatype = _common_datatype(dtypes)
    if rows or len(specs) > 1:
        return (TensorSpec(default, datatype, (-1, len(specs))),)
    return (TensorSpec(specs[0].name or default, datatype, (-1,)),)


def from_signature(signature: Any) -> ModelTensors | None:
    """The tensors an MLflow ``ModelSignature`` describes (None when it has no inputs)."""
    if signature is None or signature.inputs is None:
        return None
    inputs = _schema_tensors(signature.inputs, DEFAULT_INPUT, rows=True)
    outputs: tuple[TensorSpec, ...] = ()
    if signature.outputs is not None:
        outputs = _schema_tensors(signature.outputs, DEFAULT_OUTPUT, rows=False)
    return ModelTensors(inputs, outputs)


def read_tensors(uri: str, tracking_uri: str | None) -> ModelTensors | None:
    """The tensors of a model's signature, read from MLflow without loading the model
    (None when the model has no signature or cannot be read)."""
    from mlflow.models import get_model_info

    from serve_app.models.loading import mlflow_uris, no_progress_bars

    try:
        with mlflow_uris(tracking_uri), no_progress_bars():
            return from_signature(get_model_info(uri).signature)
    except Exception:
        return None


def disagreement(tensors: Mapping[str, ModelTensors | None]) -> str | None:
    """Which arms' signatures differ in datatypes or shapes (arms without one agree with
    any), or None when they all agree.

    >>> a = ModelTensors((TensorSpec("x", "FP64", (-1, 4)),), (TensorSpec("y", "INT64", (-1,)),))
    >>> b = ModelTensors((TensorSpec("x", "FP32", (-1, 4)),), (TensorSpec("y", "INT64", (-1,)),))
    >>> print(disagreement({"logreg": a, "forest": a, "mlp": b, "code": None}))
    logreg, forest take x FP64 [-1, 4] -> y INT64 [-1]; mlp takes x FP32 [-1, 4] -> y INT64 [-1]
    >>> disagreement({"logreg": a, "forest": a, "code": None}) is None
    True
    """
    groups: dict[Any, list[str]] = {}
    shown: dict[Any, ModelTensors] = {}
    for arm, found in tensors.items():
        if found is not None:
            groups.setdefault(found.layout, []).append(arm)
            shown.setdefault(found.layout, found)
    if len(groups) <= 1:
        return None
    return "; ".join(
        f"{', '.join(arms)} {'take' if len(arms) > 1 else 'takes'} {shown[layout].describe()}"
        for layout, arms in groups.items()
    )


def _one_name(specs: Sequence[TensorSpec], default: str) -> str:
    names = {spec.name for spec in specs}
    return names.pop() if len(names) == 1 else default


def experiment_tensors(
    config: ExperimentConfig, tensors: Mapping[str, ModelTensors | None]
) -> ModelTensors:
    """What an experiment takes and gives, as the module docstring says: its arms'
    signatures, completed from the config (``n_features``, ``feature_dtype``).

    >>> from serve_app.config import ExperimentConfig
    >>> arms = [{"name": "a", "model_uri": "/m"}, {"name": "b", "model_uri": "/n"}]
    >>> config = ExperimentConfig.model_validate({"name": "e", "arms": arms, "n_features": 3})
    >>> print(experiment_tensors(config, {"a": None, "b": None}).describe())
    input-0 FP64 [-1, 3] -> output-0 FP64 [-1]
    """
    known = [found for found in tensors.values() if found is not None]
    inputs = [found.inputs[0] for found in known if len(found.inputs) == 1]
    outputs = [found.outputs[0] for found in known if len(found.outputs) == 1]
    if config.feature_dtype is not None:
        datatype = datatype_of(config.feature_dtype)
    else:
        datatype = inputs[0].datatype if inputs else "FP64"
    width = config.n_features
    if width is None and inputs and len(inputs[0].shape) == 2:
        width = inputs[0].shape[1]
    feature_row = TensorSpec(
        _one_name(inputs, DEFAULT_INPUT), datatype, (-1, width if width else -1)
    )
    if outputs:
        first = outputs[0]
        output = TensorSpec(_one_name(outputs, DEFAULT_OUTPUT), first.datatype, first.shape)
    else:
        output = TensorSpec(DEFAULT_OUTPUT, "FP64", (-1,))
    return ModelTensors((feature_row,), (output,))


def metadata_document(
    config: ExperimentConfig, tensors: ModelTensors, arm: str | None = None
) -> dict[str, Any]:
    """The model metadata response of an experiment (or of one of its arms)."""
    return {
        "name": config.name,
        "versions": [arm] if arm is not None else list(config.arm_names),
        "platform": PLATFORM,
        "inputs": [spec.to_json() for spec in tensors.inputs],
        "outputs": [spec.to_json() for spec in tensors.outputs],
    }
