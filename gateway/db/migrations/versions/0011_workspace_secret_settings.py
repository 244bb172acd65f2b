"""Workspaces choose the vault of their secret scopes and a default scope, whether declared or linked over the API.

`vault` names a vault under [vaults] ("" is the built-in vault): where the values of the workspace's new
scopes live (each scope records its own vault when it is created, migration 0010). `default_secret_scope`
is the scope a run's secret read uses when it names none ("" for none).

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("workspace_links", sa.Column("vault", sa.String(63), nullable=False, server_default=""))
    op.add_column(
        "workspace_links", sa.Column("default_secret_scope", sa.String(128), nullable=False, server_default="")
    )
    op.create_check_constraint(
        "workspace_links_default_secret_scope_charset",
        "workspace_links",
        "default_secret_scope = '' OR default_secret_scope ~ '^[A-Za-z0-9_.-]{1,128}$'",
    )


def downgrade() -> None:
    op.drop_constraint("workspace_links_default_secret_scope_charset", "workspace_links", type_="check")
    op.drop_column("workspace_links", "default_secret_scope")
    op.drop_column("workspace_links", "vault")
