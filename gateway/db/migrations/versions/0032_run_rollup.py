"""Run counts per day and person as well, an index on run length, and the audit log's filters indexed.

The console's dashboards (runs per day by status, most active users, the success ratio over a time window
or through a dynamic view) group or filter every run by its start day or its creator: on a million runs a
scan of the runs on every call. `ix_run_rollup` holds how many runs have each (workspace, experiment,
creator, status, UTC day of start) with the earliest and latest start among them; in the benchmark's
account about twelve runs per row. Triggers on `ix_runs` keep it exact in the same transaction as every
change, whoever writes, as 0019's do for `ix_run_counts`: a statement's inserted and deleted rows are counted
once per statement, and a row-level trigger follows an update only when it changes one of the five columns
(the write-through's `update_time` touches and status-less changes never fire it). When a run leaves a row
whose earliest or latest start it was, that row's extremes are read again from `ix_runs` (the runs of one
experiment, creator and status on one day, through `ix_runs_experiment_start`), after the row is locked,
so a concurrent writer's committed run is seen. Rows that fall to zero stay; the view shows positive ones.

`system_mlflow.runs_latest_rollup` is what the SQL transpiler reads instead of `runs_latest` when a query
block (and the view blocks between it and the runs) uses only the rolled-up columns, `date(start_time)`,
`start_time` compared with a date, and `MIN`/`MAX(start_time)` (gateway/sql/rollup.py). It is not a
system table: statements cannot name it. Its day is the start's UTC date: statements run with TimeZone UTC.

`ix_runs_length` orders finished runs by their length in whole seconds as `TIMESTAMPDIFF(SECOND,
start_time, end_time)` is rendered (gateway/sql/transpile.py): the longest runs are the first entries of the
index; `ix_runs_workspace_length` the same per workspace.

`audit_log_actor`, `audit_log_action`, `audit_log_target` and `audit_log_workspace[_id]` serve the audit
page's filters on a principal, an action (exact, or a prefix such as `grants.`) and a workspace, newest
first: without them a rare actor's or a quiet workspace's rows are found by reading the log backwards from
its end (80 ms at 300,000 rows for a workspace with none, under 1 ms with them).

Revision ID: 0032
Revises: 0031
"""

# ruff: noqa: S608 — the statements splice only this module's constants (the key, the day, the length).
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0032"
down_revision = "0031"
branch_labels = None
depends_on = None

READER = "fedgate_sql_reader"
KEY = "workspace_id, experiment_id, created_by, status, day"
DAY = "(start_time AT TIME ZONE 'UTC')::date"
LENGTH = "(CAST(TRUNC(EXTRACT(EPOCH FROM (end_time - start_time)) / 1) AS BIGINT))"


