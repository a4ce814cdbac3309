"""The experiment store: SQLAlchemy Core over SQLite (embedded default) or PostgreSQL.

Only the experiment-state deployment writes here, one transaction per batch, so feedback is
durable before any client hears 200 and counts are added exactly once:

- :meth:`ExperimentStore.commit_sync` writes a router's sync batch and its sequence number
  in one transaction; a batch whose number was applied already changes nothing;
- :meth:`ExperimentStore.commit_feedback` inserts a group commit's rewards (the decision
  nonce is the unique key), decides for each record whether it is new, this request's own
  retry, a client's replay of the same feedback or a conflicting second reward, and adds the
  :func:`~serve_app.experiment.records.feedback_delta` of the new ones, which it returns so
  the state adds exactly those sums to memory.

Reading an experiment back (:meth:`ExperimentStore.load_experiment`) sums its rows in Python,
row by row, so a row that cannot be loaded (a value no valid delta can produce) is left out
and reported instead of keeping the app from starting. The tables are in
:mod:`serve_app.state.schema`.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from bandits import ArmStats
from bandits.contextual import RidgeStats
from serve_app.experiment.contextual import ContextModel, ridge_delta
from serve_app.experiment.records import (
    ArmCounts,
    Delta,
    FeedbackOutcome,
    FeedbackRecord,
    LoggedDecision,
    PairSums,
    ShadowCounts,
    feedback_delta,
)
from serve_app.files import private_file
from serve_app.state.schema import (
    COUNT_COLUMNS,
    arm_stats_table,
    arms_table,
    assignments_table,
    audit_table,
    context_stats_table,
    decision_log_table,
    drift_references_table,
    experiments_table,
    lifecycle_table,
    meta_table,
    metric_stats_table,
    migrate,
    pair_stats_table,
    retrain_runs_table,
    rewards_table,
    shadow_stats_table,
    sync_log_table,
    timeline_table,
)

SHADOW_COLUMNS = (
    "requests",
    "errors",
    "timeouts",
    "dropped",
    "latency_sum_s",
    "rows",
    "agree_rows",
)
LEGACY_SECRET_KEY = "decision_secret"


def _enable_sqlite_durability(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers run beside the writer; synchronous=FULL makes a commit durable
    # against power loss too, which is what a 200 on feedback promises.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def create_engine(url: str) -> Engine:
    """An engine for ``url``; a SQLite file is created ``0600`` in a ``0700`` directory."""
    if url.startswith("sqlite"):
        database = sa.engine.make_url(url).database
        if database and database != ":memory:":
            private_file(database)
        engine = sa.create_engine(url)
        sa.event.listen(engine, "connect", _enable_sqlite_durability)
        return engine
    return sa.create_engine(url, pool_pre_ping=True)


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def initial_status(config: Mapping[str, Any]) -> str:
    """A new (or redeployed) experiment starts as a draft when its config says so."""
    return "draft" if config.get("draft") else "running"


@dataclass
class StoredExperiment:
    """One experiment as the store holds it, summed over its periods.

    ``problems`` names the rows that were left out because they cannot be loaded.
    """

    name: str
    revision: int
    status: str
    outcome: str | None
    winner: str | None
    config: str
    origin: str
    counts: dict[str, ArmCounts] = field(default_factory=dict)
    period_counts: dict[str, ArmCounts] = field(default_factory=dict)
    stats: dict[str, ArmStats] = field(default_factory=dict)
    metrics: dict[str, dict[str, ArmStats]] = field(default_factory=dict)
    shadows: dict[str, ShadowCounts] = field(default_factory=dict)
    lifecycle: dict[str, Any] = field(default_factory=dict)
    # CUPED and ratio-metric pair sums per arm and name, summed over periods
    pairs: dict[str, dict[str, PairSums]] = field(default_factory=dict)
    # learned statistics per period (revision) and arm: the period-weighted estimator's input
    periods: dict[int, dict[str, ArmStats]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


class ExperimentStore:
    """Synchronous store API; the state deployment calls it from a worker thread."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = create_engine(url)
        self.added_columns = migrate(self.engine)
        self._statements: dict[tuple[str, ...], Any] = {}

    def close(self) -> None:
        self.engine.dispose()

    def ping(self) -> None:
        with self.engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))

    def _insert(self, table: sa.Table) -> Any:
        """The dialect's INSERT, which has ``on_conflict_do_nothing/update``."""
        if self.engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        return insert(table)

    # ---------------------------------------------------------------- meta

    def meta(self, key: str) -> str | None:
        with self.engine.connect() as connection:
            return connection.execute(
                sa.select(meta_table.c.value).where(meta_table.c.key == key)
            ).scalar_one_or_none()

    def set_meta(self, key: str, value: str | None) -> None:
        """Set (or, with None, delete) one setting."""
        with self.engine.begin() as connection:
            connection.execute(sa.delete(meta_table).where(meta_table.c.key == key))
            if value is not None:
                connection.execute(sa.insert(meta_table).values(key=key, value=value))

    # ---------------------------------------------------------------- experiments

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
            created = self._insert_experiment(connection, name, config, "config", now)
            self._register_arms(connection, name, config)
            if created:
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
        with self.engine.begin() as connection:
            if not self._insert_experiment(connection, name, config, "api", time.time()):
                return False
            self._register_arms(connection, name, config)
            self._audit(connection, name, "create", {"revision": 1, "reason": reason}, actor)
        return True

    def _insert_experiment(
        self,
        connection: sa.Connection,
        name: str,
        config: Mapping[str, Any],
        origin: str,
        now: float,
    ) -> bool:
        """Insert the experiment at revision 1 unless the name exists; True if inserted."""
        text = json.dumps(config, sort_keys=True)
        created = connection.execute(
            self._insert(experiments_table)
            .values(
                name=name,
                revision=1,
                status=initial_status(config),
                config=text,
                source_config=text,
                origin=origin,
                created_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing(index_elements=["name"])
            .returning(experiments_table.c.name)
        ).first()
        return created is not None

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

    def load_experiment(self, name: str) -> StoredExperiment | None:
        """The experiment with its counts, feedback and lifecycle, summed over periods."""
        with self.engine.connect() as connection:
            row = connection.execute(
                sa.select(experiments_table).where(experiments_table.c.name == name)
            ).first()
            if row is None:
                return None
            stored = StoredExperiment(
                name=name,
                revision=int(row.revision),
                status=row.status,
                outcome=row.outcome,
                winner=row.winner,
                config=row.config,
                origin=row.origin,
            )
            columns = arm_stats_table.c
            for stat in connection.execute(
                sa.select(arm_stats_table).where(columns.experiment == name)
            ):
                self._load_arm_row(stored, stat)
            metric = metric_stats_table.c
            for value in connection.execute(
                sa.select(metric_stats_table).where(metric.experiment == name)
            ):
                try:
                    sums = ArmStats(0, int(value.n), float(value.sum), float(value.sum_squares))
                except ValueError as error:
                    stored.problems.append(
                        f"metric_stats {name}/{value.period}/{value.arm}/{value.metric}: {error}"
                    )
                    continue
                per_arm = stored.metrics.setdefault(value.arm, {})
                per_arm[value.metric] = per_arm.get(value.metric, ArmStats()) + sums
            pair = pair_stats_table.c
            for value in connection.execute(
                sa.select(pair_stats_table).where(pair.experiment == name)
            ):
                try:
                    pair_sums = PairSums(
                        int(value.n),
                        float(value.sum_x),
                        float(value.sum_y),
                        float(value.sum_xx),
                        float(value.sum_yy),
                        float(value.sum_xy),
                    )
                except ValueError as error:
                    stored.problems.append(
                        f"pair_stats {name}/{value.period}/{value.arm}/{value.name}: {error}"
                    )
                    continue
                per_arm_pairs = stored.pairs.setdefault(value.arm, {})
                per_arm_pairs[value.name] = per_arm_pairs.get(value.name, PairSums()) + pair_sums
            shadow = shadow_stats_table.c
            for value in connection.execute(
                sa.select(shadow_stats_table).where(shadow.experiment == name)
            ):
                try:
                    counts = ShadowCounts(**{c: getattr(value, c) for c in SHADOW_COLUMNS})
                except ValueError as error:
                    stored.problems.append(f"shadow_stats {name}/{value.shadow}: {error}")
                    continue
                stored.shadows[value.shadow] = counts
        stored.lifecycle = self.lifecycle(name)
        return stored

    @staticmethod
    def _load_arm_row(stored: StoredExperiment, row: Any) -> None:
        where = f"arm_stats {stored.name}/{row.period}/{row.arm}"
        try:
            counts = ArmCounts(
                **{
                    c: float(row.expected) if c == "expected" else int(getattr(row, c))
                    for c in COUNT_COLUMNS
                }
            )
            learned = ArmStats(
                int(row.pulls),
                int(row.feedback),
                float(row.reward_sum),
                float(row.reward_sum_squares),
            )
        except (ValueError, TypeError) as error:
            stored.problems.append(f"{where}: {error}")
            return
        stored.counts[row.arm] = stored.counts.get(row.arm, ArmCounts()) + counts
        stored.stats[row.arm] = stored.stats.get(row.arm, ArmStats()) + learned
        if learned.feedback:  # as the state adds feedback deltas: rewards only, no pulls
            stored.periods.setdefault(int(row.period), {})[row.arm] = ArmStats(
                0, learned.feedback, learned.reward_sum, learned.reward_sum_squares
            )
        if int(row.period) == stored.revision:
            stored.period_counts[row.arm] = counts

    def period_stats(self, experiment: str) -> list[dict[str, ArmStats]]:
        """Learned statistics per period (revision), oldest first: for period-weighted means.
        Rows that cannot be loaded are left out (:meth:`load_experiment` reports them)."""
        columns = arm_stats_table.c
        query = (
            sa.select(arm_stats_table)
            .where(columns.experiment == experiment)
            .order_by(columns.period, columns.arm)
        )
        periods: dict[int, dict[str, ArmStats]] = {}
        with self.engine.connect() as connection:
            for row in connection.execute(query):
                try:
                    stats = ArmStats(
                        int(row.pulls),
                        int(row.feedback),
                        float(row.reward_sum),
                        float(row.reward_sum_squares),
                    )
                except ValueError:
                    continue
                periods.setdefault(int(row.period), {})[row.arm] = stats
        return [periods[period] for period in sorted(periods)]

    # ---------------------------------------------------------------- the write path

    def commit_sync(
        self,
        router_id: str,
        seq: int,
        delta: Delta,
        decisions: Sequence[LoggedDecision] = (),
    ) -> bool:
        """Add one router's sync batch unless batch ``seq`` of ``router_id`` (or a later
        one) was applied already; the sequence number (and the batch's logged decisions) are
        stored in the same transaction.

        Returns:
            True if added now, False for a batch that was applied before (changes nothing).
        """
        return self.commit_sync_delta(router_id, seq, delta, decisions) is not None

    def commit_sync_delta(
        self,
        router_id: str,
        seq: int,
        delta: Delta,
        decisions: Sequence[LoggedDecision] = (),
        contextual: Mapping[str, ContextModel] | None = None,
    ) -> Delta | None:
        """:meth:`commit_sync`, returning what was added (None for a batch applied before):
        ``delta``, plus in ``ridge`` what the ``contextual`` experiments learned from logged
        decisions whose learned feedback had arrived first."""
        row = {"router_id": router_id, "last_seq": seq, "updated_at": time.time()}
        with self.engine.begin() as connection:
            if connection.execute(self._sync_log_statement(), row).first() is None:
                return None
            self._write_delta(connection, delta)
            self._log_decisions(connection, decisions)
            if contextual:
                keys = [d.decision_key for d in decisions if d.experiment in contextual]
                ridge = self._learn_contexts(connection, keys, contextual, decided=True)
                delta = dataclasses.replace(delta, ridge=ridge)
        return delta

    def _sync_log_statement(self) -> Any:
        """Store a router's batch number unless it has one as new: returns the row only
        when the number is newer (built once; the values are parameters)."""
        statement = self._statements.get(("sync_log",))
        if statement is None:
            insert = self._insert(sync_log_table)
            statement = insert.on_conflict_do_update(
                index_elements=["router_id"],
                set_={
                    "last_seq": insert.excluded.last_seq,
                    "updated_at": insert.excluded.updated_at,
                },
                where=sync_log_table.c.last_seq < insert.excluded.last_seq,
            ).returning(sync_log_table.c.router_id)
            self._statements[("sync_log",)] = statement
        return statement

    def _learn_contexts(
        self,
        connection: sa.Connection,
        keys: Sequence[str],
        models: Mapping[str, ContextModel],
        *,
        decided: bool,
    ) -> dict[tuple[str, str], RidgeStats]:
        """Learn from the logged decisions ``keys`` whose context and reward are both in the
        log now, and add it to the stored ridge statistics (in this transaction).

        ``decided``: the keys' decisions were logged just now, so only those whose feedback
        came first complete (and only learned feedback teaches: forced, fallback and paused
        decisions do not); else the keys are newly stored learned feedback.
        """
        log = decision_log_table.c
        rows: list[tuple[str, str, str, Any, float]] = []
        for start in range(0, len(keys), 500):
            query = sa.select(log.decision_key, log.experiment, log.arm, log.context, log.reward)
            query = query.where(
                log.decision_key.in_(keys[start : start + 500])
                & log.context.is_not(None)
                & log.reward.is_not(None)
            )
            if decided:
                rewards = rewards_table.c
                query = query.join(rewards_table, rewards.decision_key == log.decision_key).where(
                    rewards.learned.is_(True)
                )
            for row in connection.execute(query):
                rows.append(
                    (row.decision_key, row.experiment, row.arm, json.loads(row.context), row.reward)
                )
        delta = ridge_delta(rows, models)
        table = context_stats_table.c
        now = time.time()
        for (experiment, arm), learned_now in sorted(delta.items()):
            spec = models[experiment].key
            where = (table.experiment == experiment) & (table.arm == arm) & (table.spec == spec)
            found = connection.execute(sa.select(table.stats).where(where)).scalar_one_or_none()
            if found is None:
                total = learned_now
                connection.execute(
                    sa.insert(context_stats_table).values(
                        experiment=experiment,
                        arm=arm,
                        spec=spec,
                        stats=json.dumps(total.to_dict()),
                        updated_at=now,
                    )
                )
            else:
                # One writer (the state, under its write lock): read, add, write is exact.
                total = RidgeStats.from_dict(json.loads(found)) + learned_now
                connection.execute(
                    sa.update(context_stats_table)
                    .where(where)
                    .values(stats=json.dumps(total.to_dict()), updated_at=now)
                )
        return delta

    def context_stats(self, experiment: str, spec: str) -> dict[str, RidgeStats]:
        """The learned ridge statistics of a contextual experiment's arms for the encoding
        ``spec`` (arms without any are left out)."""
        table = context_stats_table.c
        query = sa.select(table.arm, table.stats).where(
            (table.experiment == experiment) & (table.spec == spec)
        )
        with self.engine.connect() as connection:
            return {
                row.arm: RidgeStats.from_dict(json.loads(row.stats))
                for row in connection.execute(query)
            }

    def policy_log(self, experiment: str, newest: int) -> list[dict[str, Any]]:
        """The newest ``newest`` logged decisions the policy chose and learned from (with
        their reward), oldest first: ``arm``, ``propensity``, ``reward`` and ``context``
        (None when not contextual). What off-policy evaluation reads: forced, fallback and
        paused decisions were not drawn with the logged propensity and are left out."""
        log, rewards = decision_log_table.c, rewards_table.c
        query = (
            sa.select(log.arm, log.propensity, log.reward, log.context, log.issued_at)
            .join(rewards_table, rewards.decision_key == log.decision_key)
            .where(
                (log.experiment == experiment) & log.reward.is_not(None) & rewards.learned.is_(True)
            )
            .order_by(log.issued_at.desc(), log.decision_key.desc())
            .limit(newest)
        )
        with self.engine.connect() as connection:
            rows = [dict(row._mapping) for row in connection.execute(query)]
        rows.reverse()
        for row in rows:
            if row["context"] is not None:
                row["context"] = json.loads(row["context"])
        return rows

    def _log_decisions(
        self, connection: sa.Connection, decisions: Sequence[LoggedDecision]
    ) -> None:
        """Upsert decisions into the log (their feedback may have arrived first)."""
        for start in range(0, len(decisions), 500):
            rows = [
                {
                    "decision_key": d.decision_key,
                    "experiment": d.experiment,
                    "revision": d.revision,
                    "arm": d.arm,
                    "propensity": d.propensity,
                    "issued_at": d.issued_at,
                    "features": json.dumps(d.features),
                    "predictions": json.dumps(d.predictions, default=str),
                    "context": None if d.context is None else json.dumps(d.context),
                }
                for d in sorted(decisions[start : start + 500], key=lambda d: d.decision_key)
            ]
            self._upsert_log(connection, rows, ("features", "predictions", "context"))

    def _log_feedback(self, connection: sa.Connection, records: Sequence[FeedbackRecord]) -> None:
        """Upsert the feedback of logged decisions (the decision may arrive later)."""
        for start in range(0, len(records), 500):
            rows = [
                {
                    "decision_key": r.decision_key,
                    "experiment": r.experiment,
                    "revision": r.revision,
                    "arm": r.arm,
                    "propensity": r.propensity,
                    "issued_at": r.issued_at,
                    "reward": r.reward,
                    "label": None if r.label is None else json.dumps(r.label),
                    "metrics": json.dumps(dict(r.metrics)) if r.metrics else None,
                    "received_at": time.time(),
                }
                for r in sorted(records[start : start + 500], key=lambda r: r.decision_key)
            ]
            self._upsert_log(connection, rows, ("reward", "label", "metrics", "received_at"))

    def _upsert_log(
        self, connection: sa.Connection, rows: list[dict[str, Any]], columns: Sequence[str]
    ) -> None:
        """Insert decision-log rows; a row already there (its other half came first) takes
        these ``columns`` from the new one."""
        statement = self._insert(decision_log_table).values(rows)
        connection.execute(
            statement.on_conflict_do_update(
                index_elements=["decision_key"],
                set_={name: statement.excluded[name] for name in columns},
            )
        )

    def prune_decision_log(self, experiment: str, max_rows: int, older_than: float) -> int:
        """Keep the log within its bounds: rows issued before ``older_than`` go, then the
        oldest beyond ``max_rows``. Returns the rows deleted."""
        columns = decision_log_table.c
        with self.engine.begin() as connection:
            deleted = (
                connection.execute(
                    sa.delete(decision_log_table).where(
                        (columns.experiment == experiment) & (columns.issued_at < older_than)
                    )
                ).rowcount
                or 0
            )
            count = connection.execute(
                sa.select(sa.func.count()).where(columns.experiment == experiment)
            ).scalar_one()
            if count > max_rows:
                cutoff = connection.execute(
                    sa.select(columns.issued_at)
                    .where(columns.experiment == experiment)
                    .order_by(columns.issued_at.desc())
                    .offset(max_rows)
                    .limit(1)
                ).scalar_one()
                deleted += (
                    connection.execute(
                        sa.delete(decision_log_table).where(
                            (columns.experiment == experiment) & (columns.issued_at <= cutoff)
                        )
                    ).rowcount
                    or 0
                )
        return int(deleted)

    def decision_log_rows(self, experiment: str) -> int:
        """Every row the experiment's decision log holds (with feedback or still without)."""
        query = sa.select(sa.func.count()).where(decision_log_table.c.experiment == experiment)
        with self.engine.connect() as connection:
            return int(connection.execute(query).scalar_one())

    def decision_count(
        self, experiments: Sequence[str], *, labelled: bool = False, since: float | None = None
    ) -> int:
        """Logged decisions of the experiments with feedback (``labelled``: with a label and
        the decision's features; ``since``: issued then or later)."""
        columns = decision_log_table.c
        query = sa.select(sa.func.count()).where(
            columns.experiment.in_(list(experiments)) & columns.reward.is_not(None)
        )
        if labelled:
            query = query.where(columns.label.is_not(None) & columns.features.is_not(None))
        if since is not None:
            query = query.where(columns.issued_at >= since)
        with self.engine.connect() as connection:
            return int(connection.execute(query).scalar_one())

    def decision_rows(
        self,
        experiments: Sequence[str],
        *,
        labelled: bool = False,
        after: str | None = None,
        limit: int | None = None,
        newest: int | None = None,
        since: float | None = None,
    ) -> list[dict[str, Any]]:
        """Logged decisions that received feedback, oldest first, JSON columns decoded.

        ``after`` pages on ``(issued_at, decision_key)``: pass the last row's
        ``"cursor"``. ``newest``: only the latest that many (still oldest first).
        ``since``: only decisions issued then or later."""
        columns = decision_log_table.c
        query = (
            sa.select(decision_log_table)
            .where(columns.experiment.in_(list(experiments)) & columns.reward.is_not(None))
            .order_by(columns.issued_at, columns.decision_key)
        )
        if labelled:
            query = query.where(columns.label.is_not(None) & columns.features.is_not(None))
        if since is not None:
            query = query.where(columns.issued_at >= since)
        if after:
            at, _, key = after.partition("/")
            query = query.where(
                (columns.issued_at > float(at))
                | ((columns.issued_at == float(at)) & (columns.decision_key > key))
            )
        if limit is not None:
            query = query.limit(limit)
        if newest is not None:
            query = query.order_by(None).order_by(
                columns.issued_at.desc(), columns.decision_key.desc()
            )
            query = query.limit(newest)
        with self.engine.connect() as connection:
            rows = [dict(row._mapping) for row in connection.execute(query)]
        if newest is not None:
            rows.reverse()
        for row in rows:
            for name in ("features", "predictions", "context", "label", "metrics"):
                if row[name] is not None:
                    row[name] = json.loads(row[name])
            row["cursor"] = f"{row['issued_at']!r}/{row['decision_key']}"
        return rows

    # ---------------------------------------------------------------- retraining

    def start_retrain(
        self, experiment: str, trigger: str, audit: Mapping[str, Any], **values: Any
    ) -> int:
        """Record a retraining that starts now, with its ``retrain_started`` audit entry;
        returns its id."""
        with self.engine.begin() as connection:
            result = connection.execute(
                sa.insert(retrain_runs_table)
                .values(
                    experiment=experiment,
                    trigger=trigger,
                    status="running",
                    started_at=time.time(),
                    **values,
                )
                .returning(retrain_runs_table.c.id)
            )
            run_id = int(result.scalar_one())
            detail = {"run": run_id, "trigger": trigger, **audit}
            self._audit(connection, experiment, "retrain_started", detail, "retrain")
        return run_id

    def update_retrain(
        self,
        run_id: int,
        audit: tuple[str, Mapping[str, Any]] | None = None,
        **values: Any,
    ) -> None:
        """Change a retraining run, with an optional audit entry ``(action, detail)`` on its
        experiment in the same transaction."""
        with self.engine.begin() as connection:
            connection.execute(
                sa.update(retrain_runs_table)
                .where(retrain_runs_table.c.id == run_id)
                .values(**values)
            )
            if audit is not None:
                experiment = connection.execute(
                    sa.select(retrain_runs_table.c.experiment).where(
                        retrain_runs_table.c.id == run_id
                    )
                ).scalar_one()
                action, detail = audit
                self._audit(connection, experiment, action, {"run": run_id, **detail}, "retrain")

    def retrain_runs(self, experiment: str) -> list[dict[str, Any]]:
        """The experiment's retraining runs, oldest first."""
        columns = retrain_runs_table.c
        query = sa.select(retrain_runs_table).where(columns.experiment == experiment)
        with self.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query.order_by(columns.id))]

    def last_sync(self, router_id: str) -> int | None:
        """The last batch applied for ``router_id`` (None: never synced)."""
        with self.engine.connect() as connection:
            return connection.execute(
                sa.select(sync_log_table.c.last_seq).where(sync_log_table.c.router_id == router_id)
            ).scalar_one_or_none()

    def prune_sync_log(self, older_than: float) -> int:
        """Forget routers that have not synced since ``older_than`` (replicas long gone)."""
        with self.engine.begin() as connection:
            result = connection.execute(
                sa.delete(sync_log_table).where(sync_log_table.c.updated_at < older_than)
            )
        return int(result.rowcount or 0)

    def commit_feedback(
        self,
        records: Sequence[FeedbackRecord],
        logged: frozenset[str] = frozenset(),
        contextual: Mapping[str, ContextModel] | None = None,
    ) -> tuple[list[FeedbackOutcome], Delta]:
        """Store a group commit in ONE transaction; each decision takes one feedback.

        Safe under concurrent writers (SQLite and PostgreSQL alike): rewards are inserted
        with ``ON CONFLICT DO NOTHING ... RETURNING`` so the unique key decides which writer
        stored a decision, sums are upserts that add, and rows are written in sorted key
        order so concurrent transactions cannot deadlock.

        Returns:
            Per record, its :class:`FeedbackOutcome`; and the delta that was added (the sums
            of the records stored now), for the state to add to memory. Records of the
            ``logged`` experiments also join their decision in the decision log; for the
            ``contextual`` ones whose decision (and its context) is logged already, ``ridge``
            holds what their learned rewards taught.
        """
        first: dict[str, int] = {}  # decision key -> index of its first record
        for index, record in enumerate(records):
            first.setdefault(record.decision_key, index)
        received_at = time.time()
        with self.engine.begin() as connection:
            stored = self._insert_rewards(
                connection, [records[first[key]] for key in sorted(first)], received_at
            )
            earlier = self._stored_rewards(connection, [key for key in first if key not in stored])
            new = [records[first[key]] for key in sorted(stored)]
            delta = feedback_delta(new)
            self._write_delta(connection, delta)
            self._log_feedback(connection, [r for r in new if r.experiment in logged])
            if contextual:
                keys = [r.decision_key for r in new if r.learned and r.experiment in contextual]
                ridge = self._learn_contexts(connection, keys, contextual, decided=False)
                delta = dataclasses.replace(delta, ridge=ridge)
        outcomes = []
        for index, record in enumerate(records):
            key = record.decision_key
            if key in stored and first[key] == index:
                outcomes.append(FeedbackOutcome.STORED)
                continue
            if key in stored:
                previous = records[first[key]]
                reward, metrics = previous.reward, dict(previous.metrics)
                commit_id, covariate = previous.commit_id, previous.covariate
            else:
                reward, metrics, commit_id, covariate = earlier[key]
            if not record.same_outcome(reward, metrics, covariate):
                outcomes.append(FeedbackOutcome.CONFLICT)
            elif commit_id and commit_id == record.commit_id:
                outcomes.append(FeedbackOutcome.STORED)  # our own earlier attempt stored it
            else:
                outcomes.append(FeedbackOutcome.REPLAYED)
        return outcomes, delta

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
                    "metrics": json.dumps(dict(record.metrics)) if record.metrics else None,
                    "commit_id": record.commit_id or None,
                    "covariate": record.covariate,
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

    @staticmethod
    def _stored_rewards(
        connection: sa.Connection, keys: list[str]
    ) -> dict[str, tuple[float, dict[str, float], str, float | None]]:
        """``(reward, metrics, commit_id, covariate)`` of feedback stored before, by key."""
        found: dict[str, tuple[float, dict[str, float], str, float | None]] = {}
        columns = rewards_table.c
        for start in range(0, len(keys), 500):
            query = sa.select(
                columns.decision_key,
                columns.reward,
                columns.metrics,
                columns.commit_id,
                columns.covariate,
            ).where(columns.decision_key.in_(keys[start : start + 500]))
            for row in connection.execute(query):
                metrics = json.loads(row.metrics) if row.metrics else {}
                covariate = None if row.covariate is None else float(row.covariate)
                found[row.decision_key] = (
                    float(row.reward),
                    metrics,
                    row.commit_id or "",
                    covariate,
                )
        return found

    def _write_delta(self, connection: sa.Connection, delta: Delta) -> None:
        """Add a delta's sums to their rows, in sorted key order (one statement per table,
        executed for all its rows)."""
        arm_rows = []
        for key in sorted(set(delta.arms) | set(delta.rewards)):
            experiment, period, arm = key
            counts = delta.arms.get(key, ArmCounts())
            rewards = delta.rewards.get(key, ArmStats())
            row: dict[str, Any] = {"experiment": experiment, "period": period, "arm": arm}
            row.update({name: getattr(counts, name) for name in COUNT_COLUMNS})
            row.update(
                feedback=rewards.feedback,
                reward_sum=rewards.reward_sum,
                reward_sum_squares=rewards.reward_sum_squares,
            )
            arm_rows.append(row)
        self._upsert_add(connection, arm_stats_table, ("experiment", "period", "arm"), arm_rows)
        metric_rows = [
            {
                "experiment": experiment,
                "period": period,
                "arm": arm,
                "metric": metric,
                "n": sums.feedback,
                "sum": sums.reward_sum,
                "sum_squares": sums.reward_sum_squares,
            }
            for (experiment, period, arm, metric), sums in sorted(delta.metrics.items())
        ]
        self._upsert_add(
            connection, metric_stats_table, ("experiment", "period", "arm", "metric"), metric_rows
        )
        pair_rows = [
            {
                "experiment": experiment,
                "period": period,
                "arm": arm,
                "name": name,
                "n": sums.n,
                "sum_x": sums.sum_x,
                "sum_y": sums.sum_y,
                "sum_xx": sums.sum_xx,
                "sum_yy": sums.sum_yy,
                "sum_xy": sums.sum_xy,
            }
            for (experiment, period, arm, name), sums in sorted(delta.pairs.items())
        ]
        self._upsert_add(
            connection, pair_stats_table, ("experiment", "period", "arm", "name"), pair_rows
        )
        shadow_rows = [
            {
                "experiment": experiment,
                "shadow": shadow,
                **{name: getattr(counts, name) for name in SHADOW_COLUMNS},
            }
            for (experiment, shadow), counts in sorted(delta.shadows.items())
        ]
        self._upsert_add(connection, shadow_stats_table, ("experiment", "shadow"), shadow_rows)

    def _upsert_add(
        self,
        connection: sa.Connection,
        table: sa.Table,
        key: tuple[str, ...],
        rows: list[dict[str, Any]],
    ) -> None:
        """INSERT each row, or add its values (every column not in ``key``) to the existing
        one, atomically. The statement is built once per table and column set; the rows are
        its parameters (building and caching a statement per row cost a sync ~2 ms CPU)."""
        if not rows:
            return
        columns = tuple(rows[0])
        statement = self._statements.get((table.name, *columns))
        if statement is None:
            insert = self._insert(table)
            statement = insert.on_conflict_do_update(
                index_elements=list(key),
                set_={
                    name: table.c[name] + insert.excluded[name]
                    for name in columns
                    if name not in key
                },
            )
            self._statements[(table.name, *columns)] = statement
        connection.execute(statement, rows)

    # ---------------------------------------------------------------- assignments

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

    # ---------------------------------------------------------------- lifecycle

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
                "delegate": None,
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

    # ---------------------------------------------------------------- history

    def add_timeline(self, rows: list[dict[str, Any]]) -> None:
        """Append timeline samples: experiment, at, decisions, arm, pulls, feedback,
        reward_sum, weight."""
        if rows:
            with self.engine.begin() as connection:
                connection.execute(sa.insert(timeline_table), rows)

    def timeline(self, experiment: str, limit: int | None = None) -> list[dict[str, Any]]:
        """The experiment's samples, oldest first; with ``limit``, at most that many sample
        times, evenly spread over the history (the first and last always kept)."""
        columns = timeline_table.c
        query = (
            sa.select(
                columns.at,
                columns.decisions,
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
            rows = [dict(row._mapping) for row in connection.execute(query)]
        if limit is None:
            return rows
        times = sorted({row["at"] for row in rows})
        if len(times) <= limit:
            return rows
        step = (len(times) - 1) / max(limit - 1, 1)
        kept = {times[round(i * step)] for i in range(limit)}
        return [row for row in rows if row["at"] in kept]

    def thin_timeline(self, experiment: str, keep: int) -> int:
        """Bound an experiment's stored samples: beyond ``keep`` sample times, delete every
        other one of the older half (recent history keeps full resolution)."""
        columns = timeline_table.c
        with self.engine.begin() as connection:
            times = list(
                connection.execute(
                    sa.select(columns.at)
                    .where(columns.experiment == experiment)
                    .distinct()
                    .order_by(columns.at)
                ).scalars()
            )
            if len(times) <= keep:
                return 0
            older = times[1 : len(times) // 2]
            doomed = older[1::2]
            result = connection.execute(
                sa.delete(timeline_table).where(
                    (columns.experiment == experiment) & columns.at.in_(doomed)
                )
            )
        return int(result.rowcount or 0)

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

    # ---------------------------------------------------------------- audit

    def audit_log(self, experiment: str, limit: int | None = None) -> list[dict[str, Any]]:
        """Audit entries oldest first; with ``limit``, the newest ``limit`` of them."""
        query = sa.select(audit_table).where(audit_table.c.experiment == experiment)
        if limit is not None:
            query = query.order_by(audit_table.c.id.desc()).limit(limit)
        with self.engine.connect() as connection:
            rows = [dict(row._mapping) for row in connection.execute(query)]
        return sorted(rows, key=lambda row: row["id"])

    def audit(self, experiment: str, action: str, detail: Mapping[str, Any], actor: str) -> None:
        with self.engine.begin() as connection:
            self._audit(connection, experiment, action, detail, actor)

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
