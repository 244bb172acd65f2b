"""Dual-tracking: the id map, the transactional outbox and the reconciler's cursors.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

NOW = sa.func.now()


def upgrade() -> None:
    op.create_table(
        "id_map",
        sa.Column("workspace_id", sa.BigInteger, primary_key=True),
        sa.Column("kind", sa.String(24), primary_key=True),
        sa.Column("primary_id", sa.String(64), primary_key=True),
        sa.Column("central_id", sa.String(64), nullable=False),
        sa.Column("central_artifact_uri", sa.Text, nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    )
    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("workspace_id", sa.BigInteger, nullable=False),
        sa.Column("order_key", sa.String(100), nullable=False),
        sa.Column("route", sa.String(120), nullable=False),
        sa.Column("payload", JSONB, nullable=False),
        sa.Column("state", sa.String(12), nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("refusals", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("last_error", sa.Text, nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("done_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint("state IN ('pending', 'done', 'dead')", name="outbox_state"),
    )
    # The relay's two questions: what is due, and is anything older pending for the same key.
    op.execute("CREATE INDEX outbox_due ON outbox (next_attempt_at, id) WHERE state = 'pending'")
    op.execute("CREATE INDEX outbox_pending_key ON outbox (order_key, id) WHERE state = 'pending'")
    op.create_index("outbox_workspace_state", "outbox", ["workspace_id", "state"])
    op.create_table(
        "sync_cursors",
        sa.Column("workspace_id", sa.BigInteger, primary_key=True),
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("cursor", sa.Text, nullable=False, server_default=""),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    )


def downgrade() -> None:
    op.drop_table("sync_cursors")
    op.drop_table("outbox")
    op.drop_table("id_map")
