"""The FastAPI app the router serves: what every request must pass before an endpoint runs,
and how errors become JSON responses.

Every request first meets :class:`RequestGuard`, a plain ASGI middleware, which refuses with
a JSON error and without reading the body:

- a ``Host`` outside the allow-list (400): a web page that rebinds its DNS name to
  127.0.0.1 sends its own name, so it cannot drive the API from a victim's browser;
- a body announced larger than ``router.max_body_bytes`` (413), and one that grows past it
  while streamed (413 when the endpoint reads it);
- a body on ``POST``/``PUT``/``PATCH`` that is not ``application/json`` (415): a cross-site
  form or ``text/plain`` request cannot reach an endpoint (browsers send those without a
  CORS preflight);
- ``/docs`` and ``/openapi.json`` without a token when ``auth.protect_docs``.

CORS is off unless ``http.cors_origins`` names origins (Starlette's ``CORSMiddleware`` then
answers preflights for exactly those).

The hot path, ``POST /predict``, is called by the guard itself once its checks pass
(:attr:`GuardSettings.direct_posts`), not through FastAPI's exception middleware, routing and
request handling, which cost a third of the router's own CPU per prediction: the same
endpoint, the same checks, the same error bodies (:func:`error_response`), no second copy.
FastAPI still documents it; with CORS origins configured it goes the FastAPI way.

Endpoints authenticate before they read the body, then :func:`parse_body` reads at most
the limit and validates it strictly. Every error is ``{"error": code, "message": ...,
"field": ...}`` with the status of the project exception (see :mod:`serve_app.errors`);
validation errors name the field in the user's notation (``features[0][3]``), never a bare
500 with a traceback.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serve_app.config import format_location
from serve_app.errors import (
    BanditServeError,
    InvalidHost,
    InvalidRequest,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from serve_app.ingress.schemas import ErrorBody

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody} for status in (400, 401, 403, 404, 409, 410, 413, 415, 422, 503)
}
BodyT = TypeVar("BodyT", bound=BaseModel)
LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]", "::1")
DOCS_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
BODY_METHODS = frozenset({b"POST", b"PUT", b"PATCH"})


def _host_name(host: str) -> str:
    """``Host`` without its port (``[::1]:8000`` -> ``[::1]``), lower case."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def host_allowed(host: str, allowed: tuple[str, ...]) -> bool:
    """Is ``host`` (a Host header) one of ``allowed`` (names, ``*.domain`` or ``*``)?

    >>> host_allowed("127.0.0.1:8000", LOCAL_HOSTS), host_allowed("evil.example", LOCAL_HOSTS)
    (True, False)
    >>> wildcard = ("*.example.com",)
    >>> host_allowed("api.example.com", wildcard), host_allowed("example.com", wildcard)
    (True, False)
    """
    name = _host_name(host)
    for pattern in allowed:
        pattern = pattern.lower()
        if pattern == "*" or name == pattern:
            return True
        if pattern.startswith("*.") and name.endswith(pattern[1:]):
            return True
    return False


def is_json(content_type: str) -> bool:
    """``application/json`` (any parameters) or an ``application/*+json`` type."""
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


@dataclass
class GuardSettings:
    """What :class:`RequestGuard` enforces; the router fills it in from its config."""

    allowed_hosts: tuple[str, ...] = LOCAL_HOSTS
    max_body_bytes: int = 4 * 1024 * 1024
    # (path, content type) -> may this non-JSON body pass? (the binary tensor extension)
    allow_body: Callable[[str, str], bool] = lambda _path, _type: False
    authorize_docs: Callable[[str | None], None] | None = None
    cors_origins: tuple[str, ...] = ()
    # path -> endpoint the guard calls itself for a POST (see the module docstring)
    direct_posts: Mapping[str, Callable[[Request], Awaitable[Response]]] = dataclasses.field(
        default_factory=dict
    )


guard_settings = GuardSettings()


def configure(settings: GuardSettings) -> None:
    """Install the router's settings (there is one router per replica process)."""
    global guard_settings
    guard_settings = settings


