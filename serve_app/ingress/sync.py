"""A router's local buffer of counts, sent to the state deployment in batches.

Counting a decision is a dict increment; nothing leaves the replica until the next sync. A
failed sync puts its counts back, so they are retried, not lost (a crash of the router itself
loses at most one sync interval of request counts — never feedback, which is committed before
it is acknowledged).

Example:
    >>> buffer = CountBuffer()
    >>> buffer.arm("exp", "a", "pulls"); buffer.arm("exp", "a", "pulls"); len(buffer)
    2
    >>> sent = buffer.take(); sent
    {'exp': {'arms': {'a': {'pulls': 2}}, 'shadows': {}}}
    >>> buffer.restore(sent); buffer.take()["exp"]["arms"]["a"]["pulls"]
    2
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

Counts = dict[str, dict[str, dict[str, dict[str, float]]]]
# Fields that are sums of real numbers; every other field is a count.
REAL_FIELDS = frozenset({"latency_sum_s", "expected", "sum"})


class CountBuffer:
    """``{experiment: {"arms": {arm: {what: n}}, "shadows": {shadow: {what: x}}}}``."""

    def __init__(self) -> None:
        self._counts: Counts = {}
        self._events = 0

    def __len__(self) -> int:
        """Decisions and mirrored calls counted since the last take."""
        return self._events

    def _group(self, experiment: str, group: str, name: str) -> dict[str, float]:
        groups = self._counts.setdefault(experiment, {"arms": {}, "shadows": {}})
        return groups.setdefault(group, {}).setdefault(name, defaultdict(float))

    def arm(self, experiment: str, arm: str, what: str, amount: int = 1) -> None:
        """Count a routed decision (``pulls``), ``errors``, ``forced`` or ``fallbacks``."""
        self._group(experiment, "arms", arm)[what] += amount
        self._events += 1

    def expected(self, experiment: str, weights: dict[str, float]) -> None:
        """Add one decision's routing probabilities: the expected counts of an SRM test."""
        for arm, weight in weights.items():
            self._group(experiment, "arms", arm)["expected"] += weight

    def latency(self, experiment: str, arm: str, bucket: int, seconds: float) -> None:
        """Count one model call in its latency-histogram bucket."""
        values = self._group(experiment, "latency", arm)
        values[str(bucket)] += 1
        values["sum"] += seconds

    def shadow(self, experiment: str, shadow: str, **amounts: float) -> None:
        """Count a mirrored call: requests, errors, dropped, latency_sum_s, rows, agree_rows."""
        values = self._group(experiment, "shadows", shadow)
        for what, amount in amounts.items():
            values[what] += amount
        self._events += 1

    def take(self) -> dict[str, Any]:
        """Everything counted so far as plain dicts; the buffer starts empty again."""
        counts, self._counts, self._events = self._counts, {}, 0
        return {
            experiment: {
                group: {
                    name: {
                        what: value if what in REAL_FIELDS else int(value)
                        for what, value in values.items()
                    }
                    for name, values in members.items()
                }
                for group, members in groups.items()
            }
            for experiment, groups in counts.items()
        }

    def restore(self, counts: dict[str, Any]) -> None:
        """Put counts from a failed sync back, to be sent with the next one."""
        for experiment, groups in counts.items():
            for group, members in groups.items():
                for name, values in members.items():
                    target = self._group(experiment, group, name)
                    for what, value in values.items():
                        target[what] += value
