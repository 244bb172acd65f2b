"""Run counts per (workspace, experiment, status), kept by triggers, for aggregate statements over runs_latest.

The documented success-ratio query groups every run of the account by experiment and counts statuses: at a
million runs that is a scan of a million index entries on every call. `ix_run_counts` holds the same figures
a thousand times smaller. Triggers on `ix_runs` keep it exact in the same transaction as the change that
moves a count, whoever writes (the write-through, the sync, a workspace move): a statement's inserted and
deleted rows are counted once per statement, and a row-level trigger follows an update only when it
changes the workspace, experiment or status (the write-through's `update_time` touches never fire it).
Counts that fall to zero stay as rows; the view shows only positive ones.

`system_mlflow.runs_latest_counts` is what the SQL transpiler reads instead of `runs_latest` when a query
block's every column is one of the counted ones and its aggregates have an exact weighted form
(gateway/sql/rollup.py). It is not a system table: statements cannot name it.

The backfill runs after the triggers exist, in the migration's transaction: CREATE TRIGGER locks `ix_runs`
against writes until the commit, so no change falls between the count and the triggers.

Revision ID: 0019
Revises: 0018
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

READER = "fedgate_sql_reader"


def upgrade() -> None:
    op.create_table(
        "ix_run_counts",
        sa.Column("workspace_id", sa.BigInteger, primary_key=True),
        sa.Column("experiment_id", sa.Text, primary_key=True),
        sa.Column("status", sa.Text, primary_key=True),
        sa.Column("runs", sa.BigInteger, nullable=False),
    )
    # Counters are updated in place: room on the page keeps each update a HOT update.
    op.execute("ALTER TABLE ix_run_counts SET (fillfactor = 50)")
    op.execute(
        """
        CREATE FUNCTION ix_run_counts_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          INSERT INTO ix_run_counts AS c (workspace_id, experiment_id, status, runs)
          SELECT workspace_id, experiment_id, status, count(*) FROM new_runs
          GROUP BY workspace_id, experiment_id, status ORDER BY workspace_id, experiment_id, status
          ON CONFLICT (workspace_id, experiment_id, status) DO UPDATE SET runs = c.runs + EXCLUDED.runs;
          RETURN NULL;
        END $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION ix_run_counts_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          UPDATE ix_run_counts AS c SET runs = c.runs - d.runs
          FROM (SELECT workspace_id, experiment_id, status, count(*) AS runs FROM old_runs
                GROUP BY workspace_id, experiment_id, status) AS d
          WHERE (c.workspace_id, c.experiment_id, c.status) = (d.workspace_id, d.experiment_id, d.status);
          RETURN NULL;
        END $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION ix_run_counts_updated() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          UPDATE ix_run_counts SET runs = runs - 1
          WHERE (workspace_id, experiment_id, status) = (OLD.workspace_id, OLD.experiment_id, OLD.status);
          INSERT INTO ix_run_counts AS c (workspace_id, experiment_id, status, runs)
          VALUES (NEW.workspace_id, NEW.experiment_id, NEW.status, 1)
          ON CONFLICT (workspace_id, experiment_id, status) DO UPDATE SET runs = c.runs + 1;
          RETURN NULL;
        END $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION ix_run_counts_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          TRUNCATE ix_run_counts;
          RETURN NULL;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER ix_run_counts_insert AFTER INSERT ON ix_runs REFERENCING NEW TABLE AS new_runs "
        "FOR EACH STATEMENT EXECUTE FUNCTION ix_run_counts_inserted()"
    )
    op.execute(
        "CREATE TRIGGER ix_run_counts_delete AFTER DELETE ON ix_runs REFERENCING OLD TABLE AS old_runs "
        "FOR EACH STATEMENT EXECUTE FUNCTION ix_run_counts_deleted()"
    )
    op.execute(
        "CREATE TRIGGER ix_run_counts_update AFTER UPDATE OF workspace_id, experiment_id, status ON ix_runs "
        "FOR EACH ROW WHEN ((OLD.workspace_id, OLD.experiment_id, OLD.status) "
        "IS DISTINCT FROM (NEW.workspace_id, NEW.experiment_id, NEW.status)) "
        "EXECUTE FUNCTION ix_run_counts_updated()"
    )
    op.execute(
        "CREATE TRIGGER ix_run_counts_truncate AFTER TRUNCATE ON ix_runs "
        "FOR EACH STATEMENT EXECUTE FUNCTION ix_run_counts_truncated()"
    )
    op.execute(
        "INSERT INTO ix_run_counts (workspace_id, experiment_id, status, runs) "
        "SELECT workspace_id, experiment_id, status, count(*) FROM ix_runs GROUP BY workspace_id, experiment_id, status"
    )
    # The columns and types of runs_latest's counted columns, plus how many runs have them.
    op.execute(
        """
        CREATE VIEW system_mlflow.runs_latest_counts AS
        SELECT current_setting('fedgate.account_id', true) AS account_id,
               c.workspace_id::text AS workspace_id, (c.workspace_id::text || '-') || c.experiment_id AS experiment_id,
               c.status, c.runs
        FROM ix_run_counts c WHERE c.runs > 0
        """
    )
    op.execute(f"GRANT SELECT ON system_mlflow.runs_latest_counts TO {READER}")


def downgrade() -> None:
    op.execute("DROP VIEW system_mlflow.runs_latest_counts")
    for trigger in ("insert", "delete", "update", "truncate"):
        op.execute(f"DROP TRIGGER ix_run_counts_{trigger} ON ix_runs")
    for function in ("inserted", "deleted", "updated", "truncated"):
        op.execute(f"DROP FUNCTION ix_run_counts_{function}()")
    op.drop_table("ix_run_counts")
