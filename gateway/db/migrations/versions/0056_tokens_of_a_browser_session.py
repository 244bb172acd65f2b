"""A personal access token created in a browser session records the session, and is revoked when it is ended.

Tokens created in a browser session already expired no later than the session; now they also end when the session
is ended: signed out, ended by its owner or an account admin (`/api/2.0/fedgate/sessions/end`, `end-all`), or
replaced by a new sign-in of the browser. Before, a session cookie stolen and used to mint a token left the thief
a working token until the session's absolute end (up to `ui.session_max_seconds`) after the person signed out or
an account admin ended every session of theirs. The column holds the SHA-256 of the session's id, as
`browser_sessions.id_hash` does; there is no foreign key, since a session that idles out or reaches its end is
forgotten without ending its tokens (their expiry already bounds them). Existing tokens have no recorded session.

Revision ID: 0056
Revises: 0055
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0056"
down_revision = "0055"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("tokens", sa.Column("session_hash", sa.LargeBinary, nullable=True))
    op.create_index("ix_tokens_session_hash", "tokens", ["session_hash"])


def downgrade() -> None:
    op.drop_index("ix_tokens_session_hash", table_name="tokens")
    op.drop_column("tokens", "session_hash")
