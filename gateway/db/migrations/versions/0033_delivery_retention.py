"""Settled deliveries are pruned: an index that finds them by their last attempt.

The delivery loop (gateway/delivery/worker.py) deletes delivered and failed deliveries of registry webhooks
and SQL alerts whose last attempt is older than the feature's `history_days`, in batches, every ten minutes
per process. Every attempt moves `next_attempt_at` past itself, so a settled row's `next_attempt_at` dates its
last attempt; these partial indexes (settled rows only; the `_due` ones hold the pending) let each prune read
the old rows alone instead of the whole table.

Revision ID: 0033
Revises: 0032
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0033"
down_revision = "0032"
branch_labels = None
depends_on = None

TABLES = ("registry_webhook_deliveries", "sql_alert_deliveries")


def upgrade() -> None:
    for table in TABLES:
        op.create_index(f"{table}_settled", table, ["next_attempt_at"], postgresql_where=sa.text("state <> 'pending'"))


def downgrade() -> None:
    for table in TABLES:
        op.drop_index(f"{table}_settled", table_name=table)
