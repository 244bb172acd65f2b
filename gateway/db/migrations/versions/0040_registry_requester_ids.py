"""Registry requests and comments record their author by principal id, not only by name.

A request was cancelled by its requester, and a comment edited or deleted by its author, found by name: when the
requester was deleted (or renamed) and another principal later got the name (an e-mail address handed to someone
else, a user provisioned again by the identity provider), the newcomer could cancel the requests and rewrite or
delete the comments the first one left, and was offered to. `registry_requests.requested_by_id` and
`registry_comments.user_principal_id` name the principal itself, as `registry_promotion_requests.requested_by_id`
already did (migration 0026): a rename keeps them the author's, and a deleted author's stay nobody's whoever takes
the name later (the id is kept, not set NULL: ids are never reused). NULL is the bootstrap admin's (it has no row),
and an account admin manages every model anyway. The names stay, as recorded, for display.

Existing rows get the id of the principal holding their author's name now (names are unique across kinds) when that
principal existed when the row was written, else none: a principal made after a request cannot have made it.

Revision ID: 0040
Revises: 0039
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0040"
down_revision = "0039"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("registry_requests", sa.Column("requested_by_id", sa.BigInteger, nullable=True))
    op.add_column("registry_comments", sa.Column("user_principal_id", sa.BigInteger, nullable=True))
    op.execute(
        "UPDATE registry_requests AS r SET requested_by_id = p.id FROM principals AS p "
        "WHERE p.name = r.requested_by AND p.created_at <= r.created_at"
    )
    op.execute(
        "UPDATE registry_comments AS c SET user_principal_id = p.id FROM principals AS p "
        "WHERE p.name = c.user_id AND p.created_at <= c.created_at"
    )


def downgrade() -> None:
    op.drop_column("registry_comments", "user_principal_id")
    op.drop_column("registry_requests", "requested_by_id")
