"""Saved queries: their life cycle, who may see, run and manage each, and running one as its caller.

Rules, as in Databricks SQL:

- A query is private to its owner (its creator) until shared. The owner always holds CAN_MANAGE, without a
  grant; anyone else holds what grants of the policy on `query:<id>` (account domain) give, directly or
  through a group, nested groups included: CAN_VIEW (read the query and its permissions) < CAN_RUN (run it)
  < CAN_MANAGE (change it, its permissions, delete it). Account admins manage every query.
- Deny by default. A query the caller cannot view answers 404 exactly as a missing one; a visible query the
  caller may not use as asked answers 403 naming the level it needs.
- Running a query runs its text through the Statement Execution API as the caller: the caller's grants and
  dynamic views apply, never the owner's (`run_as_mode` is VIEWER; OWNER is refused). The statement belongs
  to the caller, who polls, pages and cancels it at `/api/2.0/sql/statements/{id}`.
- Every change (create, update, delete, permissions) is audited in its own transaction; permission changes
  move the policy version, so every replica decides with them at once.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.audit.trail import AuditTrail, entry
from gateway.authz.levels import ACCOUNT_DOMAIN
from gateway.authz.live import LivePolicy
from gateway.authz.policy import Grant, PolicySnapshot, PrincipalInfo
from gateway.authz.reach import Reach, for_account
from gateway.authz.repository import GrantRepository, PolicyVersionRepository
from gateway.authz.schemas import (
    AccessControlRequest,
    AccessControlResponse,
    ObjectPermissions,
    Permission,
    PermissionLevel,
    PermissionLevels,
)
from gateway.authz.service import resolve_typed
from gateway.console.queries.repository import SavedQueryRepository, SavedQueryRow
from gateway.console.queries.schemas import (
    CreateQueryRequest,
    QueryFields,
    QueryList,
    RunQueryRequest,
    SavedQuery,
    UpdateQueryRequest,
)
from gateway.core.errors import InvalidParameter, PermissionDenied, ResourceNotFound, hidden
from gateway.core.policy_changes import PolicyChange
from gateway.core.principal import Principal
from gateway.principals import names
from gateway.sql.schemas import ExecuteStatementRequest, StatementResponse
from gateway.sql.service import SqlService

CAN_VIEW, CAN_RUN, CAN_MANAGE = "CAN_VIEW", "CAN_RUN", "CAN_MANAGE"
QUERY_LEVELS = (CAN_VIEW, CAN_RUN, CAN_MANAGE)
QUERY_RANK = {level: rank for rank, level in enumerate(QUERY_LEVELS)}
LEVEL_DESCRIPTIONS = {
    CAN_VIEW: "Can see the query, its text and its permissions",
    CAN_RUN: "Can run the query, with the runner's own grants",
    CAN_MANAGE: "Can edit, share and delete the query",
}
OBJECT_TYPE = "query"
QUERY_ID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
# Bounds of what a caller stores: generous for SQL, small enough that a list page stays small.
MAX_NAME_CHARS = 255
MAX_TEXT_CHARS = 100_000
MAX_DESCRIPTION_CHARS = 10_000
MAX_NAMESPACE_CHARS = 255
MAX_TAGS = 50
MAX_TAG_CHARS = 100
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
AUTO_LIMIT_ROWS = 1000  # apply_auto_limit, as in Databricks SQL
UPDATABLE = (
    "display_name",
    "query_text",
    "description",
    "catalog",
    "schema",
    "tags",
    "apply_auto_limit",
    "run_as_mode",
    "warehouse_id",
    "parent_path",
    "owner_user_name",
)
IGNORED = ("warehouse_id", "parent_path")  # accepted for compatibility; nothing to keep
CLEARED: dict[str, Any] = {
    "query_text": "",
    "description": None,
    "catalog": None,
    "schema": None,
    "tags": [],
    "apply_auto_limit": False,
}


def query_object(query_id: str) -> str:
    """The policy object of a query: grants on it are held in the account domain."""
    return f"{OBJECT_TYPE}:{query_id}"


@dataclass(frozen=True, slots=True)
class Access:
    """A query and the caller's level on it (never None: a query the caller cannot view is not found)."""

    row: SavedQueryRow
    level: str


