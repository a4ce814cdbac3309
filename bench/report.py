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

GOALS = {"pool_p99_ratio": 1.20, "pool_throughput_ratio": 0.95}
"""The issue's goals for the default placement against the two-hop ingress (plotted)."""


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
    oip = results.get("oip")
    if oip and oip.get("cases"):
        from bench.oip import markdown as oip_markdown

        lines += [
            "## Open Inference Protocol: `/v2/models/{experiment}/infer` vs `/predict`",
            "",
            oip_markdown(oip),
            "",
        ]
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


COMPARISON_TITLES = {
    "pool_vs_two_hop": "Default placement (pool) vs the hand-written two-hop ingress",
    "pool_vs_dedicated": "Placement pool vs placement dedicated (same experiment, models loaded)",
    "router_vs_two_hop": "Placement router vs the hand-written two-hop ingress",
    "router_vs_one_hop": "Placement router vs the in-process split (the one-hop ideal)",
    "pool_vs_two_hop_pool": "Product (pool) vs the hand-written ingress over the same pool: "
    "the router's own cost",
    "dedicated_vs_two_hop": "Product (dedicated) vs the hand-written ingress over the same "
    "deployments: the router's own cost",
    "two_hop_vs_one_hop": "Hand-written two-hop ingress vs the in-process split: what the "
    "second hop costs",
}


