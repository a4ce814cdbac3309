"""``bandit-serve plan``: users and days to detect an effect, as a product manager reads it.

Online, the plan comes from ``GET /experiments/{name}/plan`` (the experiment's own baseline,
variance and traffic); offline, from explicit ``--baseline`` (and ``--sd`` for a continuous
metric) and ``--daily-traffic``, computed here by the same
:func:`serve_app.experiment.planning.make_plan` without a running app.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.table import Table

from serve_app.experiment.planning import Traffic, make_plan

LABELS = {
    "fixed": "fixed horizon",
    "sequential": "sequential (always valid)",
    "bayesian": "Bayesian (simulated)",
}


def _n(value: Any) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _d(value: Any) -> str:
    return "-" if value is None else f"{value:,.1f}"


def plan_table(plan: Mapping[str, Any]) -> Table:
    """One row per rule: users per arm and in all, days, median stop, power, wrong winner."""
    inputs = plan["inputs"]
    size = (
        f"{100 * inputs['mde']:.4g}% relative lift"
        if inputs["relative"]
        else f"absolute lift {inputs['mde']:g}"
    )
    title = f"plan: {size}, power {inputs['power']:.0%}, alpha {inputs['alpha']:g}"
    if plan.get("experiment"):
        title = f"{plan['experiment']} {title}"
    table = Table(title=title)
    for column in (
        "rule",
        "users / arm",
        "users in all",
        "days",
        "median stop (days)",
        "power",
        "wrong winner",
    ):
        table.add_column(column, justify="left" if column == "rule" else "right")
    for name, row in plan["rules"].items():
        if "error" in row:
            table.add_row(LABELS.get(name, name), f"[red]{row['error']}[/red]", "", "", "", "", "")
            continue
        wrong = row.get("wrong_winner")
        table.add_row(
            LABELS.get(name, name),
            _n(row["n_per_arm"]),
            _n(row["n_total"]),
            _d(row["days"]),
            _d(row.get("median_days")),
            f"{row['power']:.1%}",
            "-" if wrong is None else f"{wrong:.1%}",
        )
    return table


def inputs_line(plan: Mapping[str, Any]) -> str:
    """What the plan rests on: baseline, sd, traffic, arms."""
    inputs = plan["inputs"]
    parts = [f"baseline {inputs['baseline']:.6g}"]
    if inputs.get("sd") is not None:
        parts.append(f"sd {inputs['sd']:.6g}")
    daily = inputs.get("daily_traffic")
    parts.append("traffic unknown" if daily is None else f"~{daily:,.0f} decisions/day")
    parts.append(f"{inputs['arms']} arms")
    if inputs.get("control_feedback"):
        parts.append(f"from {inputs['control_feedback']:,} control feedback")
    return "; ".join(parts)


def offline_plan(
    *,
    baseline: float,
    sd: float | None,
    daily_traffic: float | None,
    arms: int,
    **options: Any,
) -> dict[str, Any]:
    """A plan without a running app: ``sd`` given means a continuous metric, else a rate.

    Raises:
        serve_app.experiment.planning.PlanError: An input is out of range.
    """
    reward = "continuous" if sd is not None else "binary"
    traffic = Traffic(baseline, sd, daily_traffic, arms, 0)
    return make_plan(traffic, reward, **options)
