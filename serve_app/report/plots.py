"""The report's charts: PNGs drawn with matplotlib's Agg canvas, no display needed.

Plots are drawn on :class:`matplotlib.figure.Figure` objects, never through ``pyplot``:
pyplot keeps global state and is not thread safe, and this module also runs inside the
server (MLflow logging of a concluded experiment happens on a worker thread). A timeline
with too few samples still yields every core PNG, drawn as a "no data yet" placeholder, so
callers can rely on the file names (:data:`PLOT_FILES`).

The timeline plots put cumulative routed decisions on the x axis, not wall time: the state
samples the timeline every ``lifecycle.timeline_every_decisions`` decisions, so a run of a
few hundred requests shows its learning curve however fast it went (the span in wall time
is noted at the top right).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from serve_app.report.format import (
    arm_names_of,
    arms_of,
    finite_or_none,
    fmt_duration,
    fmt_num,
    psi_of,
    psi_threshold,
    top_features,
)

PLOT_FILES: dict[str, str] = {
    "traffic_share": "traffic_share.png",
    "posteriors": "posteriors.png",
    "cumulative_reward": "cumulative_reward.png",
    "drift": "drift.png",
    "concept": "concept_drift.png",
}
"""Plot key -> file name written by :func:`render_plots`."""

DECISIONS_LABEL = "decisions routed (cumulative)"
"""The x axis of the timeline plots: learning shows per decision, whatever the traffic rate."""

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


def _decisions(report: Mapping[str, Any], times: np.ndarray, pulls: np.ndarray) -> np.ndarray:
    """Cumulative routed decisions at each snapshot time: the rows' ``decisions`` (the state
    writes it with every sample), else the sum of the arms' pulls, which is what it counts
    (rows stored before the field existed).

    Kept non-decreasing (a running maximum), so it can serve as an x axis.
    """
    decisions = pulls.sum(axis=1) if len(times) else np.array([], dtype=float)
    row = {t: i for i, t in enumerate(times)}
    for point in report.get("timeline") or []:
        at, value = finite_or_none(point.get("at")), finite_or_none(point.get("decisions"))
        if at is not None and value is not None and at in row:
            decisions[row[at]] = value
    return np.maximum.accumulate(decisions) if len(decisions) else decisions


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


@dataclass(frozen=True)
class TrafficShares:
    """Each arm's share of the decisions routed between consecutive timeline samples.

    Interval ``k`` covers decisions ``start[k]`` to ``end[k]`` (cumulative counts, so
    ``end[k] - start[k]`` is how many decisions it holds) and ``shares[k, j]`` is arm ``j``'s
    part of them; a bandit that learns moves share to its best arm as decisions grow.
    ``weights`` is each arm's routing weight at every sample (``at``, ``decisions``; NaN
    where a sample has none).
    """

    arms: list[str]
    start: np.ndarray
    end: np.ndarray
    shares: np.ndarray
    at: np.ndarray
    decisions: np.ndarray
    weights: np.ndarray

    def share_of(self, arm: str) -> np.ndarray:
        """One arm's share per interval (in decision order)."""
        return self.shares[:, self.arms.index(arm)]


def traffic_shares(report: Mapping[str, Any]) -> TrafficShares:
    """The traffic-share series of ``report["timeline"]`` against cumulative decisions.

    Intervals without a new decision are left out; fewer than two samples give no interval.

    Example:
        >>> rows = [
        ...     {"at": t, "decisions": d, "arm": a, "pulls": p, "weight": w}
        ...     for t, d, a, p, w in [(1, 0, "a", 0, 0.5), (1, 0, "b", 0, 0.5),
        ...                           (2, 40, "a", 30, 0.7), (2, 40, "b", 10, 0.3)]
        ... ]
        >>> series = traffic_shares({"timeline": rows})
        >>> series.start.tolist(), series.end.tolist(), series.share_of("a").tolist()
        ([0.0], [40.0], [0.75])
    """
    times, arms, pulls = _timeline_matrix(report, "pulls")
    _, _, weights = _timeline_matrix(report, "weight")
    decisions = _decisions(report, times, pulls)
    if len(times) >= 2:
        index, shares = _interval_shares(pulls)
    else:
        index, shares = np.array([], dtype=int), np.zeros((0, len(arms)))
    return TrafficShares(
        arms=arms,
        start=decisions[index - 1] if len(index) else np.array([], dtype=float),
        end=decisions[index] if len(index) else np.array([], dtype=float),
        shares=shares,
        at=times,
        decisions=decisions,
        weights=weights,
    )


