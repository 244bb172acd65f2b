"""A registry activity or promotion request written without its number (by an older replica) is given the next one.

Migrations 0051 and 0052 number a model's activities and a workspace's promotion requests, and the gateway gives
each new row its number under a transaction-scoped advisory lock. During a rolling update replicas of the release
before still run against the migrated schema (migrations only add what older code ignores, docs/operations.md):
their inserts name no `number`, which the NOT NULL column refused, so their registry writes failed until they were
replaced. A BEFORE INSERT trigger now gives such a row the next number under the same lock the gateway takes
(`LockClass.REGISTRY_ACTIVITY` on hashtext of the model's id, `LockClass.REGISTRY_PROMOTION_REQUEST` on the
workspace's id), so rows of old and new replicas share one numbering. A row that names its number keeps it.

Revision ID: 0054
Revises: 0053
"""

from __future__ import annotations

from alembic import op

revision = "0054"
down_revision = "0053"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION registry_activities_next_number() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.number IS NULL THEN
                PERFORM pg_advisory_xact_lock(7022, hashtext(NEW.model_id));
                SELECT coalesce(max(number), 0) + 1 INTO NEW.number
                FROM registry_activities WHERE model_id = NEW.model_id;
            END IF;
            RETURN NEW;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER registry_activities_next_number BEFORE INSERT ON registry_activities "
        "FOR EACH ROW EXECUTE FUNCTION registry_activities_next_number()"
    )
    op.execute(
        """
        CREATE FUNCTION registry_promotion_requests_next_number() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.number IS NULL THEN
                PERFORM pg_advisory_xact_lock(7023, NEW.workspace_id::int4);
                SELECT coalesce(max(number), 0) + 1 INTO NEW.number
                FROM registry_promotion_requests WHERE workspace_id = NEW.workspace_id;
            END IF;
            RETURN NEW;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER registry_promotion_requests_next_number BEFORE INSERT ON registry_promotion_requests "
        "FOR EACH ROW EXECUTE FUNCTION registry_promotion_requests_next_number()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER registry_promotion_requests_next_number ON registry_promotion_requests")
    op.execute("DROP FUNCTION registry_promotion_requests_next_number()")
    op.execute("DROP TRIGGER registry_activities_next_number ON registry_activities")
    op.execute("DROP FUNCTION registry_activities_next_number()")
