"""An invalid config or a missing model fails at startup with a message naming the path."""

from __future__ import annotations

import copy

import pytest

from serve_app.app import build_app
from serve_app.errors import ConfigError

from .conftest import e2e_args


def test_missing_model_is_named(demo_store, tmp_path):
    args = copy.deepcopy(e2e_args(demo_store, str(tmp_path)))
    args["experiments"][0]["arms"][1]["model_uri"] = "models:/digits-forest/7"
    args["experiments"][1]["arms"][0]["model_uri"] = str(tmp_path / "no-such-model")
    with pytest.raises(ConfigError) as caught:
        build_app(args)
    message = str(caught.value)
    assert "experiments[0].arms[1].model_uri:" in message
    assert "digits-forest" in message
    assert "7" in message
    assert "experiments[1].arms[0].model_uri:" in message


def test_invalid_config_fails_before_anything_starts(demo_store, tmp_path):
    args = copy.deepcopy(e2e_args(demo_store, str(tmp_path)))
    args["experiments"][2]["arms"][0]["weight"] = 0.9  # "split"
    with pytest.raises(ConfigError, match=r"experiments\[2\]: arm weights must add up to 1"):
        build_app(args)


def test_n_features_is_inferred_from_the_signature(demo_store, tmp_path):
    from serve_app.app import check_models
    from serve_app.config import parse_config

    config = check_models(parse_config(e2e_args(demo_store, str(tmp_path))))
    assert {e.n_features for e in config.experiments} == {64}
