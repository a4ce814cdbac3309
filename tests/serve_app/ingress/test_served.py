"""The /predict body the router encodes itself matches the documented response model."""

import dataclasses
import json

from serve_app.ingress.router import Served
from serve_app.ingress.schemas import PredictResponse


def served(**changes):
    values = {
        "predictions": [3, 0.5, "cat", [1, 2]],
        "arm": "forest",
        "decision_id": "v1.abc.def",
        "propensity": 0.25,
        "experiment": "main",
        "fallback": False,
        "forced": True,
        "model_version": "7",
    }
    return Served(**{**values, **changes})


def test_the_encoded_body_has_exactly_the_response_models_fields():
    assert {f.name for f in dataclasses.fields(Served)} == set(PredictResponse.model_fields)
    body = json.loads(served().json())
    assert PredictResponse.model_validate(body).model_dump() == body


def test_the_body_is_compact_utf8_json_and_a_missing_version_is_null():
    raw = served(experiment="été", model_version=None).json()
    assert b" " not in raw.replace("été".encode(), b"")
    assert "été".encode() in raw
    assert json.loads(raw)["model_version"] is None


def test_a_non_finite_prediction_is_null_as_the_response_model_writes_it():
    raw = served(predictions=[float("nan"), float("inf"), 1.5]).json()
    assert json.loads(raw)["predictions"] == [None, None, 1.5]
    assert (
        raw
        == PredictResponse(
            **dataclasses.asdict(served(predictions=[float("nan"), float("inf"), 1.5]))
        )
        .model_dump_json()
        .encode()
    )
