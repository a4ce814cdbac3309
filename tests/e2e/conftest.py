"""A real local Ray Serve, started once per test session, serving one bandit-serve app.

Ray gets a small fixed CPU count (the machines have 2 cores) and every deployment a fractional
CPU; HTTP listens on a free port on 127.0.0.1 only.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

APP_NAME = "bandit-serve-e2e"
CONTROL_TOKEN = "test-control-token-0123456789abcdef"
QA_TOKEN = "test-qa-token-0123456789abcdef-012345"
DATA_TOKEN = "test-data-token-0123456789abcdef-0123"
GUARDED_APP = "bandit-serve-guarded"
GUARDED_PREFIX = "/guarded"
GUARDED_HOST = "bandit.test"
GUARDED_ORIGIN = "https://dashboard.bandit.test"

BROKEN_MODEL = """
import mlflow


class Broken(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        raise RuntimeError("this model always fails")


mlflow.models.set_model(Broken())
"""


def logged_decisions(store_url: str, experiment: str) -> dict[str, dict[str, Any]]:
    """Every decision-log row of an experiment, by decision key, read straight from the store."""
    import sqlalchemy as sa

    from serve_app.state.schema import decision_log_table

    engine = sa.create_engine(store_url)
    try:
        with engine.connect() as connection:
            table = decision_log_table
            query = sa.select(table).where(table.c.experiment == experiment)
            return {row.decision_key: dict(row._mapping) for row in connection.execute(query)}
    finally:
        engine.dispose()


def stored_rewards(store_url: str, experiment: str) -> dict[str, dict[str, Any]]:
    """Every stored feedback of an experiment, by decision key, read straight from the store."""
    import sqlalchemy as sa

    from serve_app.state.schema import rewards_table

    engine = sa.create_engine(store_url)
    try:
        with engine.connect() as connection:
            query = sa.select(rewards_table).where(rewards_table.c.experiment == experiment)
            return {row.decision_key: dict(row._mapping) for row in connection.execute(query)}
    finally:
        engine.dispose()


SLOW_MODEL = """
import time

import mlflow
import numpy as np


class Slow(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        time.sleep(1.0)
        return np.zeros(len(model_input), dtype=np.int64)


mlflow.models.set_model(Slow())
"""


def code_model(root: Path, name: str, code: str) -> str:
    """A local MLflow model from code (models-from-code), saved once per session."""
    import mlflow

    path = root / name
    if not path.exists():
        source = root / f"{name.replace('-', '_')}.py"
        source.write_text(code)
        mlflow.pyfunc.save_model(str(path), python_model=str(source))
    return str(path)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def arm(name: str, uri: str, **extra: Any) -> dict[str, Any]:
    deployment = {
        "num_replicas": 1,
        "max_ongoing_requests": 64,
        "ray_actor_options": {"num_cpus": 0.1},
        "timeout_s": 4.0,
    }
    return {"name": name, "model_uri": uri, "deployment": deployment, **extra}


def broken_model(root: Path) -> str:
    """A local MLflow model whose predict always raises (models-from-code)."""
    return code_model(root, "broken-model", BROKEN_MODEL)


def shadow(name: str, uri: str, timeout_s: float = 4.0) -> dict[str, Any]:
    deployment = {**arm("x", "y")["deployment"], "timeout_s": timeout_s}
    return {"name": name, "model_uri": uri, "percent": 100, "deployment": deployment}


DURABLE_LOG = {"max_rows": 100_000}
"""The fault tests' experiments log their decisions: acknowledged feedback keeps its row."""


def fixed(name: str, weights: dict[str, float], uris: dict[str, str], **extra: Any) -> dict:
    arms = [arm(arm_name, uris[arm_name], weight=w) for arm_name, w in weights.items()]
    return {"name": name, "policy": {"name": "fixed"}, "arms": arms, **extra}


def e2e_args(demo_store: dict[str, Any], data_dir: str) -> dict[str, Any]:
    root = Path(demo_store["root"])
    uris = {
        **demo_store["uris"],
        "broken": broken_model(root),
        "slow": code_model(root, "slow-model", SLOW_MODEL),
    }
    return {
        "data_dir": data_dir,
        "mlflow_tracking_uri": demo_store["tracking_uri"],
        "auth": {"control_token": CONTROL_TOKEN, "qa_token": QA_TOKEN},
        "router": {
            "sync_interval_s": 0.05,
            "max_batch_rows": 64,
            "circuit": {"failure_threshold": 3, "cooldown_s": 2.0},
            "deployment": {
                "num_replicas": 1,
                "max_ongoing_requests": 128,
                "ray_actor_options": {"num_cpus": 0.1},
            },
        },
        "experiments": [
            {
                "name": "ts",
                "policy": {"name": "thompson", "params": {"floor": 0.0}},
                "seed": 0,
                "arms": [arm("logreg", uris["logreg"]), arm("forest", uris["forest"])],
            },
            {
                "name": "sticky",
                "policy": {"name": "epsilon_greedy", "params": {"epsilon": 0.5}},
                "sticky_assignments": True,
                "arms": [arm("logreg", uris["logreg"]), arm("forest", uris["forest"])],
            },
            {
                "name": "split",
                "policy": {"name": "fixed"},
                "arms": [
                    arm("logreg", uris["logreg"], weight=0.7),
                    arm("forest", uris["forest"], weight=0.3),
                ],
            },
            {
                "name": "short",
                "policy": {"name": "fixed"},
                "feedback_window_s": 1.0,
                "arms": [
                    arm("logreg", uris["logreg"], weight=0.5),
                    arm("forest", uris["forest"], weight=0.5),
                ],
            },
            {
                "name": "revenue",
                "reward": "continuous",
                "policy": {"name": "gaussian_thompson", "params": {"floor": 0.1}},
                "arms": [arm("logreg", uris["logreg"]), arm("mlp", uris["mlp"])],
                "shadows": [
                    {
                        "name": "forest-shadow",
                        "model_uri": uris["forest"],
                        "percent": 100,
                        "deployment": arm("x", "y")["deployment"],
                    }
                ],
            },
            fixed("flaky", {"logreg": 0.5, "broken": 0.5}, uris),
            fixed("control", {"logreg": 0.5, "forest": 0.5}, uris),
            fixed("canary", {"logreg": 0.9, "forest": 0.1}, uris),
            fixed("durable", {"logreg": 0.5, "forest": 0.5}, uris, decision_log=DURABLE_LOG),
            *lifecycle_experiments(uris),
            fixed(
                "shadowed",
                {"logreg": 1.0, "forest": 0.0},
                uris,
                shadows=[
                    shadow("forest-copy", uris["forest"]),
                    shadow("broken-copy", uris["broken"]),
                    shadow("slow-copy", uris["slow"], timeout_s=0.3),
                ],
            ),
            fixed(
                "hostile",
                {"logreg": 0.5, "forest": 0.5, "broken": 0.0},
                uris,
                guardrails={"max_error_rate": 0.2, "min_requests": 5},
                metrics=["revenue"],
            ),
        ],
        "lifecycle": {"evaluate_interval_s": 0.2, "timeline_interval_s": 0.5},
        "pool": SMALL_POOL,
        "models": {"alias_poll_interval_s": 0.5},
    }


SMALL_POOL = {
    "max_models_per_replica": 2,
    "cold_start_timeout_s": 5.0,
    "deployment": {
        "num_replicas": 1,
        "max_ongoing_requests": 64,
        "ray_actor_options": {"num_cpus": 0.1},
    },
}


def lifecycle_experiments(uris: dict[str, str]) -> list[dict[str, Any]]:
    """Experiments that conclude on their own (tests/e2e/test_lifecycle.py drives them)."""
    return [
        fixed(
            "auto-promote",
            {"logreg": 0.5, "forest": 0.5},
            uris,
            stopping={
                "rule": "bayesian",
                "min_samples_per_arm": 40,
                "prob_best": 0.95,
                "expected_loss": 0.01,
            },
            promotion={"registry_alias": "champion"},
        ),
        fixed(
            "guarded",
            {"logreg": 0.5, "forest": 0.5},
            uris,
            guardrails={
                "metrics": [{"name": "refund", "direction": "increase", "min_samples": 30}]
            },
        ),
        {
            "name": "ramped",
            "policy": {"name": "fixed"},
            "arms": [arm("logreg", uris["logreg"]), arm("forest", uris["forest"])],
            "ramp": {"arm": "forest", "steps": [10, 50, 100], "min_samples": 15},
            "guardrails": {"max_error_rate": 0.5, "min_requests": 5},
        },
        fixed("drafted", {"logreg": 0.5, "forest": 0.5}, uris, draft=True),
        fixed(
            "drifty",
            {"logreg": 0.5, "forest": 0.5},
            uris,
            drift={
                "window": 300,
                "min_samples": 150,
                "sample_per_sync": 1000,
                "evaluate_interval_s": 0.3,
            },
        ),
    ]


@pytest.fixture(scope="session")
def serve_url() -> Iterator[str]:
    """Ray and Serve for the whole session, shut down at the end."""
    import ray
    from ray import serve

    # address="local": always a fresh cluster, never one another process started.
    ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False)
    port = free_port()
    serve.start(
        http_options={"host": "127.0.0.1", "port": port},
        grpc_options={
            "port": free_port(),
            "grpc_servicer_functions": [
                "serve_app.ingress.oip_pb.inference_pb2_grpc.add_GRPCInferenceServiceServicer_to_server"
            ],
        },
    )
    yield f"http://127.0.0.1:{port}"
    serve.shutdown()
    ray.shutdown()


@pytest.fixture(scope="session")
def grpc_target(serve_url: str) -> str:
    """``127.0.0.1:<port>`` of the session Serve's gRPC proxy (the Open Inference Protocol's
    gRPC service; a client names its app in the metadata ``application``)."""
    from ray.serve.context import _get_global_client

    port = _get_global_client().get_serve_details()["grpc_options"]["port"]
    return f"127.0.0.1:{port}"


@pytest.fixture(scope="session")
def app_args(demo_store: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The e2e app's config; its data_dir (experiment store) lives for the whole session."""
    return e2e_args(demo_store, str(tmp_path_factory.mktemp("bandit-serve")))


def deploy(
    app_args: dict[str, Any], url: str, name: str = APP_NAME, prefix: str = "/", **headers: str
) -> None:
    """Deploy (or redeploy) an app and wait until it answers."""
    from ray import serve

    from serve_app.app import build_app

    serve.run(build_app(app_args), name=name, route_prefix=prefix)
    wait_healthy(url + prefix.rstrip("/"), headers=headers)


@pytest.fixture(scope="session")
def app_url(serve_url: str, app_args: dict[str, Any]) -> Iterator[str]:
    """The bandit-serve app with its experiments, deployed once for all e2e tests."""
    from ray import serve

    deploy(app_args, serve_url)
    yield serve_url
    serve.delete(APP_NAME)


def wait_healthy(url: str, timeout_s: float = 60.0, headers: dict[str, str] | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=5, headers=headers).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url}/healthz did not answer within {timeout_s} s")


@pytest.fixture
def client(app_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=app_url, timeout=30) as http:
        yield http


def guarded_args(
    demo_store: dict[str, Any], data_dir: str, store_url: str, keys_dir: str
) -> dict[str, Any]:
    """A second app with everything locked down, on PostgreSQL: the data plane, /metrics
    and /docs need a token, only one Host is served, one origin may read with CORS, and the
    signing keys come from a mounted directory (a shared store never holds one)."""
    uris = demo_store["uris"]
    return {
        "data_dir": data_dir,
        "store_url": store_url,
        "mlflow_tracking_uri": demo_store["tracking_uri"],
        "auth": {
            "control_token": CONTROL_TOKEN,
            "data_token": DATA_TOKEN,
            "qa_token": QA_TOKEN,
            "protect_data_plane": True,
            "signing_keys_dir": keys_dir,
        },
        "http": {"allowed_hosts": [GUARDED_HOST], "cors_origins": [GUARDED_ORIGIN]},
        "router": {
            "sync_interval_s": 0.05,
            "deployment": {
                "num_replicas": 1,
                "max_ongoing_requests": 128,
                "ray_actor_options": {"num_cpus": 0.1},
            },
        },
        "experiments": [
            fixed("pg-split", {"logreg": 0.5, "forest": 0.5}, uris),
            fixed("pg-durable", {"logreg": 0.5, "forest": 0.5}, uris, decision_log=DURABLE_LOG),
        ],
        "lifecycle": {"evaluate_interval_s": 0.5, "timeline_interval_s": 1.0},
        "pool": SMALL_POOL,
    }


@pytest.fixture(scope="session")
def guarded(
    serve_url: str,
    demo_store: dict[str, Any],
    postgres_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Any]]:
    """The locked-down app on PostgreSQL, deployed once, at ``/guarded``."""
    from ray import serve

    keys = tmp_path_factory.mktemp("keys")
    (keys / "2026-12").write_text("k" * 48)
    args = guarded_args(
        demo_store, str(tmp_path_factory.mktemp("guarded")), postgres_url, str(keys)
    )
    auth = {"authorization": f"Bearer {DATA_TOKEN}", "host": GUARDED_HOST}
    deploy(args, serve_url, GUARDED_APP, GUARDED_PREFIX, **auth)
    yield {"url": serve_url + GUARDED_PREFIX, "args": args, "serve_url": serve_url}
    serve.delete(GUARDED_APP)


@pytest.fixture
def guarded_client(guarded: dict[str, Any]) -> Iterator[httpx.Client]:
    headers = {"authorization": f"Bearer {DATA_TOKEN}", "host": GUARDED_HOST}
    with httpx.Client(base_url=guarded["url"], timeout=30, headers=headers) as http:
        yield http
