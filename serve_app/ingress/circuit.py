"""A per-arm circuit breaker: stop routing to an arm that keeps failing, probe it later.

States::

    closed ──(failure_threshold consecutive failures)──▶ open
    open ──(cooldown_s passed)──▶ half-open: one probe request is let through
    half-open ──(probe succeeds)──▶ closed        half-open ──(probe fails)──▶ open

An arm whose deployment has no running replica is held open (``unavailable``) until one is.
Each router replica keeps its own breakers: failures are local evidence and need no
coordination.

Example:
    >>> breaker = CircuitBreaker(failure_threshold=2, cooldown_s=10.0)
    >>> breaker.record_failure(now=0.0); breaker.allows(now=0.0)
    True
    >>> breaker.record_failure(now=1.0); breaker.state(now=1.0)
    'open'
    >>> breaker.allows(now=5.0), breaker.allows(now=11.5), breaker.allows(now=11.6)
    (False, True, False)
    >>> breaker.record_success(); breaker.state(now=12.0)
    'closed'
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass
class CircuitBreaker:
    """Failure counting and the open/half-open/closed decision for one arm."""

    failure_threshold: int = 5
    cooldown_s: float = 10.0
    consecutive_failures: int = 0
    opened_at: float | None = None
    probing: bool = False
    unavailable: bool = False
    trips: int = 0

    def state(self, now: float | None = None) -> str:
        """``closed``, ``open``, ``half-open`` or ``unavailable`` (no running replica)."""
        if self.unavailable:
            return "unavailable"
        if self.opened_at is None:
            return "closed"
        now = time.monotonic() if now is None else now
        return "half-open" if now - self.opened_at >= self.cooldown_s else "open"

    def allows(self, now: float | None = None) -> bool:
        """May a request go to this arm now? In half-open state only one probe at a time."""
        state = self.state(now)
        if state == "closed":
            return True
        if state == "half-open" and not self.probing:
            self.probing = True
            return True
        return False

    def refuses(self, now: float | None = None) -> bool:
        """Would :meth:`allows` say no now? (Asks without claiming the half-open probe.)"""
        state = self.state(now)
        return state in ("open", "unavailable") or (state == "half-open" and self.probing)

    def record_success(self) -> None:
        self.consecutive_failures = 0
        self.opened_at = None
        self.probing = False

    def record_failure(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self.consecutive_failures += 1
        if self.probing or self.consecutive_failures >= self.failure_threshold:
            if self.opened_at is None or self.probing:
                self.trips += 1
            self.opened_at = now
            self.probing = False
