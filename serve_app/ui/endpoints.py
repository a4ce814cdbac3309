"""The ``/ui`` endpoints, mixed into the router deployment (see :class:`UiEndpoints`).

The pages are shells (:mod:`serve_app.ui.pages`) that hold no experiment data, so they need
no token: their scripts read the JSON API with the token the user enters, and the API
checks it as for any other client. The request guard of :mod:`serve_app.ingress.http` has
already checked the Host header; these endpoints add the page's security headers.
"""

# No `from __future__ import annotations` here: FastAPI reads the endpoint annotations.
from fastapi import Request
from fastapi.responses import HTMLResponse, Response

from serve_app.ingress.http import app
from serve_app.ui.assets import Assets
from serve_app.ui.pages import (
    SECURITY_HEADERS,
    base_path,
    experiment_page,
    index_page,
    is_experiment_name,
    not_found_page,
)

ASSETS = Assets.load()


def _html(page: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(page, status_code=status, headers=SECURITY_HEADERS)


def _base(request: Request) -> str:
    return base_path(str(request.scope.get("root_path", "")))


def static_response(path: str, version: str | None, if_none_match: str | None) -> Response:
    """An asset of :data:`ASSETS` with its caching headers; 304 when the client's copy is
    current; a plain 404 for anything that is not one of them (no file system lookup)."""
    asset = ASSETS.get(path)
    if asset is None:
        return Response(
            "not found", status_code=404, media_type="text/plain", headers=SECURITY_HEADERS
        )
    headers = {
        "ETag": asset.etag,
        "Cache-Control": asset.cache_control(version),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }
    if if_none_match is not None and asset.etag in (
        tag.strip() for tag in if_none_match.split(",")
    ):
        return Response(status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)


class UiEndpoints:
    """Routes of the live experiment page (``ui_`` names: the router's own are unprefixed)."""

    @app.get("/ui", include_in_schema=False)
    async def ui_index(self, request: Request) -> Response:
        """Every experiment, with links to their live pages."""
        return _html(index_page(_base(request), ASSETS))

    @app.get("/ui/experiments/{name}", include_in_schema=False)
    async def ui_experiment(self, name: str, request: Request) -> Response:
        """One experiment's live page; 404 for a name no experiment can have."""
        base = _base(request)
        if not is_experiment_name(name):
            return _html(not_found_page(base, "no experiment can have that name"), 404)
        return _html(experiment_page(name, base, ASSETS))

    @app.get("/ui/static/{path:path}", include_in_schema=False)
    async def ui_static(self, path: str, request: Request) -> Response:
        """The page's scripts and styles (``?v=<hash>``: cacheable for a year)."""
        return static_response(
            path, request.query_params.get("v"), request.headers.get("if-none-match")
        )
