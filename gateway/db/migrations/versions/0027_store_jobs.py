"""Jobs of a store's job runner started through the gateway, and what starting each needed.

- `store_jobs`: (workspace, job id) of every job the gateway started (scorers, evaluations, issue detection,
  prompt optimisation), read from the store's answer, with the checks its start passed (`needs`: experiments,
  the prompt's registered model, the workspace). A job is read, cancelled or listed through the gateway only
  when it is recorded here and the caller passes those checks again.

Revision ID: 0027
Revises: 0026
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "store_jobs",
        sa.Column("workspace_id", sa.BigInteger, primary_key=True),
        sa.Column("job_id", sa.String(64), primary_key=True),
        sa.Column("job_name", sa.String(64), nullable=False),
        sa.Column("needs", JSONB, nullable=False),
        sa.Column("run_id", sa.String(64)),
        sa.Column("created_by", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )


def downgrade() -> None:
    op.drop_table("store_jobs")
