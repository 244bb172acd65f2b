"""A registry webhook names its owner: whoever chose its URL, whose CAN_MANAGE each delivery needs.

A webhook posts its model's events (comments, requests, decisions, who made them) to the URL a manager chose. It
kept posting after that manager lost CAN_MANAGE, or was disabled or deleted, so their receiver went on reading a
model hidden from them. `owner_id` is the principal who created the webhook or last gave its `http_url_spec`
(None: the bootstrap admin); `owner_groups` the gateway groups their identity provider named then, counted as an
alert counts its owner's. Existing webhooks are given the principal their `created_by` names (none for the
bootstrap admin's); one whose creator is gone is DISABLED, until a manager changes it and so takes it over.

Revision ID: 0046
Revises: 0045
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0046"
down_revision = "0045"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("registry_webhooks", sa.Column("owner_id", sa.BigInteger, nullable=True))
    op.add_column(
        "registry_webhooks",
        sa.Column("owner_groups", postgresql.ARRAY(sa.Text), nullable=False, server_default="{}"),
    )
    op.execute(
        "UPDATE registry_webhooks AS w SET owner_id = p.id FROM principals AS p "
        "WHERE p.name = w.created_by AND p.kind IN ('user', 'service_principal')"
    )
    op.execute("UPDATE registry_webhooks SET status = 'DISABLED' WHERE owner_id IS NULL AND created_by <> 'admin'")


def downgrade() -> None:
    op.drop_column("registry_webhooks", "owner_groups")
    op.drop_column("registry_webhooks", "owner_id")
