"""Promotions that need an approved request: a workspace's setting and the requests themselves.

- `registry_promotion_settings`: per target workspace, whether a promotion into it needs an approved request
  (set by a workspace manager; no row: it does not).
- `registry_promotion_requests`: a request to copy a version of another workspace into this one, open until
  approved (the copy made), rejected or cancelled; one open request per source version, target model and
  requester.
- `registry_activities` accepts REQUESTED_PROMOTION, APPROVED_PROMOTION, REJECTED_PROMOTION and
  CANCELLED_PROMOTION, on the source version's log (the target model may not exist before the approval).

Revision ID: 0026
Revises: 0025
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None

BEFORE = (
    "'APPLIED_TRANSITION', 'REQUESTED_TRANSITION', 'CANCELLED_REQUEST', 'APPROVED_REQUEST', "
    "'REJECTED_REQUEST', 'NEW_COMMENT', 'SYSTEM_TRANSITION', "
    "'REQUESTED_ALIAS', 'APPROVED_ALIAS_REQUEST', 'REJECTED_ALIAS_REQUEST', 'CANCELLED_ALIAS_REQUEST', "
    "'SET_ALIAS', 'DELETED_ALIAS', 'PROMOTED_TO_WORKSPACE', 'PROMOTED_FROM_WORKSPACE'"
)
REQUEST_TYPES = "'REQUESTED_PROMOTION', 'APPROVED_PROMOTION', 'REJECTED_PROMOTION', 'CANCELLED_PROMOTION'"


def upgrade() -> None:
    op.create_table(
        "registry_promotion_settings",
        sa.Column("workspace_id", sa.BigInteger, primary_key=True),
        sa.Column("need_approval", sa.Boolean, nullable=False),
        sa.Column("updated_by", sa.Text, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_table(
        "registry_promotion_requests",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("workspace_id", sa.BigInteger, nullable=False),  # the target workspace
        sa.Column("source_workspace_id", sa.BigInteger, nullable=False),
        sa.Column("source_model_id", sa.String(32), nullable=False),
        sa.Column("source_name", sa.Text, nullable=False),  # <workspace>.<model> as requested
        sa.Column("source_version", sa.String(20), nullable=False),
        sa.Column("target_name", sa.Text, nullable=False),
        sa.Column("requested_by", sa.Text, nullable=False),
        sa.Column("requested_by_id", sa.BigInteger),  # principals.id (NULL: the bootstrap admin)
        sa.Column("comment", sa.Text),
        sa.Column("state", sa.String(12), nullable=False, server_default="open"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("decided_at", sa.DateTime(timezone=True)),
        sa.Column("decided_by", sa.Text),
        sa.Column("decision_comment", sa.Text),
        sa.Column("target_version", sa.String(20)),  # the copy, once approved
        sa.CheckConstraint(
            "state IN ('open', 'approved', 'rejected', 'cancelled')", name="registry_promotion_requests_state"
        ),
    )
    op.create_index(
        "registry_promotion_requests_open",
        "registry_promotion_requests",
        ["workspace_id", "source_model_id", "source_version", "target_name", "requested_by"],
        unique=True,
        postgresql_where=sa.text("state = 'open'"),
    )
    op.create_index("registry_promotion_requests_by_workspace", "registry_promotion_requests", ["workspace_id", "id"])
    op.drop_constraint("registry_activities_type", "registry_activities", type_="check")
    op.create_check_constraint(
        "registry_activities_type", "registry_activities", f"activity_type IN ({BEFORE}, {REQUEST_TYPES})"
    )


def downgrade() -> None:
    op.execute("ALTER TABLE registry_activities DISABLE TRIGGER registry_activities_append_only")
    op.execute(f"DELETE FROM registry_activities WHERE activity_type IN ({REQUEST_TYPES})")  # noqa: S608 (constants)
    op.execute("ALTER TABLE registry_activities ENABLE TRIGGER registry_activities_append_only")
    op.drop_constraint("registry_activities_type", "registry_activities", type_="check")
    op.create_check_constraint("registry_activities_type", "registry_activities", f"activity_type IN ({BEFORE})")
    op.drop_table("registry_promotion_requests")
    op.drop_table("registry_promotion_settings")
