"""SCIM 2.0 principals (Databricks shapes) and personal access tokens, over REST."""

from __future__ import annotations

import re
from typing import Any

from litestar import Controller, Request, delete, get, patch, post
from litestar.params import Parameter

from gateway.core.ascii import ascii_lower
from gateway.core.errors import InvalidParameter
from gateway.core.numbers import whole
from gateway.core.principal import Principal
from gateway.core.schemas import Empty
from gateway.db.models import PrincipalRow, TokenRow
from gateway.observability.access import REQUEST_ID_KEY
from gateway.principals import names
from gateway.principals.guards import account_admin
from gateway.principals.ports import Directory, Known
from gateway.principals.schemas import (
    CreateToken,
    CreateTokenOnBehalfOf,
    DeleteToken,
    ManagedToken,
    ManagedTokenCreated,
    ManagedTokenInfo,
    ManagedTokenList,
    ScimCreate,
    ScimEmail,
    ScimList,
    ScimMember,
    ScimOperation,
    ScimPatch,
    ScimRef,
    ScimResource,
    ScimRole,
    TokenCreated,
    TokenInfo,
    TokenList,
)
from gateway.principals.service import PrincipalService, TokenService

SCIM = "/api/2.0/preview/scim/v2"
SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:"
LIST_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
RESOURCES = {"Users": "user", "ServicePrincipals": "service_principal", "Groups": "group"}
NAME_ATTRIBUTE = {"user": "userName", "service_principal": "applicationId", "group": "displayName"}
FILTER_RE = re.compile(r'^\s*(\w+)\s+(eq|ne|co|sw)\s+"((?:[^"\\]|\\.)*)"\s*$', re.IGNORECASE)
ADMIN_ROLE_PATH_RE = re.compile(r'^roles\[value eq "account_admin"\]$', re.IGNORECASE)
MEMBER_PATH_RE = re.compile(r'^members\[value eq "?([0-9]{1,18})"?\]$')  # \d takes other scripts' digits
ADMIN_ROLE = "account_admin"
# The attributes of a SCIM create the gateway reads (their names go to the audit row of a refused one).
CREATE_FIELDS = ("userName", "applicationId", "displayName", "roles", "externalId", "members", "groups")


def _info(row: TokenRow) -> dict[str, Any]:
    return {
        "token_id": row.token_id,
        "creation_time": int(row.created_at.timestamp() * 1000),
        "expiry_time": int(row.expires_at.timestamp() * 1000) if row.expires_at else -1,
        "comment": row.comment,
    }


def _ms(row: TokenRow) -> TokenInfo:
    return TokenInfo(**_info(row))


def _ref(row: PrincipalRow) -> ScimRef:
    kind = {"user": "Users", "service_principal": "ServicePrincipals", "group": "Groups"}[row.kind]
    return ScimRef(value=str(row.id), display=row.display_name or row.name, ref=f"{kind}/{row.id}")


def scim_resource(row: PrincipalRow, groups: list[PrincipalRow], members: list[PrincipalRow]) -> ScimResource:
    document = ScimResource(
        id=str(row.id),
        displayName=row.display_name or row.name,
        schemas=[],
        externalId=row.external_id or None,
        roles=[ScimRole(value=ADMIN_ROLE)] if row.account_admin else None,
        groups=[_ref(g) for g in groups],
    )
    if row.kind == "user":
        document.schemas = [SCHEMA + "User"]
        document.userName = row.name
        document.active = row.active
        document.emails = [ScimEmail(value=row.name, type="work", primary=True)] if "@" in row.name else []
    elif row.kind == "service_principal":
        document.schemas = [SCHEMA + "ServicePrincipal"]
        document.applicationId = row.name
        document.active = row.active
    else:
        document.schemas = [SCHEMA + "Group"]
        document.displayName = row.name
        document.members = [_ref(m) for m in members]
    return document


