"""What each caller without a permission on a secret scope has learnt from the leak guard about its values.

The leak guard refuses a write of a run that read a secret when the write holds the secret's value. To someone
who may edit the run but may not read the secret, that answer is an oracle: a short value (a PIN, a short
password) can be guessed by writing candidates and watching which write is refused. One row per caller and
scope (of a workspace) counts, across replicas, what such a caller spent in the current window: the text its
writes to runs that read the scope's secrets carried, the refusals it got, the checks in flight, and until when
it is locked out (gateway/secrets/probes.py). Callers who hold a permission on the scope (they may read the
values anyway) have no row. No value and nothing derived from one is kept.

Revision ID: 0045
Revises: 0044
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0045"
down_revision = "0044"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "secret_leak_probes",
        sa.Column("principal", sa.Text, nullable=False),
        sa.Column("workspace_id", sa.BigInteger, nullable=False),
        sa.Column("scope", sa.String(128), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("text_bytes", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("refusals", sa.Integer, nullable=False, server_default="0"),
        sa.Column("pending", sa.Integer, nullable=False, server_default="0"),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("principal", "workspace_id", "scope", name="secret_leak_probes_pkey"),
    )


def downgrade() -> None:
    op.drop_table("secret_leak_probes")
