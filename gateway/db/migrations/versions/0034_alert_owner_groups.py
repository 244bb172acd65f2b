"""A SQL alert keeps the groups its owner's identity provider named, for the evaluations that run without them.

An alert's query runs as its owner in the background (gateway/alerts/service.py), where no credential of the
owner's is at hand. Groups an OIDC token or a browser sign-in names count in every call the owner makes; they
live in the credential, not in the gateway's database, so an evaluation would see less than the same query run
by the owner. `owner_groups` records the names of the gateway groups the identity provider named when the owner
last created, changed or ran the alert with such a credential, or signed in through the identity provider; an
evaluation counts each while a gateway group of that name exists, with its grants as they are then. Existing
alerts start with none: as before, until their owner signs in or changes them.

Revision ID: 0034
Revises: 0033
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0034"
down_revision = "0033"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "sql_alerts", sa.Column("owner_groups", postgresql.ARRAY(sa.Text), nullable=False, server_default="{}")
    )


def downgrade() -> None:
    op.drop_column("sql_alerts", "owner_groups")
