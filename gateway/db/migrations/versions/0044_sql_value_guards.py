"""Functions that bound the values a SQL statement builds, checked before (or as) they are built.

A statement needs no grant to build values of its own: `replace()` of `replace()` of a literal made PostgreSQL
build a value of hundreds of megabytes, up to its 1 GB, in a second, in the backend of the database that holds
the policy and the outboxes; neither work_mem nor temp_file_limit bounds the memory of one value. The transpiler
(gateway/sql/transpile.py) writes every place of a statement that can build a value larger than its inputs
through one of these, with the bound (in bytes) it computed for that statement:

- `sql_replace` and `sql_regexp_replace` work out how large the result would be (the matches counted, each
  replacement and back-reference at its largest) and refuse before building it;
- `sql_bounded` checks a value that is at most the sum of its inputs (`||`, concat, concat_ws, array(...)) once
  built: its inputs are bounded, so what it held before the check is too;
- `sql_counted` adds what each element collected into an array (collect_list/array_agg, transform()) will hold
  to a running total of that place in the statement, a transaction-local setting (`fedgate.sql_built_<n>`):
  the total of every group and row of the statement is bounded, so no state grows past it.

They are volatile: PostgreSQL then neither folds them while planning nor pulls a subquery whose output one of them
builds up into the query around it, where each reference to that output would be a copy of the expression (the
expressions of `SELECT v || v AS v FROM (SELECT v || v AS v FROM ...)` nested a dozen deep made a plan of
millions of nodes, gigabytes of the backend's memory before any value was built); a value is built once per row
of the subquery that builds it.

Past a bound each raises SQLSTATE 54000 (program_limit_exceeded), which the statement endpoint answers as
RESOURCE_EXHAUSTED. They live in system_mlflow, which the reader role may use; a statement cannot name them
(functions are called by their name alone, and search_path is empty).

Revision ID: 0044
Revises: 0043
"""

from __future__ import annotations

from alembic import op

revision = "0044"
down_revision = "0043"
branch_labels = None
depends_on = None

READER = "fedgate_sql_reader"
FUNCTIONS = (
    "sql_value_too_large(text, numeric, bigint)",
    "sql_bounded(anyelement, text, bigint)",
    "sql_replace(text, text, text, bigint)",
    "sql_regexp_replace(text, text, text, integer, bigint)",
    "sql_counted(anyelement, text, text, bigint)",
)


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION system_mlflow.sql_value_too_large(what text, size numeric, lim bigint) RETURNS void
        LANGUAGE plpgsql VOLATILE PARALLEL SAFE AS $$
        BEGIN
          RAISE EXCEPTION USING ERRCODE = 'program_limit_exceeded',
            MESSAGE = format('%s would build %s bytes, more than the %s bytes the statement''s values may '
                             'hold there', what, size, lim);
        END $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION system_mlflow.sql_bounded(v anyelement, what text, lim bigint) RETURNS anyelement
        LANGUAGE plpgsql VOLATILE STRICT PARALLEL SAFE AS $$
        BEGIN
          IF pg_column_size(v) > lim THEN
            PERFORM system_mlflow.sql_value_too_large(what, pg_column_size(v), lim);
          END IF;
          RETURN v;
        END $$
        """
    )
    # The result is s with each of n matches of f (n counted on a copy no larger than s) replaced by t.
    op.execute(
        """
        CREATE FUNCTION system_mlflow.sql_replace(s text, f text, t text, lim bigint) RETURNS text
        LANGUAGE plpgsql VOLATILE STRICT PARALLEL SAFE AS $$
        DECLARE
          n bigint;
          size numeric;
        BEGIN
          IF octet_length(t) > octet_length(f) AND f <> '' THEN
            n := (octet_length(s) - octet_length(replace(s, f, ''))) / octet_length(f);
            size := octet_length(s) + n * (octet_length(t) - octet_length(f));
            IF size > lim THEN
              PERFORM system_mlflow.sql_value_too_large('replace()', size, lim);
            END IF;
          END IF;
          RETURN replace(s, f, t);
        END $$
        """
    )
    # Each match (at most one per character and one at the end) becomes the replacement, whose back-references
    # (each a backslash) repeat matched text: all of them together at most s once per back-reference.
    op.execute(
        """
        CREATE FUNCTION system_mlflow.sql_regexp_replace(s text, p text, r text, start integer, lim bigint)
        RETURNS text LANGUAGE plpgsql VOLATILE STRICT PARALLEL SAFE AS $$
        DECLARE
          refs bigint := octet_length(r) - octet_length(replace(r, E'\\\\', ''));
          size numeric := octet_length(s) * (1 + refs) + (char_length(s) + 1) * octet_length(r);
        BEGIN
          IF size > lim THEN
            size := octet_length(s) * (1 + refs) + regexp_count(s, p, start) * octet_length(r);
            IF size > lim THEN
              PERFORM system_mlflow.sql_value_too_large('regexp_replace()', size, lim);
            END IF;
          END IF;
          RETURN regexp_replace(s, p, r, start, 0, 'g');
        END $$
        """
    )
    # Volatile and parallel unsafe: it keeps its total in a setting of the statement's transaction.
    op.execute(
        """
        CREATE FUNCTION system_mlflow.sql_counted(v anyelement, what text, total_name text, lim bigint)
        RETURNS anyelement LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE AS $$
        DECLARE
          total bigint := coalesce(nullif(current_setting(total_name, true), ''), '0')::bigint
                          + coalesce(pg_column_size(v), 0) + 16;
        BEGIN
          IF total > lim THEN
            PERFORM system_mlflow.sql_value_too_large(what, total, lim);
          END IF;
          PERFORM set_config(total_name, total::text, true);
          RETURN v;
        END $$
        """
    )
    for function in FUNCTIONS:
        op.execute(f"REVOKE ALL ON FUNCTION system_mlflow.{function} FROM PUBLIC")
        op.execute(f"GRANT EXECUTE ON FUNCTION system_mlflow.{function} TO {READER}")


def downgrade() -> None:
    for function in reversed(FUNCTIONS):
        op.execute(f"DROP FUNCTION system_mlflow.{function}")
