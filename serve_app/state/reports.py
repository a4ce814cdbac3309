"""Reports built off the state's event loop, from a consistent copy, cached briefly.

A report reads the store (timeline, audit log, per-period stats) and runs every comparison;
built on the event loop, a flood of ``GET /report`` would delay the syncs and feedback
commits that share it. So a request takes a copy of the experiment on the loop (a few
microseconds), and the store reads, the analysis and the JSON encoding run in a worker
thread; concurrent requests for the same report share one build, and a built report is
served again for ``ttl_s`` as the encoded bytes (which cross the actor boundary and leave the
router without being encoded again). Routers keep a copy for as long as this one stays fresh
(:meth:`ReportCache.shared` says how long), so a report is never older than ``ttl_s``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from serve_app.caching import SharedResults
from serve_app.errors import BanditServeError
from serve_app.experiment.live import LiveExperiment
from serve_app.experiment.offpolicy import default_candidates, evaluate_log
from serve_app.report.build import build_report
from serve_app.state.store import ExperimentStore

AUDIT_ENTRIES = 1000
"""Most audit entries a report carries (the newest; GET /audit has them all)."""
OPE_ROWS = 20_000
"""The newest logged decisions the report's off-policy section reads."""
OPE_ESTIMATORS = ("ips", "snips", "dr")
KEPT_REPORTS = 64
"""Most reports kept at once: the key holds the caller's ``timeline_points``, which must not
grow the cache without bound."""


class ReportCache:
    """Builds and caches reports per (experiment, audit included, timeline points)."""

    def __init__(
        self,
        store: ExperimentStore,
        live: Callable[[str], LiveExperiment],
        ttl_s: float = 2.0,
        max_entries: int = KEPT_REPORTS,
    ) -> None:
        self.store = store
        self.live = live
        self.ttl_s = ttl_s
        self._kept: SharedResults[tuple[str, bool, int], bytes] = SharedResults(max_entries)
        self.builds = 0

    @property
    def kept(self) -> int:
        """How many built reports are kept now (at most ``max_entries``)."""
        return len(self._kept)

    async def report(self, name: str, audit: bool, timeline_points: int) -> dict[str, Any]:
        """The report as a document (MLflow records of conclusions take this one)."""
        return dict(json.loads(await self.encoded(name, audit, timeline_points)))

    async def encoded(self, name: str, audit: bool, timeline_points: int) -> bytes:
        """The report as JSON bytes, cached for ``ttl_s``."""
        return (await self.shared(name, audit, timeline_points))[0]

    async def shared(self, name: str, audit: bool, timeline_points: int) -> tuple[bytes, float]:
        """The report as JSON bytes, and the seconds until this copy expires."""
        return await self._kept.get(
            (name, audit, timeline_points), lambda: self._fresh(name, audit, timeline_points)
        )

    async def _fresh(self, name: str, audit: bool, timeline_points: int) -> tuple[bytes, float]:
        live = self.live(name)  # copied on the loop: consistent with the syncs
        drift = live.drift_view()
        copy = live.frozen_copy()
        report = await asyncio.to_thread(self._build, copy, drift, audit, timeline_points)
        self.builds += 1
        return report, self.ttl_s

    def _build(
        self,
        live: LiveExperiment,
        drift: dict[str, Any] | None,
        audit: bool,
        timeline_points: int,
    ) -> bytes:
        name = live.name
        timeline = self.store.timeline(name, limit=timeline_points)
        entries = self.store.audit_log(name, limit=AUDIT_ENTRIES) if audit else None
        periods = self.store.period_stats(name)
        retraining = self.store.retrain_runs(name) if live.config.retrain else None
        offpolicy = self._offpolicy(live) if live.config.decision_log else None
        report = build_report(live, timeline, entries, periods, drift, retraining, offpolicy)
        return json.dumps(report, allow_nan=False, default=_plain).encode()

    def _offpolicy(self, live: LiveExperiment) -> dict[str, Any]:
        """OPE of the uniform split and of each arm alone on the newest logged decisions;
        ``results`` is empty (with ``reason``) when the log cannot answer yet."""
        rows = self.store.policy_log(live.name, OPE_ROWS)
        config = live.config
        try:
            return evaluate_log(rows, config, default_candidates(config), OPE_ESTIMATORS)
        except BanditServeError as error:
            return {"experiment": config.name, "records": len(rows), "results": [],
                    "reason": str(error)}  # fmt: skip


def _plain(value: Any) -> Any:
    """numpy scalars as Python numbers; anything else is a bug worth a loud failure."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"a report holds a {type(value).__name__}, which JSON cannot")
