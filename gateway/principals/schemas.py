"""Request and response bodies of the SCIM 2.0 principals API and the token APIs (Databricks shapes).

Responses write out every field the shapes always carry; fields a resource carries only sometimes
(`externalId`, `roles`, a user's `userName`, a group's `members`) are left out when absent rather than
sent as null (`omit_defaults`). Request bodies ignore fields they do not know, as SCIM clients expect.
"""

from __future__ import annotations

from typing import Any

import msgspec

# -- SCIM ----------------------------------------------------------------------------------------------


class ScimRef(msgspec.Struct, kw_only=True):
    """A member or a group of a principal."""

    value: str
    display: str
    ref: str = msgspec.field(name="$ref")


class ScimEmail(msgspec.Struct, kw_only=True):
    value: str
    type: str
    primary: bool


class ScimRole(msgspec.Struct, kw_only=True):
    value: str  # "account_admin" makes an account admin


class ScimResource(msgspec.Struct, omit_defaults=True, kw_only=True):
    """A user, service principal or group; the fields of the other kinds are left out."""

    id: str
    displayName: str | None = None  # SCIM attribute names are camelCase
    schemas: list[str]
    userName: str | None = None
    applicationId: str | None = None
    members: list[ScimRef] | None = None
    active: bool | None = None
    emails: list[ScimEmail] | None = None
    externalId: str | None = None
    roles: list[ScimRole] | None = None
    groups: list[ScimRef]


class ScimList(msgspec.Struct, kw_only=True):
    schemas: list[str]
    totalResults: int
    startIndex: int
    itemsPerPage: int
    Resources: list[ScimResource]


class ScimMember(msgspec.Struct, kw_only=True):
    value: str | int  # a principal id


class ScimCreate(msgspec.Struct, kw_only=True):
    """POST /Users, /ServicePrincipals, /Groups: the name attribute of the kind (userName, applicationId or
    displayName), optional roles, externalId and, for groups, members; `groups` adds the new principal to them."""

    schemas: list[str] | None = None
    userName: str | None = None
    applicationId: str | None = None
    displayName: str | None = None
    active: bool = True
    roles: list[ScimRole] | None = None
    externalId: str | None = None
    members: list[ScimMember | str | int] | None = None
    groups: list[ScimMember | str | int] | None = None


class ScimOperation(msgspec.Struct, kw_only=True):
    op: str = ""  # add | remove | replace
    path: str | None = None  # an attribute, `members` or `members[value eq "<id>"]`; none: `value` is an object
    value: Any = None


class ScimPatch(msgspec.Struct, kw_only=True):
    schemas: list[str] | None = None
    Operations: list[ScimOperation] | None = None
    operations: list[ScimOperation] | None = None  # accepted spelt in lower case too


# -- tokens ----------------------------------------------------------------------------------------------


class TokenInfo(msgspec.Struct, kw_only=True):
    token_id: str
    creation_time: int  # ms since the epoch
    expiry_time: int  # ms since the epoch; -1: never
    comment: str


class ManagedTokenInfo(TokenInfo, kw_only=True):
    owner_id: int
    owner_name: str
    created_by_id: int  # 0: the bootstrap admin
    created_by_username: str | None  # "admin": the bootstrap admin; null: a principal deleted since


class CreateToken(msgspec.Struct, kw_only=True):
    comment: str | None = None
    lifetime_seconds: int | str | None = None  # at most tokens.max_lifetime_seconds; none: the default


class CreateTokenOnBehalfOf(CreateToken, kw_only=True):
    """Name the owner by one of application_id, user_name or owner_id."""

    application_id: str | None = None
    user_name: str | None = None
    owner_id: int | str | None = None


class DeleteToken(msgspec.Struct, kw_only=True):
    token_id: str = ""


class TokenCreated(msgspec.Struct, kw_only=True):
    token_value: str  # shown once
    token_info: TokenInfo


class ManagedTokenCreated(msgspec.Struct, kw_only=True):
    token_value: str
    token_info: ManagedTokenInfo


class TokenList(msgspec.Struct, kw_only=True):
    token_infos: list[TokenInfo]


class ManagedTokenList(msgspec.Struct, kw_only=True):
    token_infos: list[ManagedTokenInfo]


class ManagedToken(msgspec.Struct, kw_only=True):
    token_info: ManagedTokenInfo
