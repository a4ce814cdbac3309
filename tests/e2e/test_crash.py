"""SIGKILL of the whole app (``make run``, every Ray process it started) under load, then
``make run`` again: every acknowledged reward is there, and the request counts lost are at
most what the routers had not synced yet (the README's "what a crash can lose").

The app runs in its own Ray (``RAY_ADDRESS=local``), on its own port and data directory,
started from the README's command; only the processes this test started are signalled.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from .conftest import free_port, stored_rewards
from .faults import Load, alive, kill_tree, nonce, record_figures

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SYNC_INTERVAL_S = 0.1  # configs/local.yaml


class MakeRun:
    """``make run`` as a user starts it, with its own config file and data directory."""

    def __init__(self, home: Path, config: Path, log: Path) -> None:
        self.home, self.config, self.log = home, config, log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, url: str, timeout_s: float = 240.0) -> None:
        env = {
            **os.environ,
            "BANDIT_SERVE_HOME": str(self.home),
            "RAY_ADDRESS": "local",  # its own Ray, never the test session's
            "RAY_USAGE_STATS_ENABLED": "0",
        }
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                ["make", "run", f"CONFIG={self.config}"],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"make run exited: {self.log.read_text()[-3000:]}")
            try:  # ready: every experiment has an arm that can answer (the readiness probe)
                if httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1.0)
        raise TimeoutError(
            f"make run did not answer in {timeout_s} s: {self.log.read_text()[-3000:]}"
        )

    def kill(self, sig: int = signal.SIGKILL, grace_s: float = 20.0) -> None:
        assert self.process is not None
        tree = kill_tree(self.process.pid, sig)
        deadline = time.monotonic() + grace_s
        while alive(tree) and time.monotonic() < deadline:
            time.sleep(0.2)
        leftover = alive(tree)
        if leftover:  # a graceful stop that hung: end what is left of our own processes
            kill_tree(self.process.pid, signal.SIGKILL)
            for pid in leftover:
                kill_tree(pid, signal.SIGKILL)
        self.process.wait(timeout=30)


@pytest.fixture
def app_home(tmp_path: Path, demo_store: dict[str, Any]) -> tuple[Path, Path, str]:
    """A data directory with the session's demo models (so ``make run`` trains nothing) and
    configs/local.yaml on a free port."""
    home = tmp_path / "home"
    home.mkdir()
    shutil.copyfile(Path(demo_store["root"]) / "mlflow.db", home / "mlflow.db")
    port = free_port()
    config = yaml.safe_load((ROOT / "configs" / "local.yaml").read_text())
    config["http_options"]["port"] = port
    if "grpc_options" in config:  # the gRPC port too: never a fixed one on a shared machine
        config["grpc_options"]["port"] = free_port()
    path = tmp_path / "local.yaml"
    path.write_text(yaml.safe_dump(config))
    return home, path, f"http://127.0.0.1:{port}"


def test_sigkill_of_the_whole_app_then_make_run_keeps_every_acknowledged_reward(app_home, tmp_path):
    home, config, url = app_home
    app = MakeRun(home, config, tmp_path / "make-run.log")
    app.start(url)
    try:
        load = Load(url, "digits", threads=8, seconds=7.0, retry_s=2.0).start()
        time.sleep(4.0)
        killed_at = time.monotonic()
        app.kill()  # SIGKILL: make, serve run, raylet, GCS, every replica
        load.join()
    except BaseException:
        app.kill()
        raise
    restarted = MakeRun(home, config, tmp_path / "make-run-2.log")
    restarted.start(url)
    try:
        summary = httpx.get(f"{url}/experiments/digits", timeout=30).json()
    finally:
        restarted.kill(signal.SIGTERM)
    stored = stored_rewards(f"sqlite:///{home / 'experiments.db'}", "digits")
    counted = sum(arm["requests"] for arm in summary["arms"])
    figures = load.figures(stored, counted)
    unsynced = sum(
        1
        for at, status, _ in load.predicts
        if status == 200 and killed_at - 3 * SYNC_INTERVAL_S - 0.2 <= at <= killed_at
    )
    figures["counts_answered_in_the_last_sync_window"] = unsynced
    record_figures("whole app SIGKILL, make run again (SQLite)", figures)
    acknowledged = [f for f in load.feedback if f.acknowledged]
    assert len(acknowledged) > 20
    missing = [f for f in acknowledged if nonce(f.decision_id) not in stored]
    assert not missing, f"{len(missing)} acknowledged rewards lost"
    for arm in summary["arms"]:  # the restored posterior is exactly the stored rewards
        rows = [r for r in stored.values() if r["arm"] == arm["name"] and r["learned"]]
        assert arm["feedback"] == len(rows)
    # counts: at most the unsynced ones are lost, never one counted twice (a decision whose
    # answer the kill cut off may be counted without being answered: at most one per client)
    lost = figures["counts_sent"] - figures["counts_counted"]
    assert -load.threads <= lost <= unsynced, figures
