"""Browser sessions name themselves to their owner: a public handle, the browser's user agent and address.

A person lists their sessions and ends one, or all others, and an account admin those of any user
(gateway/ui/sessions_api.py). A session is named there by `handle`, a random value of its own that
authenticates nothing (the cookie's id and its hash are never shown); `user_agent` and `ip_address` are
what the browser sent and where from when it signed in. Sessions made before this revision get a handle
now and no user agent or address.

Revision ID: 0029
Revises: 0028
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0029"
down_revision = "0028"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "browser_sessions",
        sa.Column(
            "handle",
            sa.String(32),
            nullable=False,
            server_default=sa.text("replace(gen_random_uuid()::text, '-', '')"),
        ),
    )
    op.add_column("browser_sessions", sa.Column("user_agent", sa.Text, nullable=True))
    op.add_column("browser_sessions", sa.Column("ip_address", sa.String(64), nullable=True))
    op.create_index("browser_sessions_handle", "browser_sessions", ["handle"], unique=True)


def downgrade() -> None:
    op.drop_index("browser_sessions_handle", "browser_sessions")
    op.drop_column("browser_sessions", "ip_address")
    op.drop_column("browser_sessions", "user_agent")
    op.drop_column("browser_sessions", "handle")
