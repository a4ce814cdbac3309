"""The report as rich tables, for the ``bandit-serve report`` command."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.table import Table
from rich.text import Text

from serve_app.report.format import (
    MISSING,
    arms_of,
    fmt_duration,
    fmt_interval,
    fmt_num,
    fmt_pct,
)
from serve_app.report.plots import share_by_decisions, traffic_shares


def _text(value: Any) -> Text:
    """A rich cell that never interprets ``[...]`` in report strings as markup."""
    return Text(value if isinstance(value, str) else fmt_num(value))


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
        "duration": fmt_duration(report.get("duration_s")),
        "SRM": f"p={fmt_num(srm.get('p_value'), 3)} mismatch={fmt_num(srm.get('mismatch'))}",
        "ramp": (
            f"{ramp.get('arm')} at {fmt_num(ramp.get('percent'))}%"
            if isinstance(ramp, Mapping)
            else None
        ),
        "drift alert": drift.get("alert") if isinstance(drift, Mapping) else None,
        "estimator": (report.get("estimator") or {}).get("estimator"),
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
    for arm in arms_of(report):
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
            _text(fmt_pct(freq.get("estimate"))),
            _text(fmt_interval(freq.get("ci"))),
            _text(fmt_num(freq.get("p_value_adjusted"), 3)),
            _text(freq.get("significant")),
            _text(fmt_pct(bayes.get("chance_to_win"), signed=False)),
            _text(fmt_interval(seq.get("ci"))),
            _text(seq.get("significant")),
        )
    return table


def _cuped_table(report: Mapping[str, Any]) -> Table:
    table = Table(title="CUPED (covariate-adjusted lift vs control)", title_justify="left")
    columns = ("arm", "vs", "units", "lift", "95% CI", "CUPED lift", "CUPED 95% CI", "theta")
    for column in (*columns, "var. reduction"):
        table.add_column(column, justify="left" if column in {"arm", "vs"} else "right")
    for row in report.get("cuped") or []:
        plain = row.get("unadjusted") or {}
        adjusted = row.get("adjusted") or {}
        units = row.get("units") or {}
        table.add_row(
            _text(str(row.get("arm"))),
            _text(str(row.get("control"))),
            _text(" / ".join(str(units.get(k)) for k in (row.get("arm"), row.get("control")))),
            _text(fmt_pct(plain.get("estimate"))),
            _text(fmt_interval(plain.get("ci"))),
            _text(fmt_pct(adjusted.get("estimate"))),
            _text(fmt_interval(adjusted.get("ci"))),
            _text(fmt_num(row.get("theta"), 4)),
            _text(fmt_pct(row.get("variance_reduction"), signed=False)),
        )
    return table


def _ratio_table(report: Mapping[str, Any]) -> Table:
    table = Table(title="ratio metrics (delta method, lift vs control)", title_justify="left")
    columns = ("metric", "arm", "value", "vs", "lift", "95% CI", "p", "P(win)", "seq. CI")
    for column in columns:
        table.add_column(column, justify="left" if column in {"metric", "arm", "vs"} else "right")
    for ratio in report.get("ratio_metrics") or []:
        values = ratio.get("arms") or {}
        by_arm = {row.get("arm"): row for row in ratio.get("comparisons") or []}
        for arm, value in values.items():
            row = by_arm.get(arm) or {}
            freq = row.get("frequentist") or {}
            bayes = row.get("bayesian") or {}
            seq = row.get("sequential") or {}
            table.add_row(
                _text(str(ratio.get("name"))),
                _text(str(arm)),
                _text(fmt_num((value or {}).get("value"), 4)),
                _text(str(row.get("control") or MISSING)),
                _text(fmt_pct(freq.get("estimate"))),
                _text(fmt_interval(freq.get("ci"))),
                _text(fmt_num(freq.get("p_value"), 3)),
                _text(fmt_pct(bayes.get("chance_to_win"), signed=False)),
                _text(fmt_interval(seq.get("ci"))),
            )
    return table


def _learning_table(report: Mapping[str, Any]) -> Table | None:
    """Each arm's traffic share in four equal ranges of decisions (None without a timeline
    interval): where a bandit moved its traffic as it learned."""
    series = traffic_shares(report)
    rows = share_by_decisions(series)
    if not rows:
        return None
    table = Table(title="traffic share by decisions", title_justify="left")
    table.add_column("decisions")
    for arm in series.arms:
        table.add_column(arm, justify="right")
    for low, high, shares in rows:
        table.add_row(
            f"{low:,.0f}-{high:,.0f}",
            *(_text(fmt_pct(shares[arm], signed=False)) for arm in series.arms),
        )
    return table


def _stopping_table(report: Mapping[str, Any]) -> Table:
    stopping = report.get("stopping") or {}
    title = (
        f"stopping: {'met' if stopping.get('met') else 'not met'}"
        f" (winner {stopping.get('winner') or MISSING}) - {stopping.get('reason') or ''}"
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
    """Rich tables for the CLI: summary, arms, comparisons, CUPED, ratio metrics, traffic
    share by decisions, stopping rules, guardrails.

    The comparisons, CUPED, ratio-metric, traffic-share and guardrails tables are left out
    when the report has none (traffic share: fewer than two timeline samples). Report
    strings are rendered as plain text (never as rich markup).

    Example:
        >>> tables = report_tables({"experiment": "x", "arms": [], "comparisons": []})
        >>> [str(t.title) for t in tables]
        ['report - x', 'arms', 'stopping: not met (winner -) - ']
    """
    tables = [_summary_table(report), _arms_table(report)]
    if report.get("comparisons"):
        tables.append(_comparisons_table(report))
    if report.get("cuped"):
        tables.append(_cuped_table(report))
    if report.get("ratio_metrics"):
        tables.append(_ratio_table(report))
    learning = _learning_table(report)
    if learning is not None:
        tables.append(learning)
    tables.append(_stopping_table(report))
    if report.get("guardrails"):
        tables.append(_guardrails_table(report))
    return tables