class SavedQueries:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        policy: LivePolicy,
        audit: AuditTrail,
        sql: SqlService,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._policy = policy
        self._audit = audit
        self._sql = sql

    # -- who may do what ------------------------------------------------------------------------------------

    def level_of(self, principal: Principal, row: SavedQueryRow) -> str | None:
        """The caller's level on a query: owners and account admins manage it; others hold their grants."""
        if principal.account_admin or (row.owner_id is not None and row.owner_id == principal.id):
            return CAN_MANAGE
        held = self._policy.snapshot.held(principal.subjects, ACCOUNT_DOMAIN, query_object(row.id))
        ranked = [QUERY_RANK[level] for level in held if level in QUERY_RANK]
        return QUERY_LEVELS[max(ranked)] if ranked else None

    async def require(self, principal: Principal, query_id: str, wanted: str) -> Access:
        """The query if the caller holds `wanted` on it; 404 if it cannot view it (or it does not exist), else 403."""
        missing = f"Query {query_id[:64]} does not exist."
        if not QUERY_ID_RE.match(query_id):
            raise ResourceNotFound(missing)
        async with self._sessionmaker() as session:
            row = await SavedQueryRepository(session).get(query_id)
        level = self.level_of(principal, row) if row is not None else None
        if row is None or level is None:
            raise hidden(missing)
        if QUERY_RANK[level] < QUERY_RANK[wanted]:
            raise PermissionDenied(f"{principal.name} needs {wanted} on query {query_id} (holds {level}).")
        return Access(row, level)

    # -- the queries API ------------------------------------------------------------------------------------

    async def create(self, principal: Principal, request: CreateQueryRequest) -> SavedQuery:
        fields = request.query or QueryFields()
        if fields.owner_user_name is not None and fields.owner_user_name != principal.name:
            raise InvalidParameter("owner_user_name is set by the gateway: the creator owns a new query.")
        values = _checked(fields, [*(name for name in UPDATABLE if name != "owner_user_name"), "parameters"])
        if "display_name" not in values:
            raise InvalidParameter("query.display_name is required.")
        row = SavedQueryRow(
            id=str(uuid.uuid4()),
            display_name=values["display_name"],
            query_text=values.get("query_text", ""),
            description=values.get("description"),
            catalog=values.get("catalog"),
            schema=values.get("schema"),
            tags=values.get("tags", []),
            apply_auto_limit=values.get("apply_auto_limit", False),
            owner_id=principal.id,
            owner_name=principal.name,
            last_modifier_name=principal.name,
        )
        async with self._sessionmaker() as session, session.begin():
            row = await SavedQueryRepository(session).add(row)
            await self._audit.write(
                session,
                entry(
                    principal.name, "sql.query.create", query_object(row.id), "ok", {"display_name": row.display_name}
                ),
            )
        return self.answer(row, CAN_MANAGE)

    async def get(self, principal: Principal, query_id: str) -> SavedQuery:
        found = await self.require(principal, query_id, CAN_VIEW)
        return self.answer(found.row, found.level)

    async def list_visible(self, principal: Principal, page_size: int | None, page_token: str | None) -> QueryList:
        size = DEFAULT_PAGE_SIZE if page_size is None else page_size
        if not 1 <= size <= MAX_PAGE_SIZE:
            raise InvalidParameter(f"page_size is between 1 and {MAX_PAGE_SIZE}.")
        after = _cursor(page_token) if page_token else None
        granted: set[str] = set()
        if not principal.account_admin:
            snapshot = self._policy.snapshot
            for level in QUERY_LEVELS:
                for obj in snapshot.objects_with(principal.subjects, ACCOUNT_DOMAIN, level, f"{OBJECT_TYPE}:"):
                    granted.add(obj.split(":", 1)[1])
        async with self._sessionmaker() as session:
            rows = await SavedQueryRepository(session).visible(
                everything=principal.account_admin,
                owner_id=principal.id,
                granted=granted,
                after=after,
                limit=size + 1,
            )
        results = []
        for row in rows[:size]:
            held = self.level_of(principal, row)
            if held is not None:  # a grant revoked since the snapshot was read: not listed
                results.append(self.answer(row, held))
        following = _token(rows[size - 1]) if len(rows) > size else None
        return QueryList(results=results, next_page_token=following)

    async def update(self, principal: Principal, query_id: str, request: UpdateQueryRequest) -> SavedQuery:
        found = await self.require(principal, query_id, CAN_MANAGE)
        mask = [name.strip() for name in request.update_mask.split(",") if name.strip()]
        if not mask:
            raise InvalidParameter("update_mask names the fields to change, e.g. 'display_name,query_text', or '*'.")
        if mask == ["*"]:
            mask = [name for name in UPDATABLE if name != "owner_user_name"]
        unknown = [name for name in mask if name not in UPDATABLE]
        if unknown:
            raise InvalidParameter(
                f"update_mask names '{unknown[0][:64]}', which cannot be changed; use {', '.join(UPDATABLE)}."
            )
        fields = request.query or QueryFields()
        values = _checked(fields, mask)
        if "display_name" in mask and "display_name" not in values:
            raise InvalidParameter("query.display_name may not be empty.")
        for name, empty in CLEARED.items():  # a field in the mask and not in the query is cleared
            if name in mask and name not in values:
                values[name] = empty
        if "owner_user_name" in mask:
            values.update(await self._new_owner(principal, fields.owner_user_name))
        values["last_modifier_name"] = principal.name
        async with self._sessionmaker() as session, session.begin():
            row = await SavedQueryRepository(session).change(query_id, values)
            if row is None:
                raise ResourceNotFound(f"Query {query_id} does not exist.")
            changed = sorted(name for name in mask if name not in IGNORED)
            await self._audit.write(
                session,
                entry(principal.name, "sql.query.update", query_object(query_id), "ok", {"fields": changed}),
            )
        return self.answer(row, self.level_of(principal, row) or found.level)

    async def delete(self, principal: Principal, query_id: str) -> None:
        """Delete the query and every grant on it, at once (there is no trash)."""
        await self.require(principal, query_id, CAN_MANAGE)
        async with self._sessionmaker() as session, session.begin():
            if not await SavedQueryRepository(session).remove(query_id):
                raise ResourceNotFound(f"Query {query_id} does not exist.")
            changes = await GrantRepository(session).clear(ACCOUNT_DOMAIN, query_object(query_id))
            await self._audit.write(session, entry(principal.name, "sql.query.delete", query_object(query_id), "ok"))
            await PolicyVersionRepository(session).bump(changes)
        await self._policy.reload()

    async def run(self, principal: Principal, query_id: str, request: RunQueryRequest) -> StatementResponse:
        """Run the query's text as the caller, through the Statement Execution API."""
        found = await self.require(principal, query_id, CAN_RUN)
        row = found.row
        row_limit = request.row_limit
        if row_limit is None and row.apply_auto_limit:
            row_limit = AUTO_LIMIT_ROWS
        statement = ExecuteStatementRequest(
            statement=row.query_text,
            catalog=row.catalog,
            schema=row.schema,
            parameters=request.parameters,
            wait_timeout=request.wait_timeout,
            on_wait_timeout=request.on_wait_timeout,
            row_limit=row_limit,
        )
        return await self._sql.execute(principal, statement)

    async def text_for(self, principal: Principal, query_id: str) -> str:
        """The text of a query the principal may run (404 / 403 otherwise): what an alert on the query evaluates."""
        return (await self.require(principal, query_id, CAN_RUN)).row.query_text

    # -- permissions ----------------------------------------------------------------------------------------

    async def permissions(self, principal: Principal, query_id: str) -> ObjectPermissions:
        found = await self.require(principal, query_id, CAN_VIEW)
        return self.acl(found.row)

    async def set_permissions(
        self, principal: Principal, query_id: str, items: list[AccessControlRequest], *, replace: bool
    ) -> ObjectPermissions:
        """PUT (replace=True) sets the grants to exactly `items`; PATCH adds or changes levels."""
        found = await self.require(principal, query_id, CAN_MANAGE)
        obj = query_object(query_id)

        def resolved(snapshot: PolicySnapshot) -> list[tuple[PrincipalInfo, str]]:
            reach = _reach(snapshot, principal, found.row)
            wanted: list[tuple[PrincipalInfo, str]] = []
            for item in items:
                info = resolve_typed(snapshot, item, reach)
                level = item.permission_level
                if level not in QUERY_RANK:
                    raise InvalidParameter(
                        f"permission_level '{level[:40]}' is not valid for a query; "
                        f"use one of {', '.join(QUERY_LEVELS)}."
                    )
                if info.id == found.row.owner_id:
                    if level != CAN_MANAGE:
                        raise InvalidParameter(
                            f"{info.name} owns the query and always holds CAN_MANAGE; hand it to another owner first."
                        )
                    continue  # the owner's CAN_MANAGE needs no grant
                wanted.append((info, level))
            return wanted

        # A principal made on another replica moments ago is not found only in the stored policy.
        wanted = await self._policy.found(resolved)
        async with self._sessionmaker() as session, session.begin():
            grants = GrantRepository(session)
            changes: list[PolicyChange] = []  # what replicas apply to the policy they hold
            if replace:
                changes += await grants.clear(ACCOUNT_DOMAIN, obj)
            for info, level in wanted:
                changes += await grants.clear(ACCOUNT_DOMAIN, obj, principal_id=info.id)
                changes += await grants.add(Grant(info.id, ACCOUNT_DOMAIN, obj, level), created_by=principal.name)
            await self._audit.write(
                session,
                entry(
                    principal.name,
                    "permissions.set" if replace else "permissions.update",
                    obj,
                    "ok",
                    {"acl": [{"principal": info.name, "kind": info.kind, "level": level} for info, level in wanted]},
                ),
            )
            await PolicyVersionRepository(session).bump(changes)
        await self._policy.reload()
        return self.acl(found.row)

    async def levels(self, principal: Principal, query_id: str) -> PermissionLevels:
        await self.require(principal, query_id, CAN_VIEW)
        return PermissionLevels(
            permission_levels=[
                PermissionLevel(permission_level=level, description=LEVEL_DESCRIPTIONS[level]) for level in QUERY_LEVELS
            ]
        )

    def acl(self, row: SavedQueryRow) -> ObjectPermissions:
        """The owner (CAN_MANAGE) and every grant on the query, in the permissions API's shape."""
        snapshot = self._policy.snapshot
        acl: list[AccessControlResponse] = []
        owner = snapshot.principal(row.owner_id) if row.owner_id is not None else None
        if owner is not None:
            acl.append(_entry(owner, [CAN_MANAGE]))
        for sub, held in sorted(snapshot.grants_on(ACCOUNT_DOMAIN, query_object(row.id)).items()):
            info = snapshot.principal(sub)
            levels = sorted((level for level in held if level in QUERY_RANK), key=QUERY_RANK.__getitem__)
            if info is not None and levels and sub != row.owner_id:
                acl.append(_entry(info, levels))
        return ObjectPermissions(object_id=f"/queries/{row.id}", object_type=OBJECT_TYPE, access_control_list=acl)

    # -- helpers --------------------------------------------------------------------------------------------

    def answer(self, row: SavedQueryRow, level: str) -> SavedQuery:
        return SavedQuery(
            id=row.id,
            display_name=row.display_name,
            query_text=row.query_text,
            description=row.description,
            catalog=row.catalog,
            schema=row.schema,
            tags=list(row.tags or []),
            apply_auto_limit=row.apply_auto_limit,
            run_as_mode="VIEWER",
            lifecycle_state="ACTIVE",
            owner_user_name=row.owner_name,
            last_modifier_user_name=row.last_modifier_name,
            create_time=_rfc3339(row.created_at),
            update_time=_rfc3339(row.updated_at),
            permission_level=level,
        )

    async def _new_owner(self, principal: Principal, name: str | None) -> dict[str, Any]:
        if not principal.account_admin:
            raise PermissionDenied("Only account admins may hand a query to another owner.")
        if not name or not name.strip():
            raise InvalidParameter("query.owner_user_name names the new owner.")

        def owner(snapshot: PolicySnapshot) -> PrincipalInfo | None:
            for kind in ("user", "service_principal"):
                info = snapshot.find(kind, names.canonical(kind, name))
                if info is not None and info.active:
                    return info
            return None

        info = await self._policy.found(owner)  # made on another replica moments ago? Found in the stored policy
        if info is not None:
            return {"owner_id": info.id, "owner_name": info.name}
        raise ResourceNotFound(f"No active user or service principal named '{name.strip()[:200]}'.")


