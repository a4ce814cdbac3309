"""A closed-loop async HTTP load generator and the summaries of what it measured.

``concurrency`` clients each send one request, wait for the answer, and send the next, until
``duration_s`` has passed or ``max_requests`` were sent; the throughput at a given concurrency
is completed requests per second of the measured window. Latency percentiles use numpy's
linear interpolation.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np

__all__ = ["LoadResult", "ratio_summary", "run_load"]


@dataclass
class LoadResult:
    """One measured window of one side."""

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

    def summary(self) -> dict[str, float]:
        return {
            "p50_ms": round(self.percentile_ms(50), 3),
            "p99_ms": round(self.percentile_ms(99), 3),
            "throughput_rps": round(self.throughput, 1),
            "requests": len(self.latencies_s),
            "errors": self.errors,
        }


async def run_load(
    client: httpx.AsyncClient,
    url: str,
    payload: dict[str, Any],
    concurrency: int,
    duration_s: float,
    max_requests: int = 1_000_000,
) -> LoadResult:
    """``concurrency`` closed-loop clients POSTing ``payload`` to ``url``.

    Bounded both by time and by count; a non-200 answer or a transport error is counted as
    an error and not timed.
    """
    result = LoadResult()
    sent = 0
    deadline = time.perf_counter() + duration_s

    async def worker() -> None:
        nonlocal sent
        while sent < max_requests and time.perf_counter() < deadline:
            sent += 1
            start = time.perf_counter()
            try:
                response = await client.post(url, json=payload)
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
