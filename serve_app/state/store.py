"""The experiment store: SQLAlchemy Core over SQLite (embedded default) or PostgreSQL.

Only the experiment-state deployment writes here, one transaction per batch (group commit),
so feedback is durable before any client hears 200. Tables:

- ``meta``: key/value settings, e.g. the generated decision-signing secret;
- ``experiments``: config, status and revision (bumped when the config changes);
- ``arm_stats``: additive sufficient statistics per (experiment, period, arm); a period is a
  revision, so counts under different weights stay apart and the posterior is their sum;
- ``rewards``: one row per accepted feedback, keyed by the decision nonce — the unique key is
  what makes feedback exactly-once, across restarts too;
- ``audit_log``: every create and config change, when, what and why.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any, Self

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from bandits import ArmStats

metadata = sa.MetaData()

meta_table = sa.Table(
    "meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

experiments_table = sa.Table(
    "experiments",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("outcome", sa.String(32), nullable=True),
    sa.Column("winner", sa.String(64), nullable=True),
    # config: in force now (runtime changes included); source_config: as deployed. A restart
    # with an unchanged deployed config keeps the runtime changes; a new one replaces them.
    sa.Column("config", sa.Text, nullable=False),
    sa.Column("source_config", sa.Text, nullable=False),
    # "config": deployed with the app's config; "api": created through the control plane.
    sa.Column("origin", sa.String(16), nullable=False, default="config"),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

arms_table = sa.Table(
    "arms",
    metadata,
    sa.Column("experiment", sa.String(64), primary_key=True),
    sa.Column("arm", sa.String(64), primary_key=True),
    sa.Column("model_uri", sa.Text, nullable=False),
    sa.Column("added_at", sa.Float, nullable=False),
)

assignments_table = sa.Table(
    "assignments",
    metadata,
    sa.Column("experiment", sa.String(64), primary_key=True),
    sa.Column("unit_id", sa.String(256), primary_key=True),
    sa.Column("arm", sa.String(64), nullable=False),
    sa.Column("propensity", sa.Float, nullable=False),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("assigned_at", sa.Float, nullable=False),
)

arm_stats_table = sa.Table(
    "arm_stats",
    metadata,
    sa.Column("experiment", sa.String(64), primary_key=True),
    sa.Column("period", sa.Integer, primary_key=True),
    sa.Column("arm", sa.String(64), primary_key=True),
    sa.Column("pulls", sa.BigInteger, nullable=False, default=0),
    sa.Column("feedback", sa.BigInteger, nullable=False, default=0),
    sa.Column("reward_sum", sa.Float, nullable=False, default=0.0),
    sa.Column("reward_sum_squares", sa.Float, nullable=False, default=0.0),
    sa.Column("errors", sa.BigInteger, nullable=False, default=0),
    sa.Column("forced", sa.BigInteger, nullable=False, default=0),
    sa.Column("fallbacks", sa.BigInteger, nullable=False, default=0),
    # sum over routed decisions of the probability the arm had: SRM's expected count
    sa.Column("expected", sa.Float, nullable=False, default=0.0),
)

# The additive columns of arm_stats, summed over periods when an experiment is loaded.
ARM_COLUMNS = (
    "pulls",
    "feedback",
    "reward_sum",
    "reward_sum_squares",
    "errors",
    "forced",
    "fallbacks",
    "expected",
)

shadow_stats_table = sa.Table(
    "shadow_stats",
    metadata,
    sa.Column("experiment", sa.String(64), primary_key=True),
    sa.Column("shadow", sa.String(64), primary_key=True),
    sa.Column("requests", sa.BigInteger, nullable=False, default=0),
    sa.Column("errors", sa.BigInteger, nullable=False, default=0),
    sa.Column("dropped", sa.BigInteger, nullable=False, default=0),
    sa.Column("latency_sum_s", sa.Float, nullable=False, default=0.0),
    sa.Column("rows", sa.BigInteger, nullable=False, default=0),
    sa.Column("agree_rows", sa.BigInteger, nullable=False, default=0),
)

rewards_table = sa.Table(
    "rewards",
    metadata,
    sa.Column("decision_key", sa.String(64), primary_key=True),
    sa.Column("experiment", sa.String(64), nullable=False, index=True),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("arm", sa.String(64), nullable=False),
    sa.Column("reward", sa.Float, nullable=False),
    sa.Column("propensity", sa.Float, nullable=False),
    sa.Column("learned", sa.Boolean, nullable=False),
    sa.Column("issued_at", sa.Float, nullable=False),
    sa.Column("received_at", sa.Float, nullable=False),
)

# Feedback metrics (guardrails): additive sums per (experiment, period, arm, metric).
metric_stats_table = sa.Table(
    "metric_stats",
    metadata,
    sa.Column("experiment", sa.String(64), primary_key=True),
    sa.Column("period", sa.Integer, primary_key=True),
    sa.Column("arm", sa.String(64), primary_key=True),
    sa.Column("metric", sa.String(64), primary_key=True),
    sa.Column("n", sa.BigInteger, nullable=False, default=0),
    sa.Column("sum", sa.Float, nullable=False, default=0.0),
    sa.Column("sum_squares", sa.Float, nullable=False, default=0.0),
)

# The lifecycle's own state: when the experiment started running and its current period
# began (ramp steps wait in a period), arms rolled back by a guardrail, the conclusion's
# MLflow run and a standing recommendation (stopping action "recommend").
lifecycle_table = sa.Table(
    "lifecycle",
    metadata,
    sa.Column("experiment", sa.String(64), primary_key=True),
    sa.Column("started_at", sa.Float, nullable=True),
    sa.Column("period_started_at", sa.Float, nullable=True),
    sa.Column("excluded", sa.Text, nullable=False, default="{}"),
    sa.Column("mlflow_run_id", sa.String(64), nullable=True),
    sa.Column("recommendation", sa.Text, nullable=True),
)

# Cumulative per-arm counts sampled every few seconds: traffic share and reward over time.
timeline_table = sa.Table(
    "timeline",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("experiment", sa.String(64), nullable=False, index=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("arm", sa.String(64), nullable=False),
    sa.Column("pulls", sa.BigInteger, nullable=False),
    sa.Column("feedback", sa.BigInteger, nullable=False),
    sa.Column("reward_sum", sa.Float, nullable=False),
    sa.Column("weight", sa.Float, nullable=False),
)

# Drift references taken from live traffic for models stored without a profile
# (arm "" holds the feature profile of the experiment).
drift_references_table = sa.Table(
    "drift_references",
    metadata,
    sa.Column("experiment", sa.String(64), primary_key=True),
    sa.Column("arm", sa.String(64), primary_key=True),
    sa.Column("profile", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

audit_table = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("experiment", sa.String(64), nullable=False, index=True),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("actor", sa.String(64), nullable=False),
)


@dataclass(frozen=True, slots=True)
class FeedbackRecord:
    """One verified feedback, ready to store. ``learned`` is False for fallback answers."""

    decision_key: str
    experiment: str
    revision: int
    arm: str
    reward: float
    propensity: float
    issued_at: float
    learned: bool = True
    metrics: Mapping[str, float] | None = None  # guardrail metrics sent with the feedback


class _Additive:
    """Field-wise ``a + b`` for the count dataclasses below, so batches merge exactly."""

    __slots__ = ()

    def __add__(self, other: Self) -> Self:
        names = [field.name for field in fields(self)]  # type: ignore[arg-type]
        return type(self)(**{name: getattr(self, name) + getattr(other, name) for name in names})


@dataclass(frozen=True, slots=True)
class ArmCounts(_Additive):
    """Counts for one arm that are not feedback: routed decisions (``pulls``, the policy's
    choices), failed calls, forced requests (QA overrides, not learned) and fallback answers
    given for this arm by the default arm."""

    pulls: int = 0
    errors: int = 0
    forced: int = 0
    fallbacks: int = 0
    expected: float = 0.0


@dataclass(frozen=True, slots=True)
class ShadowCounts(_Additive):
    """Mirrored traffic to one shadow model: its answers are dropped, only these remain."""

    requests: int = 0
    errors: int = 0
    dropped: int = 0
    latency_sum_s: float = 0.0
    rows: int = 0
    agree_rows: int = 0


def _enable_sqlite_durability(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers run beside the writer; synchronous=FULL makes a commit durable
    # against power loss too, which is what a 200 on feedback promises.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def create_engine(url: str) -> Engine:
    """An engine for ``url`` with SQLite made durable and its parent directory created."""
    if url.startswith("sqlite"):
        database = sa.engine.make_url(url).database
        if database and database != ":memory:":
            from pathlib import Path

            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url)
        sa.event.listen(engine, "connect", _enable_sqlite_durability)
        return engine
    return sa.create_engine(url, pool_pre_ping=True)


def initial_status(config: Mapping[str, Any]) -> str:
    """A new (or redeployed) experiment starts as a draft when its config says so."""
    return "draft" if config.get("draft") else "running"


class ExperimentStore:
    """Synchronous store API; the state deployment calls it from a worker thread."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = create_engine(url)
        metadata.create_all(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    def ping(self) -> None:
        with self.engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))

    def secret(self, name: str = "decision_secret") -> bytes:
        """The stored signing secret, generated once so decision ids outlive restarts.

        Two processes starting at once agree: the first insert wins, both read it back.
        """
        with self.engine.begin() as connection:
            connection.execute(
                self._insert(meta_table)
                .values(key=name, value=secrets.token_hex(32))
                .on_conflict_do_nothing(index_elements=["key"])
            )
            value = connection.execute(
                sa.select(meta_table.c.value).where(meta_table.c.key == name)
            ).scalar_one()
        return bytes.fromhex(value)

    def ensure_experiment(self, name: str, config: Mapping[str, Any], actor: str) -> int:
        """Create the experiment, or bump its revision when its deployed config changed.

        A restart with the same deployed config keeps what changed at runtime (weights,
        status); a different deployed config replaces it and starts a new revision.

        Returns:
            The revision now in force.
        """
        text = json.dumps(config, sort_keys=True)
        now = time.time()
        with self.engine.begin() as connection:
            created = connection.execute(
                self._insert(experiments_table)
                .values(
                    name=name,
                    revision=1,
                    status=initial_status(config),
                    config=text,
                    source_config=text,
                    created_at=now,
                    updated_at=now,
                )
                .on_conflict_do_nothing(index_elements=["name"])
                .returning(experiments_table.c.name)
            ).first()
            self._register_arms(connection, name, config)
            if created is not None:
                self._audit(connection, name, "create", {"revision": 1}, actor)
                return 1
            row = connection.execute(
                sa.select(experiments_table)
                .where(experiments_table.c.name == name)
                .with_for_update()
            ).one()
            if row.source_config == text:
                return int(row.revision)
            revision = int(row.revision) + 1
            connection.execute(
                sa.update(experiments_table)
                .where(experiments_table.c.name == name)
                .values(
                    revision=revision,
                    config=text,
                    source_config=text,
                    status=initial_status(config),
                    outcome=None,
                    winner=None,
                    updated_at=now,
                )
            )
            self._audit(connection, name, "config_change", {"revision": revision}, actor)
            return revision

    def create_experiment(
        self, name: str, config: Mapping[str, Any], actor: str, reason: str
    ) -> bool:
        """Create an experiment through the control plane. False if the name is taken."""
        text = json.dumps(config, sort_keys=True)
        now = time.time()
        with self.engine.begin() as connection:
            created = connection.execute(
                self._insert(experiments_table)
                .values(
                    name=name,
                    revision=1,
                    status=initial_status(config),
                    config=text,
                    source_config=text,
                    origin="api",
                    created_at=now,
                    updated_at=now,
                )
                .on_conflict_do_nothing(index_elements=["name"])
                .returning(experiments_table.c.name)
            ).first()
            if created is None:
                return False
            self._register_arms(connection, name, config)
            self._audit(connection, name, "create", {"revision": 1, "reason": reason}, actor)
        return True

    def api_experiments(self) -> list[str]:
        """Names of the experiments created through the control plane."""
        query = sa.select(experiments_table.c.name).where(experiments_table.c.origin == "api")
        with self.engine.connect() as connection:
            return list(connection.execute(query).scalars())

    def _register_arms(
        self, connection: sa.Connection, name: str, config: Mapping[str, Any]
    ) -> None:
        for arm in config.get("arms", []):
            if not isinstance(arm, Mapping) or "model_uri" not in arm:
                continue
            connection.execute(
                self._insert(arms_table)
                .values(
                    experiment=name,
                    arm=arm["name"],
                    model_uri=arm["model_uri"],
                    added_at=time.time(),
                )
                .on_conflict_do_update(
                    index_elements=["experiment", "arm"], set_={"model_uri": arm["model_uri"]}
                )
            )

    def arms(self, experiment: str) -> list[dict[str, Any]]:
        """Every arm the experiment has had, with its model URI."""
        query = sa.select(arms_table).where(arms_table.c.experiment == experiment)
        with self.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]

    def assign(
        self, experiment: str, unit_id: str, arm: str, propensity: float, revision: int
    ) -> tuple[str, float]:
        """Keep a unit on its first arm: store (unit -> arm) unless the unit has one already.

        Returns:
            The unit's arm and the propensity it was first assigned with.
        """
        with self.engine.begin() as connection:
            connection.execute(
                self._insert(assignments_table)
                .values(
                    experiment=experiment,
                    unit_id=unit_id,
                    arm=arm,
                    propensity=propensity,
                    revision=revision,
                    assigned_at=time.time(),
                )
                .on_conflict_do_nothing(index_elements=["experiment", "unit_id"])
            )
            row = connection.execute(
                sa.select(assignments_table.c.arm, assignments_table.c.propensity).where(
                    (assignments_table.c.experiment == experiment)
                    & (assignments_table.c.unit_id == unit_id)
                )
            ).one()
        return str(row.arm), float(row.propensity)

    def update_experiment(
        self,
        name: str,
        *,
        action: str,
        detail: Mapping[str, Any],
        actor: str,
        new_revision: bool = False,
        **values: Any,
    ) -> int:
        """Change an experiment at runtime (status, outcome, winner, config) and audit it in
        the same transaction. ``new_revision`` starts a new period (weights changed).

        Returns:
            The revision now in force.
        """
        if "config" in values:
            values["config"] = json.dumps(values["config"], sort_keys=True)
        with self.engine.begin() as connection:
            revision = connection.execute(
                sa.select(experiments_table.c.revision).where(experiments_table.c.name == name)
            ).scalar_one()
            if new_revision:
                revision += 1
            connection.execute(
                sa.update(experiments_table)
                .where(experiments_table.c.name == name)
                .values(revision=revision, updated_at=time.time(), **values)
            )
            self._audit(connection, name, action, {**detail, "revision": revision}, actor)
        return int(revision)

    def experiment_row(self, name: str) -> dict[str, Any] | None:
        with self.engine.connect() as connection:
            row = connection.execute(
                sa.select(experiments_table).where(experiments_table.c.name == name)
            ).first()
        return None if row is None else dict(row._mapping)

    def _arm_totals(self, experiment: str) -> list[Any]:
        """Every arm_stats column summed over all periods, one row per arm."""
        columns = arm_stats_table.c
        summed = [sa.func.sum(getattr(columns, name)).label(name) for name in ARM_COLUMNS]
        query = (
            sa.select(columns.arm, *summed)
            .where(columns.experiment == experiment)
            .group_by(columns.arm)
        )
        with self.engine.connect() as connection:
            return list(connection.execute(query))

    def load_stats(self, experiment: str) -> tuple[dict[str, ArmStats], dict[str, int]]:
        """Per-arm statistics summed over all periods, and per-arm error counts."""
        rows = self._arm_totals(experiment)
        stats = {
            row.arm: ArmStats(
                int(row.pulls),
                int(row.feedback),
                float(row.reward_sum),
                float(row.reward_sum_squares),
            )
            for row in rows
        }
        return stats, {row.arm: int(row.errors) for row in rows}

    def record(
        self,
        counts: Mapping[tuple[str, int, str], ArmCounts],
        feedback: Iterable[FeedbackRecord],
        shadows: Mapping[tuple[str, str], ShadowCounts] | None = None,
    ) -> list[bool]:
        """Write a batch in ONE transaction: counts, and each feedback at most once.

        Safe under concurrent writers (several processes, or SQLite and PostgreSQL alike):
        rewards are inserted with ``ON CONFLICT DO NOTHING ... RETURNING`` so the unique key
        decides which writer stored a decision, counters are upserts that add, and rows are
        written in sorted key order so concurrent transactions cannot deadlock.

        Args:
            counts: (experiment, revision, arm) -> pulls, errors, forced, fallbacks to add.
            feedback: verified feedback records.
            shadows: (experiment, shadow) -> mirrored-traffic counts to add.

        Returns:
            For each feedback record, True if it was stored now, False if its decision already
            had feedback (in the store or earlier in this batch).
        """
        records = list(feedback)
        first: dict[str, FeedbackRecord] = {}
        for record in records:
            first.setdefault(record.decision_key, record)
        received_at = time.time()
        with self.engine.begin() as connection:
            stored = self._insert_rewards(
                connection, sorted(first.values(), key=lambda r: r.decision_key), received_at
            )
            deltas: dict[tuple[str, int, str], list[float]] = {}
            for key in stored:
                record = first[key]
                if record.learned:
                    delta = deltas.setdefault(
                        (record.experiment, record.revision, record.arm), [0, 0.0, 0.0]
                    )
                    delta[0] += 1
                    delta[1] += record.reward
                    delta[2] += record.reward * record.reward
            for key in sorted(set(counts) | set(deltas)):
                count = counts.get(key, ArmCounts())
                n, total, squares = deltas.get(key, (0, 0.0, 0.0))
                self._add_stats(connection, key, count, int(n), float(total), float(squares))
            self._add_metrics(connection, [first[key] for key in stored])
            for experiment, shadow in sorted(shadows or {}):
                self._add_shadow(
                    connection, experiment, shadow, (shadows or {})[(experiment, shadow)]
                )
        accepted, claimed = [], set()
        for record in records:
            ok = record.decision_key in stored and record.decision_key not in claimed
            claimed.add(record.decision_key)
            accepted.append(ok)
        return accepted

    def _insert(self, table: sa.Table) -> Any:
        """The dialect's INSERT, which has ``on_conflict_do_nothing/update``."""
        if self.engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        return insert(table)

    def _insert_rewards(
        self, connection: sa.Connection, records: list[FeedbackRecord], received_at: float
    ) -> set[str]:
        """Insert what is new; return the keys this transaction stored."""
        stored: set[str] = set()
        for start in range(0, len(records), 500):
            rows = [
                {
                    "decision_key": record.decision_key,
                    "experiment": record.experiment,
                    "revision": record.revision,
                    "arm": record.arm,
                    "reward": record.reward,
                    "propensity": record.propensity,
                    "learned": record.learned,
                    "issued_at": record.issued_at,
                    "received_at": received_at,
                }
                for record in records[start : start + 500]
            ]
            statement = (
                self._insert(rewards_table)
                .values(rows)
                .on_conflict_do_nothing(index_elements=["decision_key"])
                .returning(rewards_table.c.decision_key)
            )
            stored.update(connection.execute(statement).scalars())
        return stored

    def _add_stats(
        self,
        connection: sa.Connection,
        key: tuple[str, int, str],
        counts: ArmCounts,
        feedback: int,
        reward_sum: float,
        reward_sum_squares: float,
    ) -> None:
        experiment, period, arm = key
        values = {
            "pulls": counts.pulls,
            "errors": counts.errors,
            "forced": counts.forced,
            "fallbacks": counts.fallbacks,
            "expected": counts.expected,
            "feedback": feedback,
            "reward_sum": reward_sum,
            "reward_sum_squares": reward_sum_squares,
        }
        self._upsert_add(
            connection,
            arm_stats_table,
            {"experiment": experiment, "period": period, "arm": arm},
            values,
        )

    def _add_metrics(self, connection: sa.Connection, records: list[FeedbackRecord]) -> None:
        """Sum the guardrail metrics of newly stored, learned feedback per arm and metric."""
        sums: dict[tuple[str, int, str, str], list[float]] = {}
        for record in records:
            if not record.learned or not record.metrics:
                continue
            for metric, value in record.metrics.items():
                key = (record.experiment, record.revision, record.arm, metric)
                total = sums.setdefault(key, [0.0, 0.0, 0.0])
                total[0] += 1
                total[1] += value
                total[2] += value * value
        for (experiment, period, arm, metric), (n, total, squares) in sorted(sums.items()):
            self._upsert_add(
                connection,
                metric_stats_table,
                {"experiment": experiment, "period": period, "arm": arm, "metric": metric},
                {"n": int(n), "sum": total, "sum_squares": squares},
            )

    def _add_shadow(
        self, connection: sa.Connection, experiment: str, shadow: str, counts: ShadowCounts
    ) -> None:
        values = {
            name: getattr(counts, name)
            for name in ("requests", "errors", "dropped", "latency_sum_s", "rows", "agree_rows")
        }
        self._upsert_add(
            connection, shadow_stats_table, {"experiment": experiment, "shadow": shadow}, values
        )

    def _upsert_add(
        self,
        connection: sa.Connection,
        table: sa.Table,
        key: Mapping[str, Any],
        values: Mapping[str, float],
    ) -> None:
        """INSERT the row, or add ``values`` to the existing one, atomically."""
        statement = self._insert(table).values({**key, **values})
        statement = statement.on_conflict_do_update(
            index_elements=list(key),
            set_={name: table.c[name] + statement.excluded[name] for name in values},
        )
        connection.execute(statement)

    def load_counts(self, experiment: str) -> dict[str, ArmCounts]:
        """Per-arm routing counts summed over all periods."""
        return {
            row.arm: ArmCounts(
                int(row.pulls),
                int(row.errors),
                int(row.forced),
                int(row.fallbacks),
                float(row.expected),
            )
            for row in self._arm_totals(experiment)
        }

    def load_shadows(self, experiment: str) -> dict[str, ShadowCounts]:
        columns = shadow_stats_table.c
        query = sa.select(shadow_stats_table).where(columns.experiment == experiment)
        with self.engine.connect() as connection:
            return {
                row.shadow: ShadowCounts(
                    int(row.requests),
                    int(row.errors),
                    int(row.dropped),
                    float(row.latency_sum_s),
                    int(row.rows),
                    int(row.agree_rows),
                )
                for row in connection.execute(query)
            }

    def load_metrics(self, experiment: str) -> dict[str, dict[str, ArmStats]]:
        """Per arm and feedback metric: (n, sum, sum of squares) summed over all periods."""
        columns = metric_stats_table.c
        query = (
            sa.select(
                columns.arm,
                columns.metric,
                sa.func.sum(columns.n).label("n"),
                sa.func.sum(columns.sum).label("sum"),
                sa.func.sum(columns.sum_squares).label("sum_squares"),
            )
            .where(columns.experiment == experiment)
            .group_by(columns.arm, columns.metric)
        )
        metrics: dict[str, dict[str, ArmStats]] = {}
        with self.engine.connect() as connection:
            for row in connection.execute(query):
                metrics.setdefault(row.arm, {})[row.metric] = ArmStats(
                    0, int(row.n), float(row.sum), float(row.sum_squares)
                )
        return metrics

    def load_period(self, experiment: str, period: int) -> dict[str, ArmCounts]:
        """Routing counts of one period (revision) per arm: what a ramp step has seen."""
        columns = arm_stats_table.c
        query = sa.select(arm_stats_table).where(
            (columns.experiment == experiment) & (columns.period == period)
        )
        with self.engine.connect() as connection:
            return {
                row.arm: ArmCounts(
                    int(row.pulls),
                    int(row.errors),
                    int(row.forced),
                    int(row.fallbacks),
                    float(row.expected),
                )
                for row in connection.execute(query)
            }

    def period_stats(self, experiment: str) -> list[dict[str, ArmStats]]:
        """Learned statistics per period (revision), oldest first: for period-weighted means."""
        columns = arm_stats_table.c
        query = (
            sa.select(arm_stats_table)
            .where(columns.experiment == experiment)
            .order_by(columns.period, columns.arm)
        )
        periods: dict[int, dict[str, ArmStats]] = {}
        with self.engine.connect() as connection:
            for row in connection.execute(query):
                periods.setdefault(int(row.period), {})[row.arm] = ArmStats(
                    int(row.pulls),
                    int(row.feedback),
                    float(row.reward_sum),
                    float(row.reward_sum_squares),
                )
        return [periods[period] for period in sorted(periods)]

    def lifecycle(self, experiment: str) -> dict[str, Any]:
        """The experiment's lifecycle row (defaults when it has none yet)."""
        with self.engine.connect() as connection:
            row = connection.execute(
                sa.select(lifecycle_table).where(lifecycle_table.c.experiment == experiment)
            ).first()
        if row is None:
            return {
                "started_at": None,
                "period_started_at": None,
                "excluded": {},
                "mlflow_run_id": None,
                "recommendation": None,
            }
        values = dict(row._mapping)
        values.pop("experiment")
        values["excluded"] = json.loads(values["excluded"] or "{}")
        if values["recommendation"]:
            values["recommendation"] = json.loads(values["recommendation"])
        return values

    def set_lifecycle(
        self,
        experiment: str,
        *,
        audit: tuple[str, Mapping[str, Any], str] | None = None,
        **values: Any,
    ) -> None:
        """Update lifecycle fields (JSON-encoding ``excluded`` and ``recommendation``), with
        an optional audit entry ``(action, detail, actor)`` in the same transaction."""
        encoded = dict(values)
        for key in ("excluded", "recommendation"):
            if key in encoded and encoded[key] is not None:
                encoded[key] = json.dumps(encoded[key], sort_keys=True)
        with self.engine.begin() as connection:
            statement = self._insert(lifecycle_table).values(
                {"experiment": experiment, "excluded": "{}", **encoded}
            )
            if encoded:
                statement = statement.on_conflict_do_update(
                    index_elements=["experiment"], set_=encoded
                )
            else:
                statement = statement.on_conflict_do_nothing(index_elements=["experiment"])
            connection.execute(statement)
            if audit is not None:
                action, detail, actor = audit
                self._audit(connection, experiment, action, detail, actor)

    def add_timeline(self, rows: list[dict[str, Any]]) -> None:
        """Append timeline samples: experiment, at, arm, pulls, feedback, reward_sum, weight."""
        if rows:
            with self.engine.begin() as connection:
                connection.execute(sa.insert(timeline_table), rows)

    def timeline(self, experiment: str) -> list[dict[str, Any]]:
        columns = timeline_table.c
        query = (
            sa.select(
                columns.at,
                columns.arm,
                columns.pulls,
                columns.feedback,
                columns.reward_sum,
                columns.weight,
            )
            .where(columns.experiment == experiment)
            .order_by(columns.at, columns.id)
        )
        with self.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]

    def save_drift_reference(self, experiment: str, arm: str, profile: str) -> None:
        """Keep a reference profile taken from live traffic (the first one stays)."""
        with self.engine.begin() as connection:
            connection.execute(
                self._insert(drift_references_table)
                .values(experiment=experiment, arm=arm, profile=profile, created_at=time.time())
                .on_conflict_do_nothing(index_elements=["experiment", "arm"])
            )

    def drift_references(self, experiment: str) -> dict[str, str]:
        """Arm ("" for the features) -> stored reference profile JSON."""
        columns = drift_references_table.c
        query = sa.select(columns.arm, columns.profile).where(columns.experiment == experiment)
        with self.engine.connect() as connection:
            return {row.arm: row.profile for row in connection.execute(query)}

    def rewards(self, experiment: str) -> list[dict[str, Any]]:
        """All stored feedback of an experiment (for audits, tests and reports)."""
        query = sa.select(rewards_table).where(rewards_table.c.experiment == experiment)
        with self.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]

    def audit_log(self, experiment: str) -> list[dict[str, Any]]:
        query = (
            sa.select(audit_table)
            .where(audit_table.c.experiment == experiment)
            .order_by(audit_table.c.id)
        )
        with self.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]

    @staticmethod
    def _audit(
        connection: sa.Connection,
        experiment: str,
        action: str,
        detail: Mapping[str, Any],
        actor: str,
    ) -> None:
        connection.execute(
            sa.insert(audit_table).values(
                at=time.time(),
                experiment=experiment,
                action=action,
                detail=json.dumps(detail, sort_keys=True),
                actor=actor,
            )
        )
