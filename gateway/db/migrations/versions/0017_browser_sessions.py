"""Browser sessions of the web UI, and the OIDC sign-ins under way, kept server-side for every replica.

A browser holds only an opaque random id in a cookie; a row is found by the SHA-256 of that id, so the
table alone signs nobody in. A session names its principal, how it signed in (`token`: the hash of the
personal access token it was made with, which must still authenticate; `oidc`: the identity provider's
groups), when it must end (`expires_at`, the absolute lifetime or the credential's expiry) and when it was last used
(the idle lifetime). Sign-out deletes the row. A sign-in attempt holds the OIDC state, nonce and PKCE
verifier between the redirect to the provider and its answer, for ten minutes at most, and is used once.

Revision ID: 0017
Revises: 0016
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "browser_sessions",
        sa.Column("id_hash", sa.LargeBinary, primary_key=True),
        sa.Column("principal_id", sa.BigInteger, sa.ForeignKey("principals.id", ondelete="CASCADE"), nullable=False),
        sa.Column("via", sa.String(16), nullable=False),
        sa.Column("token_hash", sa.LargeBinary, nullable=True),
        sa.Column("groups", JSONB, nullable=False, server_default="[]"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("browser_sessions_principal", "browser_sessions", ["principal_id"])
    op.create_index("browser_sessions_expiry", "browser_sessions", ["expires_at"])
    op.create_table(
        "sign_in_attempts",
        sa.Column("id_hash", sa.LargeBinary, primary_key=True),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("nonce", sa.Text, nullable=False),
        sa.Column("code_verifier", sa.Text, nullable=False),
        sa.Column("next_path", sa.Text, nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("sign_in_attempts_expiry", "sign_in_attempts", ["expires_at"])


def downgrade() -> None:
    op.drop_table("sign_in_attempts")
    op.drop_table("browser_sessions")
