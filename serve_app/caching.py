"""Results kept until they expire, built once however many ask at the same time.

The state keeps each report it built for a while, and every router replica keeps a copy for as
long as the state's own stays fresh, so a flood of ``GET /report`` costs one build per
interval and, per router, one call to the state (the syncs and feedback commits that share
the state's event loop do not wait behind it). Both use :class:`SharedResults`.

Example:
    >>> import asyncio
    >>> calls = []
    >>> async def build():
    ...     calls.append(1)
    ...     await asyncio.sleep(0.01)
    ...     return "report", 60.0  # the value, and for how long it stays fresh
    >>> async def flood():
    ...     kept = SharedResults(max_entries=8)
    ...     answers = await asyncio.gather(*(kept.get("k", build) for _ in range(50)))
    ...     return {value for value, _ in answers}, len(calls)
    >>> asyncio.run(flood())
    ({'report'}, 1)
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from serve_app.errors import Unavailable

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

Build = Callable[[], Awaitable[tuple[V, float]]]
"""Makes a fresh value: ``(value, seconds it stays fresh)``."""


class SharedResults(Generic[K, V]):
    """A value per key until it expires; one build at a time per key.

    A value's freshness counts from the start of its build (what it reflects was read then),
    so a copy kept for what the keeper said remains is never older than the keeper's own.
    At most ``max_entries`` values are kept (expired ones leave first, then the oldest), so
    keys a client chooses (an experiment, a timeline length) cannot grow it without bound. A
    build that fails is not kept: every caller waiting on it gets its error, the next call
    builds again. A build runs in a context of its own, so that nothing of the caller that
    started it (Ray Serve cancels the calls of a request whose client went away) stops the
    build the others wait on; one cancelled anyway (at shutdown) answers 503.
    """

    def __init__(self, max_entries: int = 64) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, got {max_entries}")
        self.max_entries = max_entries
        self._kept: dict[K, tuple[float, V]] = {}  # key -> (expires at, value), oldest first
        self._builds: dict[K, asyncio.Task[tuple[float, V]]] = {}

    async def get(self, key: K, build: Build[V]) -> tuple[V, float]:
        """The value of ``key`` and the seconds it stays fresh; built when none is fresh.

        Raises:
            Unavailable: the build was cancelled (the app is shutting down; retry).
        """
        kept = self._kept.get(key)
        now = time.monotonic()
        if kept is not None and kept[0] > now:
            return kept[1], kept[0] - now
        task = self._builds.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(
                self._build(key, build), context=contextvars.Context()
            )
            self._builds[key] = task
            task.add_done_callback(functools.partial(self._finished, key))
        try:
            expires, value = await asyncio.shield(task)
        except asyncio.CancelledError:
            if not task.cancelled():
                raise  # this caller was cancelled, not the build
            raise Unavailable("the result was being built when it was cancelled; retry") from None
        return value, max(0.0, expires - time.monotonic())

    async def _build(self, key: K, build: Build[V]) -> tuple[float, V]:
        started = time.monotonic()
        value, fresh_s = await build()
        expires = started + max(0.0, float(fresh_s))
        self._keep(key, expires, value)
        return expires, value

    def _finished(self, key: K, task: asyncio.Task[tuple[float, V]]) -> None:
        """Forget the build (even one cancelled before it started), and retrieve its error:
        the waiters raise it; with none left, nothing logs it as never retrieved."""
        if self._builds.get(key) is task:
            del self._builds[key]
        if not task.cancelled():
            task.exception()

    def _keep(self, key: K, expires: float, value: V) -> None:
        self._kept.pop(key, None)
        now = time.monotonic()
        for stale in [k for k, (until, _) in self._kept.items() if until <= now]:
            del self._kept[stale]
        while len(self._kept) >= self.max_entries:
            del self._kept[next(iter(self._kept))]
        self._kept[key] = (expires, value)

    def __len__(self) -> int:
        return len(self._kept)
