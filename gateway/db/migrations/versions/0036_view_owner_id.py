"""A dynamic view's owner is recorded by principal id, not only by name.

A view reads with its owner's rights (docs/sql.md). The owner was found by name on every read, so when the
owner was deleted, or renamed, and another principal later got the name (an e-mail address handed to someone
else, a user provisioned again by the identity provider), every reader of the view read with the newcomer's
rights. `owner_id` names the principal itself: a rename keeps the view its owner's, and a deleted owner's
views stay unreadable whoever takes the name later (ON DELETE SET NULL). `owner` keeps the name recorded at
creation (or the bootstrap admin's marker). Existing views get the id of the principal holding their owner's
name now (names are unique across kinds), or none when nobody does.

Revision ID: 0036
Revises: 0035
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0036"
down_revision = "0035"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "sql_views",
        sa.Column("owner_id", sa.BigInteger, sa.ForeignKey("principals.id", ondelete="SET NULL"), nullable=True),
    )
    op.create_index("sql_views_owner", "sql_views", ["owner_id"])
    op.execute("UPDATE sql_views AS v SET owner_id = p.id FROM principals AS p WHERE p.name = v.owner")


def downgrade() -> None:
    op.drop_index("sql_views_owner", table_name="sql_views")
    op.drop_column("sql_views", "owner_id")
