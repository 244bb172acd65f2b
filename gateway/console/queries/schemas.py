"""Request and response bodies of the saved queries API, in the shapes of Databricks' SQL queries API.

Fields a query carries only sometimes (description, catalog, schema) are left out when absent, as Databricks
leaves them out. The permissions bodies are the permissions API's own (`gateway/authz/schemas.py`).
"""

from __future__ import annotations

import msgspec

from gateway.sql.schemas import StatementParameter


class _Body(msgspec.Struct, omit_defaults=True, kw_only=True):
    pass


class QueryFields(_Body, kw_only=True):
    """What a caller may set on a query (create and update; update names the fields in `update_mask`)."""

    display_name: str | None = None
    query_text: str | None = None
    description: str | None = None
    catalog: str | None = None
    schema: str | None = None
    tags: list[str] | None = None
    apply_auto_limit: bool | None = None
    run_as_mode: str | None = None  # VIEWER only: a saved query runs with the rights of whoever runs it
    warehouse_id: str | None = None  # accepted and ignored: there is one engine
    parent_path: str | None = None  # accepted and ignored: queries are not kept in folders
    owner_user_name: str | None = None  # update only, account admins only: hands the query to another owner
    parameters: list[dict[str, object]] | None = None  # refused when not empty: parameters are given at run time


class CreateQueryRequest(_Body, kw_only=True):
    query: QueryFields | None = None
    auto_resolve_display_name: bool | None = None  # accepted: display names need not be unique


class UpdateQueryRequest(_Body, kw_only=True):
    update_mask: str = ""
    query: QueryFields | None = None
    auto_resolve_display_name: bool | None = None


class SavedQuery(_Body, kw_only=True):
    """A query as answered. Fields without a default are always written (omit_defaults drops only the others)."""

    id: str
    display_name: str
    query_text: str
    description: str | None = None
    catalog: str | None = None
    schema: str | None = None
    tags: list[str]
    apply_auto_limit: bool
    run_as_mode: str  # always VIEWER
    lifecycle_state: str  # always ACTIVE: a deleted query is gone, not in a trash
    owner_user_name: str
    last_modifier_user_name: str
    create_time: str  # RFC 3339, UTC
    update_time: str
    warehouse_id: str | None = None
    # Not in Databricks' shape: the caller's own level on the query, so a page knows which buttons to show.
    permission_level: str | None = None


class QueryList(_Body, kw_only=True):
    results: list[SavedQuery] = msgspec.field(default_factory=list)
    next_page_token: str | None = None


class RunQueryRequest(_Body, kw_only=True):
    """How to run a saved query: the Statement Execution API's own options, its text and defaults the query's."""

    parameters: list[StatementParameter] = msgspec.field(default_factory=list)
    wait_timeout: str = "10s"
    on_wait_timeout: str = "CONTINUE"
    row_limit: int | None = None
    warehouse_id: str = ""  # accepted and ignored
