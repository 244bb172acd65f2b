"""The per-principal cap of SQL statements reads the live statements through an index, and counts a statement
against the principal who asked for it.

`server.sql_max_statements_per_principal` counts, on every submission and under the principal's advisory lock,
the statements `PENDING` or `RUNNING` of the principal. Without an index that count read every statement of
`sql_statements` (kept for days, all principals); this partial index holds the live ones only, so the count
reads a handful of rows however long the table grows.

`counted_principal_id`: the principal whose cap the statement counts against, when not the one it runs as. An
alert run by hand (`.../alerts/{id}/run`) runs as the alert's owner, and is recorded as theirs (only they read
its result), but is the request of whoever pressed run: an account admin running someone's alert no longer
spends, or is refused by, the owner's cap. NULL: the principal it runs as (every other statement).

Revision ID: 0041
Revises: 0040
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0041"
down_revision = "0040"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("sql_statements", sa.Column("counted_principal_id", sa.BigInteger, nullable=True))
    op.execute(
        "CREATE INDEX sql_statements_live ON sql_statements ((COALESCE(counted_principal_id, principal_id))) "
        "WHERE state IN ('PENDING', 'RUNNING')"
    )


def downgrade() -> None:
    op.drop_index("sql_statements_live", table_name="sql_statements")
    op.drop_column("sql_statements", "counted_principal_id")
