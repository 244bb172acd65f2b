"""Promotion requests are numbered per target workspace, not by one sequence across the account.

`registry_promotion_requests.id` comes from one identity for every workspace, and it was the request's id in the API
(`promotion-requests/list`, `approve`, `reject`, `delete`) and in the system comment of the source version's
promotion activities: a user of one workspace learned, from the gaps, how many promotions were asked into workspaces
they may not see. Each row now holds `number`: 1, 2, 3, ... within its target workspace, given under a
transaction-scoped advisory lock on the workspace (`LockClass.REGISTRY_PROMOTION_REQUEST`); the API shows it and
finds requests by (workspace, number). The backfill numbers each workspace's requests in the order of their ids.

Revision ID: 0052
Revises: 0051
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0052"
down_revision = "0051"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("registry_promotion_requests", sa.Column("number", sa.BigInteger))
    op.execute(
        """
        UPDATE registry_promotion_requests r SET number = n.number
        FROM (SELECT id, row_number() OVER (PARTITION BY workspace_id ORDER BY id) AS number
              FROM registry_promotion_requests) n
        WHERE r.id = n.id
        """
    )
    op.alter_column("registry_promotion_requests", "number", nullable=False)
    op.create_index(
        "registry_promotion_requests_number", "registry_promotion_requests", ["workspace_id", "number"], unique=True
    )


def downgrade() -> None:
    op.drop_index("registry_promotion_requests_number", "registry_promotion_requests")
    op.drop_column("registry_promotion_requests", "number")
