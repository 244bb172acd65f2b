"""SQL alerts: a query, a condition on its result, a schedule, notifications; their evaluations and deliveries.

- `sql_alerts`: the alert (Databricks' SQL alerts API), its owner (whose grants the query runs with: NULL is the
  bootstrap admin), its query (a saved query's id, or the text itself), condition, Quartz schedule in a time zone,
  subscriptions (e-mail addresses, webhook URLs with their HMAC secrets: never answered, never logged), its state,
  and `next_run_at`: the fire time the scheduler of any gateway process claims it at (`FOR UPDATE SKIP LOCKED`,
  moved to the next fire time after now in the same statement's transaction), so one process evaluates each tick
  and fire times missed while no gateway ran collapse into one evaluation.
- `sql_alert_evaluations`: the history: each evaluation's trigger, the fire time it stands for, state, value,
  error, the statement it ran and how many notifications it queued.
- `sql_alert_deliveries`: one notification to send (a signed webhook POST or an e-mail), written in the
  evaluation's transaction, claimed with `FOR UPDATE SKIP LOCKED` and retried like registry webhook deliveries.

Revision ID: 0024
Revises: 0023
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sql_alerts",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("display_name", sa.Text, nullable=False),
        sa.Column("owner_id", sa.BigInteger),
        sa.Column("owner_name", sa.Text, nullable=False),
        sa.Column("query_id", sa.Text),
        sa.Column("query_text", sa.Text),
        sa.Column("condition", JSONB, nullable=False),
        sa.Column("custom_subject", sa.Text),
        sa.Column("custom_body", sa.Text),
        sa.Column("notify_on_ok", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("seconds_to_retrigger", sa.Integer, nullable=False, server_default="0"),
        sa.Column("schedule", sa.Text),
        sa.Column("timezone_id", sa.Text, nullable=False, server_default="UTC"),
        sa.Column("paused", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("subscriptions", JSONB, nullable=False, server_default="[]"),
        sa.Column("state", sa.String(16), nullable=False, server_default="UNKNOWN"),
        sa.Column("evaluation_state", sa.String(16), nullable=False, server_default="UNKNOWN"),
        sa.Column("error_message", sa.Text),
        sa.Column("trigger_time", sa.DateTime(timezone=True)),
        sa.Column("last_notified_at", sa.DateTime(timezone=True)),
        sa.Column("last_evaluated_at", sa.DateTime(timezone=True)),
        sa.Column("next_run_at", sa.DateTime(timezone=True)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("state IN ('UNKNOWN', 'OK', 'TRIGGERED')", name="sql_alerts_state"),
        sa.CheckConstraint(
            "evaluation_state IN ('UNKNOWN', 'OK', 'TRIGGERED', 'ERROR')", name="sql_alerts_evaluation_state"
        ),
        sa.CheckConstraint("query_id IS NOT NULL OR query_text IS NOT NULL", name="sql_alerts_query"),
    )
    op.create_index(
        "sql_alerts_due", "sql_alerts", ["next_run_at"], postgresql_where=sa.text("next_run_at IS NOT NULL")
    )
    op.create_index("sql_alerts_owner", "sql_alerts", ["owner_id", "created_at"])
    op.create_table(
        "sql_alert_evaluations",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("alert_id", sa.String(36), sa.ForeignKey("sql_alerts.id", ondelete="CASCADE"), nullable=False),
        sa.Column("trigger", sa.String(12), nullable=False),
        sa.Column("scheduled_for", sa.DateTime(timezone=True)),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("previous_state", sa.String(16), nullable=False),
        sa.Column("value", sa.Text),
        sa.Column("row_count", sa.Integer),
        sa.Column("condition", sa.Text),
        sa.Column("error_message", sa.Text),
        sa.Column("statement_id", sa.String(36)),
        sa.Column("notifications", sa.Integer, nullable=False, server_default="0"),
        sa.Column("evaluated_by", sa.Text, nullable=False),
        sa.CheckConstraint("trigger IN ('SCHEDULE', 'MANUAL')", name="sql_alert_evaluations_trigger"),
    )
    op.create_index("sql_alert_evaluations_alert", "sql_alert_evaluations", ["alert_id", "id"])
    op.create_table(
        "sql_alert_deliveries",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("alert_id", sa.String(36), nullable=False),
        sa.Column("evaluation_id", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("destination", sa.Text, nullable=False),
        sa.Column("subject", sa.Text),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("state", sa.String(12), nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("last_status", sa.Integer),
        sa.Column("last_error", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("delivered_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint("kind IN ('webhook', 'email')", name="sql_alert_deliveries_kind"),
        sa.CheckConstraint("state IN ('pending', 'delivered', 'failed')", name="sql_alert_deliveries_state"),
    )
    op.create_index(
        "sql_alert_deliveries_due",
        "sql_alert_deliveries",
        ["next_attempt_at", "id"],
        postgresql_where=sa.text("state = 'pending'"),
    )
    op.create_index("sql_alert_deliveries_alert", "sql_alert_deliveries", ["alert_id", "id"])


def downgrade() -> None:
    op.drop_table("sql_alert_deliveries")
    op.drop_table("sql_alert_evaluations")
    op.drop_table("sql_alerts")
