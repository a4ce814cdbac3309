"""The request guard without Ray: Host allow-list, body limit, JSON-only bodies, docs
protection and CORS, in front of a small FastAPI app."""

from __future__ import annotations

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from serve_app.errors import BanditServeError, Unauthorized
from serve_app.ingress import http
from serve_app.ingress.http import LOCAL_HOSTS, GuardSettings, RequestGuard, read_body


def build(settings: GuardSettings, root_path: str = "") -> TestClient:
    http.configure(settings)
    app = FastAPI()
    app.add_middleware(RequestGuard)
    app.add_exception_handler(BanditServeError, http.project_error)

    @app.post("/echo")
    async def echo(request: Request) -> dict:
        return {"bytes": len(await read_body(request, 10**9))}

    @app.get("/openapi-like")
    async def plain() -> dict:
        return {"ok": True}

    return TestClient(
        app, base_url="http://127.0.0.1:8000", raise_server_exceptions=False, root_path=root_path
    )


@pytest.fixture(autouse=True)
def restore_settings():
    yield
    http.configure(GuardSettings())


def test_hosts_outside_the_allow_list_are_refused():
    client = build(GuardSettings(allowed_hosts=(*LOCAL_HOSTS, "*.example.com")))
    for host in ("127.0.0.1:8000", "localhost", "[::1]:8000", "api.example.com"):
        assert client.get("/openapi-like", headers={"host": host}).status_code == 200, host
    for host in ("attacker.example", "example.com", "127.0.0.1.attacker.example", ""):
        response = client.get("/openapi-like", headers={"host": host})
        assert response.status_code == 400, host
        assert response.json()["field"] == "host"


