"""Secret scopes: the permission every user of the scope's workspace holds (Databricks' `users` in a scope ACL).

`users_permission` is READ, WRITE or MANAGE, or NULL for none. It is the ACL entry of the principal named
`users`, as `scopes/create {initial_manage_principal: "users"}` and `acls/put {principal: "users"}` set it:
it applies to whoever holds CAN_USE (or more) on the workspace, now and later, so it cannot be a grant to a
principal. It lives on the scope's row, so it follows the scope when its workspace is renumbered and goes with
it when the scope or the workspace is removed.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("secret_scopes", sa.Column("users_permission", sa.String(8), nullable=True))
    op.create_check_constraint(
        "secret_scopes_users_permission",
        "secret_scopes",
        "users_permission IS NULL OR users_permission IN ('READ', 'WRITE', 'MANAGE')",
    )


def downgrade() -> None:
    op.drop_constraint("secret_scopes_users_permission", "secret_scopes", type_="check")
    op.drop_column("secret_scopes", "users_permission")
