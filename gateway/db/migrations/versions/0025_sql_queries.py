"""Saved SQL queries of the account console (the Databricks SQL queries API).

- `sql_queries`: a named query text with the catalog and schema it completes one-part names from. Its owner
  (`owner_id`, NULL for the bootstrap admin; `owner_name` as answered) holds CAN_MANAGE on it without a grant;
  everyone else holds what the grants of the policy on `query:<id>` (account domain) give: CAN_VIEW, CAN_RUN
  or CAN_MANAGE (gateway/console/queries). Deleting a query deletes those grants in the same transaction.

Revision ID: 0025
Revises: 0024
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sql_queries",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("display_name", sa.Text, nullable=False),
        sa.Column("query_text", sa.Text, nullable=False, server_default=""),
        sa.Column("description", sa.Text),
        sa.Column("catalog", sa.Text),
        sa.Column("schema", sa.Text),
        sa.Column("tags", JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
        sa.Column("apply_auto_limit", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("owner_id", sa.BigInteger),
        sa.Column("owner_name", sa.Text, nullable=False),
        sa.Column("last_modifier_name", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    # Lists are ordered by creation time (then id), a page at a time; a person's own queries by owner.
    op.create_index("sql_queries_created", "sql_queries", ["created_at", "id"])
    op.create_index("sql_queries_owner", "sql_queries", ["owner_id"])


def downgrade() -> None:
    op.drop_table("sql_queries")
