"""Closed-loop HTTP load generators and the summaries of what they measured.

``concurrency`` clients each send one request, wait for the answer, and send the next, until
``duration_s`` has passed; the throughput at a given concurrency is completed requests per
second of the measured window.

Two generators measure the same :class:`Request` into the same :class:`Window`:

* :class:`Wrk` (preferred): `wrk <https://github.com/wg/wrk>`_ with one thread and
  ``concurrency`` keep-alive connections, the body set by a small Lua script whose ``done``
  hook prints the window's counts and latency percentiles as one JSON line; wrk is C and
  costs a few microseconds of CPU per request, so on 2 cores it takes little from the
  server. Its own CPU time comes from ``wait4`` (``ru_utime + ru_stime``). wrk's durations
  are whole seconds. :func:`ensure_wrk` installs the Debian package when it is missing.
* :class:`Httpx`: the in-process asyncio client (:func:`run_load`), the fallback when wrk
  cannot be had: it costs far more CPU per request, on the same cores as the server. Its CPU
  is this process's. Latency percentiles use numpy's linear interpolation.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

__all__ = [
    "Httpx",
    "LoadResult",
    "Request",
    "Window",
    "Wrk",
    "ensure_wrk",
    "lua_script",
    "parse_wrk",
    "ratio_summary",
    "run_load",
]

PERCENTILES = (50.0, 90.0, 99.0)
WRK_MARK = "BENCH_WRK "


@dataclass(frozen=True)
class Request:
    """One kind of request: the same for every repetition of a side."""

    url: str
    body: bytes | None = None
    method: str = "POST"
    headers: tuple[tuple[str, str], ...] = (("Content-Type", "application/json"),)

    @classmethod
    def json(cls, url: str, payload: dict[str, Any]) -> Request:
        return cls(url, json.dumps(payload, separators=(",", ":")).encode())

    @classmethod
    def get(cls, url: str) -> Request:
        return cls(url, None, "GET", ())


@dataclass
class Window:
    """One measured window of one side, whichever generator measured it.

    ``cpu_s`` (every Ray process of the bench) and the machine's busy and steal seconds are
    filled by the caller, which samples ``/proc`` around the window (:mod:`bench.cpu`).
    """

    requests: int
    errors: int
    elapsed_s: float
    percentiles_ms: dict[float, float]
    generator_cpu_s: float = 0.0
    generator: str = "wrk"
    cpu_s: float | None = None
    cpu_wall_s: float | None = None
    machine_busy_s: float | None = None
    machine_steal_s: float | None = None

    @property
    def throughput(self) -> float:
        """Successful requests per second."""
        return self.requests / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def percentile_ms(self, q: float) -> float:
        return self.percentiles_ms.get(float(q), float("nan"))

    @property
    def cpu_ms_per_request(self) -> float:
        """Milliseconds of CPU of every Ray process per successful request."""
        if self.cpu_s is None or not self.requests:
            return float("nan")
        return 1000.0 * self.cpu_s / self.requests

    @property
    def generator_ms_per_request(self) -> float:
        return 1000.0 * self.generator_cpu_s / self.requests if self.requests else float("nan")

    @property
    def other_cores(self) -> float:
        """Cores kept busy by anything else on the machine (other sessions, the driver)."""
        if self.machine_busy_s is None or self.cpu_s is None or not self.cpu_wall_s:
            return float("nan")
        other = self.machine_busy_s - self.cpu_s - self.generator_cpu_s
        return max(0.0, other) / self.cpu_wall_s

    def summary(self) -> dict[str, float]:
        return {
            "p50_ms": round(self.percentile_ms(50), 3),
            "p99_ms": round(self.percentile_ms(99), 3),
            "throughput_rps": round(self.throughput, 1),
            "requests": self.requests,
            "errors": self.errors,
        }


@dataclass
class LoadResult:
    """One window of the in-process generator, with every latency."""

    latencies_s: list[float] = field(default_factory=list)
    errors: int = 0
    elapsed_s: float = 0.0

    @property
    def throughput(self) -> float:
        """Successful requests per second."""
        return len(self.latencies_s) / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def percentile_ms(self, q: float) -> float:
        if not self.latencies_s:
            return float("nan")
        return float(np.percentile(self.latencies_s, q)) * 1000.0

    def window(self, generator_cpu_s: float = 0.0) -> Window:
        return Window(
            requests=len(self.latencies_s),
            errors=self.errors,
            elapsed_s=self.elapsed_s,
            percentiles_ms={q: self.percentile_ms(q) for q in PERCENTILES},
            generator_cpu_s=generator_cpu_s,
            generator="httpx",
        )

    def summary(self) -> dict[str, float]:
        return self.window().summary()


async def run_load(
    client: httpx.AsyncClient,
    url: str,
    payload: dict[str, Any] | None,
    concurrency: int,
    duration_s: float,
    max_requests: int = 1_000_000,
    *,
    content: bytes | None = None,
    method: str = "POST",
    headers: dict[str, str] | None = None,
) -> LoadResult:
    """``concurrency`` closed-loop clients sending ``payload`` (JSON) or ``content`` to
    ``url``.

    Bounded both by time and by count; a non-200 answer or a transport error is counted as
    an error and not timed.
    """
    result = LoadResult()
    sent = 0
    deadline = time.perf_counter() + duration_s
    kwargs: dict[str, Any] = {"headers": headers}
    if payload is not None:
        kwargs["json"] = payload
    elif content is not None:
        kwargs["content"] = content

    async def worker() -> None:
        nonlocal sent
        while sent < max_requests and time.perf_counter() < deadline:
            sent += 1
            start = time.perf_counter()
            try:
                response = await client.request(method, url, **kwargs)
                ok = response.status_code == 200
            except httpx.HTTPError:
                ok = False
            if ok:
                result.latencies_s.append(time.perf_counter() - start)
            else:
                result.errors += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.elapsed_s = time.perf_counter() - started
    return result


class Httpx:
    """The in-process generator: :func:`run_load` on one shared client."""

    name = "httpx"

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def run(self, request: Request, concurrency: int, duration_s: float) -> Window:
        before = os.times()
        result = await run_load(
            self.client,
            request.url,
            None,
            concurrency,
            duration_s,
            content=request.body,
            method=request.method,
            headers=dict(request.headers),
        )
        after = os.times()
        return result.window(after.user + after.system - before.user - before.system)


def _lua_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def lua_script(request: Request) -> str:
    """The wrk script for one request: method, body, headers, and a ``done`` hook that
    prints one JSON line (latencies in microseconds).

    Example:
        >>> print(lua_script(Request.json("http://127.0.0.1:1/p", {"a": 1})).splitlines()[1])
        wrk.body = "{\\"a\\":1}"
    """
    lines = [f"wrk.method = {_lua_string(request.method)}"]
    if request.body is not None:
        lines.append(f"wrk.body = {_lua_string(request.body.decode())}")
    for name, value in request.headers:
        lines.append(f"wrk.headers[{_lua_string(name)}] = {_lua_string(value)}")
    fields = ", ".join(f'\\"p{q:g}_us\\": %.0f' for q in PERCENTILES)
    lines += [
        "done = function(summary, latency, requests)",
        "  local e = summary.errors",
        f'  io.write(string.format("{WRK_MARK}{{\\"requests\\": %d, \\"duration_us\\": %d, '
        '\\"connect\\": %d, \\"read\\": %d, \\"write\\": %d, \\"status\\": %d, '
        f'\\"timeout\\": %d, {fields}, \\"max_us\\": %.0f}}\\n",',
        "    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,",
        "    " + ", ".join(f"latency:percentile({q:g})" for q in PERCENTILES) + ", latency.max))",
        "end",
    ]
    return "\n".join(lines) + "\n"


def parse_wrk(output: str, generator_cpu_s: float = 0.0) -> Window:
    """The :class:`Window` of the JSON line :func:`lua_script` prints.

    ``requests`` counts responses with a status below 400 (wrk's ``status`` errors are the
    others); connect, read, write errors and timeouts are errors too.

    Example:
        >>> line = WRK_MARK + json.dumps({"requests": 100, "duration_us": 2_000_000,
        ...     "connect": 0, "read": 0, "write": 0, "status": 2, "timeout": 0,
        ...     "p50_us": 1500, "p90_us": 2500, "p99_us": 9000, "max_us": 12000})
        >>> window = parse_wrk("noise\\n" + line)
        >>> window.requests, window.errors, window.throughput, window.percentile_ms(99)
        (98, 2, 49.0, 9.0)
    """
    for line in output.splitlines():
        if line.startswith(WRK_MARK):
            data = json.loads(line[len(WRK_MARK) :])
            break
    else:
        raise RuntimeError(f"wrk printed no result: {output[-500:]!r}")
    errors = sum(int(data[k]) for k in ("connect", "read", "write", "status", "timeout"))
    answered = int(data["requests"]) - int(data["status"])
    nan = float("nan")
    return Window(
        requests=answered,
        errors=errors,
        elapsed_s=int(data["duration_us"]) / 1e6,
        percentiles_ms={
            q: float(data[f"p{q:g}_us"]) / 1000.0 if answered else nan for q in PERCENTILES
        },
        generator_cpu_s=generator_cpu_s,
    )


class Wrk:
    """wrk as a closed-loop generator (see the module docstring)."""

    name = "wrk"

    def __init__(self, binary: str, timeout_s: float = 10.0) -> None:
        self.binary = binary
        self.timeout_s = timeout_s
        self._scripts: dict[Request, Path] = {}
        self._dir = Path(tempfile.mkdtemp(prefix="bench-wrk-"))

    def script(self, request: Request) -> Path:
        path = self._scripts.get(request)
        if path is None:
            path = self._dir / f"side-{len(self._scripts)}.lua"
            path.write_text(lua_script(request))
            self._scripts[request] = path
        return path

    def command(self, request: Request, concurrency: int, duration_s: float) -> list[str]:
        seconds = max(1, round(duration_s))  # wrk's -d takes whole seconds
        return [
            self.binary,
            "-t1",
            f"-c{concurrency}",
            f"-d{seconds}s",
            f"--timeout={int(self.timeout_s)}s",
            "-s",
            str(self.script(request)),
            request.url,
        ]

    def run_blocking(self, request: Request, concurrency: int, duration_s: float) -> Window:
        command = self.command(request, concurrency, duration_s)
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert process.stdout is not None
        try:
            output = process.stdout.read().decode(errors="replace")
        finally:
            # wait4, not wait: its rusage is wrk's own CPU time
            _, status, usage = os.wait4(process.pid, 0)
            process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} exited {process.returncode}: {output[-500:]}")
        return parse_wrk(output, usage.ru_utime + usage.ru_stime)

    async def run(self, request: Request, concurrency: int, duration_s: float) -> Window:
        return await asyncio.to_thread(self.run_blocking, request, concurrency, duration_s)

    def close(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)


def ensure_wrk(install: bool = True, timeout_s: float = 300.0) -> str | None:
    """The path of ``wrk``, installing the Debian package ``wrk`` when it is missing
    (``apt-get install -y wrk``, through ``sudo -n`` when not root); None when it cannot be
    had, so the caller falls back to :class:`Httpx` and says so."""
    found = shutil.which("wrk")
    if found or not install or not shutil.which("apt-get"):
        return found
    prefix: list[str] = []
    if os.geteuid() != 0:
        if not shutil.which("sudo"):
            return None
        prefix = ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # a stale package list is the usual reason an install fails: update once, then retry
    for steps in ([["install", "-y", "wrk"]], [["update"], ["install", "-y", "wrk"]]):
        for step in steps:
            try:
                subprocess.run(
                    [*prefix, "apt-get", *step],
                    check=False,
                    capture_output=True,
                    timeout=timeout_s,
                    env=env,
                )
            except (OSError, subprocess.TimeoutExpired):
                return None
        found = shutil.which("wrk")
        if found:
            return found
    return None


def ratio_summary(values: Sequence[float]) -> dict[str, float]:
    """Min, median and max of per-repetition ratios.

    Example:
        >>> ratio_summary([1.2, 0.9, 1.0])
        {'min': 0.9, 'median': 1.0, 'max': 1.2, 'n': 3}
    """
    finite = [v for v in values if np.isfinite(v)]
    if not finite:
        return {"min": float("nan"), "median": float("nan"), "max": float("nan"), "n": 0}
    return {
        "min": round(float(np.min(finite)), 3),
        "median": round(float(np.median(finite)), 3),
        "max": round(float(np.max(finite)), 3),
        "n": len(finite),
    }
