"""Write intents: writes noted before they are sent, so a crash between the store's answer and the after-write
hooks is recovered within seconds (gateway/federation/intents.py).

`owner` is the presence id of the worker that sent the write (an advisory lock it holds while it lives;
0: nobody, the outcome is unknown and recovery is due); `looks` counts recoveries made (a young write is
looked at twice).

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

NOW = sa.func.now()


def upgrade() -> None:
    op.create_table(
        "write_intents",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("owner", sa.BigInteger, nullable=False),
        sa.Column("workspace_id", sa.BigInteger, nullable=False),
        sa.Column("route", sa.String(120), nullable=False),
        sa.Column("version", sa.Integer, nullable=False, server_default="2"),
        sa.Column("detail", JSONB, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("looks", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text, nullable=False, server_default=""),
    )
    op.create_index("write_intents_owner", "write_intents", ["owner"])


def downgrade() -> None:
    op.drop_table("write_intents")
