"""The account-wide index, the `system.mlflow` views over it, dynamic views and SQL statements.

Index tables (`ix_*`) are written by the gateway on every write it forwards and by the sync job.
The schema `system_mlflow` holds the three system tables as views over them; SQL statements run as
the role `fedgate_sql_reader`, which can read those views and nothing else.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

NOW = sa.func.now()
READER = "fedgate_sql_reader"


def upgrade() -> None:
    op.create_table(
        "ix_experiments",
        sa.Column("workspace_id", sa.BigInteger, primary_key=True),
        sa.Column("experiment_id", sa.String(64), primary_key=True),
        sa.Column("name", sa.Text, nullable=False, server_default=""),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("delete_time", sa.DateTime(timezone=True)),
        sa.Column("tags", JSONB, nullable=False, server_default="{}"),
    )
    op.execute("CREATE INDEX ix_experiments_name ON ix_experiments (name, workspace_id, experiment_id)")
    op.execute("CREATE INDEX ix_experiments_update ON ix_experiments (update_time)")
    op.create_table(
        "ix_runs",
        sa.Column("run_key", sa.BigInteger, sa.Identity(), primary_key=True),
        # text, not varchar: the system views expose them as text without a cast, so PostgreSQL sees the plain
        # column there (a NOT NULL column needs no IS NOT NULL check, its indexes serve parallel scans).
        sa.Column("run_id", sa.Text, nullable=False, unique=True),
        sa.Column("workspace_id", sa.BigInteger, nullable=False),
        sa.Column("experiment_id", sa.Text, nullable=False),
        # What the system tables call experiment_id: unique in the account (see the views below).
        sa.Column(
            "account_experiment_id",
            sa.Text,
            sa.Computed("(workspace_id::text || '-') || experiment_id", persisted=True),
        ),
        sa.Column("created_by", sa.Text, nullable=False, server_default=""),
        sa.Column("run_name", sa.Text, nullable=False, server_default=""),
        sa.Column("status", sa.Text, nullable=False, server_default="RUNNING"),
        sa.Column("start_time", sa.DateTime(timezone=True)),
        sa.Column("end_time", sa.DateTime(timezone=True)),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("delete_time", sa.DateTime(timezone=True)),
        sa.Column("params", JSONB, nullable=False, server_default="{}"),
        sa.Column("tags", JSONB, nullable=False, server_default="{}"),
        sa.Column("datasets", JSONB, nullable=False, server_default="[]"),
    )
    # Account search: visibility is (workspace_id, experiment_id); the default order is start time.
    op.execute(
        "CREATE INDEX ix_runs_experiment_start ON ix_runs (workspace_id, experiment_id, start_time DESC, run_id)"
    )
    op.execute("CREATE INDEX ix_runs_start ON ix_runs (start_time DESC, run_id)")
    # A status filter (`attributes.status = 'FAILED'`) narrowed to the caller's experiments in the index.
    op.execute("CREATE INDEX ix_runs_status ON ix_runs (status, workspace_id, experiment_id, start_time DESC, run_id)")
    # Statuses differ by workspace; without the joint counts the planner multiplies the two selectivities and
    # walks the start-time index through every run for a status the caller's workspaces never have.
    op.execute("CREATE STATISTICS ix_runs_status_workspace (mcv) ON status, workspace_id FROM ix_runs")
    # Per-experiment status counts (the documented success-ratio query) as a parallel index-only scan: with few
    # distinct (experiment, status) pairs, deduplication keeps it a few MB where the table is hundreds.
    op.execute("CREATE INDEX ix_runs_experiment_status ON ix_runs (account_experiment_id, status)")
    op.execute("CREATE INDEX ix_runs_update ON ix_runs (update_time)")
    op.execute("CREATE INDEX ix_runs_params ON ix_runs USING gin (params jsonb_path_ops)")
    op.execute("CREATE INDEX ix_runs_tags ON ix_runs USING gin (tags jsonb_path_ops)")
    # Metric points in chunks: one row per (run, metric, write) holding up to CHUNK points as arrays.
    # A log-batch of 1,000 points is a handful of rows, not 1,000 rows and 1,000 index entries: that is
    # what keeps the write-through cheap. `run_metrics_history` unnests them; a point's record id is
    # chunk_id * 100000 + its position in the chunk. No compression (floats do not compress) and rows
    # kept inline up to a page, so a chunk is one heap tuple.
    op.create_table(
        "ix_metrics",
        sa.Column("chunk_id", sa.BigInteger, sa.Identity(), nullable=False),
        sa.Column("run_key", sa.BigInteger, nullable=False),
        sa.Column("metric_name", sa.Text, nullable=False),
        sa.Column("metric_steps", sa.ARRAY(sa.BigInteger), nullable=False),
        sa.Column("metric_times", sa.ARRAY(sa.DateTime(timezone=True)), nullable=False),
        sa.Column("metric_values", sa.ARRAY(sa.Float(precision=53)), nullable=False),
        sa.Column("insert_time", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.CheckConstraint(
            "cardinality(metric_values) BETWEEN 1 AND 100000 "
            "AND cardinality(metric_steps) = cardinality(metric_values) "
            "AND cardinality(metric_times) = cardinality(metric_values)",
            name="ix_metrics_chunk_shape",
        ),
    )
    op.execute("CREATE INDEX ix_metrics_run ON ix_metrics (run_key, metric_name)")
    op.execute("ALTER TABLE ix_metrics SET (toast_tuple_target = 8160)")
    for column in ("metric_steps", "metric_times", "metric_values"):
        op.execute(f"ALTER TABLE ix_metrics ALTER COLUMN {column} SET STORAGE EXTERNAL")
    op.create_table(
        "ix_metric_latest",
        sa.Column("run_key", sa.BigInteger, primary_key=True),
        sa.Column("metric_name", sa.Text, primary_key=True),
        sa.Column("latest_value", sa.Float(precision=53), nullable=False),
        sa.Column("latest_step", sa.BigInteger, nullable=False),
        sa.Column("latest_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("min_value", sa.Float(precision=53), nullable=False),
        sa.Column("max_value", sa.Float(precision=53), nullable=False),
        sa.Column("has_nan", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("points", sa.BigInteger, nullable=False, server_default="0"),
    )
    # Search by metric value (`metrics.accuracy > 0.9`, order by a metric).
    op.execute("CREATE INDEX ix_metric_latest_value ON ix_metric_latest (metric_name, latest_value)")
    op.create_table(
        "ix_sync_state",
        sa.Column("workspace_id", sa.BigInteger, primary_key=True),
        sa.Column("state", sa.String(12), nullable=False, server_default="idle"),
        sa.Column("cursor", sa.Text, nullable=False, server_default=""),
        sa.Column("runs_seen", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("runs_total", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("points_added", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text, nullable=False, server_default=""),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    )
    # Runs the write-through could not index whole (first seen mid-life): the sync job completes them.
    op.create_table(
        "ix_dirty_runs",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("workspace_id", sa.BigInteger, nullable=False),
        sa.Column("marked_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    )
    op.create_table(
        "sql_views",
        sa.Column("name", sa.String(255), primary_key=True),  # catalog.schema.view, lower-case
        sa.Column("definition", sa.Text, nullable=False),  # the SELECT as written (Databricks dialect)
        sa.Column("owner", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    )
    op.create_table(
        "sql_statements",
        sa.Column("statement_id", sa.String(64), primary_key=True),
        sa.Column("principal_id", sa.BigInteger, nullable=False),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("statement", sa.Text, nullable=False),
        sa.Column("manifest", JSONB),
        sa.Column("result", JSONB),
        sa.Column("error", JSONB),
        sa.Column("backend_pid", sa.Integer),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
    )
    op.execute("CREATE INDEX sql_statements_created ON sql_statements (created_at)")

    # The system tables, with the column names and types the documentation gives. Experiment ids are the
    # account form `<workspace_id>-<experiment_id>` (as in the `account` scope): each store numbers its own
    # experiments from 0, and the documented queries group and join on experiment_id alone, which is only
    # right when it is unique across the account (as Databricks' ids are).
    op.execute("CREATE SCHEMA system_mlflow")
    op.execute(
        "CREATE TYPE system_mlflow.metric_aggregate "
        "AS (metric_name text, latest_value float8, max_value float8, min_value float8)"
    )
    op.execute(
        """
        CREATE VIEW system_mlflow.experiments_latest AS
        SELECT current_setting('fedgate.account_id', true) AS account_id,
               e.update_time, e.delete_time, (e.workspace_id::text || '-') || e.experiment_id AS experiment_id,
               e.workspace_id::text AS workspace_id, e.name, e.create_time
        FROM ix_experiments e
        """
    )
    op.execute(
        """
        CREATE VIEW system_mlflow.runs_latest AS
        SELECT current_setting('fedgate.account_id', true) AS account_id,
               r.update_time, r.delete_time, r.workspace_id::text AS workspace_id, r.run_id,
               r.account_experiment_id AS experiment_id, r.created_by, r.start_time, r.end_time, r.run_name,
               r.status, r.params, r.tags,
               ARRAY(
                 SELECT ROW(m.metric_name, m.latest_value,
                            CASE WHEN m.has_nan THEN 'NaN'::float8 ELSE m.max_value END,
                            CASE WHEN m.has_nan THEN 'NaN'::float8 ELSE m.min_value END
                        )::system_mlflow.metric_aggregate
                 FROM ix_metric_latest m WHERE m.run_key = r.run_key ORDER BY m.metric_name
               ) AS aggregated_metrics
        FROM ix_runs r
        """
    )
    op.execute(
        """
        CREATE VIEW system_mlflow.run_metrics_history AS
        SELECT current_setting('fedgate.account_id', true) AS account_id,
               m.insert_time, (m.chunk_id * 100000 + p.ord)::text AS record_id, r.workspace_id::text AS workspace_id,
               r.account_experiment_id AS experiment_id, r.run_id, m.metric_name,
               p.metric_time, p.metric_step, p.metric_value
        FROM ix_metrics m JOIN ix_runs r ON r.run_key = m.run_key
        CROSS JOIN LATERAL unnest(m.metric_values, m.metric_steps, m.metric_times)
            WITH ORDINALITY AS p(metric_value, metric_step, metric_time, ord)
        """
    )
    op.execute(
        """
        DO $$
        BEGIN
          IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'fedgate_sql_reader') THEN
            CREATE ROLE fedgate_sql_reader NOLOGIN;
          END IF;
        END
        $$
        """
    )
    op.execute(f"GRANT {READER} TO CURRENT_USER")
    op.execute(f"GRANT USAGE ON SCHEMA system_mlflow TO {READER}")
    op.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA system_mlflow TO {READER}")
    op.execute(f"REVOKE ALL ON SCHEMA public FROM {READER}")


def downgrade() -> None:
    op.execute("DROP SCHEMA system_mlflow CASCADE")
    for table in (
        "sql_statements",
        "sql_views",
        "ix_dirty_runs",
        "ix_sync_state",
        "ix_metric_latest",
        "ix_metrics",
        "ix_runs",
        "ix_experiments",
    ):
        op.drop_table(table)
