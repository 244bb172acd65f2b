"""Secret scope names, in the database as in the gateway: not `.` or `..` alone.

The gateway refuses a scope or key named `.` or `..` for every vault (`SECRET_NAME_RE`, gateway/core/config.py),
but the CHECK constraints of migrations 0010 (`secret_scopes.name`) and 0011 (`workspace_links.
default_secret_scope`) still took them, so a replica of a release before the rule could write such a scope. Both
constraints now refuse them.

Rows written before the rule:
- A scope so named is kept: the gateway refuses it for everything but its deletion, and its values (the built-in
  vault's, in this database) go with that deletion. Its row must also still follow its workspace when the
  workspace is renumbered (an UPDATE, which PostgreSQL checks against every CHECK constraint), so the new
  constraint exempts the scopes that existed when it was added: those of an id up to the largest so named then.
  A database that holds none (the usual case) gets the constraint with no exemption.
- A workspace's default scope so named is cleared: no read could use it (the gateway refuses the name), and no
  value hangs off it; a run naming no scope is now told the workspace has no default scope, which says what to do.

Keys have no CHECK constraint here (the built-in vault's `vault_values.key`, the leak guard's `run_secret_reads`):
the gateway's rule is the only one, as it is for every other vault.

Revision ID: 0055
Revises: 0054
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import text

revision = "0055"
down_revision = "0054"
branch_labels = None
depends_on = None

CHARSET = "^[A-Za-z0-9_.-]{1,128}$"
NAME = rf"name ~ '{CHARSET}' AND name !~ '^\.\.?$'"
DEFAULT_SCOPE = (
    rf"default_secret_scope = '' OR (default_secret_scope ~ '{CHARSET}' AND default_secret_scope !~ '^\.\.?$')"
)


def upgrade() -> None:
    bind = op.get_bind()
    made_before = bind.execute(text("SELECT max(id) FROM secret_scopes WHERE name IN ('.', '..')")).scalar()
    check = NAME if made_before is None else f"({NAME}) OR (name ~ '{CHARSET}' AND id <= {int(made_before)})"
    op.drop_constraint("secret_scopes_name_charset", "secret_scopes", type_="check")
    op.create_check_constraint("secret_scopes_name_charset", "secret_scopes", check)

    op.execute("UPDATE workspace_links SET default_secret_scope = '' WHERE default_secret_scope IN ('.', '..')")
    op.drop_constraint("workspace_links_default_secret_scope_charset", "workspace_links", type_="check")
    op.create_check_constraint("workspace_links_default_secret_scope_charset", "workspace_links", DEFAULT_SCOPE)


def downgrade() -> None:
    op.drop_constraint("workspace_links_default_secret_scope_charset", "workspace_links", type_="check")
    op.create_check_constraint(
        "workspace_links_default_secret_scope_charset",
        "workspace_links",
        f"default_secret_scope = '' OR default_secret_scope ~ '{CHARSET}'",
    )
    op.drop_constraint("secret_scopes_name_charset", "secret_scopes", type_="check")
    op.create_check_constraint("secret_scopes_name_charset", "secret_scopes", f"name ~ '{CHARSET}'")
