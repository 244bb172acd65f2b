"""The model registry workflow: stage transition requests, comments, and the append-only activity log.

Every row names its model by the gateway's immutable id of it (`registered_models.id`, minted on first
sight and kept across renames) and its workspace by the account-wide id, so renames keep a model's log
and gateway/registry/moves.py can carry rows to a new workspace id or drop them with the workspace.

- `registry_requests`: a request to move a version to a stage, open until approved, rejected or
  cancelled. One open request per user, version and stage (a partial unique index).
- `registry_comments`: comments on a version; edited and deleted by their author or a model manager.
- `registry_activities`: what happened, in Databricks' Activity shape. Append-only: a trigger refuses
  UPDATE (but one that only moves the row to another workspace id), DELETE (but the workspace's own
  removal, which sets `fedgate.registry_drop` for its transaction) and TRUNCATE.

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

STAGES = "'None', 'Staging', 'Production', 'Archived'"
ACTIVITY_TYPES = (
    "'APPLIED_TRANSITION', 'REQUESTED_TRANSITION', 'CANCELLED_REQUEST', 'APPROVED_REQUEST', "
    "'REJECTED_REQUEST', 'NEW_COMMENT', 'SYSTEM_TRANSITION'"
)


def upgrade() -> None:
    op.create_table(
        "registry_requests",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("workspace_id", sa.BigInteger, nullable=False),
        sa.Column("model_id", sa.String(32), nullable=False),
        sa.Column("version", sa.String(20), nullable=False),
        sa.Column("to_stage", sa.String(16), nullable=False),
        sa.Column("requested_by", sa.Text, nullable=False),
        sa.Column("comment", sa.Text),
        sa.Column("state", sa.String(12), nullable=False, server_default="open"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("decided_at", sa.DateTime(timezone=True)),
        sa.Column("decided_by", sa.Text),
        sa.CheckConstraint(f"to_stage IN ({STAGES})", name="registry_requests_stage"),
        sa.CheckConstraint("state IN ('open', 'approved', 'rejected', 'cancelled')", name="registry_requests_state"),
    )
    op.create_index("registry_requests_version", "registry_requests", ["model_id", "version"])
    op.create_index(
        "registry_requests_one_open",
        "registry_requests",
        ["model_id", "version", "to_stage", "requested_by"],
        unique=True,
        postgresql_where=sa.text("state = 'open'"),
    )

    op.create_table(
        "registry_comments",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("workspace_id", sa.BigInteger, nullable=False),
        sa.Column("model_id", sa.String(32), nullable=False),
        sa.Column("version", sa.String(20), nullable=False),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("comment", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_index("registry_comments_version", "registry_comments", ["model_id", "version"])

    op.create_table(
        "registry_activities",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("workspace_id", sa.BigInteger, nullable=False),
        sa.Column("model_id", sa.String(32), nullable=False),
        sa.Column("version", sa.String(20), nullable=False),
        sa.Column("activity_type", sa.String(24), nullable=False),
        sa.Column("from_stage", sa.String(16)),
        sa.Column("to_stage", sa.String(16)),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("comment", sa.Text),
        sa.Column("system_comment", sa.Text),
        sa.Column("request_id", sa.BigInteger),
        sa.Column("comment_id", sa.String(32)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint(f"activity_type IN ({ACTIVITY_TYPES})", name="registry_activities_type"),
    )
    op.create_index("registry_activities_log", "registry_activities", ["model_id", "version", "id"])
    op.execute(
        """
        CREATE FUNCTION registry_activities_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'UPDATE' AND (to_jsonb(NEW) - 'workspace_id') = (to_jsonb(OLD) - 'workspace_id') THEN
                RETURN NEW;  -- the workspace got another id: its log follows it
            END IF;
            IF TG_OP = 'DELETE' AND current_setting('fedgate.registry_drop', true) = 'workspace' THEN
                RETURN OLD;  -- the workspace was unlinked or moved to another store
            END IF;
            RAISE EXCEPTION 'registry_activities is append-only';
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER registry_activities_append_only BEFORE UPDATE OR DELETE ON registry_activities "
        "FOR EACH ROW EXECUTE FUNCTION registry_activities_append_only()"
    )
    op.execute(
        "CREATE TRIGGER registry_activities_no_truncate BEFORE TRUNCATE ON registry_activities "
        "FOR EACH STATEMENT EXECUTE FUNCTION registry_activities_append_only()"
    )


def downgrade() -> None:
    op.drop_table("registry_activities")
    op.execute("DROP FUNCTION registry_activities_append_only()")
    op.drop_table("registry_comments")
    op.drop_table("registry_requests")