def test_bodies_must_be_json_and_within_the_limit():
    client = build(GuardSettings(max_body_bytes=1000))
    assert client.post("/echo", json={"a": 1}).status_code == 200
    plain = client.post("/echo", content=b"{}", headers={"content-type": "text/plain"})
    assert plain.status_code == 415
    assert "application/json" in plain.json()["message"]
    form = client.post("/echo", data={"a": "1"})  # what a cross-site HTML form sends
    assert form.status_code == 415
    assert client.post("/echo", content=b"x", headers={}).status_code == 415
    assert client.post("/echo").status_code == 200  # no body at all: nothing to refuse
    announced = client.post(
        "/echo", content=b" " * 1001, headers={"content-type": "application/json"}
    )
    assert announced.status_code == 413

    def chunks():
        for _ in range(20):
            yield b" " * 100

    streamed = client.post("/echo", content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413  # no Content-Length: counted while read


def test_binary_bodies_pass_only_where_allowed():
    client = build(GuardSettings(allow_body=lambda path, kind: kind == "application/octet-stream"))
    ok = client.post(
        "/echo", content=b"\x00\x01", headers={"content-type": "application/octet-stream"}
    )
    assert ok.status_code == 200


def test_docs_need_a_token_when_protected():
    def docs(authorization):
        if authorization != "Bearer ok":
            raise Unauthorized("docs need a token")

    client = build(GuardSettings(authorize_docs=docs))
    assert client.get("/openapi.json").status_code == 401
    assert client.get("/docs", headers={"authorization": "Bearer ok"}).status_code == 200


def test_cors_is_off_unless_origins_are_configured():
    closed = build(GuardSettings())
    response = closed.get("/openapi-like", headers={"origin": "https://evil.example"})
    assert "access-control-allow-origin" not in response.headers
    preflight = closed.options(
        "/echo",
        headers={"origin": "https://evil.example", "access-control-request-method": "POST"},
    )
    assert "access-control-allow-origin" not in preflight.headers
    opened = build(GuardSettings(cors_origins=("https://dash.example.com",)))
    allowed = opened.get("/openapi-like", headers={"origin": "https://dash.example.com"})
    assert allowed.headers["access-control-allow-origin"] == "https://dash.example.com"
    other = opened.get("/openapi-like", headers={"origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers


def build_direct(root_path: str = "", **settings) -> tuple[TestClient, list[str]]:
    """The app of :func:`build` plus ``/strict`` (a FastAPI endpoint that validates its body
    as :class:`Strict`), also called directly by the guard when ``direct`` is set."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from pydantic import BaseModel, ValidationError

    from serve_app.errors import Unavailable

    class Strict(BaseModel):
        n: int

    ways: list[str] = []

    async def strict(request: Request) -> JSONResponse:
        ways.append("called")
        if request.headers.get("authorization") != "Bearer ok":
            raise Unauthorized("a token is needed")
        try:
            body = Strict.model_validate_json(await read_body(request, 10**9))
        except ValidationError as error:
            raise RequestValidationError(error.errors()) from None
        if body.n < 0:
            raise Unavailable("try later")
        if body.n == 13:
            raise RuntimeError("a bug")
        return JSONResponse({"n": body.n})

    client = build(GuardSettings(direct_posts={"/strict": strict}, **settings), root_path)
    app = client.app

    @app.post("/strict")
    async def via_fastapi(request: Request) -> JSONResponse:
        ways.append("fastapi")
        return await strict(request)

    app.add_exception_handler(RequestValidationError, http._validation_error)
    return client, ways


def test_a_direct_endpoint_answers_as_its_fastapi_route_would():
    ok = {"authorization": "Bearer ok"}
    cases = [
        ({"json": {"n": 1}, "headers": ok}, 200),
        ({"json": {"n": 1}}, 401),
        ({"json": {"n": "x"}, "headers": ok}, 422),
        ({"content": b"{", "headers": {**ok, "content-type": "application/json"}}, 422),
        ({"json": {"n": -1}, "headers": ok}, 503),
        ({"json": {"n": 13}, "headers": ok}, 500),
        ({"content": b"n=1", "headers": {**ok, "content-type": "text/plain"}}, 415),
    ]

    def answers(client: TestClient) -> list:
        return [client.post("/strict", **kwargs) for kwargs, _ in cases]

    # the guard's settings are one per process (one router per replica): one client at a time
    direct, ways = build_direct()
    directly = answers(direct)
    assert direct.get("/strict").status_code == 405  # only POST is direct
    assert "fastapi" not in ways
    assert ways.count("called") == 6
    too_big = build_direct(max_body_bytes=1024)[0].post(
        "/strict", content=b"x" * 2000, headers={**ok, "content-type": "application/json"}
    )
    assert too_big.status_code == 413

    def chunks():  # no Content-Length: counted while the endpoint reads it
        for _ in range(20):
            yield b" " * 100

    streamed = build_direct(max_body_bytes=1024)[0].post(
        "/strict", content=chunks(), headers={**ok, "content-type": "application/json"}
    )
    assert streamed.status_code == 413
    assert streamed.json()["field"] == "body"
    prefixed, prefixed_ways = build_direct("/product")  # behind a route prefix, as in Serve
    answer = prefixed.post("/product/strict", json={"n": 2}, headers=ok)
    assert answer.json() == {"n": 2}
    assert prefixed_ways == ["called"]
    routed, routed_ways = build_direct(cors_origins=("https://dash.example.com",))
    via_fastapi = answers(routed)
    assert routed_ways.count("fastapi") == 6  # with CORS it goes the FastAPI way
    for (kwargs, status), a, b in zip(cases, directly, via_fastapi, strict=True):
        assert (a.status_code, b.status_code) == (status, status), kwargs
        if status != 500:
            assert a.json() == b.json(), kwargs
        for header in ("www-authenticate", "retry-after", "content-type"):
            assert a.headers.get(header) == b.headers.get(header), (kwargs, header)
    assert directly[0].json() == {"n": 1}
    assert directly[2].json()["field"] == "n"
    assert directly[3].json()["field"] == "body"
