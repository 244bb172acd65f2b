"""The built-in vault keeps secret values in PostgreSQL, each sealed (AES-256-GCM) under a key of its own id.

One row per secret: its location (a workspace's secret scope, `w<id>/<scope>`) and key, the id of the
key that sealed it, the nonce and the ciphertext (GCM's tag at its end). Keys are never stored here;
the gateway holds them (gateway/core/sealing.py). `updated_at` is when the value was last put;
re-encrypting it under another key (rotation) leaves it as it is.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "vault_values",
        sa.Column("location", sa.String(200), primary_key=True),
        sa.Column("key", sa.String(128), primary_key=True),
        sa.Column("kid", sa.String(32), nullable=False),
        sa.Column("nonce", sa.LargeBinary, nullable=False),
        sa.Column("ciphertext", sa.LargeBinary, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("octet_length(nonce) = 12", name="vault_values_nonce_96_bits"),
        sa.CheckConstraint("octet_length(ciphertext) >= 16", name="vault_values_ciphertext_has_tag"),
    )


def downgrade() -> None:
    op.drop_table("vault_values")
