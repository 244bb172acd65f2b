"""Promotions of model versions between workspaces in the registry's activity log.

`registry_activities` accepts two more types: PROMOTED_TO_WORKSPACE (on the source version: it was copied
into another workspace's registry) and PROMOTED_FROM_WORKSPACE (on the copy: where it came from). The log
stays append-only (a check constraint changes no row).

Revision ID: 0021
Revises: 0020
"""

from __future__ import annotations

from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

BEFORE = (
    "'APPLIED_TRANSITION', 'REQUESTED_TRANSITION', 'CANCELLED_REQUEST', 'APPROVED_REQUEST', "
    "'REJECTED_REQUEST', 'NEW_COMMENT', 'SYSTEM_TRANSITION', "
    "'REQUESTED_ALIAS', 'APPROVED_ALIAS_REQUEST', 'REJECTED_ALIAS_REQUEST', 'CANCELLED_ALIAS_REQUEST', "
    "'SET_ALIAS', 'DELETED_ALIAS'"
)
PROMOTION_TYPES = "'PROMOTED_TO_WORKSPACE', 'PROMOTED_FROM_WORKSPACE'"


def upgrade() -> None:
    op.drop_constraint("registry_activities_type", "registry_activities", type_="check")
    op.create_check_constraint(
        "registry_activities_type", "registry_activities", f"activity_type IN ({BEFORE}, {PROMOTION_TYPES})"
    )


def downgrade() -> None:
    op.execute("ALTER TABLE registry_activities DISABLE TRIGGER registry_activities_append_only")
    op.execute(f"DELETE FROM registry_activities WHERE activity_type IN ({PROMOTION_TYPES})")  # noqa: S608 (constants)
    op.execute("ALTER TABLE registry_activities ENABLE TRIGGER registry_activities_append_only")
    op.drop_constraint("registry_activities_type", "registry_activities", type_="check")
    op.create_check_constraint("registry_activities_type", "registry_activities", f"activity_type IN ({BEFORE})")
