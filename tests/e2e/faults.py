"""A bounded predict-and-feedback load and the bookkeeping to check what survived a fault.

Each of ``threads`` clients loops for ``seconds``: ``POST /predict``, then ``POST /feedback``
for the decision, retrying 503s and transport errors (as a client should) for at most
``retry_s``. Every answer is recorded, so a test can check afterwards that every
acknowledged reward is stored exactly once and that the counts match what was sent. Only
127.0.0.1 is ever targeted.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import random
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROW = [[0.0] * 64]


def nonce(decision_id: str) -> str:
    body = decision_id.split(".")[2]
    return str(json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))["n"])


@dataclass
class Feedback:
    decision_id: str
    reward: float
    statuses: list[int] = field(default_factory=list)
    replayed: bool = False

    @property
    def acknowledged(self) -> bool:
        return bool(self.statuses) and self.statuses[-1] == 200

    @property
    def false_503(self) -> bool:
        """Answered 503 although its first attempt had stored it (the retry was a replay)."""
        return 503 in self.statuses and self.replayed


@dataclass
class Load:
    """What the clients saw (see the module docstring)."""

    url: str
    experiment: str
    threads: int = 8
    seconds: float = 8.0
    retry_s: float = 30.0
    headers: dict[str, str] = field(default_factory=dict)
    predicts: list[tuple[float, int, bool]] = field(default_factory=list)  # (t, status, fallback)
    feedback: list[Feedback] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _pool: list[threading.Thread] = field(default_factory=list)

    def start(self) -> Load:
        stop_at = time.monotonic() + self.seconds
        self._pool = [
            threading.Thread(target=self._client, args=(seed, stop_at), daemon=True)
            for seed in range(self.threads)
        ]
        for thread in self._pool:
            thread.start()
        return self

    def join(self, timeout_s: float = 120.0) -> Load:
        for thread in self._pool:
            thread.join(timeout=timeout_s)
            assert not thread.is_alive(), "a load client did not stop"
        return self

    def _client(self, seed: int, stop_at: float) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=self.url, timeout=15, headers=self.headers) as client:
            while time.monotonic() < stop_at:
                body = {"features": ROW, "experiment": self.experiment}
                try:
                    response = client.post("/predict", json=body)
                    status = response.status_code
                except httpx.HTTPError:
                    status = 0
                answer = response.json() if status == 200 else {}
                with self._lock:
                    self.predicts.append((time.monotonic(), status, bool(answer.get("fallback"))))
                if status != 200:
                    time.sleep(0.05)
                    continue
                sent = Feedback(answer["decision_id"], float(rng.random() < 0.5))
                self._send(client, sent)
                with self._lock:
                    self.feedback.append(sent)

    def _send(self, client: httpx.Client, sent: Feedback) -> None:
        deadline = time.monotonic() + self.retry_s
        while True:
            try:
                response = client.post(
                    "/feedback", json={"decision_id": sent.decision_id, "reward": sent.reward}
                )
                sent.statuses.append(response.status_code)
                if response.status_code == 200:
                    sent.replayed = bool(response.json().get("replayed"))
                if response.status_code != 503:
                    return
            except httpx.HTTPError:
                sent.statuses.append(0)
            if time.monotonic() > deadline:
                return
            time.sleep(0.2)

    # ------------------------------------------------------------------- figures

    @property
    def answered(self) -> int:
        return sum(1 for _, status, _ in self.predicts if status == 200)

    def figures(self, stored: dict[str, dict[str, Any]], counted: int) -> dict[str, Any]:
        acknowledged = [f for f in self.feedback if f.acknowledged]
        return {
            "requests_sent": len(self.predicts),
            "requests_answered": self.answered,
            "requests_failed": len(self.predicts) - self.answered,
            "fallbacks": sum(1 for *_, fallback in self.predicts if fallback),
            "feedback_sent": len(self.feedback),
            "feedback_acknowledged": len(acknowledged),
            "feedback_stored": sum(1 for f in acknowledged if nonce(f.decision_id) in stored),
            "feedback_503_then_stored": sum(1 for f in acknowledged if 503 in f.statuses),
            "false_503": sum(1 for f in self.feedback if f.false_503),
            "counts_sent": self.answered,
            "counts_counted": counted,
        }


def record_figures(name: str, figures: dict[str, Any]) -> None:
    """Print the figures, and append them to $BANDIT_SERVE_FAULTS_OUT when set."""
    line = json.dumps({"fault": name, **figures})
    print(line)
    target = os.environ.get("BANDIT_SERVE_FAULTS_OUT")
    if target:
        with Path(target).open("a") as handle:
            handle.write(line + "\n")


def process_tree(root: int) -> list[int]:
    """``root`` and every process descended from it, read from /proc (Linux)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def kill_tree(root: int, sig: int = signal.SIGKILL) -> list[int]:
    """Send ``sig`` to ``root`` and all its descendants (found first, then signalled)."""
    tree = process_tree(root)
    for pid in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    return tree


def alive(pids: list[int]) -> list[int]:
    living = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            living.append(pid)
    return living
