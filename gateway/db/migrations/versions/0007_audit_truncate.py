"""The audit log refuses TRUNCATE too, not only UPDATE and DELETE.

The row trigger of 0002 (`audit_log_append_only`) never fires for TRUNCATE, which empties a table
without visiting its rows; a statement-level BEFORE TRUNCATE trigger with the same function refuses
it. (An owner or superuser can still drop the trigger: this guards against the application's role and
against mistakes, not against the database's administrators.)

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
        "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER audit_log_no_truncate ON audit_log")
