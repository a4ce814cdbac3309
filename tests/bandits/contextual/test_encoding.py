from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from bandits import PolicyConfigError
from bandits.contextual import (
    CategoricalField,
    ContextError,
    ContextSpec,
    FeatureColumns,
    HashedField,
    NumericField,
)
from bandits.contextual.encoding import hash_bucket

CONFIG = {
    "intercept": True,
    "fields": [
        {"name": "age", "type": "numeric", "mean": 40.0, "sd": 10.0},
        {"name": "device", "type": "categorical", "vocabulary": ["ios", "android"]},
        {
            "name": "plan",
            "type": "categorical",
            "vocabulary": ["free", 2, True],
            "unknown": "other",
        },
        {"name": "country", "type": "hashed", "buckets": 8, "required": False},
        {"type": "feature_columns", "indices": [3, 0], "mean": [1.0, 0.0], "sd": [2.0, 1.0]},
    ],
}


def test_columns_and_dim() -> None:
    spec = ContextSpec.from_dict(CONFIG)
    assert spec.columns == (
        "intercept", "age", "device=ios", "device=android", "plan=free", "plan=2", "plan=true",
        "plan=<other>", *(f"country#{i}" for i in range(8)), "features[3]", "features[0]",
    )  # fmt: skip
    assert spec.dim == len(spec.columns) == 18


def test_encode_exact_values() -> None:
    spec = ContextSpec.from_dict(CONFIG)
    x = spec.encode(
        {"age": 25, "device": "android", "plan": "gold", "country": "fr", "extra": [1]},
        features=[0.5, 9.0, 9.0, 5.0],
    )
    expected = np.zeros(18)
    expected[[0, 3, 7]] = 1.0  # intercept, device=android, plan=<other>
    expected[1] = -1.5  # (25 - 40) / 10
    expected[8 + hash_bucket("country", "fr", 8)] = 1.0
    expected[16:] = [(5.0 - 1.0) / 2.0, 0.5]
    np.testing.assert_array_equal(x, expected)


def test_categorical_canonical_values_and_unknown_modes() -> None:
    plan = CategoricalField("plan", ("free", 2, True))  # type: ignore[arg-type]
    assert plan.vocabulary == ("free", "2", "true")
    assert plan.index({"plan": 2}) == 1
    assert plan.index({"plan": "2"}) == 1
    assert plan.index({"plan": True}) == 2
    assert plan.index({"plan": "gold"}) is None
    strict = CategoricalField("plan", ("free",), unknown="error")
    with pytest.raises(ContextError, match=r"'plan' must be one of \[free\], got 'gold'"):
        strict.index({"plan": "gold"})
    with pytest.raises(ContextError, match="must be a string, integer or boolean"):
        plan.index({"plan": 2.5})


def test_hashing_is_stable_across_processes() -> None:
    code = (
        "from bandits.contextual.encoding import hash_bucket;"
        "print([hash_bucket('country', c, 1000) for c in ('fr', 'de', 'jp')])"
    )
    runs = {
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout
        for _ in range(2)
    }
    assert len(runs) == 1
    assert json.loads(runs.pop()) == [hash_bucket("country", c, 1000) for c in ("fr", "de", "jp")]


def test_hash_buckets_are_roughly_uniform() -> None:
    counts = np.bincount([hash_bucket("user", str(i), 10) for i in range(20_000)], minlength=10)
    assert counts.min() > 1800
    assert counts.max() < 2200


def test_optional_fields_encode_as_neutral_zeros() -> None:
    spec = ContextSpec(
        (
            NumericField("age", 40, 10, required=False),
            CategoricalField("device", ("ios",), required=False),
            HashedField("country", 2, required=False),
        )
    )
    assert spec.encode({}).tolist() == [1.0, 0.0, 0.0, 0.0, 0.0]
    assert spec.encode(None).tolist() == [1.0, 0.0, 0.0, 0.0, 0.0]


