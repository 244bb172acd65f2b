"""Principals, group membership, tokens, grants, registered-model ids, policy version, audit log.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

NOW = sa.func.now()


def upgrade() -> None:
    op.create_table(
        "principals",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("display_name", sa.Text, nullable=False, server_default=""),
        sa.Column("external_id", sa.Text),
        sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("account_admin", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.CheckConstraint("kind IN ('user', 'service_principal', 'group')", name="principals_kind"),
        sa.UniqueConstraint("kind", "name", name="principals_kind_name"),
    )
    op.create_table(
        "group_members",
        sa.Column("group_id", sa.BigInteger, sa.ForeignKey("principals.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("member_id", sa.BigInteger, sa.ForeignKey("principals.id", ondelete="CASCADE"), primary_key=True),
    )
    op.create_index("group_members_member", "group_members", ["member_id"])
    op.create_table(
        "tokens",
        sa.Column("token_id", sa.String(64), primary_key=True),
        sa.Column("principal_id", sa.BigInteger, sa.ForeignKey("principals.id", ondelete="CASCADE"), nullable=False),
        sa.Column("token_hash", sa.LargeBinary, nullable=False, unique=True),
        sa.Column("comment", sa.Text, nullable=False, server_default=""),
        sa.Column("created_by", sa.BigInteger),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("expires_at", sa.DateTime(timezone=True)),
    )
    op.create_index("tokens_principal", "tokens", ["principal_id"])
    op.create_table(
        "grants",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("principal_id", sa.BigInteger, sa.ForeignKey("principals.id", ondelete="CASCADE"), nullable=False),
        sa.Column("domain", sa.String(32), nullable=False),
        sa.Column("object", sa.String(300), nullable=False),
        sa.Column("privilege", sa.String(40), nullable=False),
        sa.Column("created_by", sa.Text, nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.UniqueConstraint("principal_id", "domain", "object", "privilege", name="grants_unique"),
        # The same strict character set the policy loader enforces: a comma would corrupt a Casbin reload.
        sa.CheckConstraint("object ~ '^[A-Za-z0-9_.:/-]+$'", name="grants_object_charset"),
        sa.CheckConstraint("domain ~ '^[a-z0-9]+$'", name="grants_domain_charset"),
        sa.CheckConstraint("privilege ~ '^[A-Z_]+$'", name="grants_privilege_charset"),
    )
    op.create_index("grants_object", "grants", ["domain", "object"])
    op.create_table(
        "registered_models",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("workspace_id", sa.BigInteger, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.UniqueConstraint("workspace_id", "name", name="registered_models_name"),
    )
    op.create_table(
        "policy_version",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("version", sa.BigInteger, nullable=False),
    )
    op.execute("INSERT INTO policy_version (id, version) VALUES (1, 1)")
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.Text, nullable=False, server_default=""),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("details", JSONB, nullable=False, server_default="{}"),
        sa.Column("request_id", sa.String(64), nullable=False, server_default=""),
    )
    op.create_index("audit_log_at", "audit_log", ["at"])
    op.execute(
        """
        CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'audit_log is append-only';
        END $$;
        """
    )
    op.execute(
        "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
        "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()"
    )
    op.create_table(
        "gateway_secrets",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.LargeBinary, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("gateway_secrets")
    op.execute("DROP TRIGGER audit_log_append_only ON audit_log")
    op.execute("DROP FUNCTION audit_log_append_only()")
    op.drop_table("audit_log")
    op.drop_table("policy_version")
    op.drop_table("registered_models")
    op.drop_table("grants")
    op.drop_table("tokens")
    op.drop_table("group_members")
    op.drop_table("principals")
