"""The report's timeline plots against decisions: a short seeded Thompson-sampling run,
sampled like the state samples it (a row per arm every 25 decisions), must show its
learning curve (the best arm's share rising over many intervals) in the series, the PNG,
the CLI tables and the HTML page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rich.console import Console

from bandits import ArmStats, make_policy
from serve_app.report import render_html, render_plots, report_tables
from serve_app.report.plots import (
    DECISIONS_LABEL,
    _plot_cumulative_reward,
    _plot_traffic_share,
    share_by_decisions,
    traffic_shares,
)

RATES = {"logreg": 0.3, "forest": 0.5, "mlp": 0.7}
EVERY = 25  # lifecycle.timeline_every_decisions


def simulated_run(
    requests: int = 800, seed: int = 0, per_second: float = 15.0
) -> tuple[dict, list[str]]:
    """What ``bandit-serve simulate --requests 800 --reward-rates logreg=0.3,forest=0.5,
    mlp=0.7`` leaves in the report, without a server: Thompson sampling learns from every
    reward; a timeline sample is taken after every ``EVERY`` decisions.

    Returns:
        The report and the arm of every decision, in order (the truth to compare with).
    """
    policy = make_policy("thompson", list(RATES), {"floor": 0.02}, seed=seed)
    rng = np.random.default_rng(seed + 1)
    start = 1_763_870_000.0
    timeline: list[dict[str, Any]] = []
    chosen: list[str] = []

    def sample(decision: int) -> None:
        weights = policy.weights()
        for arm, stats in policy.stats.items():
            timeline.append(
                {
                    "experiment": "digits",
                    "at": start + decision / per_second,
                    "decisions": decision,
                    "arm": arm,
                    "pulls": stats.pulls,
                    "feedback": stats.feedback,
                    "reward_sum": stats.reward_sum,
                    "weight": weights[arm],
                }
            )

    sample(0)
    for decision in range(1, requests + 1):
        arm = policy.select().arm
        chosen.append(arm)
        reward = float(rng.random() < RATES[arm])
        policy.update({arm: ArmStats(1, 1, reward, reward)})
        if decision % EVERY == 0:
            sample(decision)
    arms = [
        {
            "name": arm,
            "requests": stats.pulls,
            "feedback": stats.feedback,
            "reward_mean": stats.reward_mean,
            "weight": policy.weights()[arm],
            "posterior": {
                "family": "beta",
                "alpha": 1 + stats.reward_sum,
                "beta": 1 + stats.feedback - stats.reward_sum,
            },
        }
        for arm, stats in policy.stats.items()
    ]
    report = {"experiment": "digits", "reward": "binary", "arms": arms, "timeline": timeline}
    return report, chosen


@pytest.fixture(scope="module")
def report() -> dict:
    return simulated_run()[0]


@pytest.mark.parametrize("seed", range(5))
def test_traffic_shares_are_the_share_of_each_block_of_decisions(seed: int) -> None:
    report, chosen = simulated_run(seed=seed)
    series = traffic_shares(report)
    assert series.arms == list(RATES)
    assert len(series.end) == 800 // EVERY  # one interval per sample, not one flat band
    assert np.array_equal(series.end - series.start, np.full(len(series.end), EVERY))
    assert series.start[0] == 0
    assert series.end[-1] == 800
    blocks = np.array(chosen).reshape(-1, EVERY)
    for j, arm in enumerate(series.arms):
        assert np.array_equal(series.shares[:, j], (blocks == arm).mean(axis=1))
    # Thompson sampling moves its traffic to mlp: the curve rises from the first interval.
    best = series.share_of("mlp")
    assert best[0] < 0.8
    assert best[-8:].mean() > 0.9
    first, *_, last = share_by_decisions(series)
    assert (first[0], last[1]) == (0.0, 800.0)
    assert last[2]["mlp"] > first[2]["mlp"]


def test_rows_without_decisions_use_the_sum_of_pulls(report: dict) -> None:
    bare = {**report, "timeline": [{k: v for k, v in row.items() if k != "decisions"}
                                   for row in report["timeline"]]}  # fmt: skip
    with_field, without = traffic_shares(report), traffic_shares(bare)
    assert np.array_equal(with_field.end, without.end)
    assert np.array_equal(with_field.shares, without.shares)


def test_a_thinned_timeline_keeps_the_decision_widths(report: dict) -> None:
    """``timeline_points`` keeps some sample times: the intervals widen, the total stays."""
    times = sorted({row["at"] for row in report["timeline"]})
    kept = set(times[::5]) | {times[-1]}
    thinned = {**report, "timeline": [row for row in report["timeline"] if row["at"] in kept]}
    series = traffic_shares(thinned)
    assert len(series.end) == len(kept) - 1
    assert (series.end - series.start).sum() == 800
    assert series.share_of("mlp")[-1] > series.share_of("mlp")[0]


def test_samples_without_new_decisions_are_no_interval() -> None:
    rows = [
        {"at": at, "decisions": decisions, "arm": arm, "pulls": pulls, "weight": 0.5}
        for at, decisions, arm, pulls in [
            (1.0, 10, "a", 5), (1.0, 10, "b", 5),
            (2.0, 10, "a", 5), (2.0, 10, "b", 5),  # feedback only: no decision
            (3.0, 30, "a", 20), (3.0, 30, "b", 10),
        ]
    ]  # fmt: skip
    series = traffic_shares({"timeline": rows})
    assert series.start.tolist() == [10.0]
    assert series.end.tolist() == [30.0]
    assert series.share_of("a").tolist() == [0.75]


def test_plots_put_decisions_on_the_x_axis(report: dict) -> None:
    figure = _plot_traffic_share(report)
    axes = figure.axes[0]
    assert axes.get_xlabel() == DECISIONS_LABEL
    assert axes.get_xlim() == (0.0, 800.0)
    assert "800 decisions over" in axes.get_title(loc="right")
    bands = [c for c in axes.collections if len(c.get_paths())]
    assert len(bands) == len(RATES)
    # A stepped band has two vertices per interval on each edge: the learning curve is there.
    assert all(len(band.get_paths()[0].vertices) >= 4 * (800 // EVERY) for band in bands)
    cumulative = _plot_cumulative_reward(report)
    assert cumulative.axes[1].get_xlabel() == DECISIONS_LABEL
    line = cumulative.axes[1].get_lines()[2]  # mlp's cumulative mean reward
    assert line.get_xdata()[-1] == 800


def test_tables_and_html_show_the_share_by_decisions(report: dict, tmp_path: Path) -> None:
    tables = report_tables(report)
    assert "traffic share by decisions" in [str(t.title) for t in tables]
    console = Console(width=160, record=True, color_system=None)
    for table in tables:
        console.print(table)
    text = console.export_text()
    assert "0-200" in text
    assert "600-800" in text
    plots = render_plots(report, tmp_path)
    page = render_html(report, plots)
    assert "<h2>Traffic share by decisions</h2>" in page
    assert "<td>600-800</td>" in page
    assert "against cumulative decisions" in page


def test_no_learning_table_without_intervals() -> None:
    single = {"timeline": [{"at": 1.0, "decisions": 5, "arm": "a", "pulls": 5}]}
    assert traffic_shares(single).start.size == 0
    assert share_by_decisions(traffic_shares(single)) == []
    assert "traffic share by decisions" not in [str(t.title) for t in report_tables(single)]
    assert "Traffic share by decisions" not in render_html(single, {})
