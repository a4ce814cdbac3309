"""The live page's HTML shells and their endpoints, without a Ray cluster: escaping, the
security headers, the base path behind a route prefix, and no inline script or style."""

from __future__ import annotations

import asyncio
import html
import re
from typing import Any

import pytest
from starlette.requests import Request

from serve_app.ui.assets import Assets
from serve_app.ui.endpoints import ASSETS, UiEndpoints
from serve_app.ui.pages import (
    CSP,
    SCRIPTS,
    SECURITY_HEADERS,
    base_path,
    experiment_page,
    index_page,
    not_found_page,
)

EXPECTED_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HOSTILE_ROOT = '/x"><script>alert(1)</script>'


def request(path: str, root_path: str = "", query: bytes = b"", **headers: str) -> Request:
    scope: dict[str, Any] = {
        "type": "http",
        "method": "GET",
        "path": root_path + path,
        "root_path": root_path,
        "query_string": query,
        "headers": [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()],
    }
    return Request(scope)


def no_inline_code(page: str) -> None:
    """Every script is a file of this app; no inline script, style or event handler."""
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", page, flags=re.S)
    assert scripts
    for attributes, content in scripts:
        assert content == ""
        assert re.search(r'\bsrc="[^"]*/ui/static/[^"?]+\.js\?v=[0-9a-f]{16}"', attributes)
    assert "<style" not in page
    assert not re.search(r"\sstyle\s*=", page)
    assert not re.search(r"\son[a-z]+\s*=", page, flags=re.I)
    assert "javascript:" not in page.lower()


@pytest.mark.parametrize(("root", "base"), [("", ""), ("/live", "/live"), ("/live/", "/live")])
def test_pages_link_everything_under_the_base_path(root: str, base: str) -> None:
    for page in (
        index_page(base_path(root), ASSETS),
        experiment_page("ts", base_path(root), ASSETS),
    ):
        no_inline_code(page)
        assert f'data-base="{base}"' in page
        links = re.findall(r'(?:src|href)="([^"]*)"', page)
        assert links
        for link in links:
            assert link.startswith(f"{base}/ui"), link  # never "/experiments": the prefix stays


def test_experiment_name_is_escaped_into_text_and_a_data_attribute() -> None:
    name = "a&b<i>\"'x"
    page = experiment_page(name, "", ASSETS)
    escaped = html.escape(name, quote=True)
    assert f'data-experiment="{escaped}"' in page
    assert f'<span id="experiment-name">{escaped}</span>' in page
    assert f"<title>bandit-serve: {escaped}</title>" in page
    assert name not in page
    no_inline_code(page)


def test_a_hostile_root_path_is_escaped() -> None:
    page = index_page(base_path(HOSTILE_ROOT), ASSETS)
    assert "<script>alert(1)" not in page
    assert 'data-base="/x&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"' in page
    assert "alert(1)</script>" not in page


def test_not_found_page_has_no_scripts() -> None:
    page = not_found_page("/live", "<b>nope</b>")
    assert "<script" not in page
    assert "&lt;b&gt;nope&lt;/b&gt;" in page


def test_security_headers() -> None:
    assert CSP == EXPECTED_CSP
    assert SECURITY_HEADERS["Content-Security-Policy"] == EXPECTED_CSP
    assert SECURITY_HEADERS["X-Content-Type-Options"] == "nosniff"
    assert SECURITY_HEADERS["Referrer-Policy"] == "no-referrer"


def test_every_script_a_page_names_ships() -> None:
    for names in SCRIPTS.values():
        for name in names:
            assert ASSETS.get(name) is not None, name


# ------------------------------------------------------------------ endpoints


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def test_index_endpoint_headers_and_base() -> None:
    response = run(UiEndpoints().ui_index(request("/ui", "/live")))
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["content-security-policy"] == EXPECTED_CSP
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cache-control"] == "no-store"
    page = response.body.decode()
    assert 'data-base="/live"' in page
    assert 'data-page="index"' in page


def test_experiment_endpoint() -> None:
    response = run(UiEndpoints().ui_experiment("digits-ab", request("/ui/experiments/digits-ab")))
    assert response.status_code == 200
    assert response.headers["content-security-policy"] == EXPECTED_CSP
    assert 'data-experiment="digits-ab"' in response.body.decode()


@pytest.mark.parametrize("name", ["<script>", "a b", "x\"'", "..", "a.b", "-x", "a" * 64])
def test_a_name_no_experiment_can_have_is_not_found(name: str) -> None:
    response = run(UiEndpoints().ui_experiment(name, request("/ui/experiments/x")))
    assert response.status_code == 404
    assert response.headers["content-security-policy"] == EXPECTED_CSP
    body = response.body.decode()
    assert "<script" not in body
    assert name not in body or name == html.escape(name)


def test_endpoint_names_do_not_clash_with_the_router() -> None:
    from serve_app.ingress.router import Router

    router = Router.func_or_class
    own = {name for name in vars(router) if not name.startswith("__")}
    ui = {name for name in vars(UiEndpoints) if not name.startswith("__")}
    assert ui
    assert all(name.startswith(("ui_", "_")) for name in ui)
    assert not own & ui
    assert UiEndpoints in router.__mro__


def test_assets_load_from_a_folder(tmp_path: Any) -> None:
    (tmp_path / "a.js").write_text("1")
    (tmp_path / ".hidden.js").write_text("2")
    (tmp_path / "notes.txt").write_text("3")
    assets = Assets.load(tmp_path)
    assert set(assets.files) == {"a.js"}
    assert assets.url("/p", "a.js") == f"/p/ui/static/a.js?v={assets.files['a.js'].digest}"
