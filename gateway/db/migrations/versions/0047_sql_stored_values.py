"""A function that bounds what a SQL statement reads of a stored value, checked before the statement copies it.

A run's `tags` and `params` (jsonb maps of any number of entries) and `aggregated_metrics` (an array of one struct
per metric) are as large as what was logged: a thousand tags of 8,000 characters make an 8 MB map. PostgreSQL
decompresses such a value in each place of a statement that reads it, and keeps each copy until the row is done:
`length(tags['k1']) + length(tags['k2']) + ...` a hundred times over that run took 754 MiB of one backend, and the
100,000 characters a statement may hold make that dozens of gigabytes (the same with `size(aggregated_metrics)`,
which builds the array in each place). The values a statement builds are bounded since migration 0044; these are
read, not built, so the transpiler (gateway/sql/transpile.py) reads each of them through `sql_stored` with the share
of the 256 MiB budget that each place of the statement that may read one gets:

- its size is the size as read: `pg_column_size` of a value stored uncompressed, without fetching it, and of a
  compressed one, its size decompressed (once, here, and only for a compressed value);
- past the share it raises SQLSTATE 54000 (program_limit_exceeded), answered RESOURCE_EXHAUSTED.

It is STABLE, not volatile: the planner still pulls the system tables' subqueries up into the statement (and with
them conditions down to the index), each reference evaluating the check, which the transpiler counts.

Revision ID: 0047
Revises: 0046
"""

from __future__ import annotations

from alembic import op

revision = "0047"
down_revision = "0046"
branch_labels = None
depends_on = None

READER = "fedgate_sql_reader"
FUNCTION = "sql_stored(anyelement, text, bigint)"


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION system_mlflow.sql_stored(v anyelement, what text, lim bigint) RETURNS anyelement
        LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE AS $$
        DECLARE
          size bigint := pg_column_size(v);
        BEGIN
          IF size <= lim AND pg_column_compression(v) IS NOT NULL THEN
            size := pg_column_size(ARRAY[v]);
          END IF;
          IF size > lim THEN
            RAISE EXCEPTION USING ERRCODE = 'program_limit_exceeded',
              MESSAGE = format('a run''s %s holds %s bytes, more than the %s bytes the statement may read in each '
                               'place that reads it', what, size, lim);
          END IF;
          RETURN v;
        END $$
        """
    )
    op.execute(f"REVOKE ALL ON FUNCTION system_mlflow.{FUNCTION} FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION system_mlflow.{FUNCTION} TO {READER}")


def downgrade() -> None:
    op.execute(f"DROP FUNCTION system_mlflow.{FUNCTION}")
