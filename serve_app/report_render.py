"""Render an experiment report (``GET /experiments/{name}/report``) as PNGs, HTML and tables.

Three outputs from one report dict, none of which needs a display or a network:

- :func:`render_plots` draws PNG charts with matplotlib's Agg canvas;
- :func:`render_html` writes one self-contained HTML page (inline CSS, the PNGs embedded
  as base64 ``data:`` URIs, every string escaped);
- :func:`report_tables` builds rich tables for the ``bandit-serve report`` command;
- :func:`write_report` writes ``report.json``, the PNGs and ``report.html`` into a folder.

Plots are drawn on :class:`matplotlib.figure.Figure` objects, never through ``pyplot``:
pyplot keeps global state and is not thread safe, and this module also runs inside the
server (MLflow logging of a concluded experiment happens on a worker thread).

Every key of the report schema is present but any value may be null; a missing or null
value renders as a dash (HTML, tables) or is left out of a plot. A timeline with too few
snapshots still yields every core PNG, drawn as a "no data yet" placeholder (see
:func:`render_plots`), so callers can rely on the file names.
"""

from __future__ import annotations

import base64
import html
import json
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from rich.table import Table
from rich.text import Text

__all__ = [
    "DEFAULT_PSI_THRESHOLD",
    "PLOT_FILES",
    "render_html",
    "render_plots",
    "report_tables",
    "write_report",
]

PLOT_FILES: dict[str, str] = {
    "traffic_share": "traffic_share.png",
    "posteriors": "posteriors.png",
    "cumulative_reward": "cumulative_reward.png",
    "drift": "drift.png",
}
"""Plot key -> file name written by :func:`render_plots`."""

DEFAULT_PSI_THRESHOLD = 0.2
"""PSI above which a feature counts as shifted, unless the drift block names its own
``psi_threshold`` (0.1 to 0.2 is the usual "moderate" band, above 0.2 "significant")."""

_DPI = 100
_FIGSIZE = (8.0, 4.5)
_TOP_FEATURES = 20
_GRID_POINTS = 600
_TAIL = 5e-4  # posterior x-range: quantiles [_TAIL, 1 - _TAIL] of every arm
_MISSING = "-"


# --------------------------------------------------------------------------- small helpers


