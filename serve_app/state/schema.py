"""The experiment store's tables (SQLAlchemy Core), the same on SQLite and PostgreSQL.

- ``meta``: key/value settings (a first version kept its signing secret here: see
  :mod:`serve_app.state.keys`, which retires it);
- ``experiments``: config, status and revision (bumped when the config changes);
- ``arms``: every arm an experiment has had, with its model URI;
- ``assignments``: sticky units and the arm they were first given;
- ``arm_stats``: additive counts and learned-feedback sums per (experiment, period, arm); a
  period is a revision, so counts under different weights stay apart;
- ``shadow_stats``: mirrored-traffic counts per shadow model;
- ``rewards``: one row per accepted feedback, keyed by the decision nonce: the unique key is
  what makes feedback exactly-once, across restarts too;
- ``metric_stats``: additive sums of feedback metrics per (experiment, period, arm, metric);
- ``pair_stats``: additive sums of pairs (CUPED's reward and covariate, a ratio metric's
  numerator and denominator) per (experiment, period, arm, name);
- ``lifecycle``: start times, arms rolled back by a guardrail, the conclusion's MLflow run;
- ``timeline``: cumulative per-arm counts sampled over time (the report's history);
- ``drift_references``: drift profiles taken from live traffic;
- ``sync_log``: the last sync batch applied per router replica (idempotent syncs);
- ``decision_log``: opt-in per experiment, each decision's inputs, answer and feedback;
- ``context_stats``: a contextual experiment's per-arm ridge statistics, per encoding;
- ``retrain_runs``: every retraining: trigger, rows, the version it produced, its outcome;
- ``audit_log``: every create, change and transition: when, what, why and who.

:func:`migrate` adds columns that later versions introduced to tables an older version
created, so an existing store keeps working after an upgrade.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

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
    sa.Column("forced_errors", sa.BigInteger, nullable=False, default=0, server_default="0"),
    sa.Column("fallbacks", sa.BigInteger, nullable=False, default=0),
    # sum over routed decisions of the probability the arm had: SRM's expected count
    sa.Column("expected", sa.Float, nullable=False, default=0.0),
)

COUNT_COLUMNS = ("pulls", "errors", "forced", "forced_errors", "fallbacks", "expected")
"""The columns of arm_stats that hold an :class:`~serve_app.experiment.records.ArmCounts`."""
REWARD_COLUMNS = ("feedback", "reward_sum", "reward_sum_squares")
"""The columns of arm_stats that hold learned feedback (with ``pulls``, an ArmStats)."""

shadow_stats_table = sa.Table(
    "shadow_stats",
    metadata,
    sa.Column("experiment", sa.String(64), primary_key=True),
    sa.Column("shadow", sa.String(64), primary_key=True),
    sa.Column("requests", sa.BigInteger, nullable=False, default=0),
    sa.Column("errors", sa.BigInteger, nullable=False, default=0),
    sa.Column("timeouts", sa.BigInteger, nullable=False, default=0, server_default="0"),
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
    # the declared metrics sent with it (JSON), so a replay can be compared exactly
    sa.Column("metrics", sa.Text, nullable=True),
    # the HTTP request that stored it: the router's own retry finds its own id here
    sa.Column("commit_id", sa.String(32), nullable=True),
    # the unit's pre-experiment covariate (CUPED), when sent: a replay must match it too
    sa.Column("covariate", sa.Float, nullable=True),
)

# The last sync batch applied per router replica, written in the batch's own transaction:
# a batch the router sends again (its answer was lost) is acknowledged, not added twice.
sync_log_table = sa.Table(
    "sync_log",
    metadata,
    sa.Column("router_id", sa.String(64), primary_key=True),
    sa.Column("last_seq", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False, index=True),
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

# Sums of pairs per (experiment, period, arm, name): CUPED's (reward, covariate) under the
# name "_cuped", each ratio metric's (numerator, denominator) under its name.
pair_stats_table = sa.Table(
    "pair_stats",
    metadata,
    sa.Column("experiment", sa.String(64), primary_key=True),
    sa.Column("period", sa.Integer, primary_key=True),
    sa.Column("arm", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("n", sa.BigInteger, nullable=False, default=0),
    sa.Column("sum_x", sa.Float, nullable=False, default=0.0),
    sa.Column("sum_y", sa.Float, nullable=False, default=0.0),
    sa.Column("sum_xx", sa.Float, nullable=False, default=0.0),
    sa.Column("sum_yy", sa.Float, nullable=False, default=0.0),
    sa.Column("sum_xy", sa.Float, nullable=False, default=0.0),
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
    # the retraining challenger that takes this experiment's traffic while it runs
    sa.Column("delegate", sa.String(64), nullable=True),
)

# Cumulative per-arm counts, sampled as decisions accumulate: traffic share and reward over
# decisions and time (thinned so an experiment keeps a bounded number of samples).
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
    # the experiment's routed decisions so far: the x axis of plots that show learning
    sa.Column("decisions", sa.BigInteger, nullable=False, default=0, server_default="0"),
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

# The decision log (opt-in per experiment): what each decision was asked and answered, and
# its feedback once it arrives (either may come first: both upsert by the decision key).
decision_log_table = sa.Table(
    "decision_log",
    metadata,
    sa.Column("decision_key", sa.String(64), primary_key=True),
    sa.Column("experiment", sa.String(64), nullable=False),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("arm", sa.String(64), nullable=False),
    sa.Column("propensity", sa.Float, nullable=False),
    sa.Column("issued_at", sa.Float, nullable=False),
    sa.Column("features", sa.Text, nullable=True),  # JSON rows
    sa.Column("predictions", sa.Text, nullable=True),  # JSON list
    sa.Column("context", sa.Text, nullable=True),  # JSON vector (contextual policies)
    sa.Column("reward", sa.Float, nullable=True),
    sa.Column("label", sa.Text, nullable=True),  # JSON scalar
    sa.Column("metrics", sa.Text, nullable=True),  # JSON object
    sa.Column("received_at", sa.Float, nullable=True),
    sa.Index("ix_decision_log_experiment_issued", "experiment", "issued_at"),
)

# Contextual experiments: each arm's ridge statistics (n, X'X, X'y, y'y; JSON, floats
# round-trip exactly) per context encoding ``spec`` (ExperimentConfig.context_key), added in
# the transaction where a logged decision's context meets its learned reward.
context_stats_table = sa.Table(
    "context_stats",
    metadata,
    sa.Column("experiment", sa.String(64), primary_key=True),
    sa.Column("arm", sa.String(64), primary_key=True),
    sa.Column("spec", sa.String(32), primary_key=True),
    sa.Column("stats", sa.Text, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

# Retraining runs: what triggered each, on which rows, what it produced and how it ended.
retrain_runs_table = sa.Table(
    "retrain_runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("experiment", sa.String(64), nullable=False, index=True),
    sa.Column("trigger", sa.String(32), nullable=False),
    sa.Column("status", sa.String(32), nullable=False),  # running, succeeded, failed, ...
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("ended_at", sa.Float, nullable=True),
    sa.Column("rows", sa.Integer, nullable=False),
    sa.Column("rows_sha256", sa.String(64), nullable=True),
    sa.Column("rows_from", sa.Float, nullable=True),
    sa.Column("rows_to", sa.Float, nullable=True),
    sa.Column("champion_uri", sa.Text, nullable=True),
    sa.Column("model_uri", sa.Text, nullable=True),  # the version it registered
    sa.Column("challenger", sa.String(64), nullable=True),  # the experiment testing it
    sa.Column("outcome", sa.String(32), nullable=True),  # the challenger's outcome
    sa.Column("conclusion_run", sa.String(64), nullable=True),  # its MLflow run
    sa.Column("error", sa.Text, nullable=True),
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


def migrate(engine: Engine) -> list[str]:
    """Create missing tables, then add missing columns to existing ones.

    Only columns with a server default or that are nullable are ever added, so existing
    rows stay valid. Returns ``table.column`` for each column added.
    """
    metadata.create_all(engine)
    inspector = sa.inspect(engine)
    added = []
    with engine.begin() as connection:
        for table in metadata.sorted_tables:
            present = {column["name"] for column in inspector.get_columns(table.name)}
            for column in table.columns:
                if column.name in present:
                    continue
                kind = column.type.compile(dialect=engine.dialect)
                default = ""
                if column.server_default is not None:
                    default = f" NOT NULL DEFAULT {column.server_default.arg}"  # type: ignore[attr-defined]
                connection.execute(
                    sa.text(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}{default}')
                )
                added.append(f"{table.name}.{column.name}")
    return added
