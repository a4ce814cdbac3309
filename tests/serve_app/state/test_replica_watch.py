"""The state's replica watch: fast while a deployment has no running replica (for a bounded
time after a change), slow once every deployment runs; Serve's answer read as sent."""

from __future__ import annotations

import asyncio

import pytest

from serve_app.state import loops


def watch_with(monkeypatch: pytest.MonkeyPatch, answers: list[dict[str, int] | None]):
    calls = iter(answers)
    monkeypatch.setattr(loops, "running_replicas", lambda app: next(calls))
    running: dict[str, int] = {}
    return loops.ReplicaWatch("app", running, interval_s=5.0, fast_s=0.5, fast_for_s=60.0)


def test_fast_while_starting_slow_once_everything_runs(monkeypatch):
    watch = watch_with(
        monkeypatch,
        [None, {"router": 1, "arm": 0}, {"router": 1, "arm": 1}, {"router": 1, "arm": 0}],
    )
    waits = [asyncio.run(watch.step()) for _ in range(4)]
    assert waits == [0.5, 0.5, 5.0, 0.5]  # unknown app, arm starting, all running, arm died
    assert watch.running == {"router": 1, "arm": 0}


def test_an_arm_that_stays_at_zero_is_polled_slowly_after_a_while(monkeypatch):
    watch = watch_with(monkeypatch, [{"arm": 0}, {"arm": 0}])
    assert asyncio.run(watch.step()) == 0.5
    watch.changed_at -= 61.0  # a minute with no change: scaled to zero, not starting
    assert asyncio.run(watch.step()) == 5.0


def test_running_replicas_counts_the_running_ones_of_one_app(monkeypatch):
    details = {
        "applications": {
            "app": {
                "deployments": {
                    "arm": {"replicas": [{"state": "RUNNING"}, {"state": "STARTING"}]},
                    "state": {"replicas": []},
                }
            },
            "other": {"deployments": {"x": {"replicas": [{"state": "RUNNING"}]}}},
        }
    }

    class Client:
        def get_serve_details(self):
            return details

    import ray.serve.context

    monkeypatch.setattr(ray.serve.context, "_get_global_client", lambda **_: Client())
    assert loops.running_replicas("app") == {"arm": 1, "state": 0}
    assert loops.running_replicas("missing") is None
