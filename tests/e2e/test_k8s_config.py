"""The RayService's serveConfigV2, run locally with `serve run`, answers /predict.

A separate `serve run` process (its own local Ray, on 127.0.0.1 and a free port) with the
manifest's exact serve config; only the HTTP host and port are changed for the test machine.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from .conftest import free_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def test_rayservice_serve_config_runs_locally(demo_store, tmp_path):
    from serve_app.models.demo import digits_split

    manifest = yaml.safe_load((ROOT / "cluster" / "rayservice.yaml").read_text())
    serve_config = yaml.safe_load(manifest["spec"]["serveConfigV2"])
    port = free_port()
    serve_config["http_options"] = {
        **serve_config["http_options"],
        "host": "127.0.0.1",
        "port": port,
    }
    if "grpc_options" in serve_config:  # never the manifest's fixed gRPC port here
        serve_config["grpc_options"] = {**serve_config["grpc_options"], "port": free_port()}
    config_file = tmp_path / "serve-config.yaml"
    config_file.write_text(yaml.safe_dump(serve_config))
    # the demo models of this test session stand in for the ones the image trains
    env = {
        **os.environ,
        "BANDIT_SERVE_HOME": str(demo_store["root"]),
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    env["RAY_ADDRESS"] = "local"  # its own Ray, never the test session's
    log = (tmp_path / "serve-run.log").open("wb")
    serve_bin = Path(sys.executable).with_name("serve")
    process = subprocess.Popen(
        [str(serve_bin), "run", str(config_file)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 240
        with httpx.Client(base_url=url, timeout=10) as client:
            while time.monotonic() < deadline:
                assert process.poll() is None, (tmp_path / "serve-run.log").read_text()[-3000:]
                try:
                    if client.get("/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(1.0)
            else:
                pytest.fail(
                    "serve run did not become healthy: "
                    + (tmp_path / "serve-run.log").read_text()[-3000:]
                )
            _, x_test, _, y_test = digits_split()
            body = {"features": x_test[:5].tolist(), "experiment": "digits"}
            # /healthz answers once the router is up; while the model arms are still loading
            # a request may time out into a 503 with Retry-After: retry, as a client would
            deadline = time.monotonic() + 180
            while True:
                response = client.post("/predict", json=body, timeout=120)
                if response.status_code != 503 or time.monotonic() > deadline:
                    break
                time.sleep(2.0)
            assert response.status_code == 200, response.text
            answer = response.json()
            assert answer["arm"] in {"logreg", "forest", "mlp"}
            assert sum(p == y for p, y in zip(answer["predictions"], y_test[:5], strict=True)) >= 4
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
        log.close()
