"""The typed records that cross the actor boundary, and the one path that sums them.

Routers send two kinds of message to the experiment-state deployment, and both are built
from these types, validated once where the values enter (the router, from an HTTP request)
and never rebuilt on the other side (Ray pickles them as they are):

- a :class:`SyncBatch` every ~100 ms: routing counts per ``(experiment, revision, arm)``,
  latency histograms, mirrored-traffic counts, drift samples and, for experiments with a
  decision log, the :class:`LoggedDecision` of each request, numbered per router
  (``router_id``, ``seq``) so that a retried batch is recognised and applied once;
- a list of :class:`FeedbackRecord` (a group commit), each carrying the ``commit_id`` of
  the request that sent it, so a retry of the same request is told from a client's replay.

What a committed batch adds is computed once, by :func:`counts_delta` or
:func:`feedback_delta`, as a :class:`Delta`: the store writes exactly that delta in the
transaction, and the state adds exactly that delta to memory after the commit. There is no
second summation that could disagree with the first.

Every real number that reaches a running sum is bounded by :data:`MAX_ABS_VALUE`, so sums
and sums of squares stay finite for any number of observations a 64-bit counter can hold::

    n * x**2 <= 2**63 * 1e30 ~ 9.2e48  <  1.8e308 (the largest float)

Example:
    >>> record = FeedbackRecord("k1", "exp", 1, "a", reward=1.0, propensity=0.5, issued_at=0.0)
    >>> delta = feedback_delta([record])
    >>> delta.rewards[("exp", 1, "a")]
    ArmStats(pulls=0, feedback=1, reward_sum=1.0, reward_sum_squares=1.0)
    >>> FeedbackRecord("k2", "exp", 1, "a", reward=1e200, propensity=0.5, issued_at=0.0)
    Traceback (most recent call last):
    ...
    serve_app.experiment.records.InvalidRecord: reward: must be a finite number with \
|value| <= 1e+15, got 1e+200
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any, Self

from bandits import ArmStats
from bandits.contextual import RidgeStats
from bandits.drift import SampledBatch
from bandits.stats import CupedStats, RatioStats

MAX_ABS_VALUE = 1e15
"""The largest magnitude a reward, metric or covariate may have (see the module docstring)."""

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")

CUPED = "_cuped"
"""The pair-sums name of CUPED (reward, covariate); a metric name cannot start with ``_``."""

LATENCY_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
"""Upper bounds (seconds) of the latency histogram; one more bucket holds +Inf."""

ArmKey = tuple[str, int, str]
"""``(experiment, revision, arm)``: the store's key of one arm's counts in one period."""


def latency_bucket(seconds: float) -> int:
    """Index of the histogram bucket for one observation (``len(LATENCY_BUCKETS)``: +Inf)."""
    return bisect.bisect_left(LATENCY_BUCKETS, seconds)


class InvalidRecord(ValueError):
    """A value that must not be stored; ``field`` names it in the request's vocabulary."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def bounded(field: str, value: Any) -> float:
    """``value`` as a float when it is finite and ``|value| <= MAX_ABS_VALUE``.

    >>> bounded("reward", 3)
    3.0
    >>> bounded("reward", True)
    Traceback (most recent call last):
    ...
    serve_app.experiment.records.InvalidRecord: reward: must be a number, got True
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRecord(field, f"must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number) or abs(number) > MAX_ABS_VALUE:
        raise InvalidRecord(
            field, f"must be a finite number with |value| <= {MAX_ABS_VALUE:g}, got {number:g}"
        )
    return number


def _count(field: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidRecord(field, f"must be a non-negative integer, got {value!r}")
    return int(value)


class Additive:
    """Field-wise ``a + b`` for the count dataclasses below, so batches merge exactly."""

    __slots__ = ()

    def __add__(self, other: Self) -> Self:
        names = [f.name for f in fields(self)]  # type: ignore[arg-type]
        return type(self)(**{name: getattr(self, name) + getattr(other, name) for name in names})

    def is_zero(self) -> bool:
        return all(not getattr(self, f.name) for f in fields(self))  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class ArmCounts(Additive):
    """Counts for one arm that are not feedback.

    ``pulls`` are the policy's choices and ``errors`` the failed calls among them: these two
    feed the error-rate guardrail and, with ``expected`` (the sum over decisions of the
    probability the arm had), the SRM test. Forced requests (QA overrides) are counted apart,
    with their own ``forced_errors``, so a client that forces an arm cannot move a guardrail.
    ``fallbacks`` are requests the default arm answered because this arm failed.
    """

    pulls: int = 0
    errors: int = 0
    forced: int = 0
    forced_errors: int = 0
    fallbacks: int = 0
    expected: float = 0.0

    def __post_init__(self) -> None:
        for name in ("pulls", "errors", "forced", "forced_errors", "fallbacks"):
            _count(name, getattr(self, name))
        expected = bounded("expected", self.expected)
        if expected < 0:
            raise InvalidRecord("expected", f"must be >= 0, got {expected}")
        object.__setattr__(self, "expected", expected)


@dataclass(frozen=True, slots=True)
class ShadowCounts(Additive):
    """Mirrored traffic to one shadow model: its answers are dropped, only these remain.

    ``requests`` are mirrored calls made; ``errors`` failed and ``timeouts`` ran past the
    shadow's timeout (both included in ``requests``); ``dropped`` copies were never sent
    because too many were in flight; ``rows``/``agree_rows`` compare answered calls with
    the served prediction.
    """

    requests: int = 0
    errors: int = 0
    timeouts: int = 0
    dropped: int = 0
    latency_sum_s: float = 0.0
    rows: int = 0
    agree_rows: int = 0

    def __post_init__(self) -> None:
        for name in ("requests", "errors", "timeouts", "dropped", "rows", "agree_rows"):
            _count(name, getattr(self, name))
        object.__setattr__(self, "latency_sum_s", bounded("latency_sum_s", self.latency_sum_s))


@dataclass(frozen=True, slots=True)
class PairSums(Additive):
    """Sums of a pair ``(x, y)`` over ``n`` units, additive like the reward sums.

    Two uses, one layout: CUPED (name :data:`CUPED`: ``x`` the reward, ``y`` the unit's
    pre-experiment covariate) and ratio metrics (the ratio's name: ``x`` its numerator,
    ``y`` its denominator metric). Every ``x`` and ``y`` is bounded by
    :data:`MAX_ABS_VALUE` where it enters, so every sum stays finite (module docstring).

    >>> s = PairSums.of([(3.0, 1.0), (5.0, 3.0)])
    >>> s.n, s.sum_xy, s.cuped().covariance
    (2, 18.0, 2.0)
    """

    n: int = 0
    sum_x: float = 0.0
    sum_y: float = 0.0
    sum_xx: float = 0.0
    sum_yy: float = 0.0
    sum_xy: float = 0.0

    def __post_init__(self) -> None:
        _count("n", self.n)
        for name in ("sum_x", "sum_y", "sum_xx", "sum_yy", "sum_xy"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidRecord(name, f"must be a number, got {value!r}")
            if not math.isfinite(value):
                raise InvalidRecord(name, f"must be finite, got {value!r}")
            object.__setattr__(self, name, float(value))
        if self.sum_xx < 0 or self.sum_yy < 0:
            raise InvalidRecord("sum_xx", "sums of squares must be >= 0")

    @classmethod
    def of(cls, pairs: Iterable[tuple[float, float]]) -> PairSums:
        """The sums of ``pairs`` (``math.fsum``: the same in any order)."""
        values = list(pairs)
        xs, ys = [x for x, _ in values], [y for _, y in values]
        return cls(
            n=len(values),
            sum_x=math.fsum(xs),
            sum_y=math.fsum(ys),
            sum_xx=math.fsum(x * x for x in xs),
            sum_yy=math.fsum(y * y for y in ys),
            sum_xy=math.fsum(x * y for x, y in values),
        )

    def cuped(self) -> CupedStats:
        """As the metric (``x``) and covariate (``y``) of :func:`bandits.stats.cuped_effect`.

        Raises:
            ValueError: The sums are impossible (a negative variance).
        """
        return CupedStats(self.n, self.sum_x, self.sum_xx, self.sum_y, self.sum_yy, self.sum_xy)

    def ratio(self) -> RatioStats:
        """As the numerator (``x``) and denominator (``y``) of a ratio metric.

        Raises:
            ValueError: The sums are impossible (a negative variance).
        """
        return RatioStats(self.n, self.sum_x, self.sum_y, self.sum_xx, self.sum_yy, self.sum_xy)


@dataclass(frozen=True, slots=True)
class LatencyHistogram:
    """Model-call latencies of one arm: a count per :data:`LATENCY_BUCKETS` bucket (the last
    one is +Inf) and the sum of the observed seconds.

    >>> h = LatencyHistogram.of(0.0004) + LatencyHistogram.of(0.002)
    >>> h.counts[:3], h.total
    ((1, 1, 0), 2)
    """

    counts: tuple[int, ...] = (0,) * (len(LATENCY_BUCKETS) + 1)
    sum_s: float = 0.0

    @classmethod
    def of(cls, seconds: float) -> LatencyHistogram:
        counts = [0] * (len(LATENCY_BUCKETS) + 1)
        counts[latency_bucket(seconds)] = 1
        return cls(tuple(counts), float(seconds))

    def __add__(self, other: LatencyHistogram) -> LatencyHistogram:
        counts = tuple(a + b for a, b in zip(self.counts, other.counts, strict=True))
        return LatencyHistogram(counts, self.sum_s + other.sum_s)

    @property
    def total(self) -> int:
        return sum(self.counts)

    def quantile_ms(self, q: float = 0.95) -> float | None:
        """A quantile in ms, linear inside its bucket; the +Inf bucket reports the last
        finite bound. None without observations.

        >>> LatencyHistogram((50, 50) + (0,) * 12).quantile_ms()  # half below 1 ms
        2.35
        """
        total = self.total
        if total <= 0:
            return None
        rank, seen = q * total, 0.0
        last = len(LATENCY_BUCKETS)
        for index, count in enumerate(self.counts):
            if count and seen + count >= rank:
                upper = LATENCY_BUCKETS[min(index, last - 1)]
                lower = LATENCY_BUCKETS[index - 1] if 0 < index < last else 0.0
                if index == last:
                    lower = upper
                return round(1000.0 * (lower + (upper - lower) * (rank - seen) / count), 6)
            seen += count
        return 1000.0 * LATENCY_BUCKETS[-1]  # pragma: no cover - the loop always returns


@dataclass(frozen=True, slots=True)
class FeedbackRecord:
    """One verified feedback, ready to store.

    Built by the router from a request whose decision id verified; every value is checked
    here, once. ``learned`` is False for decisions the policy did not choose with the logged
    propensity (fallbacks, forced arms, paused experiments): stored, never learned from.
    ``metrics`` are sorted ``(name, value)`` pairs of declared metrics; ``commit_id`` names
    the HTTP request, so the store can tell the router's own retry (same id) from a client
    repeating a request that was answered already (another id, same content).
    ``covariate`` is the unit's pre-experiment value for CUPED (None: not sent); ``ratios``
    are the ``(name, numerator, denominator)`` ratio metrics of the experiment whose two
    metrics this feedback carries, so :func:`feedback_delta` sums their pairs.
    """

    decision_key: str
    experiment: str
    revision: int
    arm: str
    reward: float
    propensity: float
    issued_at: float
    learned: bool = True
    metrics: tuple[tuple[str, float], ...] = ()
    commit_id: str = ""
    label: Label | None = None
    covariate: float | None = None
    ratios: tuple[tuple[str, str, str], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "reward", bounded("reward", self.reward))
        if self.covariate is not None:
            object.__setattr__(self, "covariate", bounded("covariate", self.covariate))
        object.__setattr__(self, "label", checked_label(self.label))
        propensity = float(self.propensity)
        if not 0.0 < propensity <= 1.0:
            raise InvalidRecord("propensity", f"must be in (0, 1], got {propensity}")
        pairs = []
        for name, value in sorted(self.metrics):
            if not NAME_PATTERN.match(name):
                raise InvalidRecord("metrics", f"invalid metric name {name!r}")
            pairs.append((name, bounded(f"metrics.{name}", value)))
        if len({name for name, _ in pairs}) != len(pairs):
            raise InvalidRecord("metrics", "a metric is named twice")
        object.__setattr__(self, "metrics", tuple(pairs))
        sent = dict(pairs)
        for ratio in self.ratios:
            name, numerator, denominator = ratio
            if not NAME_PATTERN.match(name) or numerator not in sent or denominator not in sent:
                raise InvalidRecord("metrics", f"ratio metric {ratio!r} lacks its metrics")
        object.__setattr__(self, "ratios", tuple(sorted(self.ratios)))

    def same_outcome(
        self, reward: float, metrics: Mapping[str, float], covariate: float | None = None
    ) -> bool:
        """Does a stored feedback for this decision say exactly what this one says?"""
        return (
            reward == self.reward
            and dict(self.metrics) == dict(metrics)
            and covariate == self.covariate
        )


Label = bool | int | float | str
MAX_LABEL_CHARS = 256


def checked_label(label: Any) -> Label | None:
    """A feedback label: a JSON scalar (the true class or value of the decision's input)."""
    if label is None or isinstance(label, bool):
        return label
    if isinstance(label, int | float):
        return bounded("label", label) if isinstance(label, float) else int(label)
    if isinstance(label, str):
        if len(label) > MAX_LABEL_CHARS:
            raise InvalidRecord("label", f"at most {MAX_LABEL_CHARS} characters")
        return label
    raise InvalidRecord("label", f"must be a number, a string or a boolean, got {label!r}")


@dataclass(frozen=True, slots=True)
class LoggedDecision:
    """One decision of an experiment with a decision log: what was asked and answered.

    ``features`` are the request's rows (at most the log's ``max_rows_per_request``),
    ``predictions`` the answer for them; the feedback (reward, label, metrics) joins the
    same record in the store under ``decision_key``.
    """

    decision_key: str
    experiment: str
    revision: int
    arm: str
    propensity: float
    issued_at: float
    features: tuple[tuple[float, ...], ...]
    predictions: tuple[Any, ...]
    context: tuple[float, ...] | None = None


class FeedbackOutcome(StrEnum):
    """What the store did with one :class:`FeedbackRecord` of a group commit."""

    STORED = "stored"  # new, or this very request's earlier attempt stored it
    REPLAYED = "replayed"  # the same feedback was stored by an earlier request
    CONFLICT = "conflict"  # the decision has other feedback already


@dataclass(frozen=True)
class SyncBatch:
    """One router's counts since its previous batch (see the module docstring)."""

    router_id: str
    seq: int
    arms: Mapping[ArmKey, ArmCounts] = field(default_factory=dict)
    latency: Mapping[tuple[str, str], LatencyHistogram] = field(default_factory=dict)
    shadows: Mapping[tuple[str, str], ShadowCounts] = field(default_factory=dict)
    samples: Mapping[str, Mapping[str, SampledBatch]] = field(default_factory=dict)
    decisions: tuple[LoggedDecision, ...] = ()

    def is_empty(self) -> bool:
        return not (self.arms or self.latency or self.shadows or self.samples or self.decisions)


@dataclass(frozen=True)
class Delta:
    """What one committed batch adds: the store writes it, the state adds it to memory.

    ``rewards`` and ``metrics`` hold :class:`~bandits.ArmStats` with ``feedback = n``,
    ``reward_sum`` and ``reward_sum_squares``; ``arms`` the routing counts; ``pairs`` the
    :class:`PairSums` of CUPED and ratio metrics per ``(experiment, period, arm, name)``.
    Keys carry the period (revision) so counts under different weights stay apart.
    """

    arms: Mapping[ArmKey, ArmCounts] = field(default_factory=dict)
    rewards: Mapping[ArmKey, ArmStats] = field(default_factory=dict)
    metrics: Mapping[tuple[str, int, str, str], ArmStats] = field(default_factory=dict)
    shadows: Mapping[tuple[str, str], ShadowCounts] = field(default_factory=dict)
    pairs: Mapping[tuple[str, int, str, str], PairSums] = field(default_factory=dict)
    # contextual experiments: (experiment, arm) -> the ridge statistics of the decisions
    # whose context and learned reward met in the decision log in this batch
    ridge: Mapping[tuple[str, str], RidgeStats] = field(default_factory=dict)

    def experiments(self) -> set[str]:
        keys: Iterable[tuple[Any, ...]] = [
            *self.arms,
            *self.rewards,
            *self.metrics,
            *self.shadows,
            *self.pairs,
            *self.ridge,
        ]
        return {key[0] for key in keys}

    def is_empty(self) -> bool:
        return not (
            self.arms or self.rewards or self.metrics or self.shadows or self.pairs or self.ridge
        )


def counts_delta(batch: SyncBatch, known: Mapping[str, set[str]]) -> Delta:
    """The stored part of a sync batch, restricted to ``known`` experiments and their arms
    or shadows (``{experiment: names}``); empty counts are left out."""
    arms = {
        key: counts
        for key, counts in batch.arms.items()
        if key[2] in known.get(key[0], ()) and not counts.is_zero()
    }
    shadows = {
        key: counts
        for key, counts in batch.shadows.items()
        if key[1] in known.get(key[0], ()) and not counts.is_zero()
    }
    return Delta(arms=arms, shadows=shadows)


def feedback_delta(records: Iterable[FeedbackRecord]) -> Delta:
    """Sums of the learned rewards and metrics of newly stored feedback, per period and arm.

    ``n``, ``sum(x)`` and ``sum(x**2)`` with ``math.fsum``, so the same records give the same
    sums in whatever order they were committed; likewise the :class:`PairSums` of
    ``(reward, covariate)`` (CUPED) and of each ratio metric's ``(numerator, denominator)``.
    """
    rewards: dict[ArmKey, list[float]] = {}
    metrics: dict[tuple[str, int, str, str], list[float]] = {}
    pairs: dict[tuple[str, int, str, str], list[tuple[float, float]]] = {}
    for record in records:
        if not record.learned:
            continue
        key = (record.experiment, record.revision, record.arm)
        rewards.setdefault(key, []).append(record.reward)
        for name, value in record.metrics:
            metrics.setdefault((*key, name), []).append(value)
        if record.covariate is not None:
            pairs.setdefault((*key, CUPED), []).append((record.reward, record.covariate))
        sent = dict(record.metrics)
        for name, numerator, denominator in record.ratios:
            pairs.setdefault((*key, name), []).append((sent[numerator], sent[denominator]))
    return Delta(
        rewards={key: ArmStats.from_rewards(values, pulls=0) for key, values in rewards.items()},
        metrics={key: ArmStats.from_rewards(values, pulls=0) for key, values in metrics.items()},
        pairs={key: PairSums.of(values) for key, values in pairs.items()},
    )
