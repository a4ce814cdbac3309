"""Open Inference model metadata from MLflow signatures, and the startup check that an
experiment's arms agree on it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from mlflow.models import infer_signature

from serve_app.config import ExperimentConfig
from serve_app.errors import ConfigError
from serve_app.ingress.oip_metadata import (
    ModelTensors,
    TensorSpec,
    disagreement,
    experiment_tensors,
    from_signature,
    metadata_document,
)

ROWS = np.zeros((3, 4))
LABELS = np.zeros(3, dtype=np.int64)


def experiment(**extra: Any) -> ExperimentConfig:
    arms = [{"name": "a", "model_uri": "/m/a"}, {"name": "b", "model_uri": "/m/b"}]
    return ExperimentConfig.model_validate({"name": "e", "arms": arms, **extra})


def tensors(inputs: str = "FP64", width: int = 4, output: str = "INT64", name: str = "input-0"):
    return ModelTensors(
        (TensorSpec(name, inputs, (-1, width)),), (TensorSpec("output-0", output, (-1,)),)
    )


def test_a_tensor_signature_is_one_row_input_and_one_label_output() -> None:
    found = from_signature(infer_signature(ROWS, LABELS))
    assert found == tensors()


def test_a_column_signature_is_one_tensor_of_its_columns() -> None:
    frame = pd.DataFrame({"x": [1.0], "y": [2.0], "z": [3.0]})
    found = from_signature(infer_signature(frame, pd.Series(["cat"], name="label")))
    assert found is not None
    assert found.inputs == (TensorSpec("input-0", "FP64", (-1, 3)),)
    assert found.outputs == (TensorSpec("label", "BYTES", (-1,)),)  # the column's name


def test_mixed_numeric_columns_take_the_narrowest_float() -> None:
    frame = pd.DataFrame({"x": np.array([1.0], dtype=np.float32), "n": [2.0]})
    found = from_signature(infer_signature(frame, LABELS[:1]))
    assert found is not None
    assert found.inputs[0].datatype == "FP32"


def test_named_tensors_keep_their_names() -> None:
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Schema
    from mlflow.types.schema import TensorSpec as MlflowTensor

    signature = ModelSignature(
        inputs=Schema([MlflowTensor(np.dtype("float32"), (-1, 8), "pixels")]),
        outputs=Schema([MlflowTensor(np.dtype("int32"), (-1,), "digit")]),
    )
    found = from_signature(signature)
    assert found == ModelTensors(
        (TensorSpec("pixels", "FP32", (-1, 8)),), (TensorSpec("digit", "INT32", (-1,)),)
    )
    config = experiment(n_features=8, feature_dtype="float32")
    assert experiment_tensors(config, {"a": found, "b": found}) == found
    renamed = ModelTensors((TensorSpec("x", "FP32", (-1, 8)),), found.outputs)
    mixed = experiment_tensors(config, {"a": found, "b": renamed})
    assert mixed.inputs[0].name == "input-0"  # the arms name it differently: the default


def test_without_signatures_the_config_says_what_it_can() -> None:
    assert experiment_tensors(experiment(), {"a": None, "b": None}) == ModelTensors(
        (TensorSpec("input-0", "FP64", (-1, -1)),), (TensorSpec("output-0", "FP64", (-1,)),)
    )
    config = experiment(n_features=10, feature_dtype="int64")
    described = experiment_tensors(config, {"a": None, "b": tensors(width=10)})
    assert described == tensors(inputs="INT64", width=10)


def test_disagreement_names_the_arms_that_differ_and_ignores_names() -> None:
    assert disagreement({"a": tensors(), "b": tensors(name="x"), "c": None}) is None
    assert disagreement({"a": None, "b": None}) is None
    message = disagreement({"a": tensors(), "b": tensors(output="FP32"), "c": tensors()})
    assert message == (
        "a, c take input-0 FP64 [-1, 4] -> output-0 INT64 [-1]; "
        "b takes input-0 FP64 [-1, 4] -> output-0 FP32 [-1]"
    )


def test_the_metadata_document_lists_the_arms_as_versions() -> None:
    document = metadata_document(experiment(), tensors())
    assert document == {
        "name": "e",
        "versions": ["a", "b"],
        "platform": "mlflow_pyfunc",
        "inputs": [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}],
        "outputs": [{"name": "output-0", "datatype": "INT64", "shape": [-1]}],
    }
    assert metadata_document(experiment(), tensors(), "b")["versions"] == ["b"]


MODEL = """
import mlflow
import numpy as np


class Zeros(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return np.zeros(len(model_input), dtype=np.int64)


mlflow.models.set_model(Zeros())
"""


def saved_model(root: Path, name: str, rows: np.ndarray, outputs: np.ndarray) -> str:
    import mlflow

    source = root / f"{name}.py"
    source.write_text(MODEL)
    path = root / name
    mlflow.pyfunc.save_model(
        str(path),
        python_model=str(source),
        signature=infer_signature(rows, outputs),
        pip_requirements=["mlflow"],  # no requirement inference (a subprocess per model)
    )
    return str(path)


def test_the_app_refuses_arms_whose_signatures_disagree(tmp_path: Path) -> None:
    from serve_app.app import check_models
    from serve_app.config import parse_config

    uris = {
        "f64": saved_model(tmp_path, "f64", ROWS, LABELS),
        "f64-too": saved_model(tmp_path, "f64-too", ROWS, LABELS),
        "f32": saved_model(tmp_path, "f32", ROWS.astype(np.float32), LABELS),
        "floats-out": saved_model(tmp_path, "floats-out", ROWS, LABELS.astype(np.float64)),
    }

    def config(*names: str) -> Any:
        arms = [{"name": name.replace("-", ""), "model_uri": uris[name]} for name in names]
        return parse_config(
            {"data_dir": str(tmp_path / "data"), "experiments": [{"name": "e", "arms": arms}]}
        )

    checked = check_models(config("f64", "f64-too"))
    assert checked.experiments[0].n_features == 4
    with pytest.raises(ConfigError) as refused:
        check_models(config("f64", "f32", "floats-out"))
    message = str(refused.value)
    assert "must take the same input and give the same output" in message
    assert "experiments[0] (e): f64 takes input-0 FP64 [-1, 4] -> output-0 INT64 [-1]" in message
    assert "f32 takes input-0 FP32 [-1, 4]" in message
    assert "floatsout takes input-0 FP64 [-1, 4] -> output-0 FP64 [-1]" in message