def share_by_decisions(
    series: TrafficShares, buckets: int = 4
) -> list[tuple[float, float, dict[str, float]]]:
    """Traffic share per arm in ``buckets`` equal ranges of cumulative decisions: the
    learning curve as a few numbers, for the tables and the HTML page.

    Each interval of ``series`` counts in the range holding its last decision, weighted by
    its number of decisions. Ranges without an interval are left out.

    Returns:
        ``(first decision, last decision, {arm: share})`` per range, in decision order.

    Example:
        >>> series = TrafficShares(
        ...     arms=["a", "b"], start=np.array([0.0, 50.0]), end=np.array([50.0, 100.0]),
        ...     shares=np.array([[0.5, 0.5], [0.1, 0.9]]), at=np.array([]),
        ...     decisions=np.array([]), weights=np.zeros((0, 2)))
        >>> [(lo, hi, shares["b"]) for lo, hi, shares in share_by_decisions(series, 2)]
        [(0.0, 50.0, 0.5), (50.0, 100.0, 0.9)]
    """
    if len(series.end) == 0 or buckets < 1:
        return []
    low, high = float(series.start[0]), float(series.end[-1])
    bounds = np.linspace(low, high, buckets + 1)
    which = np.clip(np.searchsorted(bounds, series.end, side="left") - 1, 0, buckets - 1)
    widths = series.end - series.start
    rows = []
    for bucket in range(buckets):
        mask = which == bucket
        total = float(widths[mask].sum())
        if not mask.any() or total <= 0:
            continue
        shares = (series.shares[mask] * widths[mask, None]).sum(axis=0) / total
        rows.append(
            (
                float(bounds[bucket]),
                float(bounds[bucket + 1]),
                {arm: float(shares[j]) for j, arm in enumerate(series.arms)},
            )
        )
    return rows


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


def _span_note(axes: Any, decisions: np.ndarray, times: np.ndarray) -> None:
    """How many decisions over how long, in small print at the top right: the x axis counts
    decisions, so wall time is only told here."""
    if len(decisions) and len(times):
        span = fmt_duration(float(times[-1] - times[0]))
        note = f"{decisions[-1]:,.0f} decisions over {span}"
        axes.set_title(note, loc="right", fontsize="small", color="0.35")


