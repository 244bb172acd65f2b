"""Principal names: a character set per kind (CHECK) and one name, one principal across kinds (unique index).

The rules are those of `gateway.principals.names`: user names are e-mail addresses, group and service
principal names never contain '@', and no two principals of any kinds share a name.

Rows older than the rules are not dropped (their grants and memberships stay) but quarantined, and each
one is reported: in the migration's log and as a `principal.quarantine` row of the audit log, with the old
name. A name several principals share stays with the oldest one valid for its kind; the others are renamed
`<name>~<id>`. Every quarantined principal (an invalid name, or renamed) is disabled, so it can neither
sign in nor lend its grants, until an account admin gives it a valid name (SCIM PATCH) and enables it again.
The CHECK constraint is validated when no row breaks it, and otherwise enforced for new and changed rows
only (NOT VALID): a quarantined row can be changed only together with a valid new name.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import json
import logging
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")

# Copied from gateway.principals.names at the time of writing: a migration must not change when the code does.
USER = r"^[a-z0-9._%+-]+@[a-z0-9-]+(\.[a-z0-9-]+)*$"
GROUP = r"^[A-Za-z0-9][A-Za-z0-9 _.-]*$"
SERVICE_PRINCIPAL = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
VALID = (
    f"((kind = 'user' AND name ~ '{USER}') OR (kind = 'group' AND name ~ '{GROUP}') "
    f"OR (kind = 'service_principal' AND name ~ '{SERVICE_PRINCIPAL}'))"
)


def upgrade() -> None:
    connection = op.get_bind()
    rows = connection.execute(sa.text(f"SELECT id, kind, name, {VALID} AS valid FROM principals ORDER BY id")).all()  # noqa: S608
    quarantined: dict[int, dict[str, str]] = {}
    for row in rows:
        if not row.valid:
            quarantined[row.id] = {"kind": row.kind, "name": row.name, "reason": "name breaks the rules of its kind"}
    holders: dict[str, list[Any]] = {}
    for row in rows:
        holders.setdefault(row.name, []).append(row)
    for name, sharing in holders.items():
        if len(sharing) < 2:
            continue
        keeper = min(sharing, key=lambda r: (not r.valid, r.id))
        for row in sharing:
            if row.id == keeper.id:
                continue
            new_name = f"{name[:230]}~{row.id}"
            connection.execute(
                sa.text("UPDATE principals SET name = :name WHERE id = :id"), {"name": new_name, "id": row.id}
            )
            quarantined[row.id] = {
                "kind": row.kind,
                "name": name,
                "renamed_to": new_name,
                "reason": f"name also held by {keeper.kind} {keeper.id}",
            }
    for principal_id, details in sorted(quarantined.items()):
        connection.execute(sa.text("UPDATE principals SET active = false WHERE id = :id"), {"id": principal_id})
        connection.execute(
            sa.text(
                "INSERT INTO audit_log (actor, action, target, outcome, details) "
                "VALUES ('migration 0008', 'principal.quarantine', :target, 'ok', CAST(:details AS JSONB))"
            ),
            {"target": f"{details['kind']}:{principal_id}", "details": json.dumps(details)},
        )
        log.warning(
            "principal %s (%s %r) disabled: %s; give it a valid name and enable it again (SCIM PATCH)",
            principal_id,
            details["kind"],
            details["name"],
            details["reason"],
        )
    if quarantined:
        connection.execute(sa.text("UPDATE policy_version SET version = version + 1 WHERE id = 1"))
    op.execute(f"ALTER TABLE principals ADD CONSTRAINT principals_name_charset CHECK {VALID} NOT VALID")
    if not quarantined:  # every quarantined row's name (renamed ones hold '~') breaks the constraint
        op.execute("ALTER TABLE principals VALIDATE CONSTRAINT principals_name_charset")
    op.create_index("principals_name_unique", "principals", ["name"], unique=True)


def downgrade() -> None:
    op.drop_index("principals_name_unique", table_name="principals")
    op.execute("ALTER TABLE principals DROP CONSTRAINT principals_name_charset")
