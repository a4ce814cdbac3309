"""Serving benchmarks on a private local Ray Serve: placements against hand-written
ingresses, state sync, a report flood, cold loads, scaling.

One Ray instance (``address="local"``: never one another process started), Serve on a free
port of 127.0.0.1, the digits demo models (``logreg`` and ``forest``; real digits rows), and
these applications side by side:

* ``bench-product`` (:func:`serve_app.app.build_app`), whose experiments pick between the two
  models with Thompson sampling, one per placement: ``main`` (the default, ``pool``: the
  shared multiplexed ``model-pool``), ``main-dedicated`` (one ``ModelArm`` deployment per
  model) and ``main-router`` (the models inside the router replica: no second hop);
* ``bench-random``: :class:`bench.deployments.RandomIngress`, the hand-written two-hop ingress
  over the product's own model replicas: ``main`` calls the dedicated deployments (the
  baseline of the goals), ``main-pool`` calls the pool with ``multiplexed_model_id``;
* ``bench-split``: :class:`bench.deployments.InProcessSplit`, the one-hop ideal;
* ``bench-per-request``: :class:`bench.deployments.PerRequestStateIngress`;
* later, ``bench-arms`` (2, 10, 50 arms on one model) and ``bench-product-rN`` (N router
  replicas), each deployed for its own part and deleted after it.

Every model deployment (the pool included) has one replica, so every side runs on the same
processes. Sides of a comparison are measured in alternating order, repetition after
repetition, on the same machine in the same minute; ratios are per repetition (first side /
second side). The load generator is wrk when it can be had (:mod:`bench.loadgen`); around
every window the bench reads the CPU time of all its Ray processes and of the machine
(:mod:`bench.cpu`), so each side's CPU per request and the generator's own CPU are known.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench import cpu
from bench.loadgen import Httpx, LoadResult, Request, Window, Wrk, ensure_wrk, ratio_summary

__all__ = ["ServingConfig", "headline", "run_serving"]

REPO_ROOT = Path(__file__).resolve().parents[1]
PRODUCT = "bench-product"
POOL = "model-pool"
STATE = "experiment-state"
MODEL_OPTIONS: dict[str, Any] = {
    "num_replicas": 1,
    "max_ongoing_requests": 64,
    "ray_actor_options": {"num_cpus": 0.1},
    "timeout_s": 10.0,
}
"""Deployment options of every dedicated model (and, less ``timeout_s``, of the pool)."""
POOL_MODELS = 64
"""``pool.max_models_per_replica``: room for every cold-loaded version, so none is evicted
and the memory each adds stays visible."""

SIDES = {
    "pool": "product /predict, experiment main (placement pool)",
    "dedicated": "product /predict, experiment main-dedicated (placement dedicated)",
    "router": "product /predict, experiment main-router (placement router)",
    "two_hop": "hand-written random ingress -> the dedicated ModelArm deployments",
    "two_hop_pool": "hand-written random ingress -> model-pool (multiplexed_model_id)",
    "one_hop": "in-process split: both models in one deployment, random choice",
}
COMPARISONS = {
    "pool_vs_two_hop": ("pool", "two_hop"),
    "pool_vs_dedicated": ("pool", "dedicated"),
    "router_vs_two_hop": ("router", "two_hop"),
    "router_vs_one_hop": ("router", "one_hop"),
    "pool_vs_two_hop_pool": ("pool", "two_hop_pool"),
    "dedicated_vs_two_hop": ("dedicated", "two_hop"),
    "two_hop_vs_one_hop": ("two_hop", "one_hop"),
}
"""Ratios reported at every concurrency (the goals read the first four)."""


@dataclass(frozen=True)
class ServingConfig:
    """How long and how often to measure (wrk's windows are whole seconds)."""

    duration_s: int = 4
    warmup_s: int = 1
    level_warmup: bool = True
    reps: int = 5
    concurrency: tuple[int, ...] = (1, 8, 32, 64)
    sync_concurrency: int = 32
    arm_counts: tuple[int, ...] = (2, 10, 50)
    arm_concurrency: int = 8
    router_replicas: tuple[int, ...] = (1, 2, 4)
    ingest_s: float = 2.0
    ingest_batch: int = 256
    flood_s: int = 5
    flood_connections: int = 8
    profile_s: int = 10
    cold_reps: int = 3
    idle_s: float = 3.0
    generator: str = "wrk"

    @classmethod
    def quick(cls) -> ServingConfig:
        return cls(
            duration_s=2,
            warmup_s=0,
            level_warmup=False,
            reps=3,
            arm_counts=(50,),
            router_replicas=(),
            ingest_s=1.0,
            flood_s=2,
            profile_s=5,
            cold_reps=2,
            idle_s=2.0,
        )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ------------------------------------------------------------------------------ the apps


def _arms(uris: dict[str, str], **placement: Any) -> list[dict[str, Any]]:
    return [{"name": n, "model_uri": uris[n], **placement} for n in ("logreg", "forest")]


def product_args(
    uris: dict[str, str],
    tracking_uri: str,
    data_dir: str,
    replicas: int = 1,
    experiments: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The product's config: ``main`` (pool), ``main-dedicated`` and ``main-router``."""
    if experiments is None:
        experiments = [
            {"name": "main", "policy": {"name": "thompson"}, "arms": _arms(uris)},
            {
                "name": "main-dedicated",
                "policy": {"name": "thompson"},
                "arms": _arms(uris, deployment=dict(MODEL_OPTIONS)),
            },
            {
                "name": "main-router",
                "policy": {"name": "thompson"},
                "arms": _arms(uris, placement="router"),
            },
        ]
    pool_options = {k: v for k, v in MODEL_OPTIONS.items() if k != "timeout_s"}
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
        "pool": {"max_models_per_replica": POOL_MODELS, "deployment": pool_options},
        "experiments": experiments,
    }


def arm_experiments(uris: dict[str, str], counts: Sequence[int]) -> list[dict[str, Any]]:
    """Thompson over K arms that all serve ``logreg`` from the pool: only routing grows."""
    return [
        {
            "name": f"k{k}",
            "policy": {"name": "thompson"},
            "arms": [{"name": f"a{i}", "model_uri": uris["logreg"]} for i in range(k)],
        }
        for k in counts
    ]


def dedicated_name(experiment: str, arm: str) -> str:
    """A dedicated model's deployment name, as :func:`serve_app.app.build_app` gives it
    (``model-<experiment>-<arm>`` of the first experiment and arm that use it)."""
    return f"model-{experiment}-{arm}"


@contextmanager
def local_serve(repo_root: Path) -> Iterator[str]:
    """A private Ray (8 logical CPUs) and Serve on a free loopback port; always shut down."""
    import ray
    from ray import serve

    pythonpath = os.pathsep.join(p for p in (str(repo_root), os.environ.get("PYTHONPATH")) if p)
    ray.init(
        address="local",
        num_cpus=8,
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


def wait_ready(
    url: str, payload: dict[str, Any], timeout_s: float = 180.0, answers: int = 1
) -> None:
    """Until ``answers`` answers in a row are 200 and none is a fallback (a cold start)."""
    deadline = time.monotonic() + timeout_s
    good = 0
    while time.monotonic() < deadline:
        try:
            response = httpx.post(url, json=payload, timeout=10)
            ok = response.status_code == 200 and not response.json().get("fallback", False)
        except (httpx.HTTPError, ValueError):
            ok = False
        good = good + 1 if ok else 0
        if good >= answers:
            return
        time.sleep(0.05 if ok else 0.5)
    raise TimeoutError(f"{url} did not answer 200 without fallback within {timeout_s} s")


# ------------------------------------------------------------------------------ measuring


class Meter:
    """Runs windows with the chosen generator and fills in the CPU each cost."""

    def __init__(self, generator: Wrk | Httpx, root: int) -> None:
        self.generator = generator
        self.root = root
        self.idle_cores = 0.0

    async def settle(self, limit_s: float = 3.0, step_s: float = 0.2) -> None:
        """Wait (at most ``limit_s``) until the Ray processes are back near their idle CPU:
        a closed loop always leaves ``concurrency`` requests in flight when it stops, and
        they must not be served inside the next side's window."""
        deadline = time.perf_counter() + limit_s
        while time.perf_counter() < deadline:
            before = await asyncio.to_thread(cpu.sample, self.root)
            await asyncio.sleep(step_s)
            used = cpu.delta(before, await asyncio.to_thread(cpu.sample, self.root))
            if used.cores <= self.idle_cores + 0.25:
                return

    async def window(self, request: Request, concurrency: int, duration_s: float) -> Window:
        await self.settle()
        before = await asyncio.to_thread(cpu.sample, self.root)
        window = await self.generator.run(request, concurrency, duration_s)
        after = await asyncio.to_thread(cpu.sample, self.root)
        used = cpu.delta(before, after)
        window.cpu_s = used.cpu_s
        window.cpu_wall_s = used.wall_s
        window.machine_busy_s = used.machine_busy_s
        window.machine_steal_s = used.machine_steal_s
        return window

    async def idle(self, seconds: float) -> cpu.CpuDelta:
        """Ray's own CPU with no load: sync loops, health checks, controllers."""
        before = await asyncio.to_thread(cpu.sample, self.root)
        await asyncio.sleep(seconds)
        used = cpu.delta(before, await asyncio.to_thread(cpu.sample, self.root))
        self.idle_cores = used.cores
        return used

    async def interleaved(
        self,
        sides: dict[str, Request],
        concurrency: int,
        config: ServingConfig,
        log: Callable[[str], None],
        label: str = "",
    ) -> dict[str, list[Window]]:
        """Every side once per repetition, in alternating order (A B C, C B A, ...), after
        one warm-up window of each side; ``warmup_s`` more before every measured window."""
        names = list(sides)
        for name in names if config.level_warmup else ():
            await self.generator.run(sides[name], concurrency, 1)
        results: dict[str, list[Window]] = {name: [] for name in names}
        for rep in range(config.reps):
            for name in names if rep % 2 == 0 else names[::-1]:
                if config.warmup_s:
                    await self.generator.run(sides[name], concurrency, config.warmup_s)
                results[name].append(await self.window(sides[name], concurrency, config.duration_s))
            log(
                f"  {label}c={concurrency} rep {rep + 1}/{config.reps}: "
                + ", ".join(
                    f"{n} {results[n][-1].percentile_ms(50):.1f}/"
                    f"{results[n][-1].percentile_ms(99):.1f} ms {results[n][-1].throughput:.0f}/s"
                    + (f" ({results[n][-1].errors} errors)" if results[n][-1].errors else "")
                    for n in names
                )
            )
        return results


def _ratios(values: Sequence[tuple[float, float]]) -> dict[str, float]:
    return ratio_summary([a / b if b else float("nan") for a, b in values])


def compare(a: Sequence[Window], b: Sequence[Window]) -> dict[str, Any]:
    """Per-repetition ratios a/b of p50, p99, throughput and CPU per request."""
    pairs = list(zip(a, b, strict=True))
    out = {
        f"latency_ratio_p{q}": _ratios([(x.percentile_ms(q), y.percentile_ms(q)) for x, y in pairs])
        for q in (50, 99)
    } | {
        "throughput_ratio": _ratios([(x.throughput, y.throughput) for x, y in pairs]),
    }
    if all(isinstance(w, Window) and w.cpu_s is not None for w in (*a, *b)):
        out["cpu_ratio"] = _ratios([(x.cpu_ms_per_request, y.cpu_ms_per_request) for x, y in pairs])
    return out


def _median(values: Sequence[float], digits: int = 3) -> float:
    finite = [v for v in values if np.isfinite(v)]
    return round(float(np.median(finite)), digits) if finite else float("nan")


def _absolute(results: Sequence[Window | LoadResult]) -> dict[str, float]:
    """Medians over repetitions of each side's absolute figures (context only)."""
    out = {
        "p50_ms": _median([r.percentile_ms(50) for r in results]),
        "p99_ms": _median([r.percentile_ms(99) for r in results]),
        "throughput_rps": _median([r.throughput for r in results], 1),
        "errors": int(sum(r.errors for r in results)),
    }
    windows = [r for r in results if isinstance(r, Window) and r.cpu_s is not None]
    if windows:
        out |= {
            "cpu_ms_per_request": _median([w.cpu_ms_per_request for w in windows]),
            "generator_ms_per_request": _median([w.generator_ms_per_request for w in windows]),
            "ray_cores": _median([w.cpu_s / w.cpu_wall_s for w in windows if w.cpu_wall_s]),
            "generator_cores": _median(
                [w.generator_cpu_s / w.cpu_wall_s for w in windows if w.cpu_wall_s]
            ),
            "other_cores": _median([w.other_cores for w in windows]),
            "steal_cores": _median(
                [(w.machine_steal_s or 0.0) / w.cpu_wall_s for w in windows if w.cpu_wall_s]
            ),
        }
    return out


# ------------------------------------------------------------------------------ the parts


async def measure_overhead(
    meter: Meter, base: str, row: list[float], config: ServingConfig, log: Callable[[str], None]
) -> dict[str, Any]:
    """Every placement against the hand-written ingresses at every concurrency."""
    product = f"{base}/product/predict"
    sides = {
        "pool": Request.json(product, {"features": [row], "experiment": "main"}),
        "dedicated": Request.json(product, {"features": [row], "experiment": "main-dedicated"}),
        "router": Request.json(product, {"features": [row], "experiment": "main-router"}),
        "two_hop": Request.json(f"{base}/random", {"features": [row], "experiment": "main"}),
        "two_hop_pool": Request.json(
            f"{base}/random", {"features": [row], "experiment": "main-pool"}
        ),
        "one_hop": Request.json(f"{base}/split", {"features": [row]}),
    }
    levels: dict[str, Any] = {}
    for c in config.concurrency:
        results = await meter.interleaved(sides, c, config, log)
        levels[str(c)] = {
            **{name: compare(results[a], results[b]) for name, (a, b) in COMPARISONS.items()},
            "absolute": {name: _absolute(r) for name, r in results.items()},
        }
    return {"sides": SIDES, "levels": levels}


async def measure_sync(
    meter: Meter, base: str, row: list[float], config: ServingConfig, log: Callable[[str], None]
) -> dict[str, Any]:
    """Batched background sync (the product, dedicated placement) against awaiting the
    state on every request, both over the same dedicated model replicas."""
    sides = {
        "product": Request.json(
            f"{base}/product/predict", {"features": [row], "experiment": "main-dedicated"}
        ),
        "per_request": Request.json(f"{base}/per-request", {"features": [row]}),
    }
    c = config.sync_concurrency
    results = await meter.interleaved(sides, c, config, log, "sync ")
    return {
        "concurrency": c,
        "product_vs_per_request": compare(results["product"], results["per_request"]),
        "absolute": {name: _absolute(r) for name, r in results.items()},
    }


def measure_ingestion(config: ServingConfig, log: Callable[[str], None]) -> dict[str, Any]:
    """Decisions/s the state deployment merges: batches of ``ingest_batch`` vs one per call.

    Called from the driver through a deployment handle, eight senders with one call in
    flight each (a sender's batches are numbered, and the state applies them in order).
    """
    from ray import serve

    from serve_app.experiment.records import ArmCounts, SyncBatch

    state = serve.get_deployment_handle(STATE, app_name=PRODUCT)
    snapshot = state.register.remote("bench-ingest").result()["snapshot"]
    revision = snapshot.experiments["main"].revision
    revisions = {name: e.revision for name, e in snapshot.experiments.items()}
    half = config.ingest_batch // 2
    modes = {
        "batched": (
            {
                ("main", revision, "logreg"): ArmCounts(pulls=half),
                ("main", revision, "forest"): ArmCounts(pulls=config.ingest_batch - half),
            },
            config.ingest_batch,
        ),
        "per_decision": ({("main", revision, "logreg"): ArmCounts(pulls=1)}, 1),
    }
    seqs: Counter[str] = Counter()
    rates: dict[str, list[float]] = {name: [] for name in modes}
    for rep in range(config.reps):
        for name in list(modes) if rep % 2 == 0 else list(modes)[::-1]:
            counts, per_call = modes[name]
            calls = 0
            start = time.perf_counter()
            senders = [f"bench-ingest-{name}-{i}" for i in range(8)]

            def send(sender: str, counts: Any = counts) -> Any:
                seqs[sender] += 1
                batch = SyncBatch(sender, seqs[sender], counts)
                return state.sync.remote(batch, revisions, sender, None)

            in_flight = {sender: send(sender) for sender in senders}
            while in_flight:
                for sender in list(in_flight):
                    in_flight.pop(sender).result()
                    calls += 1
                    if time.perf_counter() - start < config.ingest_s:
                        in_flight[sender] = send(sender)
            rates[name].append(calls * per_call / (time.perf_counter() - start))
        log(f"  ingestion rep {rep + 1}: " + ", ".join(f"{n} {rates[n][-1]:.0f}/s" for n in rates))
    return {
        "batch_size": config.ingest_batch,
        "batched_decisions_per_s": _median(rates["batched"], 1),
        "per_decision_decisions_per_s": _median(rates["per_decision"], 1),
        "ratio": _ratios(list(zip(rates["batched"], rates["per_decision"], strict=True))),
    }


async def measure_flood(
    meter: Meter,
    base: str,
    row: list[float],
    config: ServingConfig,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Feedback latency and the state's sync delay, quiet vs under a report flood.

    In every window, from this process (httpx, one client each): a *feedback probe*
    (``/predict`` on ``main``, then ``/feedback`` for its decision: the feedback request's
    latency is timed; it is acknowledged only after the state's group commit), a *sync
    probe* (``/predict`` on ``main-dedicated``, which nothing else calls in this part, then
    ``GET /experiments/main-dedicated`` every 5 ms until the arm's request count shows it:
    the time from the answer to the count, i.e. the router's next sync plus the state's
    answer to a read) and a *health probe* (``GET /healthz`` every 20 ms: the router's
    ``last_sync_age_s``). Flood windows add wrk with ``flood_connections`` connections on
    ``GET /experiments/main/report``; quiet windows do not. Alternating, ``reps`` each.
    """
    product = f"{base}/product"
    flood = Request.get(f"{product}/experiments/main/report")
    rng = np.random.default_rng(0)

    async def feedback_probe(client: httpx.AsyncClient, deadline: float, out: dict) -> None:
        while time.perf_counter() < deadline:
            answer = await client.post(
                f"{product}/predict", json={"features": [row], "experiment": "main"}
            )
            if answer.status_code != 200:
                out["errors"] += 1
                continue
            started = time.perf_counter()
            response = await client.post(
                f"{product}/feedback",
                json={
                    "decision_id": answer.json()["decision_id"],
                    "reward": float(rng.random() < 0.5),
                },
            )
            if response.status_code == 200:
                out["feedback_s"].append(time.perf_counter() - started)
            else:
                out["errors"] += 1

    async def requests_counted(client: httpx.AsyncClient) -> int:
        summary = (await client.get(f"{product}/experiments/main-dedicated")).json()
        return sum(arm["requests"] for arm in summary["arms"])

    async def sync_probe(client: httpx.AsyncClient, deadline: float, out: dict) -> None:
        while time.perf_counter() < deadline:
            before = await requests_counted(client)
            answer = await client.post(
                f"{product}/predict", json={"features": [row], "experiment": "main-dedicated"}
            )
            answered = time.perf_counter()
            if answer.status_code != 200:
                out["errors"] += 1
                continue
            while time.perf_counter() - answered < 10.0:
                if await requests_counted(client) > before:
                    out["sync_delay_s"].append(time.perf_counter() - answered)
                    break
                await asyncio.sleep(0.005)

    async def health_probe(client: httpx.AsyncClient, deadline: float, out: dict) -> None:
        while time.perf_counter() < deadline:
            health = (await client.get(f"{product}/healthz")).json()
            out["sync_age_s"].append(float(health["last_sync_age_s"]))
            await asyncio.sleep(0.02)

    async def one(client: httpx.AsyncClient, flooded: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"feedback_s": [], "sync_delay_s": [], "sync_age_s": [], "errors": 0}
        deadline = time.perf_counter() + config.flood_s
        probes = [
            feedback_probe(client, deadline, out),
            sync_probe(client, deadline, out),
            health_probe(client, deadline, out),
        ]
        if flooded:
            probes.append(meter.window(flood, config.flood_connections, config.flood_s))
        finished = await asyncio.gather(*probes)
        if flooded:
            window = finished[-1]
            out["flood_rps"] = window.throughput
            out["flood_errors"] = window.errors
        return out

    windows: dict[str, list[dict[str, Any]]] = {"quiet": [], "flood": []}
    limits = httpx.Limits(max_connections=16, max_keepalive_connections=16)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        await one(client, flooded=True)  # warm-up: the report cache, the connections
        for rep in range(config.reps):
            for name in ("quiet", "flood") if rep % 2 == 0 else ("flood", "quiet"):
                windows[name].append(await one(client, name == "flood"))
            log(
                f"  flood rep {rep + 1}/{config.reps}: "
                + ", ".join(
                    f"{n} feedback p99 {1000 * _q(w[-1]['feedback_s'], 99):.1f} ms, sync delay "
                    f"p50 {1000 * _q(w[-1]['sync_delay_s'], 50):.0f} ms"
                    for n, w in windows.items()
                )
                + f", flood {windows['flood'][-1].get('flood_rps', 0):.0f} reports/s"
            )

    def figures(window: dict[str, Any]) -> dict[str, float]:
        return {
            "feedback_p50_ms": 1000 * _q(window["feedback_s"], 50),
            "feedback_p99_ms": 1000 * _q(window["feedback_s"], 99),
            "sync_delay_p50_ms": 1000 * _q(window["sync_delay_s"], 50),
            "sync_delay_p90_ms": 1000 * _q(window["sync_delay_s"], 90),
            "sync_delay_max_ms": 1000 * _q(window["sync_delay_s"], 100),
            "sync_age_p99_ms": 1000 * _q(window["sync_age_s"], 99),
        }

    quiet = [figures(w) for w in windows["quiet"]]
    flooded = [figures(w) for w in windows["flood"]]
    return {
        "connections": config.flood_connections,
        "window_s": config.flood_s,
        "flood_vs_quiet": {
            key: _ratios([(f[key], q[key]) for f, q in zip(flooded, quiet, strict=True)])
            for key in quiet[0]
        },
        "absolute": {
            name: {key: _median([f[key] for f in rows]) for key in rows[0]}
            for name, rows in (("quiet", quiet), ("flood", flooded))
        },
        "samples": {
            name: {
                "feedback": int(sum(len(w["feedback_s"]) for w in rows)),
                "sync_delay": int(sum(len(w["sync_delay_s"]) for w in rows)),
                "errors": int(sum(w["errors"] for w in rows)),
            }
            for name, rows in windows.items()
        },
        "flood_reports_per_s": _median([w["flood_rps"] for w in windows["flood"]], 1),
        "flood_errors": int(sum(w["flood_errors"] for w in windows["flood"])),
    }


def _q(values: Sequence[float], q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else float("nan")


def measure_cold_loads(
    root: int,
    tracking_uri: str,
    uris: dict[str, str],
    row: list[float],
    config: ServingConfig,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Cold loads of new model versions in the pool, and the memory each adds.

    Per repetition and model (``logreg``, ``forest``, ``mlp``), a new version is registered
    (the same artifacts as version 1: a version registered after the app started) and the
    pool is asked to ``load`` it (``handle.options(multiplexed_model_id=uri).load``, from
    this process); then the first and a second ``predict`` of it are timed. The pool
    replica's ``VmRSS`` is read before and after every load (it holds every version:
    ``max_models_per_replica`` is larger than what is loaded, so nothing is evicted). For
    comparison: the RSS of each dedicated replica, a process that holds one model.
    """
    from mlflow import MlflowClient
    from ray import serve

    from serve_app.models.demo import DIGITS_MODELS
    from serve_app.models.registry import mlflow_uris

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    pool = serve.get_deployment_handle(POOL, app_name=PRODUCT)
    (pid,) = cpu.find_replicas(root, PRODUCT, POOL)
    features = np.asarray([row])
    rows: list[dict[str, Any]] = []
    rss_start = cpu.rss_bytes(pid)
    for rep in range(config.cold_reps):
        for arm in ("logreg", "forest", "mlp"):
            name = DIGITS_MODELS[arm]
            first = client.get_model_version(name, uris[arm].rsplit("/", 1)[1])
            with mlflow_uris(tracking_uri):  # MLflow resolves the source through the globals
                version = client.create_model_version(name, first.source, run_id=first.run_id)
            uri = f"models:/{name}/{version.version}"
            handle = pool.options(multiplexed_model_id=uri)
            rss_before = cpu.rss_bytes(pid)
            started = time.perf_counter()
            answer = handle.load.remote().result(timeout_s=120)
            load_s = time.perf_counter() - started
            rss_after = cpu.rss_bytes(pid)
            started = time.perf_counter()
            handle.predict.remote(features).result(timeout_s=30)
            first_predict_s = time.perf_counter() - started
            started = time.perf_counter()
            handle.predict.remote(features).result(timeout_s=30)
            warm_predict_s = time.perf_counter() - started
            rows.append(
                {
                    "model": arm,
                    "rep": rep,
                    "uri": uri,
                    "load_s": round(load_s, 4),
                    "pool_load_s": round(float(answer.get("load_s") or float("nan")), 4),
                    "first_predict_ms": round(1000 * first_predict_s, 2),
                    "warm_predict_ms": round(1000 * warm_predict_s, 2),
                    "rss_added_mib": round(((rss_after or 0) - (rss_before or 0)) / 2**20, 2),
                }
            )
            log(
                f"  cold load {uri}: {load_s:.2f} s, +{rows[-1]['rss_added_mib']:.1f} MiB, "
                f"first predict {rows[-1]['first_predict_ms']:.1f} ms"
            )
    stats = pool.stats.remote().result(timeout_s=30)
    per_model = {}
    for arm in ("logreg", "forest", "mlp"):
        mine = [r for r in rows if r["model"] == arm]
        per_model[arm] = {
            key: _median([r[key] for r in mine], 3)
            for key in ("load_s", "pool_load_s", "first_predict_ms", "warm_predict_ms")
        } | {
            "rss_added_mib": _median([r["rss_added_mib"] for r in mine], 2),
            "rss_added_mib_first": mine[0]["rss_added_mib"],
        }
    replicas = {
        "pool (all loaded versions)": cpu.rss_bytes(pid),
        **{
            f"dedicated {arm} (one model)": cpu.rss_bytes(p)
            for arm in ("logreg", "forest")
            for p in cpu.find_replicas(root, PRODUCT, dedicated_name("main-dedicated", arm))
        },
        **{
            f"router {i} (main-router models in-process)": cpu.rss_bytes(p)
            for i, p in enumerate(cpu.find_replicas(root, PRODUCT, "router"))
        },
    }
    return {
        "per_model": per_model,
        "loads": rows,
        "pool_rss_start_mib": round((rss_start or 0) / 2**20, 1),
        "replica_rss_mib": {k: round((v or 0) / 2**20, 1) for k, v in replicas.items()},
        "pool_resident": len(stats.get("resident", {})),
    }


def _collapsed(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    return stacks


PROJECT_DIRS = tuple(f"{REPO_ROOT}/{d}/" for d in ("serve_app", "bandits", "bench"))


def _short(frame: str) -> str:
    """``f (/abs/path/site-packages/ray/actor.py:12)`` -> ``f (ray/actor.py:12)``; project
    frames relative to the repository (py-spy runs with ``--full-filenames``, so project and
    library files can be told apart)."""
    name, _, where = frame.partition(" (")
    where = where.removeprefix(f"{REPO_ROOT}/")
    for marker in ("/site-packages/", "/lib/python3.11/"):
        if marker in where:
            where = where.rpartition(marker)[2]
    return f"{name} ({where}" if where else name


def _thread_name(frame: str) -> str:
    """``thread (123): Thread-1 (_run_user_code_event_loop)`` -> ``Thread-1
    (_run_user_code_event_loop)`` (a thread py-spy could not name keeps its id)."""
    return frame.partition(": ")[2] or frame


def summarize_profile(path: Path, seconds: float, rate: int, top: int = 12) -> dict[str, Any]:
    """Where a replica's Python threads spent the samples py-spy took: each thread's busy
    share (samples over ``seconds * rate``; Serve runs user code and its handles' routing on
    threads of their own, not the main one) and, over all threads, the project frames
    (``serve_app/``, ``bandits/``, ``bench/``) and leaves with the largest inclusive share of
    the busy samples, each as ``function (file:line)``."""
    stacks = _collapsed(path)
    possible = max(1, int(seconds * rate))
    threads: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    for frames, n in stacks:
        if not frames:
            continue
        threads[_thread_name(frames[0])] += n
        own = [_short(f) for f in frames[1:] if any(p in f for p in PROJECT_DIRS)]
        for frame in dict.fromkeys(own):
            inclusive[frame] += n
        leaf[_short(frames[-1])] += n
    busy = sum(threads.values())

    def shares(counts: Counter[str]) -> list[dict[str, Any]]:
        return [
            {"frame": frame, "share_of_busy": round(n / max(1, busy), 3)}
            for frame, n in counts.most_common(top)
        ]

    return {
        "busy_share": round(busy / possible, 3),
        "threads": {name: round(n / possible, 3) for name, n in threads.most_common(6)},
        "samples": busy,
        "top_project_frames": shares(inclusive),
        "top_leaves": shares(leaf),
    }


async def profile_single_client(
    meter: Meter,
    root: int,
    base: str,
    row: list[float],
    config: ServingConfig,
    out_dir: Path,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """py-spy on the router and the state while one client calls ``/predict`` (pool)."""
    beside = Path(sys.executable).parent / "py-spy"  # the venv's, where it is installed
    spy = str(beside) if beside.exists() else shutil.which("py-spy")
    if spy is None:
        return {"error": "py-spy not found (pip install py-spy)"}
    out_dir.mkdir(parents=True, exist_ok=True)
    rate = 200
    targets = {
        "router": cpu.find_replicas(root, PRODUCT, "router"),
        "state": cpu.find_replicas(root, PRODUCT, STATE),
        "pool": cpu.find_replicas(root, PRODUCT, POOL),
    }
    processes = {}
    for name, pids in targets.items():
        if not pids:
            continue
        processes[name] = subprocess.Popen(
            [
                spy, "record", "--pid", str(pids[0]), "--duration", str(config.profile_s),
                "--rate", str(rate), "--format", "raw", "--nonblocking", "--threads",
                "--full-filenames",
                "--output", str(out_dir / f"{name}.txt"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )  # fmt: skip
    await asyncio.sleep(1.0)  # py-spy attaches
    request = Request.json(f"{base}/product/predict", {"features": [row], "experiment": "main"})
    window = await meter.window(request, 1, config.profile_s - 2)
    summaries: dict[str, Any] = {"window": _absolute([window])}
    for name, process in processes.items():
        try:
            _, err = process.communicate(timeout=config.profile_s + 30)
        except subprocess.TimeoutExpired:
            process.kill()
            _, err = process.communicate()
        path = out_dir / f"{name}.txt"
        if process.returncode != 0 or not path.exists():
            summaries[name] = {"error": err.decode(errors="replace")[-300:]}
            continue
        summaries[name] = summarize_profile(path, config.profile_s, rate)
        log(f"  py-spy {name}: busy {summaries[name]['busy_share']:.0%} of one core's samples")
    summaries["raw"] = str(out_dir.relative_to(REPO_ROOT))
    return summaries


async def measure_arms(
    meter: Meter, base: str, row: list[float], config: ServingConfig, log: Callable[[str], None]
) -> dict[str, Any]:
    """Routing overhead as arms grow: ``bench-arms`` (K pool arms, one model) vs the random
    ingress over the same pool and model."""
    arms: dict[str, Any] = {}
    for k in config.arm_counts:
        sides = {
            "product": Request.json(
                f"{base}/arms/predict", {"features": [row], "experiment": f"k{k}"}
            ),
            "random": Request.json(
                f"{base}/random-arms", {"features": [row], "experiment": f"k{k}"}
            ),
        }
        results = await meter.interleaved(sides, config.arm_concurrency, config, log, f"k={k} ")
        arms[str(k)] = {
            "product_vs_random": compare(results["product"], results["random"]),
            "absolute": {name: _absolute(r) for name, r in results.items()},
        }
    return {"concurrency": config.arm_concurrency, "arms": arms}


async def measure_replicas(
    meter: Meter,
    base: str,
    row: list[float],
    prefixes: dict[int, str],
    config: ServingConfig,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Product throughput (``main``, pool) with N router replicas."""
    sides = {
        f"r{n}": Request.json(f"{base}{prefix}/predict", {"features": [row], "experiment": "main"})
        for n, prefix in prefixes.items()
    }
    c = config.sync_concurrency
    results = await meter.interleaved(sides, c, config, log, "replicas ")
    first = f"r{min(prefixes)}"
    return {
        "concurrency": c,
        "cores": os.cpu_count(),
        "absolute": {name: _absolute(r) for name, r in results.items()},
        "throughput_ratio_vs_1": {
            name: _ratios(
                [(x.throughput, y.throughput) for x, y in zip(r, results[first], strict=True)]
            )
            for name, r in results.items()
        },
    }


# ------------------------------------------------------------------------------ the run


@dataclass
class _Run:
    base: str
    root: int
    row: list[float]
    uris: dict[str, str]
    tracking_uri: str
    data: Path
    config: ServingConfig
    log: Callable[[str], None]
    meter: Meter
    out: dict[str, Any] = field(default_factory=dict)


def make_generator(config: ServingConfig, log: Callable[[str], None]) -> tuple[Any, Any]:
    """wrk if it is there or can be installed, else the in-process generator (warned)."""
    if config.generator == "wrk":
        binary = ensure_wrk()
        if binary:
            return Wrk(binary), None
        log(
            "WARNING: wrk is not installed and could not be installed (apt-get install wrk); "
            "falling back to the in-process httpx generator, which takes several times more "
            "CPU per request from the same 2 cores: treat the throughput ratios with care"
        )
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    client = httpx.AsyncClient(timeout=30, limits=limits)
    return Httpx(client), client


def run_serving(config: ServingConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Deploy everything, run every comparison, tear everything down."""
    from serve_app.models.demo import digits_split, train_demo_models

    repo_root = REPO_ROOT
    # The demo models are cached between runs (train_demo_models is idempotent); each run
    # works on a copy of their registry, where the cold-load part registers new versions.
    models = repo_root / "bench" / "results" / "tmp" / "models"
    models.mkdir(parents=True, exist_ok=True)
    log("demo models (trained once into bench/results/tmp/models)")
    uris = train_demo_models(f"sqlite:///{models / 'mlflow.db'}", models / "mlartifacts", seed=0)
    row = [float(x) for x in digits_split(0)[1][0]]
    with tempfile.TemporaryDirectory(prefix="bandit-bench-") as tmp:
        root = Path(tmp)
        shutil.copy(models / "mlflow.db", root / "mlflow.db")
        tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
        with local_serve(repo_root) as base:
            return asyncio.run(_run(base, row, uris, tracking_uri, root, config, log))


async def _run(
    base: str,
    row: list[float],
    uris: dict[str, str],
    tracking_uri: str,
    root: Path,
    config: ServingConfig,
    log: Callable[[str], None],
) -> dict[str, Any]:
    generator, client = make_generator(config, log)
    try:
        driver = os.getpid()  # every Ray process of this bench descends from it
        run = _Run(
            base, driver, row, uris, tracking_uri, root, config, log, Meter(generator, driver)
        )
        run.out["generator"] = generator.name
        run.out["config"] = asdict(config)
        await asyncio.to_thread(_deploy_core, run)
        await _core_parts(run)
        await _scale_parts(run)
        return run.out
    finally:
        if client is not None:
            await client.aclose()
        if isinstance(generator, Wrk):
            generator.close()


def _deploy_core(run: _Run) -> None:
    from ray import serve

    from bench.deployments import InProcessSplit, PerRequestStateIngress, RandomIngress, Target
    from serve_app.app import build_app

    base, uris, log = run.base, run.uris, run.log
    log(f"Serve on {base}; deploying the product and the hand-written sides")
    args = product_args(uris, run.tracking_uri, str(run.data / "data"))
    serve.run(build_app(args), name=PRODUCT, route_prefix="/product", blocking=False)
    dedicated = [Target(PRODUCT, dedicated_name("main-dedicated", a)) for a in ("logreg", "forest")]
    pooled = [Target(PRODUCT, POOL, uris[a]) for a in ("logreg", "forest")]
    serve.run(
        RandomIngress.bind({"main": dedicated, "main-pool": pooled}),
        name="bench-random",
        route_prefix="/random",
        blocking=False,
    )
    serve.run(
        InProcessSplit.bind([uris["logreg"], uris["forest"]], run.tracking_uri),
        name="bench-split",
        route_prefix="/split",
        blocking=False,
    )
    serve.run(
        PerRequestStateIngress.bind(
            PRODUCT,
            STATE,
            "main-dedicated",
            dict(zip(("logreg", "forest"), dedicated, strict=True)),
        ),
        name="bench-per-request",
        route_prefix="/per-request",
        blocking=False,
    )
    features = [run.row]
    for experiment in ("main", "main-dedicated", "main-router"):
        payload = {"features": features, "experiment": experiment}
        wait_ready(f"{base}/product/predict", payload, answers=6)
    for path, experiment in (("/random", "main"), ("/random", "main-pool")):
        wait_ready(f"{base}{path}", {"features": features, "experiment": experiment}, answers=4)
    for path in ("/split", "/per-request"):
        wait_ready(f"{base}{path}", {"features": features})
    log("all applications answer")


async def _part(run: _Run, key: str, label: str, measure: Callable[[], Awaitable[Any]]) -> None:
    """One part; a part that fails is recorded with its error and the run goes on."""
    run.log(label)
    try:
        run.out[key] = await measure()
    except Exception as error:  # a failed part must not lose the others' figures
        run.log(f"  {key} FAILED: {error!r}")
        run.out[key] = {"error": repr(error)[:1000]}


async def _core_parts(run: _Run) -> None:
    base, row, config, log, meter, out = run.base, run.row, run.config, run.log, run.meter, run.out
    await asyncio.sleep(1.0)
    idle = await meter.idle(config.idle_s)
    out["idle"] = {"ray_cores": round(idle.cores, 3), "window_s": round(idle.wall_s, 2)}
    log(f"idle: the Ray processes use {idle.cores:.2f} cores with no load")
    await _part(
        run,
        "overhead",
        "placements vs hand-written ingresses (6 sides per concurrency)",
        lambda: measure_overhead(meter, base, row, config, log),
    )
    await _part(
        run,
        "state_sync",
        "state sync: batched (product) vs awaiting the state on every request",
        lambda: measure_sync(meter, base, row, config, log),
    )
    profiles = Path(__file__).parent / "results" / "tmp" / "profile"
    await _part(
        run,
        "profile",
        "profile: py-spy on the router, the state and the pool at 1 client",
        lambda: profile_single_client(meter, run.root, base, row, config, profiles, log),
    )
    await _part(
        run,
        "report_flood",
        "report flood: feedback latency and sync delay, quiet vs flooded",
        lambda: measure_flood(meter, base, row, config, log),
    )
    await _part(
        run,
        "state_ingestion",
        "state ingestion: batched sync vs one call per decision",
        lambda: asyncio.to_thread(measure_ingestion, config, log),
    )
    await _part(
        run,
        "cold_loads",
        "cold loads and memory per model in the pool",
        lambda: asyncio.to_thread(
            measure_cold_loads, run.root, run.tracking_uri, run.uris, row, config, log
        ),
    )
    await _part(run, "fallbacks", "fallbacks counted", lambda: asyncio.to_thread(_fallbacks, base))


def _fallbacks(base: str) -> dict[str, int]:
    """Requests each product experiment answered with a fallback (cold start or failure)."""
    summary = httpx.get(f"{base}/product/experiments", timeout=30).json()
    return {
        e["name"]: int(sum(arm["fallbacks"] + arm["errors"] for arm in e["arms"]))
        for e in summary["experiments"]
    }


async def _scale_parts(run: _Run) -> None:
    from ray import serve

    for app in ("bench-split", "bench-per-request"):
        await asyncio.to_thread(serve.delete, app)
    if run.config.arm_counts:
        await _part(run, "arm_scaling", "arm scaling", lambda: _arm_scaling(run))
    if run.config.router_replicas:
        await _part(run, "router_replicas", "router replicas", lambda: _router_replicas(run))


async def _arm_scaling(run: _Run) -> dict[str, Any]:
    from ray import serve

    from bench.deployments import RandomIngress, Target
    from serve_app.app import build_app

    base, row, config = run.base, run.row, run.config
    run.log(f"  deploying bench-arms ({', '.join(map(str, config.arm_counts))} arms)")
    args = product_args(
        run.uris,
        run.tracking_uri,
        str(run.data / "data-arms"),
        experiments=arm_experiments(run.uris, config.arm_counts),
    )
    targets = {
        f"k{k}": [Target("bench-arms", POOL, run.uris["logreg"])] * k for k in config.arm_counts
    }

    def deploy() -> None:
        serve.run(build_app(args), name="bench-arms", route_prefix="/arms", blocking=False)
        serve.run(
            RandomIngress.bind(targets),
            name="bench-random-arms",
            route_prefix="/random-arms",
            blocking=False,
        )
        for k in config.arm_counts:
            payload = {"features": [row], "experiment": f"k{k}"}
            wait_ready(f"{base}/arms/predict", payload, answers=4)
            wait_ready(f"{base}/random-arms", payload)

    try:
        await asyncio.to_thread(deploy)
        return await measure_arms(run.meter, base, row, config, run.log)
    finally:
        for app in ("bench-arms", "bench-random-arms"):
            await asyncio.to_thread(serve.delete, app)


async def _router_replicas(run: _Run) -> dict[str, Any]:
    from ray import serve

    from serve_app.app import build_app

    prefixes = {}
    for n in run.config.router_replicas:
        if n == 1:
            prefixes[n] = "/product"
            continue
        run.log(f"  deploying {PRODUCT}-r{n}")
        args = product_args(run.uris, run.tracking_uri, str(run.data / f"data-r{n}"), replicas=n)
        await asyncio.to_thread(
            serve.run,
            build_app(args),
            name=f"{PRODUCT}-r{n}",
            route_prefix=f"/product-r{n}",
            blocking=False,
        )
        prefixes[n] = f"/product-r{n}"
    for prefix in prefixes.values():
        payload = {"features": [run.row], "experiment": "main"}
        await asyncio.to_thread(wait_ready, f"{run.base}{prefix}/predict", payload, 180.0, 8)
    return await measure_replicas(run.meter, run.base, run.row, prefixes, run.config, run.log)


# ------------------------------------------------------------------------------ headline


def _median_of(summary: dict[str, Any], key: str) -> float:
    value = summary.get(key, {}).get("median")
    return float("nan") if value is None else float(value)


def headline(serving: dict[str, Any], concurrency: Sequence[int] = ()) -> dict[str, Any]:
    """The issue's goals, each with its figure (a median over repetitions) and whether it
    is met; and the keys every ``latest.json`` carries (``router_*``: the default placement
    against the hand-written two-hop ingress, worst concurrency)."""
    levels = serving.get("overhead", {}).get("levels", {})
    clients = [int(c) for c in levels]
    goals: list[dict[str, Any]] = []

    def goal(text: str, value: float, target: str, met: bool) -> None:
        goals.append({"goal": text, "value": round(value, 3), "target": target, "met": met})

    def worst(comparison: str, key: str, at: Sequence[int], high: bool) -> tuple[float, int]:
        values = [(_median_of(levels[str(c)][comparison], key), c) for c in at if str(c) in levels]
        values = [(v, c) for v, c in values if np.isfinite(v)]
        if not values:
            return float("nan"), 0
        return max(values) if high else min(values)

    for c in clients:
        ratio = levels[str(c)]["pool_vs_two_hop"]
        throughput = _median_of(ratio, "throughput_ratio")
        p99 = _median_of(ratio, "latency_ratio_p99")
        goal(f"pool vs two-hop ingress, {c} clients: throughput", throughput, ">= 0.95",
             throughput >= 0.95)  # fmt: skip
        goal(f"pool vs two-hop ingress, {c} clients: p99", p99, "<= 1.20", p99 <= 1.2)
    if "1" in levels:
        p50 = _median_of(levels["1"]["router_vs_two_hop"], "latency_ratio_p50")
        goal("placement router vs two-hop ingress, 1 client: p50", p50, "<= 0.70", p50 <= 0.7)
    for c in (8, 32):
        if str(c) in levels:
            value = _median_of(levels[str(c)]["router_vs_one_hop"], "throughput_ratio")
            goal(f"placement router vs in-process split, {c} clients: throughput", value,
                 ">= 0.90", value >= 0.9)  # fmt: skip
    low, at_low = worst("pool_vs_dedicated", "throughput_ratio", clients, high=False)
    goal(f"pool vs dedicated: throughput (worst: {at_low} clients)", low, ">= 0.90", low >= 0.9)
    high, at_high = worst("pool_vs_dedicated", "latency_ratio_p50", clients, high=True)
    goal(f"pool vs dedicated: p50 (worst: {at_high} clients)", high, "<= 1.10", high <= 1.1)
    flood = serving.get("report_flood")
    if flood and "flood_vs_quiet" in flood:
        for key, text in (
            ("feedback_p99_ms", "report flood: feedback p99 vs quiet"),
            ("sync_delay_p50_ms", "report flood: sync delay (median) vs quiet"),
        ):
            value = _median_of(flood["flood_vs_quiet"], key)
            goal(text, value, "<= 1.50", value <= 1.5)
    p50, _ = worst("pool_vs_two_hop", "latency_ratio_p50", clients, high=True)
    p99, _ = worst("pool_vs_two_hop", "latency_ratio_p99", clients, high=True)
    throughput, _ = worst("pool_vs_two_hop", "throughput_ratio", clients, high=False)
    sync = serving.get("state_sync", {}).get("product_vs_per_request", {})
    return {
        "router_latency_ratio_p50": p50,
        "router_latency_ratio_p99": p99,
        "router_throughput_ratio": throughput,
        "sync_throughput_ratio": _median_of(sync, "throughput_ratio"),
        "sync_latency_ratio_p99": _median_of(sync, "latency_ratio_p99"),
        "serving_goals": goals,
    }
