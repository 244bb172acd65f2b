"""SCIM 2.0 principals (Databricks shapes) and personal access tokens, over REST."""

from __future__ import annotations

import re
from typing import Any

from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.params import Parameter

from gateway.core.errors import InvalidParameter
from gateway.core.principal import Principal
from gateway.db.models import PrincipalRow, TokenRow
from gateway.principals.guards import account_admin
from gateway.principals.service import PrincipalService, TokenService

SCIM = "/api/2.0/preview/scim/v2"
SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:"
LIST_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
RESOURCES = {"Users": "user", "ServicePrincipals": "service_principal", "Groups": "group"}
NAME_ATTRIBUTE = {"user": "userName", "service_principal": "applicationId", "group": "displayName"}
FILTER_RE = re.compile(r'^\s*(\w+)\s+(eq|ne|co|sw)\s+"((?:[^"\\]|\\.)*)"\s*$', re.IGNORECASE)
MEMBER_PATH_RE = re.compile(r'^members\[value eq "?(\d+)"?\]$')
ADMIN_ROLE = "account_admin"


def _ms(row: TokenRow) -> dict[str, Any]:
    return {
        "token_id": row.token_id,
        "creation_time": int(row.created_at.timestamp() * 1000),
        "expiry_time": int(row.expires_at.timestamp() * 1000) if row.expires_at else -1,
        "comment": row.comment,
    }


def _ref(row: PrincipalRow) -> dict[str, Any]:
    kind = {"user": "Users", "service_principal": "ServicePrincipals", "group": "Groups"}[row.kind]
    return {"value": str(row.id), "display": row.display_name or row.name, "$ref": f"{kind}/{row.id}"}


def scim_resource(row: PrincipalRow, groups: list[PrincipalRow], members: list[PrincipalRow]) -> dict[str, Any]:
    document: dict[str, Any] = {"id": str(row.id), "displayName": row.display_name or row.name}
    if row.kind == "user":
        document |= {
            "schemas": [SCHEMA + "User"],
            "userName": row.name,
            "active": row.active,
            "emails": [{"value": row.name, "type": "work", "primary": True}] if "@" in row.name else [],
        }
    elif row.kind == "service_principal":
        document |= {"schemas": [SCHEMA + "ServicePrincipal"], "applicationId": row.name, "active": row.active}
    else:
        document |= {"schemas": [SCHEMA + "Group"], "displayName": row.name, "members": [_ref(m) for m in members]}
    if row.external_id:
        document["externalId"] = row.external_id
    if row.account_admin:
        document["roles"] = [{"value": ADMIN_ROLE}]
    document["groups"] = [_ref(g) for g in groups]
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
    left, right = actual.casefold(), value.casefold()  # SCIM compares these attributes case-insensitively
    return {"eq": left == right, "ne": left != right, "co": right in left, "sw": left.startswith(right)}[op]


def _ids(values: Any) -> list[int]:
    if values is None:
        return []
    if not isinstance(values, list):
        values = [values]
    result = []
    for item in values:
        raw = item.get("value") if isinstance(item, dict) else item
        if not str(raw).isdigit():
            raise InvalidParameter(f"Invalid member id {raw!r}.")
        result.append(int(str(raw)))
    return result


def _is_admin(document: dict[str, Any]) -> bool:
    roles = document.get("roles") or []
    return any(isinstance(r, dict) and r.get("value") == ADMIN_ROLE for r in roles)


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
    include_in_schema = False
    opt = {"access": "any principal: itself"}

    @get("/Me", name="scim me")
    async def me(self, request: Request[Principal, Any, Any], principals: PrincipalService) -> dict[str, Any]:
        caller = request.user
        if caller.id is None:
            return {
                "schemas": [SCHEMA + "User"],
                "id": "0",
                "userName": caller.name,
                "active": True,
                "roles": [{"value": ADMIN_ROLE}],
                "groups": [],
            }
        kind = caller.kind if caller.kind in RESOURCES.values() else "user"
        row, groups, members = await principals.get(kind, caller.id)
        return scim_resource(row, groups, members)


