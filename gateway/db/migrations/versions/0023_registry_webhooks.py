"""Registry webhooks of the gateway's own workflow events, and their durable deliveries.

- `registry_webhooks`: Databricks' registry webhook (one model's, or registry-wide when `model_id` is NULL),
  per workspace: the events it wants, its URL (on the operator's allow-list when created and when each
  delivery is sent), its HMAC secret and Authorization header value (never answered, never logged), status.
- `registry_webhook_deliveries`: one POST to make, written in the transaction of the activity it reports, so
  an event is never lost nor sent for a decision that was rolled back. A delivery is claimed by one gateway
  process at a time (`FOR UPDATE SKIP LOCKED`, and `next_attempt_at` moved past the claim's lease) and retried
  with a growing delay until it is delivered or has used its attempts.

Revision ID: 0023
Revises: 0022
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "registry_webhooks",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("workspace_id", sa.BigInteger, nullable=False),
        sa.Column("model_id", sa.String(32)),
        sa.Column("events", JSONB, nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("secret", sa.Text),
        sa.Column("authorization", sa.Text),
        sa.Column("enable_ssl_verification", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("status", sa.String(16), nullable=False, server_default="ACTIVE"),
        sa.Column("description", sa.Text),
        sa.Column("created_by", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("status IN ('ACTIVE', 'TEST_MODE', 'DISABLED')", name="registry_webhooks_status"),
    )
    op.create_index("registry_webhooks_model", "registry_webhooks", ["workspace_id", "model_id"])
    op.create_table(
        "registry_webhook_deliveries",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("webhook_id", sa.String(32), nullable=False),
        sa.Column("workspace_id", sa.BigInteger, nullable=False),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("state", sa.String(12), nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("last_status", sa.Integer),
        sa.Column("last_error", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("delivered_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint("state IN ('pending', 'delivered', 'failed')", name="registry_webhook_deliveries_state"),
    )
    op.create_index(
        "registry_webhook_deliveries_due",
        "registry_webhook_deliveries",
        ["next_attempt_at", "id"],
        postgresql_where=sa.text("state = 'pending'"),
    )
    op.create_index("registry_webhook_deliveries_webhook", "registry_webhook_deliveries", ["webhook_id", "id"])


def downgrade() -> None:
    op.drop_table("registry_webhook_deliveries")
    op.drop_table("registry_webhooks")
