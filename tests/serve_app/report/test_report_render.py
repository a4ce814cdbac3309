"""report_render: PNG charts, the self-contained HTML page and the CLI tables."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path
from typing import Any

import matplotlib.image
import pytest
from rich.console import Console

from serve_app.report import PLOT_FILES, render_html, render_plots, report_tables

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CORE_PLOTS = {"traffic_share", "posteriors", "cumulative_reward"}


def _assert_png(path: Path) -> None:
    assert path.is_file()
    assert path.read_bytes()[:8] == PNG_MAGIC
    height, width, channels = matplotlib.image.imread(path).shape
    assert (width, height) == (800, 450) or (width, height) == (800, 675)
    assert channels in (3, 4)


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        ("binary_report", {*CORE_PLOTS, "drift"}),
        ("continuous_report", CORE_PLOTS),
    ],
)
def test_render_plots_writes_valid_pngs(
    fixture: str, expected: set[str], request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    report = request.getfixturevalue(fixture)
    plots = render_plots(report, tmp_path / "out")
    assert set(plots) == expected
    for key, path in plots.items():
        assert path == tmp_path / "out" / PLOT_FILES[key]
        _assert_png(path)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        PLOT_FILES[k] for k in expected
    )


@pytest.mark.parametrize("snapshots", [0, 1])
def test_render_plots_with_empty_timeline(
    snapshots: int, empty_report: dict[str, Any], tmp_path: Path
) -> None:
    if snapshots:
        empty_report["timeline"] = [
            {"at": 1.0, "arm": "a", "pulls": 3, "feedback": 2, "reward_sum": 1.0, "weight": 0.5}
        ]
    plots = render_plots(empty_report, tmp_path)
    assert set(plots) == CORE_PLOTS
    for path in plots.values():
        _assert_png(path)
    page = render_html(empty_report, plots)
    assert "no comparisons" in page
    assert "no guardrails" in page


def test_render_plots_tolerates_nulls(tmp_path: Path) -> None:
    report: dict[str, Any] = {
        "experiment": "nulls",
        "reward": "binary",
        "arms": [
            {"name": "a", "posterior": {"family": "beta", "alpha": 0.5, "beta": 0.5}},
            {"name": "b", "posterior": {"family": "normal", "mean": 0.4, "sd": 0.0}},
            {"name": "c", "posterior": {"family": "beta", "alpha": None, "beta": 2}},
        ],
        "timeline": [
            {"at": 10.0, "arm": "a", "pulls": 5, "feedback": 0, "reward_sum": 0.0, "weight": None},
            {"at": 20.0, "arm": "a", "pulls": 5, "feedback": 0, "reward_sum": 0.0, "weight": None},
            {"at": 20.0, "arm": "b", "pulls": None, "feedback": None, "reward_sum": None},
        ],
        "drift": {"alert": False, "features": [{"name": "f0", "psi": None}]},
    }
    plots = render_plots(report, tmp_path)
    assert set(plots) == {*CORE_PLOTS, "drift"}
    for path in plots.values():
        _assert_png(path)
    assert "nulls" in render_html(report, plots)
    assert report_tables(report)


def test_html_is_self_contained_and_escaped(binary_report: dict[str, Any], tmp_path: Path) -> None:
    binary_report["mlflow_run_id"] = "abc123"
    plots = render_plots(binary_report, tmp_path)
    page = render_html(binary_report, plots)

    assert page.startswith("<!DOCTYPE html>")
    for name in ("logreg", "forest", "abc123", "min_samples", "promoted", "concluded"):
        assert name in page
    # Report strings are escaped, never injected as markup.
    assert "<b>won</b>" not in page
    assert html.escape("Tom & Jerry <b>won</b>") in page
    assert "&lt;feedback&gt;" in page
    assert "<script" not in page
    # No external references of any kind.
    references = re.findall(r"""\b(?:src|href|action)\s*=\s*["']?([^"'\s>]*)""", page)
    assert references
    assert all(ref.startswith("data:image/png;base64,") for ref in references)
    assert "url(" not in page
    assert "@import" not in page
    assert "http://" not in page
    assert "https://" not in page
    assert "<link" not in page
    # Every plot embedded as a decodable PNG data URI.
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == len(plots) == 4
    assert all(base64.b64decode(data)[:8] == PNG_MAGIC for data in images)
    # Sections and formatted numbers.
    for section in ("Arms", "Comparisons", "Stopping rules", "Guardrails", "Ramp", "Drift"):
        assert f"<h2>{section}</h2>" in page
    assert "Sample ratio mismatch" in page
    assert "Audit log" in page
    assert "+8.24%" in page  # lift of forest vs logreg: (0.92 - 0.85) / 0.85
    assert "<b>[25%]</b>" in page  # current ramp step


def test_html_without_plots(continuous_report: dict[str, Any]) -> None:
    continuous_report["experiment"] = "<img src=x onerror=alert(1)>"
    page = render_html(continuous_report, {})
    assert "data:image/png" not in page
    assert "<img" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "p95 latency 80 ms &gt; 1.5 x control 20 ms" in page


def test_report_tables(continuous_report: dict[str, Any]) -> None:
    continuous_report["stopping"]["reason"] = "[bold]not markup[/bold]"
    tables = report_tables(continuous_report)
    titles = [str(t.title) for t in tables]
    assert titles[:3] == ["report - revenue", "arms", "comparisons (relative lift vs control)"]
    assert titles[-1] == "guardrails"
    console = Console(width=200, record=True, color_system=None)
    for table in tables:
        console.print(table)
    text = console.export_text()
    for arm in ("logreg", "forest", "slow"):
        assert arm in text
    assert "[bold]not markup[/bold]" in text
    assert "BREACHED" in text
    assert "+20.00%" in text


def test_report_tables_minimal() -> None:
    tables = report_tables({"experiment": "x"})
    assert [str(t.title) for t in tables] == [
        "report - x",
        "arms",
        "stopping: not met (winner -) - ",
    ]


def test_drift_in_detector_format(binary_report: dict[str, Any], tmp_path: Path) -> None:
    """The drift detector's own dict: nested thresholds, "inf" PSI, arms keyed by name."""
    binary_report["drift"] = {
        "alert": True,
        "reasons": ["2 features drifted"],
        "thresholds": {"alpha": 0.01, "psi": 0.25, "min_samples": 200, "correction": "holm"},
        "features": [
            {"name": "f0", "kind": "continuous", "statistic": 0.4, "p_value": 0.0,
             "p_adjusted": 0.0, "psi": "inf", "drifted": True},
            {"name": "f1", "kind": "categorical", "statistic": 3.0, "p_value": 0.2,
             "p_adjusted": 0.4, "psi": 0.05, "drifted": False},
        ],
        "arms": {"logreg": {"name": "logreg", "psi": 0.3, "p_value": 0.001, "drifted": True}},
    }  # fmt: skip
    plots = render_plots(binary_report, tmp_path)
    _assert_png(plots["drift"])
    page = render_html(binary_report, plots)
    assert "PSI threshold 0.25" in page
    assert "2 features drifted" in page
    assert "<td>inf</td>" in page
    assert "<h3>Predictions per arm</h3><table>" in page
