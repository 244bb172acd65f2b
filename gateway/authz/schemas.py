"""Request and response bodies of the permissions API, Unity Catalog grants and the audit log (Databricks
shapes). Fields an entry carries only sometimes (where a permission is inherited from) are left out when
absent, not sent as null (`omit_defaults`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:
    from gateway.db.models import AuditRow

# -- the permissions API ---------------------------------------------------------------------------------


class Permission(msgspec.Struct, omit_defaults=True, kw_only=True):
    permission_level: str
    inherited: bool
    inherited_from_object: list[str] | None = None  # ["/workspaces/<name>"] for a workspace-wide grant


class AccessControlResponse(msgspec.Struct, omit_defaults=True, kw_only=True):
    """One principal's permissions; exactly one of user_name, group_name, service_principal_name."""

    user_name: str | None = None
    group_name: str | None = None
    service_principal_name: str | None = None
    display_name: str
    all_permissions: list[Permission]


class ObjectPermissions(msgspec.Struct, kw_only=True):
    object_id: str  # /experiments/5, /registered-models/3, /workspaces/team-a
    object_type: str  # mlflowExperiment | registeredModel | workspace
    access_control_list: list[AccessControlResponse]


class PermissionLevel(msgspec.Struct, kw_only=True):
    permission_level: str
    description: str


class PermissionLevels(msgspec.Struct, kw_only=True):
    permission_levels: list[PermissionLevel]


class AccessControlRequest(msgspec.Struct, kw_only=True):
    """Name exactly one of user_name, group_name, service_principal_name."""

    user_name: str | None = None
    group_name: str | None = None
    service_principal_name: str | None = None
    permission_level: str = ""


class SetPermissions(msgspec.Struct, kw_only=True):
    """PUT replaces the direct grants with these; PATCH adds or changes them."""

    access_control_list: list[AccessControlRequest]


# -- Unity Catalog grants ------------------------------------------------------------------------------


class PrivilegeAssignment(msgspec.Struct, kw_only=True):
    principal: str
    privileges: list[str]


class PermissionsList(msgspec.Struct, kw_only=True):
    privilege_assignments: list[PrivilegeAssignment]


class EffectivePrivilege(msgspec.Struct, omit_defaults=True, kw_only=True):
    privilege: str
    inherited_from_type: str | None = None  # CATALOG | SCHEMA, for a grant on a container
    inherited_from_name: str | None = None
    inherited_from_principal: str | None = None  # the group the grant is held through


class EffectivePrivilegeAssignment(msgspec.Struct, kw_only=True):
    principal: str
    privileges: list[EffectivePrivilege]


class EffectivePermissionsList(msgspec.Struct, kw_only=True):
    privilege_assignments: list[EffectivePrivilegeAssignment]


class PermissionsChange(msgspec.Struct, kw_only=True):
    principal: str = ""
    add: list[str] | None = None  # privilege names; ALL PRIVILEGES expands to all but MANAGE
    remove: list[str] | None = None


class UpdatePermissions(msgspec.Struct, kw_only=True):
    changes: list[PermissionsChange]


# -- the audit log ---------------------------------------------------------------------------------------


class AuditEntry(msgspec.Struct, omit_defaults=True, kw_only=True):
    # The row's number in the whole account's log: for account admins only (a reader of a part of the log would
    # read from the gaps how much happened elsewhere).
    id: int | None = None
    time: str  # ISO 8601
    actor: str
    action: str
    target: str
    outcome: str
    details: dict[str, Any]
    request_id: str


class AuditEntries(msgspec.Struct, omit_defaults=True, kw_only=True):
    entries: list[AuditEntry]
    next_page_token: str | None = None  # present when there may be more


def audit_entries(
    rows: Sequence[AuditRow], max_results: int, *, ids: bool = True, token: Callable[[int], str] = str
) -> AuditEntries:
    """A page of the audit log as read (in the reader's order): with the rows' ids when `ids`, and, when the page is
    full, the token of its last row's id (`token`) to page on."""
    return AuditEntries(
        entries=[
            AuditEntry(
                id=row.id if ids else None,
                time=row.at.isoformat(),
                actor=row.actor,
                action=row.action,
                target=row.target,
                outcome=row.outcome,
                details=row.details,
                request_id=row.request_id,
            )
            for row in rows
        ],
        next_page_token=token(rows[-1].id) if len(rows) == max_results else None,
    )
