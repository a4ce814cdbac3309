"""Serving benchmarks on a private local Ray Serve: router overhead, state sync, scaling.

One Ray instance (``address="local"``: never one another process started), Serve on a free
port of 127.0.0.1, and these applications side by side:

* ``bench-product``: the product (:func:`serve_app.app.build_app`) with experiments ``main``
  (Thompson over the ``logreg`` and ``mlp`` demo models) and ``k2``, ``k10``, ``k50`` (Thompson
  over 2, 10, 50 arms that all serve ``logreg``: one shared deployment, so only the routing
  grows);
* ``bench-random``: :class:`bench.deployments.RandomIngress` over the product's own
  ``ModelArm`` replicas;
* ``bench-plain``: :class:`bench.deployments.PlainModel` (``logreg``, no routing);
* ``bench-per-request``: :class:`bench.deployments.PerRequestStateIngress`;
* ``bench-product-rN``: the product again with ``N`` router replicas (replica scaling).

Sides of a comparison are measured in alternating order, repetition after repetition, on the
same machine in the same minute; ratios are per repetition (product / other side).
"""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.loadgen import LoadResult, ratio_summary, run_load

__all__ = ["ServingConfig", "run_serving"]

PRODUCT = "bench-product"
MODEL_OPTIONS: dict[str, Any] = {
    "num_replicas": 1,
    "max_ongoing_requests": 64,
    "ray_actor_options": {"num_cpus": 0.1},
    "timeout_s": 10.0,
}


@dataclass(frozen=True)
class ServingConfig:
    """How long and how often to measure."""

    duration_s: float = 6.0
    warmup_s: float = 1.0
    reps: int = 7
    concurrency: tuple[int, ...] = (1, 8, 32)
    arm_counts: tuple[int, ...] = (2, 10, 50)
    arm_concurrency: int = 8
    router_replicas: tuple[int, ...] = (1, 2, 4)
    ingest_s: float = 2.0
    ingest_batch: int = 256

    @classmethod
    def quick(cls) -> ServingConfig:
        return cls(
            duration_s=1.0,
            warmup_s=0.25,
            reps=3,
            router_replicas=(1, 2),
            ingest_s=1.0,
        )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def product_args(
    uris: dict[str, str], tracking_uri: str, data_dir: str, replicas: int = 1
) -> dict[str, Any]:
    """The product's config: ``main`` plus the arm-scaling experiments."""

    def arm(name: str, uri: str) -> dict[str, Any]:
        return {"name": name, "model_uri": uri, "deployment": dict(MODEL_OPTIONS)}

    experiments = [
        {
            "name": "main",
            "policy": {"name": "thompson"},
            "arms": [arm("logreg", uris["logreg"]), arm("mlp", uris["mlp"])],
        }
    ]
    for k in (2, 10, 50):
        experiments.append(
            {
                "name": f"k{k}",
                "policy": {"name": "thompson"},
                "arms": [arm(f"a{i}", uris["logreg"]) for i in range(k)],
            }
        )
    return {
        "data_dir": data_dir,
        "mlflow_tracking_uri": tracking_uri,
        "router": {
            "deployment": {
                "num_replicas": replicas,
                "max_ongoing_requests": 256,
                "ray_actor_options": {"num_cpus": 0.25},
            }
        },
        "experiments": experiments,
    }


