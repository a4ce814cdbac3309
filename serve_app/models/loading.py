"""Loading any MLflow model for serving, and what the serving side needs to know about it.

- :func:`load_model`: a pyfunc model from any URI of :mod:`serve_app.models.uris`;
- :func:`predict_labels`: predictions as plain, JSON-serialisable Python values;
- :func:`model_exists`: does a URI resolve (a one-line reason when not), without loading;
- :func:`input_signature`: features per row and input dtype from the model's signature.

Every function sets MLflow's tracking and registry URIs only for its own duration.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pyfunc
import numpy as np
from mlflow.exceptions import MlflowException

from serve_app.models.registry import client_for, mlflow_uris, no_progress_bars, resolve_version
from serve_app.models.uris import ModelUri, first_line, parse_model_uri

__all__ = ["InputSignature", "input_signature", "load_model", "model_exists", "predict_labels"]


def load_model(uri: str, tracking_uri: str | None = None) -> mlflow.pyfunc.PyFuncModel:
    """Load any MLflow model as a pyfunc model.

    Args:
        uri: An MLflow model URI: ``models:/name/1``, ``models:/name@alias``,
            ``runs:/<run id>/model``, or a local path (plain or ``file://``).
        tracking_uri: Tracking and registry URI used to resolve ``models:/`` and
            ``runs:/`` URIs; None uses MLflow's current configuration.
    """
    with mlflow_uris(tracking_uri), no_progress_bars():
        return mlflow.pyfunc.load_model(uri)


def predict_labels(model: Any, features: np.ndarray) -> list[Any]:
    """Predict and return plain, JSON-serialisable Python values.

    If the model's signature is a tensor spec, ``features`` are cast to its dtype first
    (so integer pixel lists work against a float64 model).

    Returns:
        One prediction per row: a Python list of ints, floats, strings or nested lists.
    """
    features = np.asarray(features)
    dtype = _tensor_input_dtype(model)
    if dtype is not None and features.dtype != dtype:
        features = features.astype(dtype)
    return _to_python_list(model.predict(features))


def _tensor_input_dtype(model: Any) -> np.dtype | None:
    """The numpy dtype of a single-tensor input signature, else None."""
    metadata = getattr(model, "metadata", None)
    if metadata is None:
        return None
    try:
        schema = metadata.get_input_schema()
        if schema is None or not schema.is_tensor_spec() or len(schema.inputs) != 1:
            return None
        return np.dtype(schema.numpy_types()[0])
    except (AttributeError, TypeError, MlflowException):
        return None


def _to_python_list(output: Any) -> list[Any]:
    """Convert model output (ndarray, Series, DataFrame, list, tensor) to a plain list."""
    if hasattr(output, "columns") and hasattr(output, "to_numpy"):  # DataFrame
        if len(output.columns) == 1:
            output = output.iloc[:, 0]
        else:
            return [_to_python(row) for row in output.to_numpy(dtype=object)]
    if hasattr(output, "to_numpy"):  # Series
        output = output.to_numpy()
    if hasattr(output, "detach"):  # torch tensor
        output = output.detach().cpu().numpy()
    if isinstance(output, np.ndarray):
        output = list(output) if output.dtype == object else output.tolist()
    if isinstance(output, Mapping):
        return [_to_python(output)]
    if isinstance(output, list | tuple):
        return [_to_python(item) for item in output]
    return [_to_python(output)]


def _to_python(value: Any) -> Any:
    """Recursively turn numpy scalars and arrays into Python builtins."""
    if isinstance(value, np.ndarray):
        return [_to_python(item) for item in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {str(k): _to_python(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_python(item) for item in value]
    return value


# --------------------------------------------------------------------------- existence check


def model_exists(uri: str, tracking_uri: str | None) -> str | None:
    """Check that a model URI resolves, without loading the model.

    Returns:
        None if the model exists, else a one-line message saying what is missing.
        Never raises for a missing model.
    """
    where = tracking_uri if tracking_uri is not None else mlflow.get_tracking_uri()
    try:
        with mlflow_uris(tracking_uri), no_progress_bars():
            return _model_missing(parse_model_uri(uri), tracking_uri, where)
    except Exception as exc:  # a broken store must not crash app startup with a traceback
        return f"cannot check model {uri!r} in {where}: {first_line(exc)}"


def _model_missing(uri: ModelUri, tracking_uri: str | None, where: str) -> str | None:
    if uri.kind == "path":
        path = Path(uri.path or "")
        if not path.exists():
            return f"model path {str(path)!r} does not exist"
        if not (path / "MLmodel").is_file():
            return f"model path {str(path)!r} has no MLmodel file"
        return None
    client = client_for(tracking_uri)
    if uri.kind == "registered":
        try:
            client.get_registered_model(uri.name)
        except MlflowException:
            return f"registered model {uri.name!r} does not exist in {where}"
        if uri.selector is not None and uri.selector.lower() != "latest":
            return _generic_missing(uri.raw)  # a stage name such as "Production"
        try:
            resolve_version(client, uri)
        except MlflowException:
            if uri.alias is not None:
                return f"registered model {uri.name!r} has no alias {uri.alias!r} in {where}"
            if uri.version is not None:
                return f"registered model {uri.name!r} has no version {uri.version} in {where}"
            return f"registered model {uri.name!r} has no versions in {where}"
        return None
    if uri.kind == "logged":
        try:
            client.get_logged_model(uri.selector)
        except MlflowException:
            return f"logged model {uri.selector!r} does not exist in {where}"
        return None
    if uri.kind == "run":
        try:
            client.get_run(uri.run_id)
        except MlflowException:
            return f"run {uri.run_id!r} does not exist in {where}"
        return _generic_missing(uri.raw) if uri.path else None
    return _generic_missing(uri.raw)


def _generic_missing(uri: str) -> str | None:
    """Fallback: ask MLflow to read the model's MLmodel file."""
    from mlflow.models import get_model_info

    try:
        get_model_info(uri)
    except Exception as exc:
        return f"cannot resolve model {uri!r}: {first_line(exc)}"
    return None


# --------------------------------------------------------------------------- signature


@dataclass(frozen=True)
class InputSignature:
    """What a model's MLflow signature says about its input (None: it does not say)."""

    n_features: int | None
    dtype: str | None


def input_signature(uri: str, tracking_uri: str | None) -> InputSignature:
    """Features per row and the input dtype (``float64``, ``int64``, ...) of a model, from
    its signature: a single 2-D tensor spec, or a column schema of numeric columns."""
    from mlflow.models import get_model_info

    try:
        with mlflow_uris(tracking_uri), no_progress_bars():
            signature = get_model_info(uri).signature
    except Exception:
        return InputSignature(None, None)
    if signature is None or signature.inputs is None:
        return InputSignature(None, None)
    schema = signature.inputs
    try:
        types = [np.dtype(t).name for t in schema.numpy_types()]
    except Exception:
        types = []
    if schema.is_tensor_spec():
        shape = schema.inputs[0].shape
        width = int(shape[-1]) if len(shape) == 2 and shape[-1] > 0 else None
        return InputSignature(width, types[0] if types else None)
    return InputSignature(len(schema.inputs), _common_dtype(types))


def _common_dtype(types: list[str]) -> str | None:
    """One dtype every column's values must fit: theirs when they agree, else the narrowest
    float among them (None when they are not numeric)."""
    if types and len(set(types)) == 1 and np.dtype(types[0]).kind in "fiu":
        return types[0]
    floats = [t for t in types if np.dtype(t).kind == "f"]
    return min(floats, key=lambda t: np.dtype(t).itemsize) if floats else None
