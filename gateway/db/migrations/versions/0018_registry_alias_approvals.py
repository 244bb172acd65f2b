"""Protected aliases of registered models, and requests to move them, in the registry workflow.

- `registry_model_settings`: per model (the gateway's immutable id), the aliases whose moves ask what a move
  into Production asks (`protected_aliases`, e.g. `["champion"]`), who set them and when.
- `registry_requests` also holds requests to point an alias at a version: `alias` is set and `to_stage` is
  NULL (exactly one of the two). One open request per user, version and alias (a partial unique index, as
  for stages).
- `registry_activities` gains `alias` and the alias activities: REQUESTED_ALIAS, APPROVED_ALIAS_REQUEST,
  REJECTED_ALIAS_REQUEST, CANCELLED_ALIAS_REQUEST, SET_ALIAS and DELETED_ALIAS. The log stays append-only
  (adding a column fires no row trigger).

Revision ID: 0018
Revises: 0017
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

STAGE_TYPES = (
    "'APPLIED_TRANSITION', 'REQUESTED_TRANSITION', 'CANCELLED_REQUEST', 'APPROVED_REQUEST', "
    "'REJECTED_REQUEST', 'NEW_COMMENT', 'SYSTEM_TRANSITION'"
)
ALIAS_TYPES = (
    "'REQUESTED_ALIAS', 'APPROVED_ALIAS_REQUEST', 'REJECTED_ALIAS_REQUEST', 'CANCELLED_ALIAS_REQUEST', "
    "'SET_ALIAS', 'DELETED_ALIAS'"
)


def upgrade() -> None:
    op.create_table(
        "registry_model_settings",
        sa.Column("model_id", sa.String(32), primary_key=True),
        sa.Column("workspace_id", sa.BigInteger, nullable=False),
        sa.Column("protected_aliases", JSONB, nullable=False, server_default="[]"),
        sa.Column("updated_by", sa.Text, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_index("registry_model_settings_workspace", "registry_model_settings", ["workspace_id"])

    op.add_column("registry_requests", sa.Column("alias", sa.String(256)))
    op.alter_column("registry_requests", "to_stage", nullable=True)
    op.create_check_constraint(
        "registry_requests_stage_or_alias", "registry_requests", "(to_stage IS NULL) <> (alias IS NULL)"
    )
    op.create_index(
        "registry_requests_one_open_alias",
        "registry_requests",
        ["model_id", "version", "alias", "requested_by"],
        unique=True,
        postgresql_where=sa.text("state = 'open' AND alias IS NOT NULL"),
    )

    op.add_column("registry_activities", sa.Column("alias", sa.String(256)))
    op.drop_constraint("registry_activities_type", "registry_activities", type_="check")
    op.create_check_constraint(
        "registry_activities_type", "registry_activities", f"activity_type IN ({STAGE_TYPES}, {ALIAS_TYPES})"
    )


def downgrade() -> None:
    op.execute("ALTER TABLE registry_activities DISABLE TRIGGER registry_activities_append_only")
    op.execute("DELETE FROM registry_activities WHERE alias IS NOT NULL")
    op.execute("ALTER TABLE registry_activities ENABLE TRIGGER registry_activities_append_only")
    op.drop_constraint("registry_activities_type", "registry_activities", type_="check")
    op.create_check_constraint("registry_activities_type", "registry_activities", f"activity_type IN ({STAGE_TYPES})")
    op.drop_column("registry_activities", "alias")
    op.execute("DELETE FROM registry_requests WHERE alias IS NOT NULL")
    op.drop_index("registry_requests_one_open_alias", "registry_requests")
    op.drop_constraint("registry_requests_stage_or_alias", "registry_requests", type_="check")
    op.alter_column("registry_requests", "to_stage", nullable=False)
    op.drop_column("registry_requests", "alias")
    op.drop_table("registry_model_settings")
