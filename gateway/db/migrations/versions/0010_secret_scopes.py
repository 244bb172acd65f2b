"""Secret scopes: one row per scope of a workspace, naming the vault that keeps its values and where.

The values live in the vault (`vault`, a name under [vaults] or `builtin`) at `location`, fixed when the
scope is created (`w<workspace id>/<scope>`), so a workspace that is renumbered keeps reaching them. Who
may read, write or manage a scope is not here: its ACL is grants of the policy (`secret_scope:...`).

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "secret_scopes",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("workspace_id", sa.BigInteger, nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("vault", sa.String(63), nullable=False),
        sa.Column("location", sa.String(200), nullable=False),
        sa.Column("created_by", sa.Text, nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.UniqueConstraint("workspace_id", "name", name="secret_scopes_name_unique"),
        sa.UniqueConstraint("vault", "location", name="secret_scopes_location_unique"),
        sa.CheckConstraint("name ~ '^[A-Za-z0-9_.-]{1,128}$'", name="secret_scopes_name_charset"),
    )


def downgrade() -> None:
    op.drop_table("secret_scopes")
