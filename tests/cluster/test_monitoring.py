"""The dashboard and the alert rules use only the series bandit-serve exports.

The one list of exported series is cluster/metrics.txt (see scripts/render_manifests.py).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from .renderer import load_renderer

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "cluster"


render = load_renderer()
EXPORTED = render.exported_metric_names()

PROMQL_WORDS = {
    # aggregation operators and their modifiers
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile",
    "count_values", "group", "by", "without", "on", "ignoring", "group_left", "group_right",
    "and", "or", "unless", "bool", "offset",
    # functions this project may use
    "rate", "irate", "increase", "delta", "idelta", "deriv", "histogram_quantile", "abs",
    "absent", "absent_over_time", "clamp", "clamp_min", "clamp_max", "vector", "scalar",
    "time", "avg_over_time", "max_over_time", "min_over_time", "sum_over_time", "changes",
    "resets", "label_replace", "sort", "sort_desc", "round", "ceil", "floor", "timestamp",
    "last_over_time", "inf", "nan",
}  # fmt: skip
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_LABEL_LISTS = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_VARIABLES = re.compile(r"\$\{?\w+\}?")
_IDENTIFIER = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (labels, strings, durations, numbers,
    Grafana variables, functions and keywords removed)."""
    text = _STRINGS.sub(" ", expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGES.sub(" ", text)
    text = _LABEL_LISTS.sub(r"\1 ", text)
    text = _VARIABLES.sub(" ", text)
    text = re.sub(r"\b\d+(\.\d+)?(e[+-]?\d+)?\b", " ", text)
    return {word for word in _IDENTIFIER.findall(text) if word.lower() not in PROMQL_WORDS}


def _dashboard_exprs(node: Any) -> list[str]:
    """Every PromQL query in the dashboard: panel targets and template variables."""
    found: list[str] = []
    if isinstance(node, dict):
        if isinstance(node.get("expr"), str):
            found.append(node["expr"])
        query = node.get("query")
        if node.get("type") == "query" and isinstance(query, dict):
            found.append(str(query.get("query", "")))
        for value in node.values():
            found += _dashboard_exprs(value)
    elif isinstance(node, list):
        for value in node:
            found += _dashboard_exprs(value)
    return found


def _template_query(query: str) -> str:
    """Grafana's ``label_values(metric, label)`` -> the metric selector."""
    match = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", query)
    return match.group(1) if match else query


DASHBOARD = json.loads((CLUSTER / "grafana-dashboard.json").read_text())
DASHBOARD_EXPRS = [_template_query(q) for q in _dashboard_exprs(DASHBOARD)]
RULES = [
    rule
    for group in yaml.safe_load((CLUSTER / "prometheusrule.yaml").read_text())["spec"]["groups"]
    for rule in group["rules"]
]


def test_metrics_list_is_the_brief() -> None:
    series = render.exported_metrics()
    assert len(series) == 32
    assert series["bandit_arm_latency_seconds"] == ("histogram", ("experiment", "arm"))
    assert "bandit_arm_latency_seconds_bucket" in EXPORTED
    assert series["bandit_experiment_status"][1] == ("experiment", "status")
    for name, (kind, _labels) in series.items():
        assert kind in {"counter", "gauge", "histogram"}
        assert name.endswith("_total") == (kind == "counter"), name


def test_metrics_list_matches_the_app() -> None:
    """cluster/metrics.txt and serve_app/metrics.py's SERIES name the same series."""
    try:
        from serve_app.state.prometheus import SERIES
    except ImportError as error:
        pytest.skip(f"serve_app.state.prometheus not importable: {error}")
    app = {
        name + ("_total" if kind == "counter" else ""): kind for name, (kind, *_) in SERIES.items()
    }
    assert app == {name: kind for name, (kind, _labels) in render.exported_metrics().items()}


def test_parser_finds_metric_names() -> None:
    expr = (
        'histogram_quantile(0.95, max by (experiment, arm, le) (rate(foo_bucket{a="b",c=~"$x"}'
        "[$__rate_interval]))) / ignoring (arm) group_left sum by (experiment) (bar) > 1e-3"
        ' and on (experiment) absent(baz{status="running"}) == 1'
    )
    assert metric_names(expr) == {"foo_bucket", "bar", "baz"}


def test_dashboard_uses_only_exported_series() -> None:
    used = set().union(*(metric_names(e) for e in DASHBOARD_EXPRS))
    assert used, "no queries found"
    assert used <= EXPORTED, f"not exported: {sorted(used - EXPORTED)}"


def test_dashboard_has_the_panels() -> None:
    titles = " | ".join(p["title"].lower() for p in DASHBOARD["panels"])
    for needle in (
        "traffic share", "reward rate", "p(best)", "p50", "p95", "error", "fallback", "circuit",
    ):  # fmt: skip
        assert needle in titles, needle
    ids = [p["id"] for p in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids))


def test_rules_use_only_exported_series() -> None:
    for rule in RULES:
        used = metric_names(rule["expr"])
        assert used, rule["alert"]
        assert used <= EXPORTED, f"{rule['alert']}: not exported: {sorted(used - EXPORTED)}"


def test_rules_cover_the_failure_modes() -> None:
    by_series = {
        name: [r["alert"] for r in RULES if name in metric_names(r["expr"])] for name in EXPORTED
    }
    assert by_series["bandit_arm_guardrail_breached"]
    assert by_series["bandit_experiment_srm_p_value"]
    assert by_series["bandit_arm_errors_total"]
    assert by_series["bandit_arm_latency_seconds_bucket"]
    for rule in RULES:
        assert rule["labels"]["severity"] in {"critical", "warning"}
        assert rule["annotations"]["summary"]


def test_podmonitors_scrape_ray_and_the_app() -> None:
    docs = list(yaml.safe_load_all((CLUSTER / "podmonitor.yaml").read_text()))
    endpoints = {
        (e["port"], e.get("path", "/metrics"))
        for d in docs
        for e in d["spec"]["podMetricsEndpoints"]
    }
    assert endpoints == {("metrics", "/metrics"), ("serve", "/metrics")}
    for name in ("rayservice.yaml", "rayservice-production.yaml"):
        doc = yaml.safe_load((CLUSTER / name).read_text())
        head = doc["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0]
        ports = {p["name"]: p["containerPort"] for p in head["ports"]}
        assert ports["metrics"] == 8080
        assert ports["serve"] == 8000