def _matches(row: PrincipalRow, kind: str, condition: str | None) -> bool:
    if not condition:
        return True
    match = FILTER_RE.match(condition)
    if match is None:
        raise InvalidParameter('Unsupported SCIM filter; use  <attribute> eq|ne|co|sw "<value>".')
    attribute, op, value = match.group(1), match.group(2).lower(), match.group(3).replace('\\"', '"')
    fields = {NAME_ATTRIBUTE[kind].lower(): row.name, "displayname": row.display_name, "id": str(row.id)}
    if attribute.lower() not in fields:
        raise InvalidParameter(f"Cannot filter on '{attribute}'.")
    actual = fields[attribute.lower()] or ""
    # SCIM compares these attributes case-insensitively, and only ASCII is folded (gateway.principals.names): Unicode
    # case-folding made `ka\u017fs@...` (long s) or `\u212aass@...` (Kelvin sign), which name nobody, find `kass@...`,
    # and an identity provider provisioning the look-alike linked, then changed or deactivated, that user.
    left, right = ascii_lower(actual), ascii_lower(value)
    return {"eq": left == right, "ne": left != right, "co": right in left, "sw": left.startswith(right)}[op]


def _ids(values: Any) -> list[int]:
    if values is None:
        return []
    if not isinstance(values, list):
        values = [values]
    result = []
    for item in values:
        raw = item.value if isinstance(item, ScimMember) else item.get("value") if isinstance(item, dict) else item
        member_id = whole(raw)
        if member_id is None:
            raise InvalidParameter(f"Invalid member id {str(raw)[:40]!r}.")
        result.append(member_id)
    return result


def _is_admin(document: dict[str, Any]) -> bool:
    roles = document.get("roles") or []
    return any(isinstance(r, dict) and r.get("value") == ADMIN_ROLE for r in roles)


def _names_admin(roles: list[ScimRole] | None) -> bool:
    return any(role.value == ADMIN_ROLE for role in roles or [])


def _attribute(kind: str, path: str) -> str | None:
    """The writable attribute a PATCH path names (SCIM attribute names are case-insensitive), or None: a path the
    gateway does not keep is refused, never answered 200 with nothing changed."""
    names = {"displayName", "active", "roles", "externalId"}
    if kind != "group":
        names.add(NAME_ATTRIBUTE[kind])
    return next((name for name in names if name.lower() == path.lower()), None)


def _roles(op: str, path: str, roles: Any) -> dict[str, Any]:
    """The `account_admin` change of a PATCH of `roles`: `add` gives the role when it is named (and takes nothing),
    `remove` takes it when it is named or no value is given (every role), `replace` holds it exactly when named."""
    if roles is not None and not isinstance(roles, list):
        roles = [roles]
    named = any(isinstance(r, dict) and r.get("value") == ADMIN_ROLE for r in roles or [])
    if op == "add":
        return {"account_admin": True} if named else {}
    if op == "remove":
        return {"account_admin": False} if named or not roles else {}
    if op == "replace":
        return {"account_admin": named}
    raise InvalidParameter(f"Unsupported PATCH operation {op!r} on {path or 'the resource'!r}.")


def _fields(kind: str, document: dict[str, Any]) -> dict[str, Any]:
    """Writable attributes in a SCIM document → column values."""
    fields: dict[str, Any] = {}
    name_attribute = NAME_ATTRIBUTE[kind]
    if name_attribute in document and kind != "group":
        fields["name"] = str(document[name_attribute])
    if "displayName" in document:
        fields["name" if kind == "group" else "display_name"] = str(document["displayName"])
    if "active" in document:
        if not isinstance(document["active"], bool):
            raise InvalidParameter("'active' must be true or false.")
        fields["active"] = document["active"]
    if "roles" in document:
        fields["account_admin"] = _is_admin(document)
    if "externalId" in document:
        fields["external_id"] = str(document["externalId"])
    return fields


class ScimMeController(Controller):
    path = SCIM
    opt = {"access": "any principal: itself"}

    @get("/Me", name="scim me")
    async def me(self, request: Request[Principal, Any, Any], principals: PrincipalService) -> ScimResource:
        caller = request.user
        if caller.id is None:
            return ScimResource(
                schemas=[SCHEMA + "User"],
                id="0",
                userName=caller.name,
                active=True,
                roles=[ScimRole(value=ADMIN_ROLE)],
                groups=[],
            )
        kind = caller.kind if caller.kind in RESOURCES.values() else "user"
        row, groups, members = await principals.get(kind, caller.id)
        return scim_resource(row, groups, members)


