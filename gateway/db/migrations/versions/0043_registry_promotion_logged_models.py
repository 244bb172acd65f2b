"""The logged models promotions made: which one the gateway created for which lineage, in which target workspace.

A promotion copies a version's files into a logged model of the target workspace's `fedgate-promotions`
experiment and, on a retry, takes up the logged model an earlier attempt made. It found that one, and the version
it had made, by the lineage tag alone, which anyone who could write to that experiment (or to the store directly)
could set on a logged model or version of their own files: the promotion then answered or served theirs as the
copy. A promotion now reuses only a logged model recorded here (`registry_promotion_logged_models`: target
workspace, the logged model's id, the lineage key, the target model's name and the experiment it was made in), and
takes a version for its copy only when it holds one of them (its `source` `models:/<id>`).

Revision ID: 0043
Revises: 0042
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0043"
down_revision = "0042"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "registry_promotion_logged_models",
        sa.Column("workspace_id", sa.BigInteger, nullable=False),  # the target workspace
        sa.Column("model_id", sa.Text, nullable=False),  # the logged model's id in the target store
        sa.Column("lineage_key", sa.Text, nullable=False),  # w<workspace id>/<model id>/<version> of the source
        sa.Column("target_name", sa.Text, nullable=False),
        sa.Column("experiment_id", sa.Text, nullable=False),
        sa.Column("created_by", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("workspace_id", "model_id"),
    )
    op.create_index(
        "registry_promotion_logged_models_lineage",
        "registry_promotion_logged_models",
        ["workspace_id", "lineage_key"],
    )


def downgrade() -> None:
    op.drop_index("registry_promotion_logged_models_lineage", table_name="registry_promotion_logged_models")
    op.drop_table("registry_promotion_logged_models")