def _plot_traffic_share(report: Mapping[str, Any]) -> Figure:
    """Stacked area of each arm's share of the decisions in each interval between samples,
    against cumulative decisions (so each interval's width is its number of decisions),
    with every arm's routing weight dashed."""
    title = "Traffic share per interval"
    series = traffic_shares(report)
    if len(series.start) == 0:
        return _placeholder(title)
    arms = series.arms
    figure, axes = _new_figure()
    colors = [f"C{j % 10}" for j in range(len(arms))]
    # Each share is held from its interval's first decision to its last ("post" steps);
    # the last one is repeated to close its interval.
    edges = np.concatenate([series.start, series.end[-1:]])
    stacked = np.vstack([series.shares, series.shares[-1:]]).T
    axes.stackplot(edges, stacked, labels=arms, colors=colors, alpha=0.7, step="post")
    for j in range(len(arms)):
        if not np.all(np.isnan(series.weights[:, j])):
            axes.plot(
                series.decisions,
                series.weights[:, j],
                color=colors[j],
                linestyle="--",
                linewidth=1.2,
            )
    axes.plot([], [], color="0.3", linestyle="--", label="routing weight")
    axes.set_ylim(0.0, 1.0)
    axes.set_xlim(float(edges[0]), float(edges[-1]))
    axes.set_xlabel(DECISIONS_LABEL)
    axes.set_ylabel("share of decisions")
    axes.set_title(title, loc="left")
    _span_note(axes, series.decisions, series.at)
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
    """Cumulative reward per arm (top) and cumulative mean reward per arm (bottom), against
    cumulative decisions."""
    title = "Cumulative reward per arm"
    times, arms, reward = _timeline_matrix(report, "reward_sum")
    if len(times) == 0:
        return _placeholder(title)
    _, _, feedback = _timeline_matrix(report, "feedback")
    _, _, pulls = _timeline_matrix(report, "pulls")
    x = _decisions(report, times, pulls)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(feedback > 0, reward / feedback, np.nan)
    marker = "o" if len(times) == 1 else None
    figure, (top, bottom) = _new_figure(nrows=2)
    for j, arm in enumerate(arms):
        top.plot(x, reward[:, j], color=f"C{j % 10}", marker=marker, label=arm)
        bottom.plot(x, mean[:, j], color=f"C{j % 10}", marker=marker, label=arm)
    top.set_ylabel("cumulative reward")
    top.set_title(title, loc="left")
    _span_note(top, x, times)
    top.legend(loc="upper left", fontsize="small")
    bottom.set_ylabel("cumulative mean reward")
    bottom.set_xlabel(DECISIONS_LABEL)
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


def _plot_concept(concept: Mapping[str, Any]) -> Figure:
    """Per arm: its CUSUM statistic as a share of the alarm threshold (an arm at 1 or past
    it alarmed, in red), with the reference and live mean rewards in the labels."""
    arms = list((concept.get("arms") or {}).items())
    if not arms:
        return _placeholder("Concept drift (CUSUM)", "no arms watched")
    figure, axes = _new_figure()
    shares = [(w.get("statistic") or 0.0) / (w.get("threshold") or 1.0) for _, w in arms]
    names = [
        f"{arm} ({fmt_num(w.get('reference_mean'), 3)} -> {fmt_num(w.get('live_mean'), 3)})"
        for arm, w in arms
    ]
    axes.barh(names, shares, color=["C3" if w.get("alarm") else "C0" for _, w in arms])
    axes.axvline(1.0, color="0.2", linestyle="--", label="alarm threshold")
    axes.set_xlabel("CUSUM statistic / threshold (reference -> live mean reward)")
    axes.set_title("Concept drift: reward drop per arm")
    axes.legend(loc="lower right", fontsize="small")
    return figure


def render_plots(report: Mapping[str, Any], out_dir: Path) -> dict[str, Path]:
    """Draw the report's charts as PNG files in ``out_dir`` (created if needed).

    Files (see :data:`PLOT_FILES`):

    - ``traffic_share.png``: each arm's share of the decisions in each interval between
      timeline samples (stacked area) against cumulative decisions, with each arm's routing
      weight as a dashed line (:func:`traffic_shares`);
    - ``posteriors.png``: posterior density of each arm's mean reward (Beta or Normal),
      over an x-range holding the central 99.9% of every arm's mass;
    - ``cumulative_reward.png``: cumulative reward and cumulative mean reward per arm,
      against cumulative decisions;
    - ``drift.png``: PSI per feature (top 20) with the threshold line, only when
      ``report["drift"]`` lists features;
    - ``concept_drift.png``: each arm's CUSUM against its alarm threshold, only when the
      experiment watches concept drift.

    The three core files are always written: with fewer than two snapshots (traffic share),
    no snapshot (cumulative reward) or no posterior, the chart is a placeholder that says
    "no data yet" / "no posterior yet". Only the two drift charts are ever skipped.

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
    if isinstance(drift, Mapping) and isinstance(drift.get("concept"), Mapping):
        figures["concept"] = _plot_concept(drift["concept"])
    return {key: _save(figure, out_dir / PLOT_FILES[key]) for key, figure in figures.items()}