class ScimController(Controller):
    path = SCIM
    include_in_schema = False
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
    ) -> dict[str, Any]:
        kind = _kind(resource)
        rows = [entry for entry in await principals.list(kind) if _matches(entry[0], kind, filter)]
        resources = [scim_resource(*entry) for entry in rows[start_index - 1 : start_index - 1 + count]]
        return {
            "schemas": [LIST_SCHEMA],
            "totalResults": len(rows),
            "startIndex": start_index,
            "itemsPerPage": len(resources),
            "Resources": resources,
        }

    @post("/{resource:str}", name="scim create", status_code=201)
    async def create(
        self, request: Request[Principal, Any, Any], resource: str, data: dict[str, Any], principals: PrincipalService
    ) -> dict[str, Any]:
        kind = _kind(resource)
        name = str(data.get(NAME_ATTRIBUTE[kind]) or "")
        if not name and kind != "service_principal":
            raise InvalidParameter(f"'{NAME_ATTRIBUTE[kind]}' is required.")
        active = data.get("active", True)
        if not isinstance(active, bool):
            raise InvalidParameter("'active' must be true or false.")
        row = await principals.create(
            request.user,
            kind,
            name,
            display_name=str(data.get("displayName") or ""),
            active=active,
            account_admin=_is_admin(data),
            external_id=data.get("externalId"),
            members=_ids(data.get("members")) if kind == "group" else (),
        )
        for group_id in _ids(data.get("groups")):
            await principals.update(request.user, "group", group_id, fields={}, add_members=[row.id])
        return scim_resource(*(await principals.get(kind, row.id)))

    @get("/{resource:str}/{principal_id:int}", name="scim get")
    async def get_one(
        self, request: Request[Principal, Any, Any], resource: str, principal_id: int, principals: PrincipalService
    ) -> dict[str, Any]:
        return scim_resource(*(await principals.get(_kind(resource), principal_id)))

    @patch("/{resource:str}/{principal_id:int}", name="scim patch")
    async def patch_one(
        self,
        request: Request[Principal, Any, Any],
        resource: str,
        principal_id: int,
        data: dict[str, Any],
        principals: PrincipalService,
    ) -> dict[str, Any]:
        kind = _kind(resource)
        operations = data.get("Operations") or data.get("operations")
        if not isinstance(operations, list) or not operations:
            raise InvalidParameter("A SCIM PATCH carries a non-empty 'Operations' list.")
        fields: dict[str, Any] = {}
        add: list[int] = []
        remove: list[int] = []
        for operation in operations:
            if not isinstance(operation, dict):
                raise InvalidParameter("Each operation is an object.")
            op = str(operation.get("op", "")).lower()
            path = str(operation.get("path") or "")
            value = operation.get("value")
            member = MEMBER_PATH_RE.match(path)
            if path == "members" and op in ("add", "remove", "replace") and kind == "group":
                (add if op != "remove" else remove).extend(_ids(value))
                if op == "replace":
                    fields["_replace"] = True
            elif member and op == "remove" and kind == "group":
                remove.append(int(member.group(1)))
            elif op in ("replace", "add") and not path and isinstance(value, dict):
                fields |= _fields(kind, value)
            elif op in ("replace", "add") and path:
                fields |= _fields(kind, {path: value})
            else:
                raise InvalidParameter(f"Unsupported PATCH operation {op!r} on {path or 'the resource'!r}.")
        replace = fields.pop("_replace", False)
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
        await principals.delete(request.user, _kind(resource), principal_id)


def _kind(resource: str) -> str:
    kind = RESOURCES.get(resource)
    if kind is None:
        raise InvalidParameter(f"Unknown SCIM resource '{resource}'; use Users, ServicePrincipals or Groups.")
    return kind


