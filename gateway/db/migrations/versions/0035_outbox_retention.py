"""Applied outbox entries are pruned: an index that finds them by when they were applied.

Dual workspaces' relays (gateway/dual/outbox.py) mark each entry the central store took `done`, with
`done_at`, and delete those applied more than `server.outbox_history_days` ago, in batches, every ten minutes
per process. This partial index (done entries only; `outbox_due` and `outbox_pending_key` hold the pending)
lets each prune, and the link status's count of the last minute's entries, read those rows alone instead of
the whole table.

Revision ID: 0035
Revises: 0034
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0035"
down_revision = "0034"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("outbox_done", "outbox", ["done_at"], postgresql_where=sa.text("state = 'done'"))


def downgrade() -> None:
    op.drop_index("outbox_done", table_name="outbox")