def _num(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def _serving_tables(results: dict[str, Any], serving: dict[str, Any]) -> list[str]:
    if "overhead" not in serving and "config" not in serving:
        return ["## Serving", "", "(results in an older format: run `python -m bench --only "
                "serving` again)", ""]  # fmt: skip
    failed = {k: v["error"] for k, v in serving.items() if isinstance(v, dict) and "error" in v}
    serving = {k: v for k, v in serving.items() if k not in failed}
    lines = ["## Headline: the serving goals", ""]
    for part, error in failed.items():
        lines += [f"**Part `{part}` failed:** `{error[:300]}`", ""]
    lines += ["| goal | value (median) | target | met |", "| --- | --- | --- | --- |"]
    for goal in results.get("serving_goals") or []:
        lines.append(
            f"| {goal['goal']} | {_num(goal['value'], 3)} | {goal['target']} "
            f"| {'yes' if goal['met'] else '**no**'} |"
        )
    config = serving.get("config", {})
    idle = serving.get("idle", {})
    lines += [
        "",
        f"Load generator: {serving.get('generator', '?')} (closed loop; one connection per "
        f"client); windows of {config.get('duration_s')} s, {config.get('reps')} repetitions "
        "per side, sides interleaved. CPU per request: CPU seconds of every Ray process of the "
        "bench (the descendants of the driver: GCS, raylet, Serve proxy and controller, every "
        "replica) over the window / requests answered; the generator's own CPU apart. With no "
        f"load the Ray processes use {_num(idle.get('ray_cores'))} cores. Every model deployment "
        "(the pool too) has one replica.",
        "",
        "Sides: "
        + "; ".join(f"`{k}`: {v}" for k, v in serving.get("overhead", {}).get("sides", {}).items())
        + ".",
        "",
    ]
    levels = serving.get("overhead", {}).get("levels", {})
    for comparison, title in COMPARISON_TITLES.items():
        lines += [
            f"### {title}",
            "",
            "| clients | p50 ratio | p99 ratio | throughput ratio | CPU/request ratio |",
            "| --- | --- | --- | --- | --- |",
        ]
        for c, entry in levels.items():
            ratio = entry[comparison]
            lines.append(
                f"| {c} | {_fmt(ratio['latency_ratio_p50'])} | {_fmt(ratio['latency_ratio_p99'])}"
                f" | {_fmt(ratio['throughput_ratio'])} | {_fmt(ratio.get('cpu_ratio'))} |"
            )
        lines.append("")
    lines += [
        "### Absolute figures (medians over repetitions; context only)",
        "",
        "| clients | side | p50 ms | p99 ms | rps | Ray CPU ms/request | generator CPU "
        "ms/request | Ray cores | generator cores | other cores (machine) | errors |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for c, entry in levels.items():
        for side, a in entry["absolute"].items():
            lines.append(
                f"| {c} | {side} | {_num(a['p50_ms'])} | {_num(a['p99_ms'])} "
                f"| {_num(a['throughput_rps'], 0)} | {_num(a.get('cpu_ms_per_request'))} "
                f"| {_num(a.get('generator_ms_per_request'), 3)} | {_num(a.get('ray_cores'))} "
                f"| {_num(a.get('generator_cores'))} | {_num(a.get('other_cores'))} "
                f"| {a['errors']} |"
            )
    lines.append("")
    lines += _sync_tables(serving)
    lines += _flood_table(serving.get("report_flood"))
    lines += _cold_table(serving.get("cold_loads"))
    lines += _profile_table(serving.get("profile"))
    lines += _scale_tables(serving)
    return lines


def _sync_tables(serving: dict[str, Any]) -> list[str]:
    sync = serving.get("state_sync")
    if not sync:
        return []
    ratio = sync["product_vs_per_request"]
    absolute = sync["absolute"]
    lines = [
        "## State sync",
        "",
        "Product (placement dedicated, batched background sync) vs awaiting "
        f"`ExperimentState.sync` on every request, same model replicas, {sync['concurrency']} "
        "clients:",
        "",
        "| throughput ratio | p99 ratio | p50 ratio | CPU/request ratio | product rps, p99 ms "
        "| per-request rps, p99 ms |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| {_fmt(ratio['throughput_ratio'])} | {_fmt(ratio['latency_ratio_p99'])} "
        f"| {_fmt(ratio['latency_ratio_p50'])} | {_fmt(ratio.get('cpu_ratio'))} "
        f"| {_num(absolute['product']['throughput_rps'], 0)}, "
        f"{_num(absolute['product']['p99_ms'])} "
        f"| {_num(absolute['per_request']['throughput_rps'], 0)}, "
        f"{_num(absolute['per_request']['p99_ms'])} |",
        "",
    ]
    ingest = serving.get("state_ingestion")
    if ingest:
        lines += [
            f"State ingestion (decisions/s merged, 8 senders with one call in flight each): "
            f"batches of {ingest['batch_size']}: {_num(ingest['batched_decisions_per_s'], 0)}/s;"
            f" one call per decision: {_num(ingest['per_decision_decisions_per_s'], 0)}/s; "
            f"ratio {_fmt(ingest['ratio'])}.",
            "",
        ]
    return lines


def _flood_table(flood: dict[str, Any] | None) -> list[str]:
    if not flood:
        return []
    labels = {
        "feedback_p50_ms": "feedback latency p50 (ms)",
        "feedback_p99_ms": "feedback latency p99 (ms)",
        "sync_delay_p50_ms": "sync delay p50 (ms): /predict answered -> count visible",
        "sync_delay_p90_ms": "sync delay p90 (ms)",
        "sync_delay_max_ms": "sync delay max (ms)",
        "sync_age_p99_ms": "/healthz last_sync_age_s p99 (ms)",
    }
    lines = [
        "## Report flood",
        "",
        f"`GET /experiments/main/report` from wrk with {flood['connections']} connections "
        f"({_num(flood['flood_reports_per_s'], 0)} reports/s answered, "
        f"{flood['flood_errors']} errors) vs no flood; windows of {flood['window_s']} s, "
        "interleaved. Probes (one client each, from the driver): /predict then /feedback "
        "(feedback timed); /predict on an otherwise idle experiment, then its summary polled "
        "every 5 ms until the count shows (sync delay, measured from outside); /healthz every "
        f"20 ms. Samples: {flood['samples']}.",
        "",
        "| figure | quiet | flood | flood / quiet |",
        "| --- | --- | --- | --- |",
    ]
    for key, label in labels.items():
        lines.append(
            f"| {label} | {_num(flood['absolute']['quiet'][key], 1)} "
            f"| {_num(flood['absolute']['flood'][key], 1)} | {_fmt(flood['flood_vs_quiet'][key])} |"
        )
    return [*lines, ""]


def _cold_table(cold: dict[str, Any] | None) -> list[str]:
    if not cold:
        return []
    lines = [
        "## Cold loads and memory (pool)",
        "",
        "A new version of each model is registered after the app started and loaded through "
        "the pool (`handle.options(multiplexed_model_id=uri).load`); medians over the "
        "repetitions. RSS added: the pool replica's VmRSS after minus before the load.",
        "",
        "| model | load s (from the driver) | load s (in the pool) | first predict ms "
        "| warm predict ms | RSS added MiB (first load) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for model, row in cold["per_model"].items():
        lines.append(
            f"| {model} | {_num(row['load_s'], 3)} | {_num(row['pool_load_s'], 3)} "
            f"| {_num(row['first_predict_ms'])} | {_num(row['warm_predict_ms'])} "
            f"| {_num(row['rss_added_mib'], 1)} ({_num(row['rss_added_mib_first'], 1)}) |"
        )
    lines += [
        "",
        "Replica RSS (MiB): "
        + ", ".join(f"{name} {_num(mib, 0)}" for name, mib in cold["replica_rss_mib"].items())
        + f"; the pool started at {_num(cold['pool_rss_start_mib'], 0)} MiB with the two "
        f"models of `main`, and holds {cold['pool_resident']} versions now.",
        "",
    ]
    return lines


def _profile_table(profile: dict[str, Any] | None) -> list[str]:
    if not profile or "window" not in profile:
        return []
    window = profile["window"]
    lines = [
        "## Profile at 1 client (py-spy)",
        "",
        f"py-spy record (200 Hz, non-blocking) on the replicas while one client calls "
        f"/predict (pool): p50 {_num(window['p50_ms'])} ms, p99 {_num(window['p99_ms'])} ms. "
        f"Raw stacks: `{profile.get('raw')}`.",
        "",
        "| replica | busy (all threads) | busiest threads | top project frames (inclusive "
        "share of busy samples) |",
        "| --- | --- | --- | --- |",
    ]
    for name in ("router", "state", "pool"):
        entry = profile.get(name)
        if not entry or "error" in entry:
            continue
        frames = "; ".join(
            f"`{f['frame']}` {f['share_of_busy']:.0%}" for f in entry["top_project_frames"][:6]
        )
        threads = "; ".join(f"{t} {v:.0%}" for t, v in list(entry["threads"].items())[:3])
        lines.append(f"| {name} | {entry['busy_share']:.0%} | {threads} | {frames} |")
    return [*lines, ""]


def _scale_tables(serving: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    arms = serving.get("arm_scaling")
    if arms:
        lines += [
            "## Scale",
            "",
            f"Routing overhead as arms grow ({arms['concurrency']} clients; every arm serves "
            "`logreg` from the pool; the random ingress calls the same pool):",
            "",
            "| arms | p50 ratio | p99 ratio | throughput ratio | CPU/request ratio "
            "| product p50 ms |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for k, entry in arms["arms"].items():
            ratio = entry["product_vs_random"]
            lines.append(
                f"| {k} | {_fmt(ratio['latency_ratio_p50'])} | {_fmt(ratio['latency_ratio_p99'])}"
                f" | {_fmt(ratio['throughput_ratio'])} | {_fmt(ratio.get('cpu_ratio'))} "
                f"| {_num(entry['absolute']['product']['p50_ms'])} |"
            )
        lines.append("")
    replicas = serving.get("router_replicas")
    if replicas:
        lines += [
            f"Router replicas ({replicas['concurrency']} clients, {replicas['cores']} cores "
            "shared by the load generator, the Serve proxy, routers and models: throughput "
            "cannot scale past the cores):",
            "",
            "| router replicas | throughput vs 1 replica | rps | p99 ms | Ray CPU ms/request |",
            "| --- | --- | --- | --- | --- |",
        ]
        for name, summary in replicas["throughput_ratio_vs_1"].items():
            absolute = replicas["absolute"][name]
            lines.append(
                f"| {name[1:]} | {_fmt(summary)} | {_num(absolute['throughput_rps'], 0)} "
                f"| {_num(absolute['p99_ms'])} | {_num(absolute.get('cpu_ms_per_request'))} |"
            )
        lines.append("")
    fallbacks = serving.get("fallbacks")
    if fallbacks:
        lines += [
            "Fallbacks and errors counted by the product over the whole run: "
            + ", ".join(f"{name} {n}" for name, n in fallbacks.items())
            + ".",
            "",
        ]
    return lines


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
    if serving and "overhead" in serving:
        fig, ax = plt.subplots(figsize=(5, 3.4))
        levels = serving["overhead"]["levels"]
        clients = [int(c) for c in levels]
        for metric in ("latency_ratio_p50", "latency_ratio_p99", "throughput_ratio"):
            summaries = [levels[str(c)]["pool_vs_two_hop"][metric] for c in clients]
            med = [s["median"] for s in summaries]
            ax.errorbar(
                clients,
                med,
                yerr=[
                    [m - s["min"] for m, s in zip(med, summaries, strict=True)],
                    [s["max"] - m for m, s in zip(med, summaries, strict=True)],
                ],
                marker="o",
                capsize=3,
                label=metric,
            )
        for value in GOALS.values():
            ax.axhline(value, color="grey", linestyle=":", linewidth=1)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent clients")
        ax.set_ylabel("product (pool) / two-hop ingress")
        ax.legend(fontsize=7)
        fig.tight_layout()
        paths["router_png"] = out_dir / "router_overhead.png"
        fig.savefig(paths["router_png"], dpi=70)
        plt.close(fig)
    return paths
