"""The rows each policy version changed, so that replicas apply a change instead of reloading the policy.

- `policy_changes`: per policy version, the grants, memberships and principals its transaction added or
  removed, as `gateway.core.policy_changes` encodes them. Written with the version's bump; a version moved
  without a row (and any version older than the rows kept) makes replicas load the policy whole.

Revision ID: 0028
Revises: 0027
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0028"
down_revision = "0027"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "policy_changes",
        sa.Column("version", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("changes", JSONB, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("policy_changes")
