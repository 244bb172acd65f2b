"""Workspace ids are never handed out twice: the highest id any workspace ever had is kept.

A workspace linked without an id took the highest id linked at the time plus one, so unlinking the newest
workspace freed its id for the next one. Everything the gateway keeps of a workspace is keyed by that id
(grants, index rows, outbox, id map, secret scopes, registry requests, store jobs, the audit log's targets);
the unlink hooks drop what they know of, but anything they miss, or that an external system (an audit
export, a client's cached experiment ids `<workspace_id>-<experiment_id>`) still holds, would name the new
workspace. `workspace_id_high_water` holds the highest id ever linked, kept by a trigger on every insert and
renumbering of `workspace_links` (API, config file, any replica), in the linking transaction; a workspace
linked without an id takes it plus one. An admin may still choose an id explicitly.

Revision ID: 0039
Revises: 0038
"""

from __future__ import annotations

from alembic import op

revision = "0039"
down_revision = "0038"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE workspace_id_high_water (
            only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
            highest bigint NOT NULL
        )
        """
    )
    # 1000: the first id handed out is 1001, as before.
    op.execute(
        "INSERT INTO workspace_id_high_water (highest) "
        "SELECT greatest(1000, coalesce(max(workspace_id), 0)) FROM workspace_links"
    )
    op.execute(
        """
        CREATE FUNCTION workspace_id_used() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            UPDATE workspace_id_high_water SET highest = NEW.workspace_id WHERE highest < NEW.workspace_id;
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER workspace_links_id_used AFTER INSERT OR UPDATE OF workspace_id ON workspace_links "
        "FOR EACH ROW EXECUTE FUNCTION workspace_id_used()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER workspace_links_id_used ON workspace_links")
    op.execute("DROP FUNCTION workspace_id_used()")
    op.execute("DROP TABLE workspace_id_high_water")
