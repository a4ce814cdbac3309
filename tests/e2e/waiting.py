"""Waiting for what the app does asynchronously, without guessing how long it takes.

A router's request counts reach the state with its next sync (``router.sync_interval_s``), a
pool replica loads a model in the background, the registry poller notices a moved alias on its
own schedule. On 2 shared cores any of these can take several times its nominal interval, so
tests poll for the outcome they need instead of sleeping a fixed time.

Example:
    >>> wait_for(lambda: 42, timeout_s=1, what="the answer")
    42
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
import pytest

T = TypeVar("T")


def wait_for(
    check: Callable[[], T], timeout_s: float = 30.0, what: str = "", every_s: float = 0.2
) -> T:
    """Call ``check`` every ``every_s`` until it returns something truthy and return that;
    fail the test after ``timeout_s``, naming ``what`` (or ``check``) and its last value."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"not true within {timeout_s} s: {what or check} (last: {value!r})")
        time.sleep(every_s)


def synced(client: httpx.Client, timeout_s: float = 30.0) -> None:
    """Until the router has nothing the state has not acknowledged (``/healthz`` says
    ``unsynced: false``): the counts and logged decisions of the requests answered so far are
    in the state (shadow calls still running aside). The test apps run one router replica, so
    one replica's answer is all. A failed health check (a router restarting) is polled again."""

    def flushed() -> bool:
        try:
            response = client.get("/healthz")
            health: dict[str, Any] = response.json()
        except (httpx.HTTPError, ValueError):
            return False
        return response.status_code == 200 and health.get("unsynced") is False

    wait_for(flushed, timeout_s, "the router's counts to reach the state", every_s=0.05)