def _reach(snapshot: PolicySnapshot, principal: Principal, row: SavedQueryRow) -> Reach:
    """Whom a manager of the query may name in its permissions (gateway/authz/reach.py): anyone for account admins;
    any other manager (every signed-in principal creates queries) itself, its groups, the principals of the places
    it holds something in (its workspaces, the account's domain) and those the query's permissions name (its owner,
    its grants)."""
    named = set(snapshot.grants_on(ACCOUNT_DOMAIN, query_object(row.id)))
    if row.owner_id is not None:
        named.add(row.owner_id)
    return for_account(snapshot, principal, named)


def _entry(info: PrincipalInfo, levels: list[str]) -> AccessControlResponse:
    field = {"user": "user_name", "group": "group_name", "service_principal": "service_principal_name"}[info.kind]
    permissions = [Permission(permission_level=level, inherited=False) for level in levels]
    return AccessControlResponse(**{field: info.name}, display_name=info.display_name, all_permissions=permissions)


def _checked(fields: QueryFields, wanted: list[str]) -> dict[str, Any]:
    """The values of the fields in `wanted` that are set, checked; None stands for "not given"."""
    values: dict[str, Any] = {}
    for name in wanted:
        value = getattr(fields, name)
        if value is None:
            continue
        if name == "display_name":
            value = value.strip()
            if not value or len(value) > MAX_NAME_CHARS or not value.isprintable():
                raise InvalidParameter(f"query.display_name is 1 to {MAX_NAME_CHARS} printable characters.")
        elif name == "query_text":
            if len(value) > MAX_TEXT_CHARS or "\x00" in value:
                raise InvalidParameter(f"query.query_text is at most {MAX_TEXT_CHARS} characters, without NUL.")
        elif name == "description":
            if len(value) > MAX_DESCRIPTION_CHARS or "\x00" in value:
                raise InvalidParameter(f"query.description is at most {MAX_DESCRIPTION_CHARS} characters.")
        elif name in ("catalog", "schema"):
            value = value.strip() or None
            if value is not None and (len(value) > MAX_NAMESPACE_CHARS or not value.isprintable()):
                raise InvalidParameter(f"query.{name} is at most {MAX_NAMESPACE_CHARS} printable characters.")
        elif name == "tags":
            if len(value) > MAX_TAGS or any(
                not tag or len(tag) > MAX_TAG_CHARS or not tag.isprintable() for tag in value
            ):
                raise InvalidParameter(f"query.tags holds at most {MAX_TAGS} tags of 1 to {MAX_TAG_CHARS} characters.")
            value = list(dict.fromkeys(value))
        elif name == "run_as_mode":
            if value != "VIEWER":
                raise InvalidParameter(
                    "run_as_mode is VIEWER: a saved query runs with the rights of whoever runs it, never its owner's."
                )
            continue
        elif name == "parameters":
            if value:
                raise InvalidParameter("query.parameters are not kept; give parameter values when the query runs.")
            continue
        elif name in IGNORED or name == "owner_user_name":
            continue
        values[name] = value
    return values


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _token(row: SavedQueryRow) -> str:
    raw = f"{row.created_at.astimezone(UTC).isoformat()}|{row.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _cursor(token: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        moment, query_id = raw.split("|", 1)
        parsed = datetime.fromisoformat(moment)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidParameter("page_token is not one this API gave.") from None
    if parsed.tzinfo is None or not QUERY_ID_RE.match(query_id):
        raise InvalidParameter("page_token is not one this API gave.")
    return parsed, query_id
