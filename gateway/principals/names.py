"""Principal names: one character set per kind, and no name shared by two principals of any kinds.

Contract (enforced for SCIM, the CLI, the token and permissions APIs and OIDC sign-in alike, and by
the database: CHECK constraints per kind and one unique index on `principals.name` across kinds):

- a user name is an e-mail address, lower-cased: `local@domain`, ASCII letters, digits and `._%+-`
  before the `@`, dot-separated labels of letters, digits and `-` after it (only ASCII is folded: a name
  with any other character is refused, never folded onto an ASCII one);
- a group name starts with a letter or digit and holds letters, digits, space, `_`, `.` and `-`;
- a service principal's application id starts with a letter or digit and holds letters, digits,
  `_`, `.` and `-` (a UUID when the gateway mints it).

So a user name always contains `@` and no group or service principal name ever does: a bare name in a
Unity Catalog grant (`principal`, SQL `GRANT ... TO`) or a view owner is a user exactly when it
contains `@`, and otherwise the one group or service principal of that name (one name, one principal).
None of the sets holds a comma, a backtick, a quote or a control character, so no name can pose as the
bootstrap admin's view-owner marker, break out of a SQL identifier, or corrupt a Casbin policy row.

The names of Databricks' system groups (`account users`: every user and service principal of the account;
`users` and `admins`: a workspace's) are reserved: no group or service principal is given one, nor one that differs
from it only in case or in its separators (`Account_Users`, `account  users`). A group named `account users` would
change what `is_account_group_member('account users')` answers in SQL and dynamic views and what a grant to
`account users` reaches; a principal named `users` would be shadowed by the `users` entry of secret scope ACLs.
Look-alike letters need no rule: every name's character set is ASCII.
"""

from __future__ import annotations

import re

MAX_NAME_CHARS = 255
ASCII_SPACE = " \t\n\r\f\v"
USER_NAME_RE = re.compile(r"^[a-z0-9._%+-]+@[a-z0-9-]+(\.[a-z0-9-]+)*\Z")
GROUP_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.-]*\Z")
SERVICE_PRINCIPAL_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
NAME_RES = {"user": USER_NAME_RE, "group": GROUP_NAME_RE, "service_principal": SERVICE_PRINCIPAL_NAME_RE}
# The same sets as PostgreSQL regular expressions, for the CHECK constraints of migration 0008.
SQL_NAME_PATTERNS = {kind: pattern.pattern for kind, pattern in NAME_RES.items()}
# Databricks' system groups, compared `folded`.
RESERVED_NAMES = frozenset({"account users", "users", "admins"})
ACCOUNT_USERS = "account users"
SEPARATORS = re.compile(r"[\s_.-]+")
RULES = {
    "user": "an e-mail address (letters, digits and ._%+- before one '@', a domain after it)",
    "group": "letters, digits, space, '_', '.' and '-', starting with a letter or digit, no '@'",
    "service_principal": "letters, digits, '_', '.' and '-', starting with a letter or digit, no '@'",
}


def canonical(kind: str, name: str) -> str:
    """The stored form of a name: trimmed of ASCII white space, and lower-cased for users (e-mail addresses).

    Only ASCII is folded, and only ASCII white space trimmed. Unicode case-folding maps other characters onto
    ASCII letters (the long s `\u017f` onto `s`, the Kelvin sign `\u212a` onto `k`) and `str.strip` removes
    Unicode spaces, so `ka\u017fs@example.com`, another address that an identity provider may well vouch for,
    would become `kass@example.com`, someone else's. Left as it is, such a name fails `valid` (every name's
    character set is ASCII) and names nobody.
    """
    name = name.strip(ASCII_SPACE)
    return name.lower() if kind == "user" and name.isascii() else name


def valid(kind: str, name: str) -> bool:
    """Whether `name`, already canonical, is a valid name for a principal of `kind` (a reserved one is not)."""
    pattern = NAME_RES.get(kind)
    return (
        pattern is not None
        and 0 < len(name) <= MAX_NAME_CHARS
        and pattern.fullmatch(name) is not None
        and not reserved(kind, name)
    )


def folded(name: str) -> str:
    """A group-like name as the reserved names are compared: lower-cased, every run of separators one space."""
    return SEPARATORS.sub(" ", name.lower()).strip()


def reserved(kind: str, name: str) -> bool:
    """Whether `name` is (or differs only in case or separators from) a system group's name, for a group or a
    service principal (a user's name holds '@', so it never is)."""
    return kind != "user" and folded(name) in RESERVED_NAMES


def problem(kind: str, name: str) -> str | None:
    """Why `name` (canonical) cannot name a principal of `kind`, or None when it can. Never echoes the name."""
    label = kind.replace("_", " ")
    if reserved(kind, name):
        return (
            f"Invalid {label} name: 'account users', 'users' and 'admins' are the names of system groups "
            "(in any case, with any separators) and are reserved."
        )
    if valid(kind, name):
        return None
    if len(name) > MAX_NAME_CHARS:
        return f"A {label} name has at most {MAX_NAME_CHARS} characters."
    return f"Invalid {label} name: use {RULES[kind]}."


def kinds_for(name: str) -> tuple[str, ...]:
    """The kinds a bare name in a grant can denote: a user when it holds '@', else a group or service principal."""
    return ("user",) if "@" in name else ("group", "service_principal")