async def _send_error(send: Send, error: BanditServeError) -> None:
    body = json.dumps(error.to_json()).encode()
    await send(
        {
            "type": "http.response.start",
            "status": error.status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class RequestGuard:
    """The checks of the module docstring, before any endpoint sees the request."""

    def __init__(self, inner: ASGIApp) -> None:
        self.inner = inner
        self._cors: tuple[tuple[str, ...], ASGIApp] | None = None

    def _next(self, origins: tuple[str, ...]) -> ASGIApp:
        """The inner app, behind Starlette's CORS middleware when origins are configured."""
        if not origins:
            return self.inner
        if self._cors is None or self._cors[0] != origins:
            cors = CORSMiddleware(
                self.inner,
                allow_origins=list(origins),
                allow_methods=["GET", "POST", "PUT", "PATCH"],
                allow_headers=["authorization", "content-type", "x-bandit-arm"],
            )
            self._cors = (origins, cors)
        return self._cors[1]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.inner(scope, receive, send)
            return
        settings = guard_settings
        headers = {key.lower(): value for key, value in scope.get("headers", [])}
        host = headers.get(b"host", b"").decode("latin-1")
        if not host_allowed(host, settings.allowed_hosts):
            shown = host[:100] or "(none)"
            await _send_error(
                send,
                InvalidHost(
                    f"Host {shown!r} is not served here; add it to http.allowed_hosts",
                    field="host",
                ),
            )
            return
        path = scope.get("path", "")
        root = scope.get("root_path", "")
        if root and path.startswith(root):  # the app's own path, behind a route prefix
            path = path[len(root) :] or "/"
        if settings.authorize_docs is not None and path in DOCS_PATHS:
            try:
                settings.authorize_docs(
                    headers.get(b"authorization", b"").decode("latin-1") or None
                )
            except BanditServeError as error:
                await _send_error(send, error)
                return
        limit = settings.max_body_bytes
        length = headers.get(b"content-length", b"").decode("latin-1")
        if length.isdigit() and int(length) > limit:
            await _send_error(
                send,
                PayloadTooLarge(
                    f"request body is {length} bytes; the limit is {limit}", field="body"
                ),
            )
            return
        has_body = (length.isdigit() and int(length) > 0) or b"transfer-encoding" in headers
        if scope.get("method", "").encode() in BODY_METHODS and has_body:
            content_type = headers.get(b"content-type", b"").decode("latin-1")
            if not is_json(content_type) and not settings.allow_body(path, content_type):
                shown = content_type[:80] or "none"
                await _send_error(
                    send,
                    UnsupportedMediaType(
                        f"Content-Type must be application/json, got {shown}", field="content-type"
                    ),
                )
                return
        receive = _limited(receive, limit)
        direct = settings.direct_posts.get(path) if scope.get("method") == "POST" else None
        if direct is not None and not settings.cors_origins:
            await _call_directly(direct, scope, receive, send)
            return
        await self._next(settings.cors_origins)(scope, receive, send)


async def _call_directly(
    endpoint: Callable[[Request], Awaitable[Response]], scope: Scope, receive: Receive, send: Send
) -> None:
    """What FastAPI would do for this endpoint: call it with the request, and answer the
    project's errors as its exception handlers do (anything else is the 500 of Starlette's
    error middleware, outside the guard)."""
    try:
        response = await endpoint(Request(scope, receive))
    except (BanditServeError, RequestValidationError) as error:
        response = error_response(error)
    await response(scope, receive, send)


def _limited(receive: Receive, limit: int) -> Receive:
    """``receive`` that raises :class:`PayloadTooLarge` once the body passes ``limit``."""
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise PayloadTooLarge(f"request body exceeds {limit} bytes", field="body")
        return message

    return wrapped


app = FastAPI(
    title="bandit-serve",
    summary="A/B tests and multi-armed bandits for ML models on Ray Serve",
    version="0.2.0",
)
app.add_middleware(RequestGuard)


def error_response(error: BanditServeError | RequestValidationError) -> JSONResponse:
    """The JSON error of a project exception (``Retry-After`` on 503, ``WWW-Authenticate``
    on 401), or the 422 of a validation error naming each field."""
    if isinstance(error, RequestValidationError):
        problems = describe_problems(list(error.errors()))
        first = problems[0] if problems else {"field": "body", "message": "invalid request"}
        body = InvalidRequest(f"{first['field']}: {first['message']}", field=first["field"])
        return JSONResponse({**body.to_json(), "problems": problems}, status_code=422)
    headers = {"Retry-After": "1"} if error.status == 503 else None
    if error.status == 401:
        headers = {"WWW-Authenticate": "Bearer"}
    return JSONResponse(error.to_json(), status_code=error.status, headers=headers)


@app.exception_handler(BanditServeError)
async def project_error(_request: Request, error: BanditServeError) -> JSONResponse:
    return error_response(error)


def describe_problems(errors: list[Any]) -> list[dict[str, str]]:
    """pydantic errors as ``{"field": ..., "message": ...}`` in the user's notation."""
    problems = []
    for problem in errors:
        location = tuple(part for part in problem["loc"] if part != "body")
        if problem["type"] == "json_invalid":
            problems.append({"field": "body", "message": f"not valid JSON: {problem['msg']}"})
            continue
        field_name = format_location(location) if location else "body"
        message = problem["msg"]
        if problem["type"] == "missing":
            message = "required field is missing"
        elif problem["type"] == "extra_forbidden":
            message = "unknown field"
        problems.append({"field": field_name, "message": message})
    return problems


@app.exception_handler(RequestValidationError)
async def _validation_error(_request: Request, error: RequestValidationError) -> JSONResponse:
    return error_response(error)


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI request body for endpoints that read and validate the body themselves."""
    schema = {"application/json": {"schema": model.model_json_schema()}}
    return {"requestBody": {"required": True, "content": schema}}


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, at most ``limit`` bytes.

    Raises:
        PayloadTooLarge: the body is over the limit (413), before it is all read.
    """
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise PayloadTooLarge(f"request body is {length} bytes; the limit is {limit}", field="body")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body exceeds {limit} bytes", field="body")
        chunks.append(chunk)
    return b"".join(chunks)


async def parse_body(
    request: Request, model: type[BodyT], limit: int, *, optional: bool = False
) -> BodyT:
    """Read at most ``limit`` bytes and validate them as ``model`` (strict types).

    With ``optional``, an empty body is ``model()`` (endpoints whose fields all default).

    Raises:
        PayloadTooLarge: the body is over the limit (413), before it is all read.
        RequestValidationError: turned into a 422 naming the field.
    """
    raw = await read_body(request, limit)
    if optional and not raw.strip():
        return model()
    try:
        return model.model_validate_json(raw)
    except ValidationError as error:
        raise RequestValidationError(error.errors()) from None
