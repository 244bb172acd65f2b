"""The reconciler's progress per workspace lives in PostgreSQL, beside its resume position.

Any replica answers `fedgate links status` with it, and a backfill cut short (its replica gone) is
resumed by whichever replica looks next. Replaces `sync_cursors`, which kept only the position.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

NOW = sa.func.now()


def upgrade() -> None:
    op.create_table(
        "reconcile_state",
        sa.Column("workspace_id", sa.BigInteger, primary_key=True),
        sa.Column("scope", sa.String(8), nullable=False),  # recent | all
        sa.Column("state", sa.String(12), nullable=False),  # running | finished | failed
        sa.Column("experiments", sa.Integer, nullable=False, server_default="0"),
        sa.Column("runs_checked", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("runs_repaired", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("points_copied", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("files_copied", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("after_experiment", sa.String(64), nullable=False, server_default=""),
        sa.Column("resumed", sa.Integer, nullable=False, server_default="0"),
        sa.Column("error", sa.Text, nullable=False, server_default=""),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    )
    op.execute(
        "INSERT INTO reconcile_state (workspace_id, scope, state, after_experiment, started_at) "
        "SELECT workspace_id, 'all', 'running', cursor, updated_at FROM sync_cursors "
        "WHERE name = 'backfill' AND cursor <> ''"
    )
    op.drop_table("sync_cursors")


def downgrade() -> None:
    op.create_table(
        "sync_cursors",
        sa.Column("workspace_id", sa.BigInteger, primary_key=True),
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("cursor", sa.Text, nullable=False, server_default=""),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    )
    op.execute(
        "INSERT INTO sync_cursors (workspace_id, name, cursor) SELECT workspace_id, 'backfill', after_experiment "
        "FROM reconcile_state WHERE scope = 'all' AND state = 'running' AND after_experiment <> ''"
    )
    op.drop_table("reconcile_state")