def _arms(report: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [a for a in report.get("arms") or [] if isinstance(a, Mapping)]


def _arm_names(report: Mapping[str, Any]) -> list[str]:
    """Arm names in report order, then any extra arms seen only in the timeline."""
    names = [str(a.get("name")) for a in _arms(report)]
    for point in report.get("timeline") or []:
        arm = str(point.get("arm"))
        if arm not in names:
            names.append(arm)
    return names


def finite_or_none(value: Any) -> float | None:
    """``value`` as a finite float, else None (null, NaN, non-numeric)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _num(value: Any, digits: int = 4) -> str:
    """Format a number for display: ``digits`` significant digits, a dash for null.

    Example:
        >>> _num(0.912345), _num(1200), _num(None), _num(True), _num(float("nan"))
        ('0.9123', '1200', '-', 'yes', 'nan')
    """
    if value is None:
        return _MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.{digits}g}"
    return str(value)


def _pct(value: Any, signed: bool = True) -> str:
    """A ratio as a percentage (``0.05`` -> ``+5.00%``), a dash for null.

    Example:
        >>> _pct(0.05), _pct(-0.1234), _pct(None), _pct(0.3, signed=False)
        ('+5.00%', '-12.34%', '-', '30.00%')
    """
    number = finite_or_none(value)
    if number is None:
        return _MISSING
    return f"{number:+.2%}" if signed else f"{number:.2%}"


def _interval(value: Any) -> str:
    """A ``[low, high]`` pair of relative lifts as percentages.

    Example:
        >>> _interval([0.03, 0.07]), _interval(None)
        ('[+3.00%, +7.00%]', '-')
    """
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 2:
        return _MISSING
    return f"[{_pct(value[0])}, {_pct(value[1])}]"


def _when(value: Any) -> str:
    """A unix time in seconds as a UTC timestamp.

    Example:
        >>> _when(0.0), _when(None)
        ('1970-01-01 00:00:00 UTC', '-')
    """
    number = finite_or_none(value)
    if number is None:
        return _MISSING
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(number))


def _duration(value: Any) -> str:
    """Seconds as ``1h 02m 03s`` (leading zero units dropped).

    Example:
        >>> _duration(3723.4), _duration(59), _duration(None)
        ('1h 02m 03s', '59s', '-')
    """
    number = finite_or_none(value)
    if number is None:
        return _MISSING
    total = round(number)
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m {seconds:02d}s"
    if minutes:
        return f"{minutes}m {seconds:02d}s"
    return f"{seconds}s"


# --------------------------------------------------------------------------- timeline


def _timeline_matrix(
    report: Mapping[str, Any], field: str
) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Cumulative ``field`` per arm at each distinct snapshot time.

    An arm missing from a snapshot keeps its previous value (0 before its first one).

    Returns:
        ``(times, arms, values)`` with ``values`` of shape ``(len(times), len(arms))``;
        ``times`` sorted ascending. Empty arrays when the timeline is empty.
    """
    points = [p for p in report.get("timeline") or [] if finite_or_none(p.get("at")) is not None]
    arms = _arm_names(report)
    times = np.array(sorted({float(p["at"]) for p in points}), dtype=float)
    values = np.full((len(times), len(arms)), np.nan)
    row = {t: i for i, t in enumerate(times)}
    col = {a: j for j, a in enumerate(arms)}
    for point in points:
        value = finite_or_none(point.get(field))
        if value is not None:
            values[row[float(point["at"])], col[str(point.get("arm"))]] = value
    for j in range(len(arms)):
        last = 0.0 if field != "weight" else np.nan
        for i in range(len(times)):
            if np.isnan(values[i, j]):
                values[i, j] = last
            else:
                last = values[i, j]
    return times, arms, values


def _time_axis(times: np.ndarray) -> tuple[np.ndarray, str]:
    """Times relative to the first snapshot, in seconds, minutes or hours by span.

    Example:
        >>> _time_axis(np.array([100.0, 400.0]))[1]
        'minutes since first snapshot'
    """
    if len(times) == 0:
        return times, "seconds since first snapshot"
    relative = times - times[0]
    span = float(relative[-1])
    if span > 2 * 3600:
        return relative / 3600.0, "hours since first snapshot"
    if span > 120:
        return relative / 60.0, "minutes since first snapshot"
    return relative, "seconds since first snapshot"


def _interval_shares(pulls: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Share of new pulls per arm in each interval between consecutive snapshots.

    Intervals without any new pull are dropped.

    Returns:
        ``(index, shares)``: the index of each kept interval's closing snapshot and the
        shares, shape ``(kept, arms)``, each row summing to 1.

    Example:
        >>> index, shares = _interval_shares(np.array([[0, 0], [10, 30], [10, 30], [30, 40]]))
        >>> index.tolist(), shares.tolist()
        ([1, 3], [[0.25, 0.75], [0.6666666666666666, 0.3333333333333333]])
    """
    deltas = np.clip(np.diff(pulls, axis=0), 0.0, None)
    totals = deltas.sum(axis=1)
    keep = totals > 0
    shares = deltas[keep] / totals[keep, None]
    return np.flatnonzero(keep) + 1, shares


# --------------------------------------------------------------------------- plots


def _new_figure(nrows: int = 1) -> tuple[Figure, Any]:
    height = _FIGSIZE[1] if nrows == 1 else _FIGSIZE[1] * 1.5
    figure = Figure(figsize=(_FIGSIZE[0], height), dpi=_DPI, layout="constrained")
    axes = figure.subplots(nrows, 1, sharex=True) if nrows > 1 else figure.subplots()
    return figure, axes


def _placeholder(title: str, message: str = "no data yet") -> Figure:
    """A figure with a title and a centred message, for reports without enough data."""
    figure, axes = _new_figure()
    axes.set_title(title)
    axes.text(0.5, 0.5, message, ha="center", va="center", fontsize=16, color="0.45")
    axes.set_axis_off()
    return figure


def _save(figure: Figure, path: Path) -> Path:
    figure.savefig(path, format="png", dpi=_DPI)
    return path


def _plot_traffic_share(report: Mapping[str, Any]) -> Figure:
    """Stacked area of each arm's share of new pulls per interval, routing weights dashed."""
    title = "Traffic share per interval"
    times, arms, pulls = _timeline_matrix(report, "pulls")
    index, shares = _interval_shares(pulls) if len(times) >= 2 else (np.array([]), None)
    if shares is None or len(index) == 0:
        return _placeholder(title)
    x, label = _time_axis(times)
    figure, axes = _new_figure()
    colors = [f"C{j % 10}" for j in range(len(arms))]
    # Each share is held from its interval's opening snapshot to the next kept interval
    # ("post" steps); the last one is repeated to close its interval.
    edges = np.concatenate([x[index - 1], x[index[-1:]]])
    stacked = np.vstack([shares, shares[-1:]]).T
    axes.stackplot(edges, stacked, labels=arms, colors=colors, alpha=0.7, step="post")
    _, _, weights = _timeline_matrix(report, "weight")
    for j in range(len(arms)):
        if not np.all(np.isnan(weights[:, j])):
            axes.plot(x, weights[:, j], color=colors[j], linestyle="--", linewidth=1.2)
    axes.plot([], [], color="0.3", linestyle="--", label="routing weight")
    axes.set_ylim(0.0, 1.0)
    axes.set_xlabel(label)
    axes.set_ylabel("share of pulls")
    axes.set_title(title)
    axes.legend(loc="upper left", fontsize="small", ncols=min(len(arms) + 1, 4))
    return figure


def _posterior_spec(arm: Mapping[str, Any]) -> tuple[str, Any] | None:
    """A frozen scipy distribution for an arm's posterior, or None if absent/degenerate.

    Returns:
        ``("dist", frozen)`` for a proper Beta/Normal, ``("point", mean)`` for a Normal
        with zero spread.
    """
    from scipy import stats

    posterior = arm.get("posterior")
    if not isinstance(posterior, Mapping):
        return None
    family = posterior.get("family")
    if family == "beta":
        alpha, beta = finite_or_none(posterior.get("alpha")), finite_or_none(posterior.get("beta"))
        if alpha is None or beta is None or alpha <= 0 or beta <= 0:
            return None
        return "dist", stats.beta(alpha, beta)
    if family == "normal":
        mean, sd = finite_or_none(posterior.get("mean")), finite_or_none(posterior.get("sd"))
        if mean is None or sd is None or sd < 0:
            return None
        return ("dist", stats.norm(mean, sd)) if sd > 0 else ("point", mean)
    return None


def _posterior_grid(specs: Mapping[str, tuple[str, Any]]) -> np.ndarray:
    """x values covering every posterior's central mass, dense inside each one's range.

    A shared coarse grid over the union plus a fine grid per arm keeps a narrow posterior
    next to a wide one smooth.
    """
    ranges = []
    for kind, value in specs.values():
        if kind == "dist":
            ranges.append((float(value.ppf(_TAIL)), float(value.ppf(1 - _TAIL))))
        else:
            ranges.append((value, value))
    low, high = min(r[0] for r in ranges), max(r[1] for r in ranges)
    pad = 0.05 * (high - low) or 0.05 * max(abs(low), 1.0)
    parts = [np.linspace(low - pad, high + pad, _GRID_POINTS)]
    parts += [np.linspace(lo, hi, _GRID_POINTS) for lo, hi in ranges if hi > lo]
    return np.unique(np.concatenate(parts))


def _plot_posteriors(report: Mapping[str, Any]) -> Figure:
    """Posterior density of each arm's mean reward (Beta or Normal)."""
    title = "Posterior of mean reward per arm"
    specs = {str(a.get("name")): s for a in _arms(report) if (s := _posterior_spec(a))}
    if not specs:
        return _placeholder(title, "no posterior yet")
    excluded = {str(a.get("name")) for a in _arms(report) if a.get("excluded")}
    grid = _posterior_grid(specs)
    figure, axes = _new_figure()
    for j, (arm, (kind, value)) in enumerate(specs.items()):
        color = f"C{j % 10}"
        label = f"{arm} (excluded)" if arm in excluded else arm
        style = ":" if arm in excluded else "-"
        if kind == "point":
            axes.axvline(value, color=color, linestyle=style, label=f"{label} (point mass)")
            continue
        density = value.pdf(grid)
        finite = np.isfinite(density)
        axes.plot(grid[finite], density[finite], color=color, linestyle=style, label=label)
        axes.fill_between(grid[finite], density[finite], color=color, alpha=0.15)
    if report.get("reward") == "binary":
        axes.set_xlim(max(grid[0], 0.0), min(grid[-1], 1.0))
    axes.set_ylim(bottom=0.0)
    axes.set_xlabel("mean reward")
    axes.set_ylabel("density")
    axes.set_title(title)
    axes.legend(loc="upper left", fontsize="small")
    return figure


def _plot_cumulative_reward(report: Mapping[str, Any]) -> Figure:
    """Cumulative reward per arm (top) and cumulative mean reward per arm (bottom)."""
    title = "Cumulative reward per arm"
    times, arms, reward = _timeline_matrix(report, "reward_sum")
    if len(times) == 0:
        return _placeholder(title)
    _, _, feedback = _timeline_matrix(report, "feedback")
    x, label = _time_axis(times)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(feedback > 0, reward / feedback, np.nan)
    marker = "o" if len(times) == 1 else None
    figure, (top, bottom) = _new_figure(nrows=2)
    for j, arm in enumerate(arms):
        top.plot(x, reward[:, j], color=f"C{j % 10}", marker=marker, label=arm)
        bottom.plot(x, mean[:, j], color=f"C{j % 10}", marker=marker, label=arm)
    top.set_ylabel("cumulative reward")
    top.set_title(title)
    top.legend(loc="upper left", fontsize="small")
    bottom.set_ylabel("cumulative mean reward")
    bottom.set_xlabel(label)
    return figure


def _psi_threshold(drift: Mapping[str, Any]) -> float:
    """The drift block's PSI threshold (``thresholds.psi`` or ``psi_threshold``), else 0.2."""
    thresholds = drift.get("thresholds")
    nested = thresholds.get("psi") if isinstance(thresholds, Mapping) else None
    return (
        finite_or_none(nested)
        or finite_or_none(drift.get("psi_threshold"))
        or DEFAULT_PSI_THRESHOLD
    )


def _psi(item: Mapping[str, Any]) -> float | None:
    """A PSI value; the drift detector writes an infinite PSI as the string ``"inf"``.

    Example:
        >>> _psi({"psi": 0.1}), _psi({"psi": "inf"}), _psi({"psi": None})
        (0.1, inf, None)
    """
    value = item.get("psi")
    if value == "inf" or (isinstance(value, float) and value == math.inf):
        return math.inf
    return finite_or_none(value)


def _top_features(drift: Mapping[str, Any], limit: int = _TOP_FEATURES) -> list[Mapping[str, Any]]:
    """Drift features with a PSI, highest PSI first, at most ``limit``."""
    features = [f for f in drift.get("features") or [] if _psi(f) is not None]
    features.sort(key=lambda f: _psi(f) or 0.0, reverse=True)
    return features[:limit]


def _drift_arms(drift: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Per-arm prediction drift, from a list of dicts or an ``{arm: verdict}`` mapping."""
    arms = drift.get("arms") or []
    if isinstance(arms, Mapping):
        return [{**verdict, "arm": arm} for arm, verdict in arms.items()]
    return [a for a in arms if isinstance(a, Mapping)]


def _plot_drift(drift: Mapping[str, Any]) -> Figure:
    """Horizontal bars of PSI per feature (top 20), drifted features in red.

    An infinite PSI (a live bin the reference never saw) is drawn as a hatched bar 1.5 x the
    largest finite value or the threshold.
    """
    features = _top_features(drift)
    threshold = _psi_threshold(drift)
    if not features:
        return _placeholder("Feature drift (PSI)", "no PSI values")
    figure, axes = _new_figure()
    raw = [_psi(f) or 0.0 for f in features][::-1]
    cap = 1.5 * max([threshold, *(v for v in raw if math.isfinite(v))])
    bars = axes.barh(
        [str(f.get("name")) for f in features][::-1],
        [v if math.isfinite(v) else cap for v in raw],
        color=["C3" if f.get("drifted") else "C0" for f in features][::-1],
    )
    for bar, value in zip(bars, raw, strict=True):
        if not math.isfinite(value):
            bar.set_hatch("//")
            axes.annotate("inf", (cap, bar.get_y() + bar.get_height() / 2), va="center")
    axes.axvline(threshold, color="0.2", linestyle="--", label=f"threshold {threshold:g}")
    axes.set_xlabel("population stability index (PSI)")
    axes.set_title(f"Feature drift, top {len(features)} by PSI")
    axes.legend(loc="lower right", fontsize="small")
    return figure


def render_plots(report: Mapping[str, Any], out_dir: Path) -> dict[str, Path]:
    """Draw the report's charts as PNG files in ``out_dir`` (created if needed).

    Files (see :data:`PLOT_FILES`):

    - ``traffic_share.png``: share of new pulls per arm in each interval between timeline
      snapshots (stacked area), with each arm's routing weight as a dashed line;
    - ``posteriors.png``: posterior density of each arm's mean reward (Beta or Normal),
      over an x-range holding the central 99.9% of every arm's mass;
    - ``cumulative_reward.png``: cumulative reward and cumulative mean reward per arm;
    - ``drift.png``: PSI per feature (top 20) with the threshold line, only when
      ``report["drift"]`` lists features.

    The three core files are always written: with fewer than two snapshots (traffic share),
    no snapshot (cumulative reward) or no posterior, the chart is a placeholder that says
    "no data yet" / "no posterior yet". Only ``drift.png`` is ever skipped.

    Args:
        report: The report dict of ``GET /experiments/{name}/report``.
        out_dir: Directory for the PNGs.

    Returns:
        Plot key (``"traffic_share"``, ...) -> path of the written PNG.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    figures: dict[str, Figure] = {
        "traffic_share": _plot_traffic_share(report),
        "posteriors": _plot_posteriors(report),
        "cumulative_reward": _plot_cumulative_reward(report),
    }
    drift = report.get("drift")
    if isinstance(drift, Mapping) and drift.get("features"):
        figures["drift"] = _plot_drift(drift)
    return {key: _save(figure, out_dir / PLOT_FILES[key]) for key, figure in figures.items()}


# --------------------------------------------------------------------------- html

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;
max-width:1100px;padding:0 1rem;color:#1f2328;background:#fff}
h1{margin-bottom:.2rem}h2{margin-top:2rem;border-bottom:1px solid #d0d7de;padding-bottom:.2rem}
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}
th,td{border:1px solid #d0d7de;padding:.25rem .6rem;text-align:right;vertical-align:top}
th{background:#f6f8fa}td:first-child,th:first-child{text-align:left}
td.text{text-align:left;font-family:ui-monospace,monospace;white-space:pre-wrap}
.badge{display:inline-block;border-radius:1rem;padding:.1rem .7rem;margin-right:.4rem;
background:#ddf4ff;font-weight:600}
.bad{background:#ffebe9;color:#cf222e}.good{background:#dafbe1;color:#1a7f37}
.muted{color:#656d76}.plots img{max-width:100%;border:1px solid #d0d7de;margin:.5rem 0}
dl{display:grid;grid-template-columns:max-content auto;gap:.2rem 1rem}dt{font-weight:600}
dd{margin:0}
"""


def _e(value: Any) -> str:
    """Escape any value for HTML text or attributes."""
    return html.escape(str(value), quote=True)


def _compact(value: Any) -> str:
    """Strings as they are, anything else as compact JSON.

    Example:
        >>> _compact("x"), _compact({"winner": "b", "reason": "p < 0.05"})
        ('x', '{"winner": "b", "reason": "p < 0.05"}')
    """
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _cell(value: Any, css: str | None = None) -> str:
    text = value if isinstance(value, str) else _num(value)
    attr = f' class="{css}"' if css else ""
    return f"<td{attr}>{_e(text)}</td>"


def _html_table(headers: Sequence[str], rows: Iterable[Sequence[str]], empty: str) -> str:
    """An HTML table; ``rows`` hold already-rendered ``<td>`` cells. ``empty`` if no rows."""
    body = "".join(f"<tr>{''.join(cells)}</tr>" for cells in rows)
    if not body:
        return f'<p class="muted">{_e(empty)}</p>'
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _badge(text: Any, css: str = "") -> str:
    return f'<span class="badge {css}">{_e(text)}</span>'


def _html_header(report: Mapping[str, Any]) -> str:
    outcome = report.get("outcome")
    outcome_css = {"promoted": "good", "rolled_back": "bad"}.get(str(outcome), "")
    badges = _badge(f"status: {report.get('status') or _MISSING}")
    badges += _badge(f"outcome: {outcome or _MISSING}", outcome_css)
    badges += _badge(f"winner: {report.get('winner') or _MISSING}")
    facts = {
        "policy": report.get("policy"),
        "reward": report.get("reward"),
        "control": report.get("control"),
        "started": _when(report.get("started_at")),
        "duration": _duration(report.get("duration_s")),
        "generated": _when(report.get("generated_at")),
        "MLflow run": report.get("mlflow_run_id"),
    }
    for key in ("description", "recommendation"):  # optional extras of the report endpoint
        if report.get(key):
            facts[key] = _compact(report[key])
    items = "".join(
        f"<dt>{_e(k)}</dt><dd>{_e(_MISSING if v is None else v)}</dd>" for k, v in facts.items()
    )
    name = report.get("experiment") or "?"
    return f"<h1>Experiment {_e(name)}</h1><p>{badges}</p><dl>{items}</dl>"


def _html_arms(report: Mapping[str, Any]) -> str:
    headers = [
        "arm",
        "model",
        "requests",
        "feedback",
        "reward mean",
        "weight",
        "P(best)",
        "expected loss",
        "errors",
        "error rate",
        "p95 ms",
        "excluded",
    ]
    rows = []
    for arm in _arms(report):
        excluded = arm.get("exclusion_reason") or ("yes" if arm.get("excluded") else "no")
        rows.append(
            [
                _cell(str(arm.get("name"))),
                _cell(str(arm.get("model_uri") or _MISSING), "text"),
                *(
                    _cell(arm.get(k))
                    for k in ("requests", "feedback", "reward_mean", "weight", "prob_best")
                ),
                _cell(arm.get("expected_loss")),
                _cell(arm.get("errors")),
                _cell(_pct(arm.get("error_rate"), signed=False)),
                _cell(arm.get("p95_latency_ms")),
                _cell(excluded, "bad text" if arm.get("excluded") else "text"),
            ]
        )
    return "<h2>Arms</h2>" + _html_table(headers, rows, "no arms")


def _html_comparisons(report: Mapping[str, Any]) -> str:
    headers = [
        "arm",
        "vs",
        "lift",
        "95% CI",
        "p",
        "p adj.",
        "significant",
        "chance to win",
        "Bayes CI",
        "risk (A, B)",
        "seq. lift",
        "seq. CI",
        "seq. p",
        "seq. significant",
    ]
    rows = []
    for comparison in report.get("comparisons") or []:
        freq = comparison.get("frequentist") or {}
        bayes = comparison.get("bayesian") or {}
        seq = comparison.get("sequential") or {}
        risk = bayes.get("risk")
        risk_text = (
            f"{_num(risk[0])}, {_num(risk[1])}"
            if isinstance(risk, Sequence) and not isinstance(risk, str) and len(risk) == 2
            else _MISSING
        )
        significant = freq.get("significant")
        rows.append(
            [
                _cell(str(comparison.get("arm"))),
                _cell(str(comparison.get("control"))),
                _cell(_pct(freq.get("estimate"))),
                _cell(_interval(freq.get("ci"))),
                _cell(_num(freq.get("p_value"), 3)),
                _cell(_num(freq.get("p_value_adjusted"), 3)),
                _cell(significant, "good" if significant else None),
                _cell(_pct(bayes.get("chance_to_win"), signed=False)),
                _cell(_interval(bayes.get("ci"))),
                _cell(risk_text),
                _cell(_pct(seq.get("estimate"))),
                _cell(_interval(seq.get("ci"))),
                _cell(_num(seq.get("p_value"), 3)),
                _cell(seq.get("significant")),
            ]
        )
    note = '<p class="muted">Lifts are relative to the control: (mB - mA) / |mA|.</p>'
    return "<h2>Comparisons</h2>" + note + _html_table(headers, rows, "no comparisons")


def _html_stopping(report: Mapping[str, Any]) -> str:
    stopping = report.get("stopping") or {}
    met = bool(stopping.get("met"))
    summary = (
        f"<p>{_badge('met' if met else 'not met', 'good' if met else '')}"
        f"winner: {_e(stopping.get('winner') or _MISSING)} &mdash; "
        f"{_e(stopping.get('reason') or _MISSING)}</p>"
    )
    rows = [
        [_cell(str(r.get("name"))), _cell(r.get("met")), _cell(str(r.get("detail") or ""), "text")]
        for r in stopping.get("rules") or []
    ]
    table = _html_table(["rule", "met", "detail"], rows, "no stopping rules")
    return "<h2>Stopping rules</h2>" + summary + table


def _html_guardrails(report: Mapping[str, Any]) -> str:
    rows = []
    for g in report.get("guardrails") or []:
        breached = g.get("breached")
        rows.append(
            [
                _cell(str(g.get("arm"))),
                _cell(str(g.get("rule")), "text"),
                _cell(g.get("value")),
                _cell(g.get("threshold")),
                _cell(breached, "bad" if breached else None),
                _cell(str(g.get("detail") or ""), "text"),
            ]
        )
    headers = ["arm", "rule", "value", "threshold", "breached", "detail"]
    return "<h2>Guardrails</h2>" + _html_table(headers, rows, "no guardrails")


def _html_srm_ramp(report: Mapping[str, Any]) -> str:
    srm = report.get("srm") or {}
    mismatch = srm.get("mismatch")
    srm_html = (
        f"<p>p-value {_e(_num(srm.get('p_value'), 3))} "
        f"{_badge('mismatch' if mismatch else 'no mismatch', 'bad' if mismatch else 'good')}</p>"
    )
    ramp = report.get("ramp")
    if isinstance(ramp, Mapping):
        steps = ramp.get("steps") or []
        current = ramp.get("step")
        marks = " &rarr; ".join(
            f"<b>[{_e(_num(s))}%]</b>" if i == current else f"{_e(_num(s))}%"
            for i, s in enumerate(steps)
        )
        ramp_html = (
            f"<p>arm {_e(ramp.get('arm'))} at {_e(_num(ramp.get('percent')))}% "
            f"(step {_e(_num(current))}): {marks}</p>"
        )
    else:
        ramp_html = '<p class="muted">no ramp</p>'
    return "<h2>Sample ratio mismatch</h2>" + srm_html + "<h2>Ramp</h2>" + ramp_html


def _html_drift(report: Mapping[str, Any]) -> str:
    drift = report.get("drift")
    if not isinstance(drift, Mapping):
        return '<h2>Drift</h2><p class="muted">no drift check</p>'
    alert = drift.get("alert")
    head = f"<p>{_badge('drift alert' if alert else 'no drift alert', 'bad' if alert else 'good')}"
    head += f"PSI threshold {_e(_num(_psi_threshold(drift)))}</p>"
    reasons = drift.get("reasons") or []
    if reasons:
        head += "<ul>" + "".join(f"<li>{_e(r)}</li>" for r in reasons) + "</ul>"
    headers = ["name", "kind", "statistic", "p", "p adj.", "PSI", "drifted"]

    def row(item: Mapping[str, Any], first: str) -> list[str]:
        return [
            _cell(str(item.get(first))),
            _cell(str(item.get("kind") or _MISSING)),
            _cell(item.get("statistic")),
            _cell(_num(item.get("p_value"), 3)),
            _cell(_num(item.get("p_adjusted"), 3)),
            _cell(_psi(item)),
            _cell(item.get("drifted"), "bad" if item.get("drifted") else None),
        ]

    features = _html_table(
        headers, [row(f, "name") for f in _top_features(drift)], "no feature statistics"
    )
    arms = _html_table(
        ["arm", *headers[1:]], [row(a, "arm") for a in _drift_arms(drift)], "no arm drift"
    )
    return f"<h2>Drift</h2>{head}<h3>Features (top {_TOP_FEATURES} by PSI)</h3>{features}" + (
        f"<h3>Predictions per arm</h3>{arms}"
    )


def _html_audit(report: Mapping[str, Any]) -> str:
    rows = [
        [
            _cell(_when(entry.get("at"))),
            _cell(str(entry.get("action"))),
            _cell(str(entry.get("actor") or _MISSING)),
            _cell(_compact(entry.get("detail")), "text"),
        ]
        for entry in report.get("audit") or []
    ]
    return "<h2>Audit log</h2>" + _html_table(
        ["at", "action", "actor", "detail"], rows, "no audit entries"
    )


def _html_plots(plots: Mapping[str, Path]) -> str:
    images = []
    for key, path in plots.items():
        data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
        images.append(f'<img alt="{_e(key)}" src="data:image/png;base64,{data}">')
    if not images:
        return ""
    return '<h2>Charts</h2><div class="plots">' + "".join(images) + "</div>"


def render_html(report: Mapping[str, Any], plots: Mapping[str, Path]) -> str:
    """One self-contained HTML page for a report.

    Sections: header (status, outcome, winner, policy, timing, MLflow run id), arms,
    charts (each PNG of ``plots`` embedded as a base64 ``data:`` URI), comparisons,
    stopping rules, guardrails, SRM, ramp, drift and the audit log. CSS is inline, there
    are no scripts and no external references; every report string is HTML-escaped.

    Args:
        report: The report dict.
        plots: Plot key -> PNG path, as returned by :func:`render_plots` (may be empty).

    Returns:
        The HTML document as a string.
    """
    name = report.get("experiment") or "?"
    sections = [
        _html_header(report),
        _html_arms(report),
        _html_plots(plots),
        _html_comparisons(report),
        _html_stopping(report),
        _html_guardrails(report),
        _html_srm_ramp(report),
        _html_drift(report),
        _html_audit(report),
    ]
    body = "\n".join(sections)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>bandit-serve report: {_e(name)}</title><style>{_CSS}</style></head>"
        f"<body>\n{body}\n</body></html>\n"
    )


# --------------------------------------------------------------------------- rich tables


def _text(value: Any) -> Text:
    """A rich cell that never interprets ``[...]`` in report strings as markup."""
    return Text(value if isinstance(value, str) else _num(value))


def _summary_table(report: Mapping[str, Any]) -> Table:
    srm = report.get("srm") or {}
    ramp = report.get("ramp")
    drift = report.get("drift")
    rows = {
        "status": report.get("status"),
        "outcome": report.get("outcome"),
        "winner": report.get("winner"),
        "policy / reward": f"{report.get('policy')} / {report.get('reward')}",
        "control": report.get("control"),
        "duration": _duration(report.get("duration_s")),
        "SRM": f"p={_num(srm.get('p_value'), 3)} mismatch={_num(srm.get('mismatch'))}",
        "ramp": (
            f"{ramp.get('arm')} at {_num(ramp.get('percent'))}%"
            if isinstance(ramp, Mapping)
            else None
        ),
        "drift alert": drift.get("alert") if isinstance(drift, Mapping) else None,
        "MLflow run": report.get("mlflow_run_id"),
    }
    table = Table(
        title=f"report - {report.get('experiment')}", title_justify="left", show_header=False
    )
    table.add_column("field")
    table.add_column("value")
    for key, value in rows.items():
        table.add_row(key, _text(value))
    return table


_ARM_TABLE_FIELDS = (
    "requests",
    "feedback",
    "reward_mean",
    "weight",
    "prob_best",
    "expected_loss",
    "errors",
    "p95_latency_ms",
)


def _arms_table(report: Mapping[str, Any]) -> Table:
    table = Table(title="arms", title_justify="left")
    columns = (
        "arm",
        "requests",
        "feedback",
        "reward mean",
        "weight",
        "P(best)",
        "exp. loss",
        "errors",
        "p95 ms",
        "excluded",
    )
    for column in columns:
        table.add_column(column, justify="left" if column in {"arm", "excluded"} else "right")
    for arm in _arms(report):
        excluded = arm.get("exclusion_reason") or ("yes" if arm.get("excluded") else "")
        table.add_row(
            _text(str(arm.get("name"))),
            *(_text(arm.get(key)) for key in _ARM_TABLE_FIELDS),
            _text(excluded),
        )
    return table


def _comparisons_table(report: Mapping[str, Any]) -> Table:
    table = Table(title="comparisons (relative lift vs control)", title_justify="left")
    columns = ("arm", "vs", "lift", "95% CI", "p adj.", "sig.", "P(win)", "seq. CI", "seq. sig.")
    for column in columns:
        table.add_column(column, justify="left" if column in {"arm", "vs"} else "right")
    for comparison in report.get("comparisons") or []:
        freq = comparison.get("frequentist") or {}
        bayes = comparison.get("bayesian") or {}
        seq = comparison.get("sequential") or {}
        table.add_row(
            _text(str(comparison.get("arm"))),
            _text(str(comparison.get("control"))),
            _text(_pct(freq.get("estimate"))),
            _text(_interval(freq.get("ci"))),
            _text(_num(freq.get("p_value_adjusted"), 3)),
            _text(freq.get("significant")),
            _text(_pct(bayes.get("chance_to_win"), signed=False)),
            _text(_interval(seq.get("ci"))),
            _text(seq.get("significant")),
        )
    return table


def _stopping_table(report: Mapping[str, Any]) -> Table:
    stopping = report.get("stopping") or {}
    title = (
        f"stopping: {'met' if stopping.get('met') else 'not met'}"
        f" (winner {stopping.get('winner') or _MISSING}) - {stopping.get('reason') or ''}"
    )
    table = Table(title=Text(title), title_justify="left")
    for column in ("rule", "met", "detail"):
        table.add_column(column)
    for rule in stopping.get("rules") or []:
        table.add_row(
            _text(str(rule.get("name"))), _text(rule.get("met")), _text(str(rule.get("detail")))
        )
    return table


def _guardrails_table(report: Mapping[str, Any]) -> Table:
    table = Table(title="guardrails", title_justify="left")
    for column in ("arm", "rule", "value", "threshold", "breached", "detail"):
        table.add_column(column, justify="right" if column in {"value", "threshold"} else "left")
    for g in report.get("guardrails") or []:
        breached = Text("BREACHED", style="bold red") if g.get("breached") else _text(False)
        table.add_row(
            _text(str(g.get("arm"))),
            _text(str(g.get("rule"))),
            _text(g.get("value")),
            _text(g.get("threshold")),
            breached,
            _text(str(g.get("detail") or "")),
        )
    return table


def report_tables(report: Mapping[str, Any]) -> list[Table]:
    """Rich tables for the CLI: summary, arms, comparisons, stopping rules, guardrails.

    The comparisons and guardrails tables are left out when the report has none. Report
    strings are rendered as plain text (never as rich markup).

    Example:
        >>> tables = report_tables({"experiment": "x", "arms": [], "comparisons": []})
        >>> [str(t.title) for t in tables]
        ['report - x', 'arms', 'stopping: not met (winner -) - ']
    """
    tables = [_summary_table(report), _arms_table(report)]
    if report.get("comparisons"):
        tables.append(_comparisons_table(report))
    tables.append(_stopping_table(report))
    if report.get("guardrails"):
        tables.append(_guardrails_table(report))
    return tables


# --------------------------------------------------------------------------- files


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
