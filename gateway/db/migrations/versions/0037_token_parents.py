"""A personal access token records the token it was created with, and is revoked with it.

Tokens created with a token (or from a browser session made with one) already expired no later than it; now
they also end when it is revoked, by a cascading foreign key on the parent's keyed hash, at any depth. Before,
a token stolen and used to mint another could be revoked while the minted one kept working until it expired.
Existing tokens have no recorded parent.

Revision ID: 0037
Revises: 0036
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0037"
down_revision = "0036"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "tokens",
        sa.Column(
            "parent_hash",
            sa.LargeBinary,
            sa.ForeignKey("tokens.token_hash", name="tokens_parent_hash_fkey", ondelete="CASCADE"),
            nullable=True,
        ),
    )
    op.create_index("ix_tokens_parent_hash", "tokens", ["parent_hash"])


def downgrade() -> None:
    op.drop_index("ix_tokens_parent_hash", table_name="tokens")
    op.drop_column("tokens", "parent_hash")
