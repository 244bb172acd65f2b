"""Which runs read which secrets: the leak guard refuses a write of such a run that carries a secret's value.

One row per run, scope and key, written when a read of a running run was answered (never for a refused
one), with the time of the first read. No value and no hash of a value is kept: to check a write of the
run, the gateway reads the secrets again from their vault. `run_id` is lower-cased (MLflow's run ids are
lower-case hex) and is what a write is looked up by; `workspace_id` keys the rows for workspace moves.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "run_secret_reads",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("workspace_id", sa.BigInteger, nullable=False),
        sa.Column("run_id", sa.String(256), nullable=False),
        sa.Column("scope", sa.String(128), nullable=False),
        sa.Column("key", sa.String(128), nullable=False),
        sa.Column("first_read_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.UniqueConstraint("workspace_id", "run_id", "scope", "key", name="run_secret_reads_unique"),
    )
    op.create_index("run_secret_reads_run", "run_secret_reads", ["run_id"])


def downgrade() -> None:
    op.drop_table("run_secret_reads")
