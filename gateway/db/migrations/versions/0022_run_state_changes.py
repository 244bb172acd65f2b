"""Versions of runs' states, so a worker may trust its own recent check that a run is RUNNING.

A run's read of a secret needs the run RUNNING; the store answering runs/get is the truth, and a worker
keeps its answer for a few seconds (gateway/secrets/runstate.py). Every call through the gateway that may
end or delete runs bumps `version` of its subject (`run:<run id>`, or `workspace:<id>` for a call that
changes many runs) before it is sent, and again once the store answered; `in_flight` counts the changes
sent and not yet answered (`changed_at` tells how long ago, so a worker that died mid-way is outlived).
A read trusts a worker's earlier check only while the versions are those it read before asking the store
and no change is in flight. Rows are small and never removed: at most one per run ended through the gateway.

Revision ID: 0022
Revises: 0021
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "run_state_changes",
        sa.Column("subject", sa.Text, primary_key=True),
        sa.Column("version", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("in_flight", sa.Integer, nullable=False, server_default="0"),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )


def downgrade() -> None:
    op.drop_table("run_state_changes")
