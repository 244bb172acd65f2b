"""What each stored SQL result holds, so a principal's results can be kept within a budget.

Results are kept 24 hours (`sql_statements.result`), and anyone signed in, with no grant at all, could store a
25 MiB one every few seconds (a statement that reads no table needs none): nothing bounded the sum, and a few
minutes of statements filled the database's disk. `result_bytes` is the size of a result as stored (its JSON
text); the partial index reads one principal's kept results, newest first, without the others' or the rows
themselves, so finishing a statement closes the principal's oldest results past `server.sql_results_mb_per_principal`.
Results stored before this revision have no size and do not count; they go with the 24 hours.

Revision ID: 0050
Revises: 0049
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0050"
down_revision = "0049"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("sql_statements", sa.Column("result_bytes", sa.BigInteger, nullable=True))
    op.execute(
        "CREATE INDEX sql_statements_results ON sql_statements (principal_id, finished_at DESC, statement_id DESC) "
        "INCLUDE (result_bytes) WHERE result_bytes IS NOT NULL"
    )


def downgrade() -> None:
    op.drop_index("sql_statements_results", table_name="sql_statements")
    op.drop_column("sql_statements", "result_bytes")
