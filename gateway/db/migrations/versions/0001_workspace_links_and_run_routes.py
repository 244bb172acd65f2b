"""Workspace links and run routes.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "workspace_links",
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("workspace_id", sa.BigInteger, nullable=False, unique=True),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("store", sa.String(63)),
        sa.Column("upstream_workspace", sa.String(63)),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("default_artifact_root", sa.Text, nullable=False, server_default=""),
        sa.Column("managed_by", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("mode IN ('workspace', 'dual', 'central')", name="workspace_links_mode"),
    )
    op.create_table(
        "run_routes",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("workspace", sa.String(63), nullable=False, index=True),
        sa.Column("experiment_id", sa.String(64), nullable=False),
        sa.Column("created_by", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )


def downgrade() -> None:
    op.drop_table("run_routes")
    op.drop_table("workspace_links")
