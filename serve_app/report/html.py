"""The report as one self-contained HTML page: inline CSS, the PNGs embedded as base64
``data:`` URIs, every string escaped."""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from serve_app.report.format import (
    MISSING,
    TOP_FEATURES,
    arms_of,
    drift_arms,
    fmt_duration,
    fmt_interval,
    fmt_num,
    fmt_pct,
    fmt_when,
    psi_of,
    psi_threshold,
    top_features,
)
from serve_app.report.plots import share_by_decisions, traffic_shares

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
    text = value if isinstance(value, str) else fmt_num(value)
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
    badges = _badge(f"status: {report.get('status') or MISSING}")
    badges += _badge(f"outcome: {outcome or MISSING}", outcome_css)
    badges += _badge(f"winner: {report.get('winner') or MISSING}")
    facts = {
        "policy": report.get("policy"),
        "reward": report.get("reward"),
        "control": report.get("control"),
        "started": fmt_when(report.get("started_at")),
        "duration": fmt_duration(report.get("duration_s")),
        "generated": fmt_when(report.get("generated_at")),
        "MLflow run": report.get("mlflow_run_id"),
    }
    for key in ("description", "recommendation"):  # optional extras of the report endpoint
        if report.get(key):
            facts[key] = _compact(report[key])
    items = "".join(
        f"<dt>{_e(k)}</dt><dd>{_e(MISSING if v is None else v)}</dd>" for k, v in facts.items()
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
    for arm in arms_of(report):
        excluded = arm.get("exclusion_reason") or ("yes" if arm.get("excluded") else "no")
        rows.append(
            [
                _cell(str(arm.get("name"))),
                _cell(str(arm.get("model_uri") or MISSING), "text"),
                *(
                    _cell(arm.get(k))
                    for k in ("requests", "feedback", "reward_mean", "weight", "prob_best")
                ),
                _cell(arm.get("expected_loss")),
                _cell(arm.get("errors")),
                _cell(fmt_pct(arm.get("error_rate"), signed=False)),
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
            f"{fmt_num(risk[0])}, {fmt_num(risk[1])}"
            if isinstance(risk, Sequence) and not isinstance(risk, str) and len(risk) == 2
            else MISSING
        )
        significant = freq.get("significant")
        rows.append(
            [
                _cell(str(comparison.get("arm"))),
                _cell(str(comparison.get("control"))),
                _cell(fmt_pct(freq.get("estimate"))),
                _cell(fmt_interval(freq.get("ci"))),
                _cell(fmt_num(freq.get("p_value"), 3)),
                _cell(fmt_num(freq.get("p_value_adjusted"), 3)),
                _cell(significant, "good" if significant else None),
                _cell(fmt_pct(bayes.get("chance_to_win"), signed=False)),
                _cell(fmt_interval(bayes.get("ci"))),
                _cell(risk_text),
                _cell(fmt_pct(seq.get("estimate"))),
                _cell(fmt_interval(seq.get("ci"))),
                _cell(fmt_num(seq.get("p_value"), 3)),
                _cell(seq.get("significant")),
            ]
        )
    note = '<p class="muted">Lifts are relative to the control: (mB - mA) / |mA|.</p>'
    estimator = report.get("estimator")
    if isinstance(estimator, Mapping):
        note += (
            f'<p class="muted">Estimator: {_e(estimator.get("estimator"))} '
            f"({_e(estimator.get('reason'))}).</p>"
        )
    return "<h2>Comparisons</h2>" + note + _html_table(headers, rows, "no comparisons")


def _html_cuped(report: Mapping[str, Any]) -> str:
    """CUPED beside the plain lift, and ratio metrics; empty when the report has neither."""
    out = ""
    cuped = report.get("cuped")
    if cuped:
        headers = ["arm", "vs", "units", "lift", "95% CI", "CUPED lift", "CUPED 95% CI"]
        headers += ["theta", "variance reduction"]
        rows = []
        for row in cuped:
            plain, adjusted = row.get("unadjusted") or {}, row.get("adjusted") or {}
            units = row.get("units") or {}
            rows.append(
                [
                    _cell(str(row.get("arm"))),
                    _cell(str(row.get("control"))),
                    _cell(
                        " / ".join(str(units.get(k)) for k in (row.get("arm"), row.get("control")))
                    ),
                    _cell(fmt_pct(plain.get("estimate"))),
                    _cell(fmt_interval(plain.get("ci"))),
                    _cell(fmt_pct(adjusted.get("estimate"))),
                    _cell(fmt_interval(adjusted.get("ci"))),
                    _cell(fmt_num(row.get("theta"), 4)),
                    _cell(fmt_pct(row.get("variance_reduction"), signed=False)),
                ]
            )
        note = (
            '<p class="muted">Units that sent a pre-experiment covariate; theta pooled over '
            "both arms, lift relative to the unadjusted control mean.</p>"
        )
        out += "<h2>CUPED</h2>" + note + _html_table(headers, rows, "no covariates")
    ratios = report.get("ratio_metrics")
    if ratios:
        headers = ["metric", "arm", "value", "vs", "lift", "95% CI", "p", "chance to win"]
        headers.append("seq. CI")
        rows = []
        for ratio in ratios:
            by_arm = {row.get("arm"): row for row in ratio.get("comparisons") or []}
            for arm, value in (ratio.get("arms") or {}).items():
                row = by_arm.get(arm) or {}
                freq, bayes = row.get("frequentist") or {}, row.get("bayesian") or {}
                seq = row.get("sequential") or {}
                rows.append(
                    [
                        _cell(str(ratio.get("name"))),
                        _cell(str(arm)),
                        _cell(fmt_num((value or {}).get("value"), 4)),
                        _cell(str(row.get("control") or MISSING)),
                        _cell(fmt_pct(freq.get("estimate"))),
                        _cell(fmt_interval(freq.get("ci"))),
                        _cell(fmt_num(freq.get("p_value"), 3)),
                        _cell(fmt_pct(bayes.get("chance_to_win"), signed=False)),
                        _cell(fmt_interval(seq.get("ci"))),
                    ]
                )
        out += "<h2>Ratio metrics</h2>" + _html_table(headers, rows, "no ratio metrics")
    return out


def _html_stopping(report: Mapping[str, Any]) -> str:
    stopping = report.get("stopping") or {}
    met = bool(stopping.get("met"))
    summary = (
        f"<p>{_badge('met' if met else 'not met', 'good' if met else '')}"
        f"winner: {_e(stopping.get('winner') or MISSING)} &mdash; "
        f"{_e(stopping.get('reason') or MISSING)}</p>"
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
        f"<p>p-value {_e(fmt_num(srm.get('p_value'), 3))} "
        f"{_badge('mismatch' if mismatch else 'no mismatch', 'bad' if mismatch else 'good')}</p>"
    )
    ramp = report.get("ramp")
    if isinstance(ramp, Mapping):
        steps = ramp.get("steps") or []
        current = ramp.get("step")
        marks = " &rarr; ".join(
            f"<b>[{_e(fmt_num(s))}%]</b>" if i == current else f"{_e(fmt_num(s))}%"
            for i, s in enumerate(steps)
        )
        ramp_html = (
            f"<p>arm {_e(ramp.get('arm'))} at {_e(fmt_num(ramp.get('percent')))}% "
            f"(step {_e(fmt_num(current))}): {marks}</p>"
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
    head += f"PSI threshold {_e(fmt_num(psi_threshold(drift)))}</p>"
    reasons = drift.get("reasons") or []
    if reasons:
        head += "<ul>" + "".join(f"<li>{_e(r)}</li>" for r in reasons) + "</ul>"
    headers = ["name", "kind", "statistic", "p", "p adj.", "PSI", "drifted"]

    def row(item: Mapping[str, Any], first: str) -> list[str]:
        return [
            _cell(str(item.get(first))),
            _cell(str(item.get("kind") or MISSING)),
            _cell(item.get("statistic")),
            _cell(fmt_num(item.get("p_value"), 3)),
            _cell(fmt_num(item.get("p_adjusted"), 3)),
            _cell(psi_of(item)),
            _cell(item.get("drifted"), "bad" if item.get("drifted") else None),
        ]

    features = _html_table(
        headers, [row(f, "name") for f in top_features(drift)], "no feature statistics"
    )
    arms = _html_table(
        ["arm", *headers[1:]], [row(a, "arm") for a in drift_arms(drift)], "no arm drift"
    )
    return f"<h2>Drift</h2>{head}<h3>Features (top {TOP_FEATURES} by PSI)</h3>{features}" + (
        f"<h3>Predictions per arm</h3>{arms}"
    )


def _html_concept(report: Mapping[str, Any]) -> str:
    drift = report.get("drift")
    concept = drift.get("concept") if isinstance(drift, Mapping) else None
    if not isinstance(concept, Mapping):
        return ""
    alert = concept.get("alert")
    head = f"<p>{_badge('reward drop' if alert else 'no reward drop', 'bad' if alert else 'good')}"
    head += "Page's CUSUM per arm against its own reference; alarm at statistic = threshold</p>"
    rows = []
    for arm, watch in (concept.get("arms") or {}).items():
        labels = watch.get("labels") or {}
        shifted = bool(labels.get("drifted"))
        rows.append(
            [
                _cell(str(arm)),
                _cell(watch.get("rewards")),
                _cell(fmt_num(watch.get("reference_mean"), 3)),
                _cell(fmt_num(watch.get("live_mean"), 3)),
                _cell(fmt_num(watch.get("statistic"), 2)),
                _cell(fmt_num(watch.get("threshold"), 2)),
                _cell(watch.get("alarm"), "bad" if watch.get("alarm") else None),
                _cell(fmt_when(watch.get("changed_at"))),
                _cell(shifted if labels else MISSING, "bad" if shifted else None),
            ]
        )
    headers = ["arm", "rewards", "reference", "live", "CUSUM", "threshold", "alarm"]
    table = _html_table([*headers, "drop began", "labels shifted"], rows, "no arms")
    return f"<h2>Concept drift</h2>{head}{table}"


def _html_closed_loop(report: Mapping[str, Any]) -> str:
    loop = report.get("closed_loop")
    if not isinstance(loop, Mapping):
        return ""
    lines = []
    if loop.get("parent"):
        lines.append(f"<p>challenger of {_e(loop['parent'])}: a retrained version on trial</p>")
    if loop.get("delegate"):
        lines.append(f"<p>traffic served by the challenger {_e(loop['delegate'])}</p>")
    rows = [
        [
            _cell(run.get("id")),
            _cell(fmt_when(run.get("started_at"))),
            _cell(str(run.get("trigger"))),
            _cell(run.get("rows")),
            _cell(str(run.get("status"))),
            _cell(str(run.get("model_uri") or MISSING)),
            _cell(str(run.get("challenger") or MISSING)),
            _cell(str(run.get("outcome") or MISSING)),
            _cell(str(run.get("error") or ""), "text"),
        ]
        for run in loop.get("retraining") or []
    ]
    headers = ["run", "started", "trigger", "rows", "status", "version", "challenger"]
    table = _html_table([*headers, "outcome", "error"], rows, "no retraining yet")
    return "<h2>Retraining</h2>" + "".join(lines) + table


def _html_audit(report: Mapping[str, Any]) -> str:
    rows = [
        [
            _cell(fmt_when(entry.get("at"))),
            _cell(str(entry.get("action"))),
            _cell(str(entry.get("actor") or MISSING)),
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
    note = (
        '<p class="muted">Traffic share and cumulative reward are drawn against cumulative '
        "decisions routed (the timeline is sampled every few decisions), so a short run "
        "shows its learning curve.</p>"
    )
    return "<h2>Charts</h2>" + note + '<div class="plots">' + "".join(images) + "</div>"


def _html_learning(report: Mapping[str, Any]) -> str:
    """Each arm's traffic share in four equal ranges of decisions (empty without data)."""
    series = traffic_shares(report)
    rows = [
        [
            _cell(f"{low:,.0f}-{high:,.0f}"),
            *(_cell(fmt_pct(shares[arm], signed=False)) for arm in series.arms),
        ]
        for low, high, shares in share_by_decisions(series)
    ]
    if not rows:
        return ""
    table = _html_table(["decisions", *series.arms], rows, "no traffic yet")
    return "<h2>Traffic share by decisions</h2>" + table


def _html_offpolicy(report: Mapping[str, Any]) -> str:
    found = report.get("offpolicy")
    if not isinstance(found, Mapping):
        return ""
    results = found.get("results") or []
    if not results:
        reason = found.get("reason") or "no estimates"
        return f'<h2>Off-policy evaluation</h2><p class="muted">{_e(reason)}</p>'
    level = float(found.get("level") or 0.95)
    head = (
        f"<p>what each candidate would have earned per decision on the "
        f"{_e(found.get('records'))} logged decisions (the logging policy earned "
        f"{_e(fmt_num(found.get('logged_reward')))})</p>"
    )
    rows = [
        [
            _cell(str(item.get("candidate"))),
            _cell(str(item.get("estimator"))),
            _cell(item.get("value")),
            _cell(f"[{fmt_num(item.get('ci_low'))}, {fmt_num(item.get('ci_high'))}]"),
            _cell(item.get("ess")),
            _cell(str(item.get("reason") or "") if item.get("warning") else "", "text"),
        ]
        for item in results
    ]
    headers = ["candidate", "estimator", "value", f"{100 * level:g}% interval", "ESS", "warning"]
    return "<h2>Off-policy evaluation</h2>" + head + _html_table(headers, rows, "no estimates")


def render_html(report: Mapping[str, Any], plots: Mapping[str, Path]) -> str:
    """One self-contained HTML page for a report.

    Sections: header (status, outcome, winner, policy, timing, MLflow run id), arms,
    charts (each PNG of ``plots`` embedded as a base64 ``data:`` URI), traffic share by
    decisions (when the timeline has an interval), comparisons (with the estimator that
    decides), CUPED and ratio metrics (when present), stopping rules, guardrails,
    SRM, ramp, drift, concept drift, retraining, off-policy evaluation and the audit log.
    CSS is inline, there are no scripts and no external references; every report string is
    HTML-escaped.

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
        _html_learning(report),
        _html_comparisons(report),
        _html_cuped(report),
        _html_stopping(report),
        _html_guardrails(report),
        _html_srm_ramp(report),
        _html_drift(report),
        _html_concept(report),
        _html_closed_loop(report),
        _html_offpolicy(report),
        _html_audit(report),
    ]
    body = "\n".join(sections)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>bandit-serve report: {_e(name)}</title><style>{_CSS}</style></head>"
        f"<body>\n{body}\n</body></html>\n"
    )
