"""Old alert evaluations are pruned in batches: an index that finds them by when they finished.

The alert scheduler (gateway/alerts/scheduler.py) deletes the evaluations finished more than
`alerts.history_days` ago, PRUNE_BATCH per transaction. Without this index each batch read the table from the
start until it found a batch's worth of old rows, so a backlog of millions cost as many scans as batches.

Revision ID: 0038
Revises: 0037
"""

from __future__ import annotations

from alembic import op

revision = "0038"
down_revision = "0037"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("sql_alert_evaluations_finished", "sql_alert_evaluations", ["finished_at"])


def downgrade() -> None:
    op.drop_index("sql_alert_evaluations_finished", table_name="sql_alert_evaluations")
