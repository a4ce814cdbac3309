"""MLflow model URIs, parsed once (pure: no MLflow import, so configs can use it).

Every URI this project serves is one of:

- ``models:/<name>/<version>``, ``models:/<name>@<alias>``, ``models:/<name>/latest`` or
  ``models:/<name>/<stage>``: a registered model version;
- ``models:/<logged model id>`` (MLflow 3);
- ``runs:/<run id>/<path>``;
- a local path (plain or ``file://``); anything else (``s3://...``) MLflow resolves itself.

Example:
    >>> parse_model_uri("models:/digits-forest@champion")
    ModelUri(kind='registered', raw='models:/digits-forest@champion', name='digits-forest', \
version=None, alias='champion', selector=None, run_id=None, path=None)
    >>> registry_version("models:/digits-forest/2"), registry_version("models:/x@champion")
    (('digits-forest', '2'), None)
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote, urlparse

Kind = Literal["registered", "logged", "run", "path", "other"]


@dataclass(frozen=True)
class ModelUri:
    """The parts of a model URI (see the module docstring)."""

    kind: Kind
    raw: str
    name: str | None = None  # registered model name
    version: str | None = None
    alias: str | None = None
    selector: str | None = None  # "latest" or a stage name; the logged model id for "logged"
    run_id: str | None = None
    path: str | None = None  # artifact path inside the run, or the local path

    @property
    def follows_alias(self) -> bool:
        """Does the URI name a version indirectly (an alias or latest), so it can move?"""
        return self.kind == "registered" and (self.alias is not None or self.selector is not None)


@functools.lru_cache(maxsize=4096)
def parse_model_uri(uri: str) -> ModelUri:
    """Split a model URI into its parts; never raises. Cached: a pure function of the string
    with an immutable answer, asked on every prediction (which version answered)."""
    parsed = urlparse(uri)
    scheme = parsed.scheme
    if scheme == "models":
        body = uri[len("models:/") :].strip("/")
        if "@" in body:
            name, alias = body.rsplit("@", 1)
            return ModelUri("registered", uri, name=name, alias=alias)
        if "/" not in body:
            return ModelUri("logged", uri, selector=body)
        name, selector = body.rsplit("/", 1)
        if selector.isdigit():
            return ModelUri("registered", uri, name=name, version=selector)
        return ModelUri("registered", uri, name=name, selector=selector)
    if scheme == "runs":
        run_id, _, path = uri[len("runs:/") :].strip("/").partition("/")
        return ModelUri("run", uri, run_id=run_id, path=path or None)
    if scheme in ("", "file") or (len(scheme) == 1 and os.name == "nt"):
        path = unquote(parsed.path) if scheme == "file" else uri
        return ModelUri("path", uri, path=path)
    return ModelUri("other", uri)


def registry_version(uri: Any) -> tuple[str, str] | None:
    """``(registered name, version)`` of a ``models:/<name>/<version>`` URI, else None."""
    if not isinstance(uri, str):
        return None
    parsed = parse_model_uri(uri)
    if parsed.kind == "registered" and parsed.version is not None and parsed.name:
        return parsed.name, parsed.version
    return None


def pinned(uri: str, version: str) -> str:
    """The URI of one version of the registered model ``uri`` names (alias or latest).

    >>> pinned("models:/digits-forest@champion", "7")
    'models:/digits-forest/7'
    """
    parsed = parse_model_uri(uri)
    if parsed.kind != "registered" or not parsed.name:
        raise ValueError(f"{uri!r} is not a registered model URI")
    return f"models:/{parsed.name}/{version}"


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (MLflow's are long)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
