"""A local multi-node Ray cluster on loopback (a head and two worker nodes), the app on the
PostgreSQL store, and the worker nodes that host the state and then an arm killed under load.

Run by tests/e2e/test_multinode.py in a subprocess (a process joins one Ray cluster only, and
the test session has its own). Prints one JSON line of results; exits non-zero on error.

    python tests/e2e/multinode_scenario.py --store-url URL --tracking-uri URI --models JSON \
        --keys-dir DIR --out FILE

Placement: the router and the default arm (logreg) on the head (``{"head": ...}``); the state
and the forest arm on the worker nodes (``{"worker": ...}``), so killing the node that hosts
one of them makes Serve restart it on the other worker node. The HTTP proxy runs on the head
only (one port on one machine).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
sys.path.insert(0, str(HERE.parent))

from e2e.faults import Load, nonce  # noqa: E402  (this script runs outside pytest)


def arm(name: str, uri: str, node: str) -> dict[str, Any]:
    return {
        "name": name,
        "model_uri": uri,
        "weight": 0.5,
        "deployment": {
            "num_replicas": 1,
            "max_ongoing_requests": 64,
            "timeout_s": 4.0,
            "ray_actor_options": {"num_cpus": 0.1, "resources": {node: 0.01}},
        },
    }


def app_args(args: argparse.Namespace) -> dict[str, Any]:
    models = json.loads(args.models)
    return {
        "data_dir": str(Path(args.out).parent / "data"),
        "store_url": args.store_url,
        "mlflow_tracking_uri": args.tracking_uri,
        "auth": {"signing_keys_dir": args.keys_dir},
        "router": {
            "sync_interval_s": 0.1,
            "circuit": {"failure_threshold": 3, "cooldown_s": 2.0},
            "deployment": {
                "num_replicas": 1,
                "max_ongoing_requests": 128,
                "ray_actor_options": {"num_cpus": 0.1, "resources": {"head": 0.01}},
            },
        },
        "state": {"ray_actor_options": {"num_cpus": 0.1, "resources": {"worker": 0.01}}},
        "experiments": [
            {
                "name": "spread",
                "policy": {"name": "fixed"},
                "arms": [
                    arm("logreg", models["logreg"], "head"),
                    arm("forest", models["forest"], "worker"),
                ],
            }
        ],
        "lifecycle": {"evaluate_interval_s": 1.0},
    }


def node_of(app: str, deployment: str) -> str:
    """The node id hosting the (first) replica of a deployment."""
    import ray

    for actor in ray.util.list_named_actors(all_namespaces=True):
        if f"{app}#{deployment}#" in actor["name"]:
            handle = ray.get_actor(actor["name"], namespace=actor["namespace"])
            return str(
                ray.get(
                    handle.__ray_call__.remote(
                        lambda _self: __import__("ray").get_runtime_context().get_node_id()
                    ),
                    timeout=30,
                )
            )
    raise LookupError(deployment)


def wait_running(app: str, deployment: str, timeout_s: float = 120.0) -> None:
    from ray import serve

    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        status = serve.status().applications.get(app)
        states = status.deployments[deployment].replica_states if status else {}
        if states.get("RUNNING", 0) >= 1 and set(states) == {"RUNNING"}:
            return
        time.sleep(0.5)
    raise TimeoutError(f"{deployment} did not recover in {timeout_s} s")


def stored(store_url: str, experiment: str = "spread") -> dict[str, dict[str, Any]]:
    """The experiment's stored feedback (the session's PostgreSQL holds other apps' too)."""
    import sqlalchemy as sa

    from serve_app.state.schema import rewards_table

    engine = sa.create_engine(store_url)
    with engine.connect() as connection:
        query = sa.select(rewards_table).where(rewards_table.c.experiment == experiment)
        rows = connection.execute(query)
        found = {row.decision_key: dict(row._mapping) for row in rows}
    engine.dispose()
    return found


def kill_phase(cluster: Any, url: str, deployment: str, app: str) -> dict[str, Any]:
    """Under an 8-client load, kill the worker node hosting ``deployment``; a fresh worker
    node joins afterwards so the next phase again has two."""
    node_id = node_of(app, deployment)
    victim = next(n for n in cluster.worker_nodes if n.node_id == node_id)
    load = Load(url, "spread", threads=8, seconds=10.0, retry_s=40.0).start()
    time.sleep(3.0)
    cluster.remove_node(victim, allow_graceful=False)
    load.join(timeout_s=180)
    wait_running(app, deployment)
    cluster.add_node(num_cpus=1, resources={"worker": 1})
    return {"load": load, "killed_node": node_id}


def _without_counts(figures: dict[str, Any]) -> dict[str, Any]:
    """Per phase: the request and feedback figures (counts are checked over both phases)."""
    return {k: v for k, v in figures.items() if not k.startswith("counts_")}


def main() -> int:
    parser = argparse.ArgumentParser()
    for option in ("--store-url", "--tracking-uri", "--models", "--keys-dir", "--out"):
        parser.add_argument(option, required=True)
    args = parser.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

    import httpx
    import ray
    from ray import serve
    from ray.cluster_utils import Cluster

    from serve_app.app import build_app

    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "resources": {"head": 1}, "include_dashboard": False},
    )
    for _ in range(2):
        cluster.add_node(num_cpus=1, resources={"worker": 1})
    ray.init(address=cluster.address, log_to_driver=False)
    sock = __import__("socket").socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    url = f"http://127.0.0.1:{port}"
    app = "bandit-serve-multinode"
    results: dict[str, Any] = {}
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port, "location": "HeadOnly"})
        serve.run(build_app(app_args(args)), name=app, route_prefix="/")
        nodes = {
            "head": cluster.head_node.node_id,
            "state": node_of(app, "experiment-state"),
            "forest": node_of(app, "model-spread-forest"),
            "router": node_of(app, "router"),
        }
        assert nodes["state"] != nodes["head"], nodes
        assert nodes["router"] == nodes["head"], nodes
        phases = {
            "state node killed": kill_phase(cluster, url, "experiment-state", app),
            "arm node killed": kill_phase(cluster, url, "model-spread-forest", app),
        }
        time.sleep(1.0)
        summary = httpx.get(f"{url}/experiments/spread", timeout=30).json()
        rows = stored(args.store_url)
        loads = [phase["load"] for phase in phases.values()]
        counted = sum(arm["requests"] for arm in summary["arms"])
        answered = sum(load.answered for load in loads)
        results = {
            "nodes": nodes,
            "phases": {
                name: {
                    **_without_counts(phase["load"].figures(rows, -1)),
                    "killed_node": phase["killed_node"],
                }
                for name, phase in phases.items()
            },
            "counts_sent": answered,
            "counts_counted": counted,
            "acknowledged_missing": [
                f.decision_id
                for load in loads
                for f in load.feedback
                if f.acknowledged and nonce(f.decision_id) not in rows
            ],
            "learned_stored": sum(1 for r in rows.values() if r["learned"]),
            "feedback_counted": sum(arm["feedback"] for arm in summary["arms"]),
        }
    finally:
        Path(args.out).write_text(json.dumps(results, default=str))
        serve.shutdown()
        ray.shutdown()
        cluster.shutdown()
    print(json.dumps(results, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
