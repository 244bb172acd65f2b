"""Request and response bodies of the access console's API (`/api/2.0/fedgate/console/access/...`).

Fields an item carries only sometimes (where a privilege is inherited from, the grant a source can be
revoked by) are left out when absent rather than sent as null (`omit_defaults`).
"""

from __future__ import annotations

import msgspec


class PrincipalRef(msgspec.Struct, kw_only=True):
    id: int
    kind: str  # user | service_principal | group
    name: str


class PrincipalSummary(msgspec.Struct, omit_defaults=True, kw_only=True):
    id: int
    kind: str
    name: str
    display_name: str = ""
    active: bool = True
    account_admin: bool = False
    member_count: int | None = None  # groups: direct members, those the viewer sees


class PrincipalPage(msgspec.Struct, omit_defaults=True, kw_only=True):
    principals: list[PrincipalSummary]
    next_page_token: str | None = None


class GroupPath(msgspec.Struct, kw_only=True):
    """A group the principal is in, and the groups on the way there (the group itself last)."""

    group: PrincipalRef
    via: list[PrincipalRef]  # [] when the principal is a direct member


class NestedGroup(msgspec.Struct, kw_only=True):
    group: PrincipalRef
    members: list[NestedGroup]  # the groups inside it, as deep as they go


class PrincipalDetail(msgspec.Struct, omit_defaults=True, kw_only=True):
    principal: PrincipalSummary
    groups: list[GroupPath]  # every group it is in, directly or through other groups
    members: list[PrincipalSummary] | None = None  # groups: direct members
    nested_groups: list[NestedGroup] | None = None  # groups: the groups inside it, nested


class GrantRef(msgspec.Struct, kw_only=True):
    """A stored grant: revoke it by sending this back."""

    principal_id: int
    domain: str
    object: str
    privilege: str


class SourceItem(msgspec.Struct, omit_defaults=True, kw_only=True):
    """Where one privilege comes from."""

    privilege: str  # as granted; `gives` says what it amounts to where that differs (CAN_MANAGE on a workspace)
    origin: str  # direct | group | inherited | owner | workspace users
    holder: PrincipalRef | None = None  # who holds the grant (the principal, or a group); None for `users`
    via: list[PrincipalRef]  # groups from the principal up to the holder, the holder excluded
    inherited_from: str | None = None  # /workspaces/<name>, catalog system, schema system.mlflow
    gives: str | None = None  # what it amounts to here when that differs from `privilege`
    grant: GrantRef | None = None  # absent for what is not a grant (a secret scope's `users` entry)
    affects: int | None = None  # a group's grant: how many principals the viewer sees are in it, at any depth
    description: str  # one sentence a person reads


class ObjectAccess(msgspec.Struct, omit_defaults=True, kw_only=True):
    kind: str  # workspace | experiment | registered_model | secret_scope | catalog | schema | table | view
    name: str  # as a person knows it: team-a, team-a / experiment 5, system.mlflow.runs_latest
    workspace: str | None = None
    object: str  # the policy's object
    effective: str | None = None  # the level or permission in force (the enforcer's answer); None: nothing
    privileges: list[str] = msgspec.field(default_factory=list)  # Unity Catalog: every privilege held
    can_read: bool | None = None  # tables and views: USE CATALOG, USE SCHEMA and SELECT all held
    owner: str | None = None  # views: whose rights the view reads with
    covers: str | None = None  # workspaces: what a level on the workspace also gives
    sources: list[SourceItem]


class EffectivePermissions(msgspec.Struct, omit_defaults=True, kw_only=True):
    principal: PrincipalSummary
    account_admin: bool  # may do everything, whatever the grants below
    workspaces: list[ObjectAccess]
    experiments: list[ObjectAccess]
    registered_models: list[ObjectAccess]
    secret_scopes: list[ObjectAccess]
    system_tables: list[ObjectAccess]
    limited_to: list[str] | None = None  # a workspace admin's view: the workspaces it covers


class RevokeRequest(msgspec.Struct, kw_only=True):
    """A grant to revoke (as a source's `grant` says), or a secret scope's `users` entry."""

    principal_id: int | None = None
    domain: str = ""
    object: str = ""
    privilege: str = ""
    workspace_users: bool = False  # the `users` entry of the secret scope `object`


class RevokeResponse(msgspec.Struct, kw_only=True):
    revoked: GrantRef
    holder: PrincipalRef | None


class ConsoleViewer(msgspec.Struct, kw_only=True):
    """What the signed-in person may see here."""

    account_admin: bool
    workspaces: list[str]  # the workspaces it administers (all, for an account admin)
