"""``latest.json``, the markdown table (``latest.md``) and the PNG plots."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

__all__ = ["REQUIRED_KEYS", "markdown", "plot", "write_results"]

REQUIRED_KEYS = (
    "router_latency_ratio_p50",
    "router_latency_ratio_p99",
    "router_throughput_ratio",
    "sync_throughput_ratio",
    "regret",
)
"""Keys every ``latest.json`` has (ratios are ``null`` when the serving part did not run)."""

GOALS = {"router_latency_ratio": 1.10, "router_throughput_ratio": 0.90}


def _clean(value: Any) -> Any:
    """NaN and infinity become ``null``: strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def write_results(results: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """Write ``latest.json`` and ``latest.md`` (and the plots) into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for key in REQUIRED_KEYS:
        results.setdefault(key, None)
    paths = {"json": out_dir / "latest.json", "md": out_dir / "latest.md"}
    paths["json"].write_text(json.dumps(_clean(results), indent=1, sort_keys=False) + "\n")
    paths["md"].write_text(markdown(results))
    paths.update(plot(results, out_dir))
    return paths


def _fmt(summary: dict[str, Any] | None) -> str:
    if not summary or summary.get("median") is None:
        return "n/a"
    return f"{summary['median']:.3f} ({summary['min']:.3f}..{summary['max']:.3f})"


def markdown(results: dict[str, Any]) -> str:
    """The report: every ratio as ``median (min..max)`` over repetitions."""
    meta = results.get("meta", {})
    lines = [
        f"# bandit-serve benchmarks ({meta.get('mode', '?')} mode)",
        "",
        f"`{meta.get('command', 'python -m bench')}` on {meta.get('machine', '?')}, "
        f"{meta.get('date', '?')}. Ratios are product / other side, per repetition, "
        "as median (min..max); absolute figures are context only.",
        "",
    ]
    parts = meta.get("parts")
    if parts:
        lines += [
            "Parts: "
            + ", ".join(f"{name} ({p['mode']}, {p['date']})" for name, p in parts.items())
            + ".",
            "",
        ]
    serving = results.get("serving")
    if serving:
        lines += _serving_tables(results, serving)
    regret = results.get("regret")
    if regret:
        lines += _regret_tables(regret)
    chapelle = results.get("chapelle_li")
    if chapelle:
        lines += _chapelle_table(chapelle)
    scaling = results.get("regret_arm_scaling")
    if scaling:
        lines += _arm_regret_table(scaling)
    return "\n".join(lines) + "\n"


def _serving_tables(results: dict[str, Any], serving: dict[str, Any]) -> list[str]:
    lines = [
        "## Headline",
        "",
        "| figure | value | goal |",
        "| --- | --- | --- |",
        f"| router latency ratio p50 (worst concurrency) | {results['router_latency_ratio_p50']}"
        " | <= 1.10 |",
        f"| router latency ratio p99 (worst concurrency) | {results['router_latency_ratio_p99']}"
        " | <= 1.10 |",
        f"| router throughput ratio (c=32) | {results['router_throughput_ratio']} | >= 0.90 |",
        f"| sync throughput ratio (batched / per-request) | {results['sync_throughput_ratio']}"
        " | > 1 |",
        "",
        "## Router overhead",
        "",
        "| clients | vs | p50 ratio | p99 ratio | throughput ratio | product p50 / p99 ms, rps "
        "| other p50 / p99 ms, rps |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for c, entry in serving["router_overhead"].items():
        product = entry["absolute"]["product"]
        for other in ("random", "plain"):
            ratio = entry[f"product_vs_{other}"]
            absolute = entry["absolute"][other]
            lines.append(
                f"| {c} | {other} | {_fmt(ratio['latency_ratio_p50'])} "
                f"| {_fmt(ratio['latency_ratio_p99'])} | {_fmt(ratio['throughput_ratio'])} "
                f"| {product['p50_ms']:.2f} / {product['p99_ms']:.2f}, "
                f"{product['throughput_rps']:.0f} "
                f"| {absolute['p50_ms']:.2f} / {absolute['p99_ms']:.2f}, "
                f"{absolute['throughput_rps']:.0f} |"
            )
        ratio = entry["random_vs_plain"]
        lines.append(
            f"| {c} | (random vs plain) | {_fmt(ratio['latency_ratio_p50'])} "
            f"| {_fmt(ratio['latency_ratio_p99'])} | {_fmt(ratio['throughput_ratio'])} | | |"
        )
    sync = serving["state_sync"]
    ratio = sync["product_vs_per_request"]
    absolute = sync["absolute"]
    ingest = serving["state_ingestion"]
    lines += [
        "",
        "## State sync",
        "",
        f"Product (batched background sync) vs awaiting `ExperimentState.sync` on every request,"
        f" {sync['concurrency']} clients:",
        "",
        "| throughput ratio | p99 ratio | p50 ratio | product rps, p99 ms | per-request rps, "
        "p99 ms |",
        "| --- | --- | --- | --- | --- |",
        f"| {_fmt(ratio['throughput_ratio'])} | {_fmt(ratio['latency_ratio_p99'])} "
        f"| {_fmt(ratio['latency_ratio_p50'])} "
        f"| {absolute['product']['throughput_rps']:.0f}, {absolute['product']['p99_ms']:.2f} "
        f"| {absolute['per_request']['throughput_rps']:.0f}, "
        f"{absolute['per_request']['p99_ms']:.2f} |",
        "",
        f"State ingestion (decisions/s merged, 8 calls in flight): batches of "
        f"{ingest['batch_size']}: {ingest['batched_decisions_per_s']:.0f}/s; one call per "
        f"decision: {ingest['per_decision_decisions_per_s']:.0f}/s; ratio "
        f"{_fmt(ingest['ratio'])}.",
        "",
        "## Scale",
        "",
        f"Routing overhead as arms grow ({serving['arm_scaling']['concurrency']} clients; every "
        "arm serves the same model deployment):",
        "",
        "| arms | p50 ratio | p99 ratio | throughput ratio | product p50 ms |",
        "| --- | --- | --- | --- | --- |",
    ]
    for k, entry in serving["arm_scaling"]["arms"].items():
        ratio = entry["product_vs_random"]
        lines.append(
            f"| {k} | {_fmt(ratio['latency_ratio_p50'])} | {_fmt(ratio['latency_ratio_p99'])} "
            f"| {_fmt(ratio['throughput_ratio'])} | {entry['absolute']['product']['p50_ms']:.2f} |"
        )
    replicas = serving["router_replicas"]
    lines += [
        "",
        f"Router replicas ({replicas['concurrency']} clients, {replicas['cores']} cores shared by "
        "the load generator, the Serve proxy, routers and models: throughput cannot scale past "
        "the cores):",
        "",
        "| router replicas | throughput vs 1 replica | rps | p99 ms |",
        "| --- | --- | --- | --- |",
    ]
    for name, summary in replicas["throughput_ratio_vs_1"].items():
        absolute = replicas["absolute"][name]
        lines.append(
            f"| {name[1:]} | {_fmt(summary)} | {absolute['throughput_rps']:.0f} "
            f"| {absolute['p99_ms']:.2f} |"
        )
    return [*lines, ""]


def _regret_tables(regret: dict[str, Any]) -> list[str]:
    lines = [
        "## Bandit quality: cumulative regret",
        "",
        f"Pseudo-regret at T = {regret['horizon']}, mean over {regret['reps']} seeded runs "
        "through the real policy objects (`select` per step, `update` per batch of b steps).",
        "",
    ]
    scenarios = regret["scenarios"]
    labels = list(next(iter(scenarios.values()))["policies"])
    lines.append("| scenario | Lai-Robbins | " + " | ".join(labels) + " |")
    lines.append("| --- | --- | " + " | ".join("---" for _ in labels) + " |")
    for name, entry in scenarios.items():
        cells = [f"{entry['policies'][label]['mean'][-1]:.1f}" for label in labels]
        lines.append(f"| {name} | {entry['lai_robbins'][-1]:.1f} | " + " | ".join(cells) + " |")
    return [*lines, "", "(Gaussian scenario: `thompson_b*` is `gaussian_thompson`.)", ""]


def _chapelle_table(chapelle: dict[str, Any]) -> list[str]:
    lines = [
        "## Delayed feedback (Chapelle & Li 2011, Table 1)",
        "",
        f"K = {chapelle['k']}, arm replaced with probability {chapelle['replace_p']} per step, "
        f"T = {chapelle['horizon']}, {chapelle['reps']} repetitions. {chapelle['implementation']}",
        "",
        "| delay | TS regret | UCB1 regret | UCB1 / TS (mean) | UCB1 / TS per rep "
        "| paper TS | paper UCB | paper UCB / TS |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    paper = chapelle.get("paper_table1") or {}
    published = {
        delta: (paper["ts"][i], paper["ucb"][i], paper["ratio"][i])
        for i, delta in enumerate(paper.get("delays", []))
    }
    for row in chapelle["rows"]:
        per_rep = {k: row[f"ratio_{k}"] for k in ("min", "median", "max")}
        ts, ucb, ratio = published.get(row["delta"], ("", "", ""))
        lines.append(
            f"| {row['delta']} | {row['ts_mean']:.0f} | {row['ucb_mean']:.0f} "
            f"| {row['ratio_mean']:.2f} | {_fmt(per_rep)} | {ts} | {ucb} | {ratio} |"
        )
    lines += ["", chapelle["paper_note"], "", "Cross-check (Thompson, small T):", ""]
    lines += [
        "| delay | T | reps | vectorised | policy objects |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in chapelle["cross_check"]:
        lines.append(
            f"| {row['delta']} | {row['horizon']} | {row['reps']} | {row['vectorised_mean']:.1f} "
            f"| {row['policy_objects_mean']:.1f} |"
        )
    return [*lines, ""]


def _arm_regret_table(scaling: dict[str, Any]) -> list[str]:
    lines = [
        "## Regret as arms grow",
        "",
        f"Bernoulli, best arm 0.5, the others 0.4; T = {scaling['horizon']}, "
        f"{scaling['reps']} runs (mean).",
        "",
        "| arms | Lai-Robbins | thompson_b100 | ucb1 | uniform |",
        "| --- | --- | --- | --- | --- |",
    ]
    for k, row in scaling["arms"].items():
        lines.append(
            f"| {k} | {row['lai_robbins']:.1f} | {row['thompson_b100']['mean']:.1f} "
            f"| {row['ucb1']['mean']:.1f} | {row['uniform']['mean']:.1f} |"
        )
    return [*lines, ""]


def plot(results: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """PNG plots (Agg backend, small): regret curves, Chapelle-Li, router overhead."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths: dict[str, Path] = {}
    regret = results.get("regret")
    if regret:
        scenarios = regret["scenarios"]
        fig, axes = plt.subplots(1, len(scenarios), figsize=(4 * len(scenarios), 3.4))
        for ax, (name, entry) in zip(axes, scenarios.items(), strict=True):
            t = regret["checkpoints"]
            for label, summary in entry["policies"].items():
                ax.plot(t, summary["mean"], label=label, linewidth=1.2)
            ax.plot(t, entry["lai_robbins"], "k--", label="Lai-Robbins", linewidth=1)
            ax.set_xscale("log")
            ax.set_title(name, fontsize=9)
            ax.set_xlabel("t")
        axes[0].set_ylabel("cumulative regret")
        axes[-1].legend(fontsize=7)
        fig.tight_layout()
        paths["regret_png"] = out_dir / "regret.png"
        fig.savefig(paths["regret_png"], dpi=70)
        plt.close(fig)
    chapelle = results.get("chapelle_li")
    if chapelle:
        fig, ax = plt.subplots(figsize=(5, 3.4))
        deltas = [row["delta"] for row in chapelle["rows"]]
        ax.plot(deltas, [row["ts_mean"] for row in chapelle["rows"]], "o-", label="Thompson")
        ax.plot(deltas, [row["ucb_mean"] for row in chapelle["rows"]], "s-", label="UCB1")
        ax.set_xscale("log")
        ax.set_xlabel("feedback delay (steps)")
        ax.set_ylabel(f"regret at T = {chapelle['horizon']}")
        ax.legend()
        fig.tight_layout()
        paths["chapelle_li_png"] = out_dir / "chapelle_li.png"
        fig.savefig(paths["chapelle_li_png"], dpi=70)
        plt.close(fig)
    serving = results.get("serving")
    if serving:
        fig, ax = plt.subplots(figsize=(5, 3.4))
        overhead = serving["router_overhead"]
        clients = [int(c) for c in overhead]
        for metric in ("latency_ratio_p50", "latency_ratio_p99", "throughput_ratio"):
            med = [overhead[str(c)]["product_vs_random"][metric]["median"] for c in clients]
            low = [overhead[str(c)]["product_vs_random"][metric]["min"] for c in clients]
            high = [overhead[str(c)]["product_vs_random"][metric]["max"] for c in clients]
            ax.errorbar(
                clients,
                med,
                yerr=[
                    [m - lo for m, lo in zip(med, low, strict=True)],
                    [h - m for m, h in zip(med, high, strict=True)],
                ],
                marker="o",
                capsize=3,
                label=metric,
            )
        ax.axhline(1.10, color="grey", linestyle=":", linewidth=1)
        ax.axhline(0.90, color="grey", linestyle=":", linewidth=1)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent clients")
        ax.set_ylabel("product / random ingress")
        ax.legend(fontsize=7)
        fig.tight_layout()
        paths["router_png"] = out_dir / "router_overhead.png"
        fig.savefig(paths["router_png"], dpi=70)
        plt.close(fig)
    return paths