class TokenController(Controller):
    """The caller's own tokens (`/token`); every principal's are under TokenManagementController."""

    path = "/api/2.0/token"
    include_in_schema = False
    opt = {"access": "any principal: its own tokens"}

    @post("/create", name="token create", status_code=200)
    async def create(
        self, request: Request[Principal, Any, Any], data: dict[str, Any], tokens: TokenService
    ) -> dict[str, Any]:
        caller = request.user
        if caller.id is None:
            raise InvalidParameter("The bootstrap admin token cannot own tokens; create a user or service principal.")
        value, row = await tokens.create(
            caller, caller.id, comment=str(data.get("comment") or ""), lifetime_seconds=_lifetime(data)
        )
        return {"token_value": value, "token_info": _ms(row)}

    @get("/list", name="token list")
    async def list_own(self, request: Request[Principal, Any, Any], tokens: TokenService) -> dict[str, Any]:
        if request.user.id is None:
            return {"token_infos": []}
        return {"token_infos": [_ms(row) for row in await tokens.list(request.user.id)]}

    @post("/delete", name="token delete", status_code=200)
    async def delete_own(
        self, request: Request[Principal, Any, Any], data: dict[str, Any], tokens: TokenService
    ) -> dict[str, Any]:
        token_id = str(data.get("token_id") or "")
        if not token_id:
            raise InvalidParameter("'token_id' is required.")
        await tokens.revoke(request.user, token_id, owner_id=request.user.id if request.user.id is not None else -1)
        return {}


class TokenManagementController(Controller):
    """Every principal's tokens (`/token-management`): account admins."""

    path = "/api/2.0/token-management"
    include_in_schema = False
    opt = {"access": "account admins"}
    guards = [account_admin()]

    @post("/on-behalf-of/tokens", name="token on behalf of", status_code=200)
    async def create_for(
        self,
        request: Request[Principal, Any, Any],
        data: dict[str, Any],
        tokens: TokenService,
        principals: PrincipalService,
    ) -> dict[str, Any]:
        snapshot = principals.policy.snapshot
        owner = None
        if data.get("application_id"):
            owner = snapshot.find("service_principal", str(data["application_id"]))
        elif data.get("user_name"):
            owner = snapshot.find("user", str(data["user_name"]).strip().casefold())
        elif str(data.get("owner_id", "")).isdigit():
            owner = snapshot.principal(int(data["owner_id"]))
        if owner is None:
            raise InvalidParameter("Name the owner: application_id, user_name or owner_id of an existing principal.")
        value, row = await tokens.create(
            request.user, owner.id, comment=str(data.get("comment") or ""), lifetime_seconds=_lifetime(data)
        )
        return {"token_value": value, "token_info": _managed(row, principals)}

    @get("/tokens", name="token management list")
    async def list_all(
        self,
        request: Request[Principal, Any, Any],
        tokens: TokenService,
        principals: PrincipalService,
        created_by_id: int | None = None,
        owner_id: int | None = None,
    ) -> dict[str, Any]:
        rows = await tokens.list(owner_id)
        infos = [_managed(row, principals) for row in rows if created_by_id is None or row.created_by == created_by_id]
        return {"token_infos": infos}

    @get("/tokens/{token_id:str}", name="token management get")
    async def get_one(
        self, request: Request[Principal, Any, Any], token_id: str, tokens: TokenService, principals: PrincipalService
    ) -> dict[str, Any]:
        return {"token_info": _managed(await tokens.get(token_id), principals)}

    @delete("/tokens/{token_id:str}", name="token management delete", status_code=200)
    async def delete_any(
        self, request: Request[Principal, Any, Any], token_id: str, tokens: TokenService
    ) -> Response[dict[str, Any]]:
        await tokens.revoke(request.user, token_id, owner_id=None)
        return Response({})


def _lifetime(data: dict[str, Any]) -> int | None:
    raw = data.get("lifetime_seconds")
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int | str) or not str(raw).lstrip("-").isdigit():
        raise InvalidParameter("'lifetime_seconds' must be a whole number of seconds.")
    return int(raw)


def _managed(row: TokenRow, principals: PrincipalService) -> dict[str, Any]:
    snapshot = principals.policy.snapshot
    owner = snapshot.principal(row.principal_id)
    creator = snapshot.principal(row.created_by) if row.created_by is not None else None
    return _ms(row) | {
        "owner_id": row.principal_id,
        "owner_name": owner.name if owner else "",
        "created_by_id": row.created_by if row.created_by is not None else 0,
        "created_by_username": creator.name if creator else "admin",
    }