class ScimController(Controller):
    path = SCIM
    opt = {"access": "account admins"}
    guards = [account_admin()]

    @get("/{resource:str}", name="scim list")
    async def list_principals(
        self,
        request: Request[Principal, Any, Any],
        resource: str,
        principals: PrincipalService,
        filter: str | None = Parameter(query="filter", default=None),
        start_index: int = Parameter(query="startIndex", default=1, ge=1),
        count: int = Parameter(query="count", default=10_000, ge=0, le=10_000),
    ) -> ScimList:
        kind = _kind(resource)
        rows = [entry for entry in await principals.list(kind) if _matches(entry[0], kind, filter)]
        resources = [scim_resource(*entry) for entry in rows[start_index - 1 : start_index - 1 + count]]
        return ScimList(
            schemas=[LIST_SCHEMA],
            totalResults=len(rows),
            startIndex=start_index,
            itemsPerPage=len(resources),
            Resources=resources,
        )

    @post("/{resource:str}", name="scim create", status_code=201)
    async def create(
        self, request: Request[Principal, Any, Any], resource: str, data: ScimCreate, principals: PrincipalService
    ) -> ScimResource:
        label = RESOURCES.get(resource, "principal")
        with principals.refusals(request.user, f"{label}.create", label, _request_id(request)) as details:
            details["fields"] = sorted(name for name in CREATE_FIELDS if getattr(data, name) is not None)
            kind = _kind(resource)
            name = str(getattr(data, NAME_ATTRIBUTE[kind]) or "")
            if not name and kind != "service_principal":
                raise InvalidParameter(f"'{NAME_ATTRIBUTE[kind]}' is required.")
            members = _ids(data.members) if kind == "group" else []
            groups = _ids(data.groups)
            details |= {"members": members, "groups": groups}
            row = await principals.create(
                request.user,
                kind,
                name,
                display_name=data.displayName or "",
                active=data.active,
                account_admin=_names_admin(data.roles),
                external_id=data.externalId,
                members=members,
                groups=groups,
            )
        return scim_resource(*(await principals.get(kind, row.id)))

    @get("/{resource:str}/{principal_id:int}", name="scim get")
    async def get_one(self, resource: str, principal_id: int, principals: PrincipalService) -> ScimResource:
        return scim_resource(*(await principals.get(_kind(resource), principal_id)))

    @patch("/{resource:str}/{principal_id:int}", name="scim patch")
    async def patch_one(
        self,
        request: Request[Principal, Any, Any],
        resource: str,
        principal_id: int,
        data: ScimPatch,
        principals: PrincipalService,
    ) -> ScimResource:
        label = RESOURCES.get(resource, "principal")
        target = f"{label}:{principal_id}"
        with principals.refusals(request.user, f"{label}.update", target, _request_id(request)) as details:
            kind = _kind(resource)
            operations = data.Operations or data.operations
            # What the PATCH asks, by operation and path: never a value (a SCIM client may send a password).
            details["operations"] = [f"{operation.op} {operation.path or ''}".strip() for operation in operations or []]
            fields, add, remove, replace = _changes(kind, operations)
            details |= {"fields": sorted(fields), "added": add, "removed": remove}
            await principals.update(
                request.user,
                kind,
                principal_id,
                fields=fields,
                add_members=[] if replace else add,
                remove_members=remove,
                replace_members=add if replace else None,
            )
        return scim_resource(*(await principals.get(kind, principal_id)))

    @delete("/{resource:str}/{principal_id:int}", name="scim delete", status_code=204)
    async def delete_one(
        self, request: Request[Principal, Any, Any], resource: str, principal_id: int, principals: PrincipalService
    ) -> None:
        label = RESOURCES.get(resource, "principal")
        target = f"{label}:{principal_id}"
        with principals.refusals(request.user, f"{label}.delete", target, _request_id(request)):
            await principals.delete(request.user, _kind(resource), principal_id)


