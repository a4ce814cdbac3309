"""The report's charts: PNGs drawn with matplotlib's Agg canvas, no display needed.

Plots are drawn on :class:`matplotlib.figure.Figure` objects, never through ``pyplot``:
pyplot keeps global state and is not thread safe, and this module also runs inside the
server (MLflow logging of a concluded experiment happens on a worker thread). A timeline
with too few samples still yields every core PNG, drawn as a "no data yet" placeholder, so
callers can rely on the file names (:data:`PLOT_FILES`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from serve_app.report.format import (
    arm_names_of,
    arms_of,
    finite_or_none,
    psi_of,
    psi_threshold,
    top_features,
)

PLOT_FILES: dict[str, str] = {
    "traffic_share": "traffic_share.png",
    "posteriors": "posteriors.png",
    "cumulative_reward": "cumulative_reward.png",
    "drift": "drift.png",
}
"""Plot key -> file name written by :func:`render_plots`."""

_DPI = 100
_FIGSIZE = (8.0, 4.5)
_GRID_POINTS = 600
_TAIL = 5e-4  # posterior x-range: quantiles [_TAIL, 1 - _TAIL] of every arm


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
    arms = arm_names_of(report)
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
    specs = {str(a.get("name")): s for a in arms_of(report) if (s := _posterior_spec(a))}
    if not specs:
        return _placeholder(title, "no posterior yet")
    excluded = {str(a.get("name")) for a in arms_of(report) if a.get("excluded")}
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


def _plot_drift(drift: Mapping[str, Any]) -> Figure:
    """Horizontal bars of PSI per feature (top 20), drifted features in red.

    An infinite PSI (a live bin the reference never saw) is drawn as a hatched bar 1.5 x the
    largest finite value or the threshold.
    """
    features = top_features(drift)
    threshold = psi_threshold(drift)
    if not features:
        return _placeholder("Feature drift (PSI)", "no PSI values")
    figure, axes = _new_figure()
    raw = [psi_of(f) or 0.0 for f in features][::-1]
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
