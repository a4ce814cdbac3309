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
from dataclasses import dataclass
from typing import Any

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
    sa.Column("config", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
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


@dataclass(frozen=True, slots=True)
class ArmCounts:
    """A batch of counts for one arm that is not feedback: routed decisions and errors."""

    pulls: int = 0
    errors: int = 0


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
        """The stored signing secret, generated once so decision ids outlive restarts."""
        with self.engine.begin() as connection:
            row = connection.execute(
                sa.select(meta_table.c.value).where(meta_table.c.key == name)
            ).first()
            if row is not None:
                return bytes.fromhex(row.value)
            value = secrets.token_hex(32)
            connection.execute(sa.insert(meta_table).values(key=name, value=value))
            return bytes.fromhex(value)

    def ensure_experiment(self, name: str, config: Mapping[str, Any], actor: str) -> int:
        """Create the experiment, or bump its revision when its config changed.

        Returns:
            The revision now in force.
        """
        text = json.dumps(config, sort_keys=True)
        now = time.time()
        with self.engine.begin() as connection:
            row = connection.execute(
                sa.select(experiments_table).where(experiments_table.c.name == name)
            ).first()
            if row is None:
                connection.execute(
                    sa.insert(experiments_table).values(
                        name=name,
                        revision=1,
                        status="running",
                        config=text,
                        created_at=now,
                        updated_at=now,
                    )
                )
                self._audit(connection, name, "create", {"revision": 1}, actor)
                return 1
            if row.config == text:
                return int(row.revision)
            revision = int(row.revision) + 1
            connection.execute(
                sa.update(experiments_table)
                .where(experiments_table.c.name == name)
                .values(revision=revision, config=text, updated_at=now)
            )
            self._audit(connection, name, "config_change", {"revision": revision}, actor)
            return revision

    def experiment_row(self, name: str) -> dict[str, Any] | None:
        with self.engine.connect() as connection:
            row = connection.execute(
                sa.select(experiments_table).where(experiments_table.c.name == name)
            ).first()
        return None if row is None else dict(row._mapping)

    def load_stats(self, experiment: str) -> tuple[dict[str, ArmStats], dict[str, int]]:
        """Per-arm statistics summed over all periods, and per-arm error counts."""
        columns = arm_stats_table.c
        query = (
            sa.select(
                columns.arm,
                sa.func.sum(columns.pulls),
                sa.func.sum(columns.feedback),
                sa.func.sum(columns.reward_sum),
                sa.func.sum(columns.reward_sum_squares),
                sa.func.sum(columns.errors),
            )
            .where(columns.experiment == experiment)
            .group_by(columns.arm)
        )
        stats: dict[str, ArmStats] = {}
        errors: dict[str, int] = {}
        with self.engine.connect() as connection:
            for arm, pulls, feedback, total, squares, error_count in connection.execute(query):
                stats[arm] = ArmStats(int(pulls), int(feedback), float(total), float(squares))
                errors[arm] = int(error_count)
        return stats, errors

    def record(
        self,
        counts: Mapping[tuple[str, int, str], ArmCounts],
        feedback: Iterable[FeedbackRecord],
    ) -> list[bool]:
        """Write a batch in ONE transaction: counts, and each feedback at most once.

        Args:
            counts: (experiment, revision, arm) -> pulls and errors to add.
            feedback: verified feedback records.

        Returns:
            For each feedback record, True if it was stored now, False if its decision already
            had feedback (in the store or earlier in this batch).
        """
        records = list(feedback)
        accepted: list[bool] = []
        with self.engine.begin() as connection:
            seen = self._existing_keys(connection, [record.decision_key for record in records])
            rows = []
            deltas: dict[tuple[str, int, str], list[float]] = {}
            for record in records:
                if record.decision_key in seen:
                    accepted.append(False)
                    continue
                seen.add(record.decision_key)
                accepted.append(True)
                rows.append(
                    {
                        "decision_key": record.decision_key,
                        "experiment": record.experiment,
                        "revision": record.revision,
                        "arm": record.arm,
                        "reward": record.reward,
                        "propensity": record.propensity,
                        "learned": record.learned,
                        "issued_at": record.issued_at,
                        "received_at": time.time(),
                    }
                )
                if record.learned:
                    delta = deltas.setdefault(
                        (record.experiment, record.revision, record.arm), [0, 0.0, 0.0]
                    )
                    delta[0] += 1
                    delta[1] += record.reward
                    delta[2] += record.reward * record.reward
            if rows:
                connection.execute(sa.insert(rewards_table), rows)
            for key in set(counts) | set(deltas):
                count = counts.get(key, ArmCounts())
                n, total, squares = deltas.get(key, (0, 0.0, 0.0))
                self._add_stats(connection, key, count, int(n), float(total), float(squares))
        return accepted

    @staticmethod
    def _existing_keys(connection: sa.Connection, keys: list[str]) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            query = sa.select(rewards_table.c.decision_key).where(
                rewards_table.c.decision_key.in_(chunk)
            )
            found.update(row[0] for row in connection.execute(query))
        return found

    @staticmethod
    def _add_stats(
        connection: sa.Connection,
        key: tuple[str, int, str],
        counts: ArmCounts,
        feedback: int,
        reward_sum: float,
        reward_sum_squares: float,
    ) -> None:
        experiment, period, arm = key
        columns = arm_stats_table.c
        where = (
            (columns.experiment == experiment) & (columns.period == period) & (columns.arm == arm)
        )
        updated = connection.execute(
            sa.update(arm_stats_table)
            .where(where)
            .values(
                pulls=columns.pulls + counts.pulls,
                errors=columns.errors + counts.errors,
                feedback=columns.feedback + feedback,
                reward_sum=columns.reward_sum + reward_sum,
                reward_sum_squares=columns.reward_sum_squares + reward_sum_squares,
            )
        )
        if updated.rowcount == 0:
            connection.execute(
                sa.insert(arm_stats_table).values(
                    experiment=experiment,
                    period=period,
                    arm=arm,
                    pulls=counts.pulls,
                    errors=counts.errors,
                    feedback=feedback,
                    reward_sum=reward_sum,
                    reward_sum_squares=reward_sum_squares,
                )
            )

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