def _changes(kind: str, operations: list[ScimOperation] | None) -> tuple[dict[str, Any], list[int], list[int], bool]:
    """A SCIM PATCH's operations as (column values, members added, members removed, whether members are replaced)."""
    if not operations:
        raise InvalidParameter("A SCIM PATCH carries a non-empty 'Operations' list.")
    fields: dict[str, Any] = {}
    add: list[int] = []
    remove: list[int] = []
    replace = False
    for operation in operations:
        op = operation.op.lower()
        path = operation.path or ""
        value = operation.value
        member = MEMBER_PATH_RE.match(path)
        attribute = _attribute(kind, path) if path and not member else None
        if path.lower() == "members" and op in ("add", "remove", "replace") and kind == "group":
            (add if op != "remove" else remove).extend(_ids(value))
            replace = replace or op == "replace"
        elif member and op == "remove" and kind == "group":
            remove.append(int(member.group(1)))
        elif attribute == "roles" or (not path and isinstance(value, dict) and "roles" in value):
            # Roles are a list: adding one keeps the others, removing one keeps the others; only replacing
            # them all says what is left (before, adding any other role took the admin role away).
            roles = value.get("roles") if not path and isinstance(value, dict) else value
            fields |= _roles(op, path, roles)
            if not path and isinstance(value, dict) and op in ("replace", "add"):
                fields |= _fields(kind, {k: v for k, v in value.items() if k != "roles"})
        elif op == "remove" and path and ADMIN_ROLE_PATH_RE.match(path):
            fields["account_admin"] = False
        elif op in ("replace", "add") and not path and isinstance(value, dict):
            fields |= _fields(kind, value)
        elif op in ("replace", "add") and attribute is not None:
            fields |= _fields(kind, {attribute: value})
        else:
            raise InvalidParameter(f"Unsupported PATCH operation {op!r} on {path or 'the resource'!r}.")
    return fields, add, remove, replace


# The SCIM changes whose body is decoded before the handler runs, by route name: what each is audited as.
DECODED_CHANGES = {"scim create": "create", "scim patch": "update"}


def audit_undecoded_body(
    principals: PrincipalService, request: Request[Any, Any, Any], status: int, error_code: str
) -> None:
    """A SCIM create or PATCH whose body does not decode into a SCIM document is refused before its handler runs
    (its caller passed the account-admin guard, which runs first): audited as the change denied, as the handler's own
    refusals are (`PrincipalService.refusals`), with no value of the request."""
    route = request.scope.get("route_handler")
    change = DECODED_CHANGES.get(getattr(route, "name", None) or "")
    user = request.scope.get("user")
    if change is None or not isinstance(user, Principal):
        return
    params = request.scope.get("path_params") or {}
    label = RESOURCES.get(str(params.get("resource", "")), "principal")
    target = label if change == "create" else f"{label}:{params.get('principal_id', '')}"
    principals.refused_body(user, f"{label}.{change}", target, _request_id(request), status, error_code)


def _request_id(request: Request[Principal, Any, Any]) -> str:
    return str(request.scope.get(REQUEST_ID_KEY, ""))  # type: ignore[call-overload,unused-ignore]


def _kind(resource: str) -> str:
    kind = RESOURCES.get(resource)
    if kind is None:
        raise InvalidParameter(f"Unknown SCIM resource '{resource}'; use Users, ServicePrincipals or Groups.")
    return kind


class TokenController(Controller):
    """The caller's own tokens (`/token`); every principal's are under TokenManagementController."""

    path = "/api/2.0/token"
    opt = {"access": "any principal: its own tokens"}

    @post("/create", name="token create", status_code=200)
    async def create(
        self, request: Request[Principal, Any, Any], data: CreateToken, tokens: TokenService
    ) -> TokenCreated:
        caller = request.user
        if caller.id is None:
            raise InvalidParameter("The bootstrap admin token cannot own tokens; create a user or service principal.")
        value, row = await tokens.create(
            caller, caller.id, comment=data.comment or "", lifetime_seconds=_lifetime(data.lifetime_seconds)
        )
        return TokenCreated(token_value=value, token_info=_ms(row))

    @get("/list", name="token list")
    async def list_own(self, request: Request[Principal, Any, Any], tokens: TokenService) -> TokenList:
        if request.user.id is None:
            return TokenList(token_infos=[])
        return TokenList(token_infos=[_ms(row) for row in await tokens.list(request.user.id)])

    @post("/delete", name="token delete", status_code=200)
    async def delete_own(self, request: Request[Principal, Any, Any], data: DeleteToken, tokens: TokenService) -> Empty:
        token_id = data.token_id
        if not token_id:
            raise InvalidParameter("'token_id' is required.")
        await tokens.revoke(request.user, token_id, owner_id=request.user.id if request.user.id is not None else -1)
        return Empty()


