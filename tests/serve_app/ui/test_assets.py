"""The live page's static files: only the shipped files, with their media types and caching,
never a path outside the static folder; the vendored chart library is the one its NOTICE
names; every file is package data."""

from __future__ import annotations

import hashlib
import re
import tomllib
from pathlib import Path, PurePosixPath

import pytest

from serve_app.ui.assets import IMMUTABLE, REVALIDATE, STATIC_DIR, safe_name
from serve_app.ui.endpoints import ASSETS, static_response

ROOT = Path(__file__).resolve().parents[3]
OWN_SCRIPTS = ("common.js", "charts.js", "experiment.js", "index.js")


@pytest.mark.parametrize(
    ("name", "media_type"),
    [
        ("common.js", "text/javascript; charset=utf-8"),
        ("ui.css", "text/css; charset=utf-8"),
        ("vendor/uplot/uPlot.iife.min.js", "text/javascript; charset=utf-8"),
        ("vendor/uplot/uPlot.min.css", "text/css; charset=utf-8"),
    ],
)
def test_assets_are_served_with_their_media_type(name: str, media_type: str) -> None:
    asset = ASSETS.get(name)
    assert asset is not None
    response = static_response(name, asset.digest, None)
    assert response.status_code == 200
    assert response.headers["content-type"] == media_type
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == IMMUTABLE
    assert response.headers["etag"] == f'"{asset.digest}"'
    assert response.body == (STATIC_DIR / name).read_bytes()


def test_caching_only_for_the_current_content() -> None:
    asset = ASSETS.get("experiment.js")
    assert asset is not None
    assert static_response("experiment.js", None, None).headers["cache-control"] == REVALIDATE
    assert static_response("experiment.js", "0" * 16, None).headers["cache-control"] == REVALIDATE
    cached = static_response("experiment.js", None, f'"x", {asset.etag}')
    assert cached.status_code == 304
    assert cached.body == b""


@pytest.mark.parametrize(
    "path",
    [
        "../endpoints.py",
        "../../pages.py",
        "..",
        "../static/ui.css",
        "vendor/../ui.css",
        "./ui.css",
        "/etc/passwd",
        "//etc/passwd",
        "\\..\\endpoints.py",
        "ui.css\x00.js",
        "vendor/uplot/LICENSE",  # ships, but is no servable type
        "vendor/uplot/NOTICE",
        ".hidden.js",
        "missing.js",
        "",
        "ui.css/",
        "%2e%2e/endpoints.py",
    ],
)
def test_paths_outside_the_shipped_files_are_refused(path: str) -> None:
    response = static_response(path, None, None)
    assert response.status_code == 404
    assert response.body == b"not found"


def test_safe_name_keeps_names_inside() -> None:
    assert safe_name("a/b.js") == "a/b.js"
    for bad in ("../a", "a/../../b", "/a", "a\\b", ".a", "a/./b"):
        assert safe_name(bad) is None
    for name in ASSETS.files:
        resolved = (STATIC_DIR / name).resolve()
        assert resolved.is_relative_to(STATIC_DIR.resolve())


def test_own_scripts_build_no_markup_from_strings() -> None:
    for name in OWN_SCRIPTS:
        source = (STATIC_DIR / name).read_text()
        for forbidden in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write"):
            assert forbidden not in source, (name, forbidden)
        assert not re.search(r"\beval\s*\(|new Function\s*\(", source), name
        assert not re.search(r"setAttribute\(\s*[\"'](style|on\w+)[\"']", source), name
        assert "localStorage" not in source, name  # the token stays in sessionStorage
        # One way to the network: api() in common.js, always under the page's base path.
        calls = re.findall(r"\bfetch\(([^,)]*)", source)
        assert calls == (["base + path"] if name == "common.js" else []), name
        assert not re.search(r"XMLHttpRequest|WebSocket|sendBeacon|https?://(?!www.w3.org)", source)


def test_vendored_chart_library_matches_its_notice() -> None:
    folder = STATIC_DIR / "vendor" / "uplot"
    notice = (folder / "NOTICE").read_text()
    assert "uPlot 1.6.32" in notice
    assert "MIT License" in notice
    assert "MIT License" in (folder / "LICENSE").read_text()
    for name in ("uPlot.iife.min.js", "uPlot.min.css"):
        digest = hashlib.sha256((folder / name).read_bytes()).hexdigest()
        assert re.search(rf"-> {re.escape(name)}\s+sha256 {digest}", notice), name
    assert (
        (folder / "uPlot.iife.min.js")
        .read_text()
        .startswith("/*! https://github.com/leeoniya/uPlot (v1.6.32) */")
    )


def test_every_static_file_is_package_data() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["serve_app.ui"]
    files = [p for p in STATIC_DIR.rglob("*") if p.is_file()]
    assert files
    for path in files:
        relative = PurePosixPath(path.relative_to(STATIC_DIR.parent).as_posix())
        assert any(
            len(relative.parts) == len(PurePosixPath(pattern).parts) and relative.match(pattern)
            for pattern in patterns
        ), relative
