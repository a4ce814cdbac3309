"""Model URIs, parsed in one place for every MLflow caller."""

from __future__ import annotations

import pytest

from serve_app.models.uris import ModelUri, parse_model_uri, registry_version


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("models:/a/12", ModelUri("registered", "models:/a/12", name="a", version="12")),
        (
            "models:/a@champion",
            ModelUri("registered", "models:/a@champion", name="a", alias="champion"),
        ),
        (
            "models:/a/latest",
            ModelUri("registered", "models:/a/latest", name="a", selector="latest"),
        ),
        (
            "models:/a/Production",
            ModelUri("registered", "models:/a/Production", name="a", selector="Production"),
        ),
        ("models:/m-123", ModelUri("logged", "models:/m-123", selector="m-123")),
        ("runs:/r1/model", ModelUri("run", "runs:/r1/model", run_id="r1", path="model")),
        ("runs:/r1", ModelUri("run", "runs:/r1", run_id="r1")),
        ("/tmp/m", ModelUri("path", "/tmp/m", path="/tmp/m")),
        ("file:///tmp/m%20x", ModelUri("path", "file:///tmp/m%20x", path="/tmp/m x")),
        ("s3://bucket/m", ModelUri("other", "s3://bucket/m")),
    ],
)
def test_every_uri_form_parses(uri, expected):
    assert parse_model_uri(uri) == expected


def test_registry_version_and_alias_following():
    assert registry_version("models:/a/12") == ("a", "12")
    for uri in ("models:/a/Production", "models:/a@champion", "runs:/x/model", "/tmp/m", None):
        assert registry_version(uri) is None
    assert parse_model_uri("models:/a@champion").follows_alias
    assert parse_model_uri("models:/a/latest").follows_alias
    assert not parse_model_uri("models:/a/3").follows_alias
