"""A promotion request keeps the groups its requester's identity provider named when it was made.

Approval re-checks the requester's rights (gateway/registry/promotion_requests.py). Groups named in an OIDC
token or at a browser sign-in count in every decision the guard makes for that request, but they live in
the credential, not in the gateway's database: recorded with the request, they count at approval too. The
names are those of gateway groups at the time of the request; a group deleted since counts no longer.

Revision ID: 0031
Revises: 0030
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0031"
down_revision = "0030"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "registry_promotion_requests",
        sa.Column("requester_groups", postgresql.ARRAY(sa.Text), nullable=False, server_default="{}"),
    )


def downgrade() -> None:
    op.drop_column("registry_promotion_requests", "requester_groups")