class TokenManagementController(Controller):
    """Every principal's tokens (`/token-management`): account admins."""

    path = "/api/2.0/token-management"
    opt = {"access": "account admins"}
    guards = [account_admin()]

    @post("/on-behalf-of/tokens", name="token on behalf of", status_code=200)
    async def create_for(
        self,
        request: Request[Principal, Any, Any],
        data: CreateTokenOnBehalfOf,
        tokens: TokenService,
        principals: PrincipalService,
    ) -> ManagedTokenCreated:
        owner_id = whole(data.owner_id) if data.owner_id is not None else None

        def named(snapshot: Directory) -> Known | None:
            if data.application_id:
                return snapshot.find("service_principal", data.application_id)
            if data.user_name:
                return snapshot.find("user", names.canonical("user", data.user_name))
            return snapshot.principal(owner_id) if owner_id is not None else None

        owner = await principals.policy.found(named)  # made on another replica moments ago? Found there
        if owner is None:
            raise InvalidParameter("Name the owner: application_id, user_name or owner_id of an existing principal.")
        value, row = await tokens.create(
            request.user, owner.id, comment=data.comment or "", lifetime_seconds=_lifetime(data.lifetime_seconds)
        )
        return ManagedTokenCreated(token_value=value, token_info=_managed(row, principals))

    @get("/tokens", name="token management list")
    async def list_all(
        self,
        request: Request[Principal, Any, Any],
        tokens: TokenService,
        principals: PrincipalService,
        created_by_id: int | None = None,
        owner_id: int | None = None,
    ) -> ManagedTokenList:
        rows = [row for row in await tokens.list(owner_id) if created_by_id is None or row.created_by == created_by_id]
        await _knowing(rows, principals)
        return ManagedTokenList(token_infos=[_managed(row, principals) for row in rows])

    @get("/tokens/{token_id:str}", name="token management get")
    async def get_one(self, token_id: str, tokens: TokenService, principals: PrincipalService) -> ManagedToken:
        row = await tokens.get(token_id)
        await _knowing([row], principals)
        return ManagedToken(token_info=_managed(row, principals))

    @delete("/tokens/{token_id:str}", name="token management delete", status_code=200)
    async def delete_any(self, request: Request[Principal, Any, Any], token_id: str, tokens: TokenService) -> Empty:
        await tokens.revoke(request.user, token_id, owner_id=None)
        return Empty()


def _lifetime(raw: int | str | None) -> int | None:
    if raw is None:
        return None
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and (magnitude := whole(raw.removeprefix("-"))) is not None:
        return -magnitude if raw.startswith("-") else magnitude
    raise InvalidParameter("'lifetime_seconds' must be a whole number of seconds.")


async def _knowing(rows: list[TokenRow], principals: PrincipalService) -> None:
    """A token's owner or creator made through another replica moments ago is named once this replica's policy
    is the stored one (one query, and only when some row names a principal the policy in use does not know: a
    creator deleted since costs it at every listing)."""
    named = {row.principal_id for row in rows} | {row.created_by for row in rows if row.created_by is not None}
    await principals.policy.found(lambda snapshot: all(snapshot.principal(i) is not None for i in named) or None)


def _managed(row: TokenRow, principals: PrincipalService) -> ManagedTokenInfo:
    snapshot = principals.policy.snapshot
    owner = snapshot.principal(row.principal_id)
    creator = snapshot.principal(row.created_by) if row.created_by is not None else None
    return ManagedTokenInfo(
        **_info(row),
        owner_id=row.principal_id,
        owner_name=owner.name if owner else "",
        created_by_id=row.created_by if row.created_by is not None else 0,
        # The bootstrap admin has no row (no id); a creator deleted since is named by nobody (null), never taken
        # for the bootstrap admin: their id stays in created_by_id.
        created_by_username="admin" if row.created_by is None else (creator.name if creator else None),
    )
