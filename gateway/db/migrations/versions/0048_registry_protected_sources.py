"""Where the files of the protected model versions lie, so the guard can keep editors of an experiment off them.

A model version's files stay in its source run's or logged model's artifact folder. A version in Staging or
Production, or holding an alias, is served by that folder: anyone who could write to the experiment (CAN_EDIT)
changed what Production serves without the right the registered model asks for that (docs/registry.md,
"A protected version's files"). `registry_protected_sources` holds one row per protected version: the artifact path
of its files (the store's download location, without a `workspaces/<name>/` prefix), the experiment, run or logged
model they lie in, and the version's stage and aliases; the registry writes them after every change that may move
a stage or an alias. `registry_protection_scans` says which workspaces' stores were read whole once (versions
protected before this migration, or changed while a refresh failed): a workspace without a row is read again
before its next artifact write is decided.

Revision ID: 0048
Revises: 0047
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0048"
down_revision = "0047"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "registry_protected_sources",
        sa.Column("workspace_id", sa.BigInteger, nullable=False),
        sa.Column("model_id", sa.String(32), nullable=False),  # the gateway's id of the registered model
        sa.Column("version", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),  # the model's name when the row was written
        sa.Column("stage", sa.Text, nullable=False),  # "Staging", "Production" or ""
        sa.Column("aliases", postgresql.JSONB, nullable=False),
        sa.Column("path", sa.Text, nullable=False),  # <experiment>/<run>/artifacts/model, <experiment>/models/<m>/...
        sa.Column("experiment_id", sa.Text, nullable=False),
        sa.Column("object_id", sa.Text, nullable=False),  # the run or logged model the files lie in
        sa.Column("object_path", sa.Text, nullable=False),  # the files' path within it ("" the whole of it)
        sa.PrimaryKeyConstraint("workspace_id", "model_id", "version"),
    )
    op.create_index(
        "registry_protected_sources_experiment", "registry_protected_sources", ["workspace_id", "experiment_id"]
    )
    op.create_index("registry_protected_sources_object", "registry_protected_sources", ["workspace_id", "object_id"])
    op.create_table(
        "registry_protection_scans",
        sa.Column("workspace_id", sa.BigInteger, primary_key=True),
        sa.Column("scanned_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )


def downgrade() -> None:
    op.drop_table("registry_protection_scans")
    op.drop_index("registry_protected_sources_object", table_name="registry_protected_sources")
    op.drop_index("registry_protected_sources_experiment", table_name="registry_protected_sources")
    op.drop_table("registry_protected_sources")
