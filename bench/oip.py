"""``python -m bench.oip [--quick]``: the Open Inference Protocol's REST inference next to
``/predict``, on the same app, the same experiment and the same rows.

Three sides, measured in alternating order repetition after repetition (A B C, C B A, ...)
by closed-loop clients, as :mod:`bench.serving` measures the router:

* ``predict``: ``POST /predict`` with ``{"features": rows, "experiment": "main"}``;
* ``v2-json``: ``POST /v2/models/main/infer`` with the rows as a JSON FP64 tensor and the
  output in JSON;
* ``v2-binary``: the same as ``tritonclient.http`` sends it by default: the rows as binary
  FP64 after the JSON header (``Inference-Header-Content-Length``, no Content-Type), the
  output asked for in binary.

Ratios are per repetition (v2 side / ``predict``), shown as median (min..max); absolute
figures are medians, context only (2 shared cores). Writes ``bench/results/oip.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.loadgen import LoadResult, ratio_summary, run_load
from bench.serving import MODEL_OPTIONS, _absolute, local_serve, wait_ready

__all__ = ["OipBenchConfig", "run_oip"]

APP = "bench-oip"
EXPERIMENT = "main"


@dataclass(frozen=True)
class OipBenchConfig:
    """How long and how often to measure."""

    duration_s: float = 3.0
    warmup_s: float = 0.5
    reps: int = 5
    concurrency: tuple[int, ...] = (1, 8)
    rows: tuple[int, ...] = (1, 32)

    @classmethod
    def quick(cls) -> OipBenchConfig:
        return cls(duration_s=1.0, warmup_s=0.25, reps=3, rows=(1,))


@dataclass(frozen=True)
class Side:
    """One kind of request: a path, a body and its headers."""

    path: str
    content: bytes
    headers: dict[str, str]


def sides(features: np.ndarray) -> dict[str, Side]:
    """The three request kinds for the same rows (see the module docstring)."""
    rows = features.tolist()
    predict = json.dumps({"features": rows, "experiment": EXPERIMENT}).encode()
    infer = f"/v2/models/{EXPERIMENT}/infer"
    tensor = {"name": "input-0", "datatype": "FP64", "shape": list(features.shape)}
    as_json = {"inputs": [{**tensor, "data": rows}], "outputs": [{"name": "output-0"}]}
    raw = np.ascontiguousarray(features, dtype="<f8").tobytes()
    header = json.dumps(
        {
            "inputs": [{**tensor, "parameters": {"binary_data_size": len(raw)}}],
            "outputs": [{"name": "output-0", "parameters": {"binary_data": True}}],
        }
    ).encode()
    return {
        "predict": Side("/predict", predict, {"content-type": "application/json"}),
        "v2-json": Side(infer, json.dumps(as_json).encode(), {"content-type": "application/json"}),
        "v2-binary": Side(
            infer, header + raw, {"inference-header-content-length": str(len(header))}
        ),
    }


async def run_side(
    client: httpx.AsyncClient, url: str, side: Side, concurrency: int, duration_s: float
) -> LoadResult:
    """``concurrency`` closed-loop clients sending one side's request body."""
    return await run_load(
        client, url + side.path, None, concurrency, duration_s,
        content=side.content, headers=side.headers,
    )  # fmt: skip


def app_args(uris: dict[str, str], tracking_uri: str, data_dir: str) -> dict[str, Any]:
    def arm(name: str) -> dict[str, Any]:
        return {"name": name, "model_uri": uris[name], "deployment": dict(MODEL_OPTIONS)}

    return {
        "data_dir": data_dir,
        "mlflow_tracking_uri": tracking_uri,
        "router": {
            "max_batch_rows": 64,
            "deployment": {
                "num_replicas": 1,
                "max_ongoing_requests": 256,
                "ray_actor_options": {"num_cpus": 0.25},
            },
        },
        "experiments": [
            {
                "name": EXPERIMENT,
                "policy": {"name": "thompson"},
                "arms": [arm("logreg"), arm("forest")],
            }
        ],
    }


