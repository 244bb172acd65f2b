"""One open request per requester is counted by principal id, not by name.

Since migration 0040 stage, alias and promotion requests belong to the principal that made them, but the partial
unique indexes that allow one open request per requester (per version and stage, per version and alias, per
source version and target) were still keyed by the requester's name: a user made again under a deleted user's
name (an e-mail address handed to someone else, a user provisioned again by the identity provider) was refused
with RESOURCE_ALREADY_EXISTS while the request the first one left was open, and a renamed user could open the
same request twice. The indexes now key rows that name their requester by its id; rows without one (the
bootstrap admin's, and older rows whose requester nobody held) stay keyed by name, in indexes of their own.

A renamed requester may have left two open requests for the same thing under its two names; the newer of such
duplicates is cancelled so that the new index can be built (the older stays open, as the one the requester
meant first).

Revision ID: 0042
Revises: 0041
"""

from __future__ import annotations

from alembic import op

revision = "0042"
down_revision = "0041"
branch_labels = None
depends_on = None

# (table, the columns that key one requester's open request apart from the requester, the rows the index holds)
STAGE = ("registry_requests", ("model_id", "version", "to_stage"), ("state = 'open'", "to_stage IS NOT NULL"))
ALIAS = ("registry_requests", ("model_id", "version", "alias"), ("state = 'open'", "alias IS NOT NULL"))
PROMOTION = (
    "registry_promotion_requests",
    ("workspace_id", "source_model_id", "source_version", "target_name"),
    ("state = 'open'",),
)
# the index keyed by name until now → (its rows, the index keyed by id, the one keyed by name for rows without an id)
INDEXES = {
    "registry_requests_one_open": (STAGE, "registry_requests_one_open_by_id", "registry_requests_one_open_by_name"),
    "registry_requests_one_open_alias": (
        ALIAS,
        "registry_requests_one_open_alias_by_id",
        "registry_requests_one_open_alias_by_name",
    ),
    "registry_promotion_requests_open": (
        PROMOTION,
        "registry_promotion_requests_open_by_id",
        "registry_promotion_requests_open_by_name",
    ),
}
# The predicate each old index was built with (0016, 0018, 0026), for the downgrade.
OLD_WHERE = {
    "registry_requests_one_open": "state = 'open'",
    "registry_requests_one_open_alias": "state = 'open' AND alias IS NOT NULL",
    "registry_promotion_requests_open": "state = 'open'",
}


def _cancel_newer_duplicates(table: str, columns: tuple[str, ...], holds: tuple[str, ...], requester: str) -> None:
    """Cancel each open row of the index's that another one of the same key and requester (`requester`) precedes."""
    same = " AND ".join(f"o.{column} = r.{column}" for column in (*columns, requester))
    both = " AND ".join(f"{side}.{condition}" for side in ("r", "o") for condition in holds)
    op.execute(
        f"UPDATE {table} SET state = 'cancelled', decided_at = now() WHERE id IN "  # noqa: S608 - constants only
        f"(SELECT r.id FROM {table} AS r JOIN {table} AS o ON {same} AND o.id < r.id WHERE {both})"
    )


def upgrade() -> None:
    for old, ((table, columns, holds), by_id, by_name) in INDEXES.items():
        op.drop_index(old, table_name=table)
        _cancel_newer_duplicates(table, columns, holds, "requested_by_id")
        key, where = ", ".join(columns), " AND ".join(holds)
        op.execute(
            f"CREATE UNIQUE INDEX {by_id} ON {table} ({key}, requested_by_id) "
            f"WHERE {where} AND requested_by_id IS NOT NULL"
        )
        op.execute(
            f"CREATE UNIQUE INDEX {by_name} ON {table} ({key}, requested_by) WHERE {where} AND requested_by_id IS NULL"
        )


def downgrade() -> None:
    for old, ((table, columns, holds), by_id, by_name) in INDEXES.items():
        op.drop_index(by_id, table_name=table)
        op.drop_index(by_name, table_name=table)
        _cancel_newer_duplicates(table, columns, holds, "requested_by")
        op.execute(f"CREATE UNIQUE INDEX {old} ON {table} ({', '.join(columns)}, requested_by) WHERE {OLD_WHERE[old]}")
