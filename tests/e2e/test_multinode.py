"""The app across nodes: a local multi-node Ray cluster on loopback (head and two workers),
the PostgreSQL store, and the worker node hosting the state, then the one hosting an arm,
killed under an 8-client load. The app keeps answering, loses nothing acknowledged and
counts every answered decision once (tests/e2e/multinode_scenario.py runs the cluster)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .faults import record_figures

pytestmark = pytest.mark.e2e

SCENARIO = Path(__file__).with_name("multinode_scenario.py")


def test_killing_worker_nodes_keeps_the_app_answering_and_loses_nothing(
    demo_store, postgres_url, tmp_path
):
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "k1").write_text("m" * 48)
    out = tmp_path / "result.json"
    command = [
        sys.executable,
        str(SCENARIO),
        "--store-url", postgres_url,
        "--tracking-uri", demo_store["tracking_uri"],
        "--models", json.dumps(demo_store["uris"]),
        "--keys-dir", str(keys),
        "--out", str(out),
    ]  # fmt: skip
    env = {**os.environ, "RAY_ADDRESS": ""}  # its own cluster, never the session's Ray
    finished = subprocess.run(
        command, capture_output=True, text=True, timeout=600, env=env, check=False
    )
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-5000:]
    result = json.loads(out.read_text())
    for name, figures in result["phases"].items():
        record_figures(f"multi-node: {name} (PostgreSQL)", figures)
        assert figures["requests_failed"] == 0, (name, figures)
        assert figures["feedback_acknowledged"] == figures["feedback_sent"], (name, figures)
        assert figures["feedback_stored"] == figures["feedback_acknowledged"], (name, figures)
    assert result["acknowledged_missing"] == []
    assert result["feedback_counted"] == result["learned_stored"]
    assert result["counts_counted"] == result["counts_sent"], result
    assert result["nodes"]["state"] != result["nodes"]["head"]
