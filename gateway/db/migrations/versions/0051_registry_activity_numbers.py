"""A registered model's activities are numbered per model, not by one sequence across the account.

`registry_activities.id` comes from one sequence for every workspace. It was what the API showed (`Activity.id`,
the `page_token` of `activities/list`, the ids of open transition and alias requests, `activity_id` in webhook
payloads), so a reader of one model learned, from the gaps between its activities' ids, how much registry activity
went on in workspaces they may not see. Each row now holds `number`: 1, 2, 3, ... within its model (the gateway's
immutable id of it), given when the row is appended, under a transaction-scoped advisory lock on the model
(`LockClass.REGISTRY_ACTIVITY`), so two appends never take one number and a model's numbers grow in the order their
rows become visible. The API shows and pages by it; `id` stays the row's key, never shown.

The backfill numbers each model's rows in the order of their ids. The log is append-only (migration 0016: its
trigger refuses an UPDATE that changes more than `workspace_id`), so the trigger is off for the backfill only, in
this migration's transaction (ALTER TABLE holds the table's exclusive lock until it commits: no write slips by).

Revision ID: 0051
Revises: 0050
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0051"
down_revision = "0050"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("registry_activities", sa.Column("number", sa.BigInteger))
    op.execute("ALTER TABLE registry_activities DISABLE TRIGGER registry_activities_append_only")
    op.execute(
        """
        UPDATE registry_activities a SET number = n.number
        FROM (SELECT id, row_number() OVER (PARTITION BY model_id ORDER BY id) AS number FROM registry_activities) n
        WHERE a.id = n.id
        """
    )
    op.execute("ALTER TABLE registry_activities ENABLE TRIGGER registry_activities_append_only")
    op.alter_column("registry_activities", "number", nullable=False)
    op.create_index("registry_activities_number", "registry_activities", ["model_id", "number"], unique=True)
    op.create_index("registry_activities_version_number", "registry_activities", ["model_id", "version", "number"])


def downgrade() -> None:
    op.drop_index("registry_activities_version_number", "registry_activities")
    op.drop_index("registry_activities_number", "registry_activities")
    op.drop_column("registry_activities", "number")
