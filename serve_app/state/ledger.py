"""The state's write path: router syncs and feedback group commits, each applied once.

Both follow the same three steps under the state's write lock: compute the batch's
:class:`~serve_app.experiment.records.Delta`, commit it (in a worker thread, so the event
loop keeps answering), then add that same delta to the live experiments. Memory therefore
holds exactly what was committed, summed by the same code.

A sync batch whose number the store has applied already (a router resending after a lost
answer, or Serve retrying a call to a state that died after its commit) is acknowledged
without being added again; so are its latency counts and drift samples, which live in
memory only.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Sequence

from serve_app.experiment.contextual import ContextModel
from serve_app.experiment.live import LiveExperiment
from serve_app.experiment.records import (
    Delta,
    FeedbackOutcome,
    FeedbackRecord,
    SyncBatch,
    counts_delta,
)
from serve_app.state.restore import restore_one
from serve_app.state.store import ExperimentStore

logger = logging.getLogger("ray.serve")


class Ledger:
    """Applies sync batches and feedback to the store and to ``experiments``."""

    def __init__(
        self, store: ExperimentStore, experiments: dict[str, LiveExperiment], lock: asyncio.Lock
    ) -> None:
        self.store = store
        self.experiments = experiments
        self.lock = lock
        self._applied: dict[str, int] = {}  # router -> last batch applied (memory cache)
        self.duplicate_batches = 0
        self._logged: Counter[str] = Counter()  # decision-log rows written since last taken

    def take_logged(self) -> Counter[str]:
        """Decision-log rows written per experiment since the last call."""
        logged, self._logged = self._logged, Counter()
        return logged

    def _known(self) -> dict[str, set[str]]:
        return {
            name: {*live.config.arm_names, *(s.name for s in live.config.shadows)}
            for name, live in self.experiments.items()
        }

    async def sync(self, batch: SyncBatch) -> bool:
        """Apply one router batch exactly once. Returns False for a batch applied before."""
        if batch.seq <= self._applied.get(batch.router_id, 0):
            self.duplicate_batches += 1
            return False
        delta = counts_delta(batch, self._known())
        decisions = [d for d in batch.decisions if d.experiment in self._logging()]
        async with self.lock:
            applied = await asyncio.to_thread(
                self.store.commit_sync_delta,
                batch.router_id,
                batch.seq,
                delta,
                decisions,
                self._contextual(),
            )
            self._applied[batch.router_id] = max(batch.seq, self._applied.get(batch.router_id, 0))
            if applied is None:
                self.duplicate_batches += 1
                return False
            self._apply(applied)
            self._logged.update(d.experiment for d in decisions)
        for (name, arm), histogram in batch.latency.items():
            live = self.experiments.get(name)
            if live is not None and arm in live.policy.stats:
                live.add_latency(arm, histogram)
        for name, batches in batch.samples.items():
            live = self.experiments.get(name)
            if live is not None and live.drift is not None:
                live.drift.add(batches)
        return True

    async def feedback(self, records: Sequence[FeedbackRecord]) -> list[FeedbackOutcome]:
        """Store a group commit durably, then learn from what it stored."""
        known = [record for record in records if record.experiment in self.experiments]
        logged = self._logging()
        async with self.lock:
            outcomes, delta = await asyncio.to_thread(
                self.store.commit_feedback, known, logged, self._contextual()
            )
            self._apply(delta)
            self._watch_concepts(known, outcomes)
            self._logged.update(
                r.experiment
                for r, o in zip(known, outcomes, strict=True)
                if o is FeedbackOutcome.STORED and r.experiment in logged
            )
        by_record = dict(zip(map(id, known), outcomes, strict=True))
        # records of an experiment this state does not hold cannot be stored: a conflict
        return [by_record.get(id(record), FeedbackOutcome.CONFLICT) for record in records]

    def _contextual(self) -> dict[str, ContextModel]:
        """The contextual experiments, whose logged decisions teach their ridge models."""
        models = {name: ContextModel.of(live.config) for name, live in self.experiments.items()}
        return {name: model for name, model in models.items() if model is not None}

    def _logging(self) -> frozenset[str]:
        """The experiments that keep a decision log."""
        return frozenset(n for n, live in self.experiments.items() if live.config.decision_log)

    def _watch_concepts(
        self, records: Sequence[FeedbackRecord], outcomes: Sequence[FeedbackOutcome]
    ) -> None:
        """Feed each newly stored, learned reward (and label) to its concept-drift watch."""
        seen: set[str] = set()
        for record, outcome in zip(records, outcomes, strict=True):
            if outcome is not FeedbackOutcome.STORED or record.decision_key in seen:
                continue
            seen.add(record.decision_key)
            live = self.experiments.get(record.experiment)
            if live is not None and live.concept is not None and record.learned:
                live.concept.add(record.arm, record.reward, record.label, record.issued_at)

    def _apply(self, delta: Delta) -> None:
        """Add a committed delta to memory. Should that ever fail (a bug), the experiment is
        reloaded from the store, so memory never drifts from what was committed."""
        for name in delta.experiments():
            live = self.experiments.get(name)
            if live is None:
                continue
            try:
                live.apply(delta)
            except Exception:
                logger.exception("applying a committed batch to %s failed; reloading it", name)
                reloaded, _ = restore_one(self.store, name)
                if reloaded is not None:
                    reloaded.drift, reloaded.latency = live.drift, live.latency
                    self.experiments[name] = reloaded
