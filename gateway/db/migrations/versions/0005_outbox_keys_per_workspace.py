"""Outbox order keys are scoped by workspace and may be as long as a registered model's name.

Two dual workspaces numbered their experiments alike (each store starts at 1) and could name
models alike, so their entries shared an order key: one workspace's entry waiting out a back-off
held up the other's. A model name over 94 characters did not fit the key at all.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.alter_column("outbox", "order_key", type_=sa.Text, existing_nullable=False)
    op.execute("UPDATE outbox SET order_key = workspace_id || '/' || order_key WHERE order_key !~ '^[0-9]+/'")


def downgrade() -> None:
    op.execute("UPDATE outbox SET order_key = left(regexp_replace(order_key, '^[0-9]+/', ''), 100)")
    op.alter_column("outbox", "order_key", type_=sa.String(100), existing_nullable=False)
