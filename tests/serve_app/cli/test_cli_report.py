"""``bandit-serve report`` end to end against a tiny local HTTP server serving fixture JSON."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from serve_app.cli import app

runner = CliRunner()
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class _Handler(BaseHTTPRequestHandler):
    """Serves ``server.routes[path]`` as JSON; 404 for anything else."""

    def do_GET(self) -> None:
        routes: dict[str, Any] = self.server.routes  # type: ignore[attr-defined]
        self.server.seen.append(self.path.split("?", 1)[0])  # type: ignore[attr-defined]
        path = self.path.split("?", 1)[0]
        if path in routes:
            status, body = 200, routes[path]
        else:
            status, body = 404, {"detail": f"no route {path}"}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet."""


@pytest.fixture
def server(binary_report: dict[str, Any]) -> Iterator[ThreadingHTTPServer]:
    """An HTTP server on 127.0.0.1 with ``/experiments`` and the digits report."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.routes = {  # type: ignore[attr-defined]
        "/experiments": {"experiments": [{"name": "digits"}, {"name": "other"}]},
        "/experiments/digits/report": binary_report,
    }
    httpd.seen = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


def _url(httpd: ThreadingHTTPServer) -> str:
    host, port = httpd.server_address[:2]
    return f"http://{host}:{port}"


def test_report_default_experiment_and_out_dir(
    server: ThreadingHTTPServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["report", "--url", _url(server)], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert server.seen == ["/experiments", "/experiments/digits/report"]  # type: ignore[attr-defined]
    out = tmp_path / "report-digits"
    expected = [
        "cumulative_reward.png",
        "drift.png",
        "posteriors.png",
        "report.html",
        "report.json",
        "traffic_share.png",
    ]
    assert sorted(p.name for p in out.iterdir()) == expected
    for name in expected:
        assert f"wrote report-digits/{name}" in result.output
    assert all((out / n).read_bytes()[:8] == PNG_MAGIC for n in expected if n.endswith(".png"))
    assert json.loads((out / "report.json").read_text())["experiment"] == "digits"
    assert "data:image/png;base64," in (out / "report.html").read_text()
    for fragment in ("logreg", "forest", "comparisons", "stopping: met", "guardrails"):
        assert fragment in result.output


def test_report_json_to_stdout(
    server: ThreadingHTTPServer, binary_report: dict[str, Any], tmp_path: Path
) -> None:
    out = tmp_path / "custom"
    result = runner.invoke(
        app,
        ["report", "--url", _url(server), "--experiment", "digits", "--out", str(out), "--json"],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == binary_report
    assert "wrote" in result.stderr
    assert (out / "report.html").is_file()
    assert server.seen == ["/experiments/digits/report"]  # type: ignore[attr-defined]


def test_report_unknown_experiment_is_404_exit_1(
    server: ThreadingHTTPServer, tmp_path: Path
) -> None:
    result = runner.invoke(
        app,
        ["report", "--url", _url(server), "--experiment", "nope", "--out", str(tmp_path / "x")],
        terminal_width=200,
    )
    assert result.exit_code == 1
    assert "no report for experiment 'nope'" in result.output
    assert "HTTP 404" in result.output
    assert not (tmp_path / "x").exists()


def test_report_no_experiments(server: ThreadingHTTPServer) -> None:
    server.routes["/experiments"] = {"experiments": []}  # type: ignore[attr-defined]
    result = runner.invoke(app, ["report", "--url", _url(server)], terminal_width=200)
    assert result.exit_code == 1
    assert "serves no experiments" in result.output


def test_report_unreachable_app_exits_1(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = runner.invoke(
        app,
        ["report", "--url", f"http://127.0.0.1:{port}", "--out", str(tmp_path / "x")],
        terminal_width=200,
    )
    assert result.exit_code == 1
    assert "cannot reach" in result.output
    assert "is the app running?" in result.output
    assert not (tmp_path / "x").exists()


def test_report_bad_url_is_a_usage_error() -> None:
    result = runner.invoke(app, ["report", "--url", "127.0.0.1:8000"])
    assert result.exit_code == 2
    assert "http://" in result.output