def deployment_names(args: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Experiment -> arm -> the product's model deployment name.

    Mirrors ``serve_app.app``: one deployment per distinct (URI, options), named after the
    first experiment and arm that use it (``model-<experiment>-<arm>``).
    """
    first: dict[str, str] = {}
    out: dict[str, dict[str, str]] = {}
    for experiment in args["experiments"]:
        for arm in experiment["arms"]:
            key = repr((arm["model_uri"], sorted(arm["deployment"].items())))
            first.setdefault(key, f"model-{experiment['name']}-{arm['name']}")
            out.setdefault(experiment["name"], {})[arm["name"]] = first[key]
    return out


@contextmanager
def local_serve(repo_root: Path) -> Iterator[str]:
    """A private Ray (4 logical CPUs) and Serve on a free loopback port; always shut down."""
    import ray
    from ray import serve

    pythonpath = os.pathsep.join(p for p in (str(repo_root), os.environ.get("PYTHONPATH")) if p)
    ray.init(
        address="local",
        num_cpus=4,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": pythonpath, "RAY_USAGE_STATS_ENABLED": "0"}},
    )
    try:
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        yield f"http://127.0.0.1:{port}"
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()


def wait_ready(url: str, payload: dict[str, Any], timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.post(url, json=payload, timeout=10).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer 200 within {timeout_s} s")


async def _interleaved(
    client: httpx.AsyncClient,
    sides: dict[str, tuple[str, dict[str, Any]]],
    concurrency: int,
    config: ServingConfig,
    log: Callable[[str], None],
) -> dict[str, list[LoadResult]]:
    """Every side once per repetition, in alternating order (A B C, C B A, ...)."""
    names = list(sides)
    results: dict[str, list[LoadResult]] = {name: [] for name in names}
    for rep in range(config.reps):
        for name in names if rep % 2 == 0 else names[::-1]:
            url, payload = sides[name]
            await run_load(client, url, payload, concurrency, config.warmup_s)
            results[name].append(
                await run_load(client, url, payload, concurrency, config.duration_s)
            )
        log(
            f"  c={concurrency} rep {rep + 1}/{config.reps}: "
            + ", ".join(
                f"{n} p50 {results[n][-1].percentile_ms(50):.2f} ms "
                f"{results[n][-1].throughput:.0f}/s"
                for n in names
            )
        )
    return results


def _compare(a: list[LoadResult], b: list[LoadResult]) -> dict[str, Any]:
    """Per-repetition ratios a/b of p50, p99 and throughput."""
    return {
        "latency_ratio_p50": ratio_summary(
            [x.percentile_ms(50) / y.percentile_ms(50) for x, y in zip(a, b, strict=True)]
        ),
        "latency_ratio_p99": ratio_summary(
            [x.percentile_ms(99) / y.percentile_ms(99) for x, y in zip(a, b, strict=True)]
        ),
        "throughput_ratio": ratio_summary(
            [x.throughput / y.throughput for x, y in zip(a, b, strict=True)]
        ),
    }


def _absolute(results: list[LoadResult]) -> dict[str, float]:
    """Medians over repetitions of each side's absolute figures (context only)."""
    import numpy as np

    return {
        "p50_ms": round(float(np.median([r.percentile_ms(50) for r in results])), 3),
        "p99_ms": round(float(np.median([r.percentile_ms(99) for r in results])), 3),
        "throughput_rps": round(float(np.median([r.throughput for r in results])), 1),
        "errors": int(sum(r.errors for r in results)),
    }


def measure_ingestion(config: ServingConfig, log: Callable[[str], None]) -> dict[str, Any]:
    """Decisions/s the state deployment merges: batches of ``ingest_batch`` vs one per call.

    Called from the driver through a deployment handle, eight calls in flight.
    """
    from ray import serve

    state = serve.get_deployment_handle("experiment-state", app_name=PRODUCT)
    modes = {
        "batched": (
            {
                "main": {
                    "arms": {
                        "logreg": {"pulls": config.ingest_batch // 2},
                        "mlp": {"pulls": config.ingest_batch // 2},
                    }
                }
            },
            config.ingest_batch,
        ),
        "per_decision": ({"main": {"arms": {"logreg": {"pulls": 1}}}}, 1),
    }
    revision = state.register.remote("bench-ingest").result()["snapshot"]["main"]["revision"]
    rates: dict[str, list[float]] = {name: [] for name in modes}
    for rep in range(config.reps):
        for name in list(modes) if rep % 2 == 0 else list(modes)[::-1]:
            counts, per_call = modes[name]
            in_flight: deque[Any] = deque()
            calls = 0
            start = time.perf_counter()
            while time.perf_counter() - start < config.ingest_s:
                in_flight.append(
                    state.sync.remote(counts, {"main": revision}, "bench-ingest", None)
                )
                if len(in_flight) >= 8:
                    in_flight.popleft().result()
                    calls += 1
            while in_flight:
                in_flight.popleft().result()
                calls += 1
            rates[name].append(calls * per_call / (time.perf_counter() - start))
        log(f"  ingestion rep {rep + 1}: " + ", ".join(f"{n} {rates[n][-1]:.0f}/s" for n in rates))
    import numpy as np

    return {
        "batch_size": config.ingest_batch,
        "batched_decisions_per_s": round(float(np.median(rates["batched"])), 1),
        "per_decision_decisions_per_s": round(float(np.median(rates["per_decision"])), 1),
        "ratio": ratio_summary(
            [b / p for b, p in zip(rates["batched"], rates["per_decision"], strict=True)]
        ),
    }


def run_serving(config: ServingConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Deploy everything, run every comparison, tear everything down."""
    from ray import serve

    from bench.deployments import PerRequestStateIngress, PlainModel, RandomIngress
    from serve_app.app import build_app
    from serve_app.models.demo import digits_split, train_demo_models

    repo_root = Path(__file__).resolve().parent.parent
    # The demo models are cached between runs (train_demo_models is idempotent); the
    # experiment stores are fresh per run.
    models = repo_root / "bench" / "results" / "tmp" / "models"
    models.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bandit-bench-") as tmp:
        root = Path(tmp)
        tracking_uri = f"sqlite:///{models / 'mlflow.db'}"
        log("demo models (trained once into bench/results/tmp/models)")
        uris = train_demo_models(tracking_uri, models / "mlartifacts", seed=0)
        row = [float(x) for x in digits_split(0)[1][0]]
        args = product_args(uris, tracking_uri, str(root / "data"))
        names = deployment_names(args)
        with local_serve(repo_root) as base:
            log(f"Serve on {base}; deploying")
            serve.run(build_app(args), name=PRODUCT, route_prefix="/product", blocking=False)
            wait_ready(f"{base}/product/predict", {"features": [row]})
            serve.run(
                RandomIngress.bind(PRODUCT, {e: list(a.values()) for e, a in names.items()}),
                name="bench-random",
                route_prefix="/random",
                blocking=False,
            )
            serve.run(
                PlainModel.bind(uris["logreg"], tracking_uri),
                name="bench-plain",
                route_prefix="/plain",
                blocking=False,
            )
            serve.run(
                PerRequestStateIngress.bind(PRODUCT, "experiment-state", "main", names["main"]),
                name="bench-per-request",
                route_prefix="/per-request",
                blocking=False,
            )
            replica_apps = {}
            for n in config.router_replicas:
                if n == 1:
                    replica_apps[n] = "/product"
                    continue
                app_args = product_args(uris, tracking_uri, str(root / f"data-r{n}"), replicas=n)
                serve.run(
                    build_app(app_args),
                    name=f"{PRODUCT}-r{n}",
                    route_prefix=f"/product-r{n}",
                    blocking=False,
                )
                replica_apps[n] = f"/product-r{n}"
            payload = {"features": [row]}
            for prefix in ("/random", "/plain", "/per-request", *replica_apps.values()):
                path = "/predict" if prefix.startswith("/product") else ""
                wait_ready(f"{base}{prefix}{path}", payload)
            log("all applications answer")
            time.sleep(1.0)
            return asyncio.run(_measure(base, row, replica_apps, config, log))


async def _measure(
    base: str,
    row: list[float],
    replica_apps: dict[int, str],
    config: ServingConfig,
    log: Callable[[str], None],
) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    out: dict[str, Any] = {"config": config.__dict__ | {"concurrency": list(config.concurrency)}}
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        payload = {"features": [row]}
        main = {"features": [row], "experiment": "main"}
        sides = {
            "product": (f"{base}/product/predict", main),
            "random": (f"{base}/random", main),
            "plain": (f"{base}/plain", payload),
        }
        log("router overhead: product vs hand-written random ingress vs plain model")
        overhead: dict[str, Any] = {}
        for c in config.concurrency:
            results = await _interleaved(client, sides, c, config, log)
            overhead[str(c)] = {
                "product_vs_random": _compare(results["product"], results["random"]),
                "product_vs_plain": _compare(results["product"], results["plain"]),
                "random_vs_plain": _compare(results["random"], results["plain"]),
                "absolute": {name: _absolute(r) for name, r in results.items()},
            }
        out["router_overhead"] = overhead

        log("state sync: batched (product) vs awaiting the state on every request")
        c_max = max(config.concurrency)
        sync_sides = {
            "product": (f"{base}/product/predict", main),
            "per_request": (f"{base}/per-request", main),
        }
        results = await _interleaved(client, sync_sides, c_max, config, log)
        out["state_sync"] = {
            "concurrency": c_max,
            "product_vs_per_request": _compare(results["product"], results["per_request"]),
            "absolute": {name: _absolute(r) for name, r in results.items()},
        }

        log("arm scaling: product vs random ingress with K arms")
        arms: dict[str, Any] = {}
        for k in config.arm_counts:
            experiment = {"features": [row], "experiment": f"k{k}"}
            k_sides = {
                "product": (f"{base}/product/predict", experiment),
                "random": (f"{base}/random", experiment),
            }
            results = await _interleaved(client, k_sides, config.arm_concurrency, config, log)
            arms[str(k)] = {
                "product_vs_random": _compare(results["product"], results["random"]),
                "absolute": {name: _absolute(r) for name, r in results.items()},
            }
        out["arm_scaling"] = {"concurrency": config.arm_concurrency, "arms": arms}

        log("router replicas: product throughput with N router replicas")
        replica_sides = {
            f"r{n}": (f"{base}{prefix}/predict", main) for n, prefix in replica_apps.items()
        }
        results = await _interleaved(client, replica_sides, c_max, config, log)
        first = f"r{min(replica_apps)}"
        out["router_replicas"] = {
            "concurrency": c_max,
            "cores": os.cpu_count(),
            "absolute": {name: _absolute(r) for name, r in results.items()},
            "throughput_ratio_vs_1": {
                name: ratio_summary(
                    [x.throughput / y.throughput for x, y in zip(r, results[first], strict=True)]
                )
                for name, r in results.items()
            },
        }
    log("state ingestion: batched sync vs one call per decision")
    out["state_ingestion"] = await asyncio.to_thread(measure_ingestion, config, log)
    return out


def headline(serving: dict[str, Any], concurrency: Sequence[int]) -> dict[str, Any]:
    """The issue's headline ratios: median over repetitions.

    Latency ratios are the worst (largest) median over the concurrency levels; the throughput
    ratio is at the highest concurrency (the closest this closed loop gets to max throughput).
    """
    overhead = serving["router_overhead"]
    c_max = str(max(concurrency))
    return {
        "router_latency_ratio_p50": max(
            overhead[str(c)]["product_vs_random"]["latency_ratio_p50"]["median"]
            for c in concurrency
        ),
        "router_latency_ratio_p99": max(
            overhead[str(c)]["product_vs_random"]["latency_ratio_p99"]["median"]
            for c in concurrency
        ),
        "router_throughput_ratio": overhead[c_max]["product_vs_random"]["throughput_ratio"][
            "median"
        ],
        "sync_throughput_ratio": serving["state_sync"]["product_vs_per_request"][
            "throughput_ratio"
        ]["median"],
        "sync_latency_ratio_p99": serving["state_sync"]["product_vs_per_request"][
            "latency_ratio_p99"
        ]["median"],
    }