@pytest.mark.parametrize(
    ("context", "features", "fragment"),
    [
        ({"device": "ios"}, [0, 0, 0, 0], "'age' is missing"),
        ({"age": "old", "device": "ios"}, [0, 0, 0, 0], "'age' must be a number, got 'old'"),
        ({"age": True, "device": "ios"}, [0, 0, 0, 0], "'age' must be a number"),
        ({"age": float("nan"), "device": "ios"}, [0, 0, 0, 0], "'age' must be finite"),
        ({"age": 1, "device": None}, [0, 0, 0, 0], "'device' is missing"),
        ({"age": 1, "device": "ios"}, None, "no feature row was given"),
        ({"age": 1, "device": "ios"}, [0, 0], "need index 3 but the feature row has 2"),
        ({"age": 1, "device": "ios"}, [0, 0, 0, np.inf], "must be finite"),
        ({"age": 1, "device": "ios"}, [[0, 0, 0, 0]], "one list of numbers"),
        (["age"], [0, 0, 0, 0], "object of named fields"),
    ],
)
def test_request_errors_name_the_field(context: object, features: object, fragment: str) -> None:
    spec = ContextSpec.from_dict(
        {"fields": [CONFIG["fields"][0], CONFIG["fields"][1], CONFIG["fields"][4]]}  # type: ignore[index]
    )
    with pytest.raises(ContextError, match=fragment):
        spec.encode(context, features)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        ({"fields": [{"name": "a", "type": "text"}]}, "unknown type 'text'"),
        ({"fields": [{"name": "a"}]}, "must be a mapping with a 'type'"),
        ({"fields": [{"name": "a", "type": "numeric", "sd": 0}]}, r"sd must be in \(0, inf\)"),
        ({"fields": [{"name": "a", "type": "numeric", "scale": 2}]}, "unknown key.*'scale'"),
        ({"fields": [{"name": "a", "type": "categorical"}]}, "vocabulary"),
        ({"fields": [{"name": "a", "type": "categorical", "vocabulary": []}]}, "must not be empty"),
        (
            {"fields": [{"name": "a", "type": "categorical", "vocabulary": ["x", "x"]}]},
            "duplicate",
        ),
        (
            {"fields": [{"name": "a", "type": "categorical", "vocabulary": ["x"], "unknown": "?"}]},
            "unknown must be 'zeros', 'other' or 'error'",
        ),
        ({"fields": [{"name": "a", "type": "hashed", "buckets": 0}]}, "buckets must be an integer"),
        ({"fields": [{"type": "feature_columns", "indices": []}]}, "non-empty and unique"),
        ({"fields": [{"type": "feature_columns", "indices": [1], "sd": [1, 2]}]}, "one value per"),
        (
            {
                "fields": [
                    {"name": "a", "type": "numeric"},
                    {"name": "a", "type": "hashed", "buckets": 2},
                ]
            },
            r"repeated: \['a'\]",
        ),
        ({"fields": [], "intercept": False}, "at least one field or the intercept"),
        ({"fields": [], "scale": True}, "unknown context key"),
    ],
)
def test_config_errors(config: dict[str, object], fragment: str) -> None:
    with pytest.raises(PolicyConfigError, match=fragment):
        ContextSpec.from_dict(config)


def test_to_dict_round_trip_through_json() -> None:
    spec = ContextSpec.from_dict(CONFIG)
    again = ContextSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec
    columns = {"fields": [FeatureColumns((1,)).to_dict()]}
    assert ContextSpec.from_dict(columns).fields == (FeatureColumns((1,)),)


def test_encode_many_and_from_sample() -> None:
    spec = ContextSpec((NumericField.from_sample("x", [1.0, 3.0]), FeatureColumns((0,))))
    out = spec.encode_many([{"x": 2.0}, {"x": 3.0}], features=[[5.0], [6.0]])
    np.testing.assert_allclose(out, [[1.0, 0.0, 5.0], [1.0, 2**-0.5, 6.0]])
