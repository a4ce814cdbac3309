"""The experiment report: built as JSON, drawn as PNGs, written as HTML, printed as tables.

- :func:`build_report` (:mod:`~serve_app.report.build`): the JSON document of
  ``GET /experiments/{name}/report``;
- :func:`render_plots` (:mod:`~serve_app.report.plots`), :func:`render_html`
  (:mod:`~serve_app.report.html`), :func:`report_tables` (:mod:`~serve_app.report.tables`);
- :func:`write_report`: ``report.json``, the PNGs and ``report.html`` into a folder.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from serve_app.report.build import build_report
from serve_app.report.html import render_html
from serve_app.report.plots import PLOT_FILES, render_plots
from serve_app.report.tables import report_tables

__all__ = [
    "PLOT_FILES",
    "build_report",
    "render_html",
    "render_plots",
    "report_tables",
    "write_report",
]


def write_report(report: Mapping[str, Any], out_dir: Path) -> dict[str, Path]:
    """Write ``report.json``, the PNG charts and ``report.html`` into ``out_dir``.

    Args:
        report: The report dict.
        out_dir: Target folder, created if needed; existing files of the same names are
            replaced.

    Returns:
        ``"report_json"``, each plot key of :func:`render_plots`, then ``"report_html"``,
        mapped to the written paths.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "report.json"
    json_path.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    plots = render_plots(report, out_dir)
    html_path = out_dir / "report.html"
    html_path.write_text(render_html(report, plots), encoding="utf-8")
    return {"report_json": json_path, **plots, "report_html": html_path}