async def _measure(
    url: str, features: np.ndarray, concurrency: int, config: OipBenchConfig, log: Callable
) -> dict[str, list[LoadResult]]:
    kinds = sides(features)
    names = list(kinds)
    results: dict[str, list[LoadResult]] = {name: [] for name in names}
    limits = httpx.Limits(max_connections=concurrency * 2)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        for rep in range(config.reps):
            for name in names if rep % 2 == 0 else names[::-1]:
                await run_side(client, url, kinds[name], concurrency, config.warmup_s)
                results[name].append(
                    await run_side(client, url, kinds[name], concurrency, config.duration_s)
                )
            log(
                f"  rows={len(features)} c={concurrency} rep {rep + 1}/{config.reps}: "
                + ", ".join(
                    f"{n} p50 {results[n][-1].percentile_ms(50):.2f} ms "
                    f"{results[n][-1].throughput:.0f}/s"
                    for n in names
                )
            )
    return results


def _ratios(side: list[LoadResult], base: list[LoadResult]) -> dict[str, Any]:
    pairs = list(zip(side, base, strict=True))
    return {
        "p50": ratio_summary([a.percentile_ms(50) / b.percentile_ms(50) for a, b in pairs]),
        "p99": ratio_summary([a.percentile_ms(99) / b.percentile_ms(99) for a, b in pairs]),
        "throughput": ratio_summary([a.throughput / b.throughput for a, b in pairs]),
    }


def run_oip(config: OipBenchConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Start a private Ray and Serve, deploy the app, measure every (rows, concurrency)."""
    from ray import serve

    from serve_app.app import build_app
    from serve_app.models.demo import digits_split, train_demo_models

    repo_root = Path(__file__).resolve().parents[1]
    results: dict[str, Any] = {"config": config.__dict__, "cases": []}
    with tempfile.TemporaryDirectory(prefix="bench-oip-") as tmp, local_serve(repo_root) as url:
        log("training the demo models")
        tracking = f"sqlite:///{tmp}/mlflow.db"
        uris = train_demo_models(tracking, Path(tmp) / "mlartifacts", seed=0)
        serve.run(build_app(app_args(uris, tracking, f"{tmp}/data")), name=APP, route_prefix="/")
        _, x_test, _, _ = digits_split()
        wait_ready(f"{url}/predict", {"features": x_test[:1].tolist(), "experiment": EXPERIMENT})
        for rows in config.rows:
            features = np.ascontiguousarray(x_test[:rows], dtype=np.float64)
            for concurrency in config.concurrency:
                measured = asyncio.run(_measure(url, features, concurrency, config, log))
                results["cases"].append(
                    {
                        "rows": rows,
                        "concurrency": concurrency,
                        "absolute": {name: _absolute(r) for name, r in measured.items()},
                        "vs_predict": {
                            name: _ratios(r, measured["predict"])
                            for name, r in measured.items()
                            if name != "predict"
                        },
                    }
                )
    return results


def _fmt(summary: dict[str, Any]) -> str:
    return f"{summary['median']:.3f} ({summary['min']:.3f}..{summary['max']:.3f})"


def markdown(results: dict[str, Any]) -> str:
    """The side-by-side table: ratios to ``/predict`` and each side's absolute figures."""
    lines = [
        "| rows | clients | side | p50 ratio | p99 ratio | throughput ratio | "
        "p50 / p99 ms, rps | /predict p50 / p99 ms, rps |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for case in results["cases"]:
        base = case["absolute"]["predict"]
        for name, ratios in case["vs_predict"].items():
            own = case["absolute"][name]
            lines.append(
                f"| {case['rows']} | {case['concurrency']} | {name} | {_fmt(ratios['p50'])} | "
                f"{_fmt(ratios['p99'])} | {_fmt(ratios['throughput'])} | "
                f"{own['p50_ms']:.2f} / {own['p99_ms']:.2f}, {own['throughput_rps']:.0f} | "
                f"{base['p50_ms']:.2f} / {base['p99_ms']:.2f}, {base['throughput_rps']:.0f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.oip", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1 row, 3 short repetitions")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    config = OipBenchConfig.quick() if args.quick else OipBenchConfig()
    started = time.monotonic()

    def log(message: str) -> None:
        print(f"[{time.monotonic() - started:6.0f}s] {message}", flush=True)

    results = run_oip(config, log)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "oip.json").write_text(json.dumps(results, indent=2) + "\n")
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