def upgrade() -> None:
    op.create_table(
        "ix_run_rollup",
        sa.Column("workspace_id", sa.BigInteger, nullable=False),
        sa.Column("experiment_id", sa.Text, nullable=False),
        sa.Column("created_by", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("day", sa.Date),  # NULL: runs without a start time
        sa.Column("runs", sa.BigInteger, nullable=False),
        sa.Column("first_start", sa.DateTime(timezone=True)),
        sa.Column("last_start", sa.DateTime(timezone=True)),
    )
    op.execute(f"CREATE UNIQUE INDEX ix_run_rollup_key ON ix_run_rollup ({KEY}) NULLS NOT DISTINCT")
    op.execute("ALTER TABLE ix_run_rollup SET (fillfactor = 70)")
    # The extremes of one row, read again from the runs: only when a run that was one of them left the row.
    op.execute(
        """
        CREATE FUNCTION ix_run_rollup_refresh(w bigint, e text, u text, s text, d date) RETURNS void
        LANGUAGE sql VOLATILE AS $$
          UPDATE ix_run_rollup AS c SET (first_start, last_start) = (
            SELECT min(r.start_time), max(r.start_time) FROM ix_runs r
            WHERE r.workspace_id = w AND r.experiment_id = e AND r.created_by = u AND r.status = s
              AND r.start_time >= (d::timestamp AT TIME ZONE 'UTC')
              AND r.start_time < ((d + 1)::timestamp AT TIME ZONE 'UTC'))
          WHERE c.workspace_id = w AND c.experiment_id = e AND c.created_by = u AND c.status = s AND c.day = d
        $$
        """
    )
    op.execute(
        f"""
        CREATE FUNCTION ix_run_rollup_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          INSERT INTO ix_run_rollup AS c ({KEY}, runs, first_start, last_start)
          SELECT workspace_id, experiment_id, created_by, status, {DAY}, count(*), min(start_time), max(start_time)
          FROM new_runs GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5
          ON CONFLICT ({KEY}) DO UPDATE SET runs = c.runs + EXCLUDED.runs,
            first_start = LEAST(c.first_start, EXCLUDED.first_start),
            last_start = GREATEST(c.last_start, EXCLUDED.last_start);
          RETURN NULL;
        END $$
        """
    )
    op.execute(
        f"""
        CREATE FUNCTION ix_run_rollup_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
          k record;
        BEGIN
          FOR k IN
            UPDATE ix_run_rollup AS c SET runs = c.runs - d.runs
            FROM (SELECT workspace_id, experiment_id, created_by, status, {DAY} AS day, count(*) AS runs,
                         min(start_time) AS first_start, max(start_time) AS last_start
                  FROM old_runs GROUP BY 1, 2, 3, 4, 5) AS d
            WHERE c.workspace_id = d.workspace_id AND c.experiment_id = d.experiment_id
              AND c.created_by = d.created_by AND c.status = d.status AND c.day IS NOT DISTINCT FROM d.day
            RETURNING c.workspace_id, c.experiment_id, c.created_by, c.status, c.day,
                      d.first_start <= c.first_start OR d.last_start >= c.last_start AS stale
          LOOP
            IF k.stale THEN
              PERFORM ix_run_rollup_refresh(k.workspace_id, k.experiment_id, k.created_by, k.status, k.day);
            END IF;
          END LOOP;
          RETURN NULL;
        END $$
        """
    )
    op.execute(
        f"""
        CREATE FUNCTION ix_run_rollup_updated() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
          old_day date := (OLD.start_time AT TIME ZONE 'UTC')::date;
          was record;
        BEGIN
          UPDATE ix_run_rollup AS c SET runs = c.runs - 1
          WHERE c.workspace_id = OLD.workspace_id AND c.experiment_id = OLD.experiment_id
            AND c.created_by = OLD.created_by AND c.status = OLD.status AND c.day IS NOT DISTINCT FROM old_day
          RETURNING c.first_start, c.last_start INTO was;
          IF OLD.start_time <= was.first_start OR OLD.start_time >= was.last_start THEN
            PERFORM ix_run_rollup_refresh(OLD.workspace_id, OLD.experiment_id, OLD.created_by, OLD.status, old_day);
          END IF;
          INSERT INTO ix_run_rollup AS c ({KEY}, runs, first_start, last_start)
          VALUES (NEW.workspace_id, NEW.experiment_id, NEW.created_by, NEW.status,
                  (NEW.start_time AT TIME ZONE 'UTC')::date, 1, NEW.start_time, NEW.start_time)
          ON CONFLICT ({KEY}) DO UPDATE SET runs = c.runs + 1,
            first_start = LEAST(c.first_start, EXCLUDED.first_start),
            last_start = GREATEST(c.last_start, EXCLUDED.last_start);
          RETURN NULL;
        END $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION ix_run_rollup_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          TRUNCATE ix_run_rollup;
          RETURN NULL;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER ix_run_rollup_insert AFTER INSERT ON ix_runs REFERENCING NEW TABLE AS new_runs "
        "FOR EACH STATEMENT EXECUTE FUNCTION ix_run_rollup_inserted()"
    )
    op.execute(
        "CREATE TRIGGER ix_run_rollup_delete AFTER DELETE ON ix_runs REFERENCING OLD TABLE AS old_runs "
        "FOR EACH STATEMENT EXECUTE FUNCTION ix_run_rollup_deleted()"
    )
    op.execute(
        "CREATE TRIGGER ix_run_rollup_update "
        "AFTER UPDATE OF workspace_id, experiment_id, created_by, status, start_time ON ix_runs "
        "FOR EACH ROW WHEN ((OLD.workspace_id, OLD.experiment_id, OLD.created_by, OLD.status, OLD.start_time) "
        "IS DISTINCT FROM (NEW.workspace_id, NEW.experiment_id, NEW.created_by, NEW.status, NEW.start_time)) "
        "EXECUTE FUNCTION ix_run_rollup_updated()"
    )
    op.execute(
        "CREATE TRIGGER ix_run_rollup_truncate AFTER TRUNCATE ON ix_runs "
        "FOR EACH STATEMENT EXECUTE FUNCTION ix_run_rollup_truncated()"
    )
    op.execute(
        f"INSERT INTO ix_run_rollup ({KEY}, runs, first_start, last_start) "
        f"SELECT workspace_id, experiment_id, created_by, status, {DAY}, count(*), min(start_time), max(start_time) "
        "FROM ix_runs GROUP BY 1, 2, 3, 4, 5"
    )
    # The columns and types of runs_latest's rolled-up columns, the day, the extremes and how many runs.
    op.execute(
        """
        CREATE VIEW system_mlflow.runs_latest_rollup AS
        SELECT current_setting('fedgate.account_id', true) AS account_id,
               c.workspace_id::text AS workspace_id, (c.workspace_id::text || '-') || c.experiment_id AS experiment_id,
               c.created_by, c.status, c.day, c.first_start, c.last_start, c.runs
        FROM ix_run_rollup c WHERE c.runs > 0
        """
    )
    op.execute(f"GRANT SELECT ON system_mlflow.runs_latest_rollup TO {READER}")
    # Finished runs only (a running run has no length), in the order statements ask for: Databricks' DESC puts
    # NULLs last and ASC first, and the transpiler writes them so.
    op.execute(
        f"CREATE INDEX ix_runs_length ON ix_runs ({LENGTH} DESC NULLS LAST, run_id NULLS FIRST) "
        "WHERE start_time IS NOT NULL AND end_time IS NOT NULL"
    )
    # The same within one workspace, as runs_latest writes its id (text): the longest runs of a workspace are
    # not found by walking the longest of every workspace when its own are shorter.
    op.execute(
        f"CREATE INDEX ix_runs_workspace_length ON ix_runs ((workspace_id::text), {LENGTH} DESC NULLS LAST, "
        "run_id NULLS FIRST) WHERE start_time IS NOT NULL AND end_time IS NOT NULL"
    )
    op.execute("CREATE INDEX audit_log_actor ON audit_log (actor, id)")
    op.execute("CREATE INDEX audit_log_action ON audit_log (action text_pattern_ops, id)")
    # A workspace's rows: its object named, its experiments', models' and scopes' prefixes, or its name or id in
    # the details of a refused request (gateway/console/access/service.py, _places); one index per branch lets
    # PostgreSQL combine them for a quiet workspace instead of reading the whole log backwards.
    op.execute("CREATE INDEX audit_log_target ON audit_log (target text_pattern_ops, id)")
    op.execute("CREATE INDEX audit_log_workspace ON audit_log ((details ->> 'workspace'), id)")
    op.execute("CREATE INDEX audit_log_workspace_id ON audit_log ((details ->> 'workspace_id'), id)")


def downgrade() -> None:
    for index in ("workspace_id", "workspace", "target", "action"):
        op.execute(f"DROP INDEX audit_log_{index}")
    op.execute("DROP INDEX audit_log_actor")
    op.execute("DROP INDEX ix_runs_workspace_length")
    op.execute("DROP INDEX ix_runs_length")
    op.execute("DROP VIEW system_mlflow.runs_latest_rollup")
    for trigger in ("insert", "delete", "update", "truncate"):
        op.execute(f"DROP TRIGGER ix_run_rollup_{trigger} ON ix_runs")
    for function in ("inserted()", "deleted()", "updated()", "truncated()", "refresh(bigint, text, text, text, date)"):
        op.execute(f"DROP FUNCTION ix_run_rollup_{function}")
    op.drop_table("ix_run_rollup")
