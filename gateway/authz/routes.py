"""The permissions API (Databricks shapes), Unity Catalog grants and the audit log, over REST."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from litestar import Controller, Request, get, patch, put
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.audit.repository import AuditRepository
from gateway.authz.levels import Level, experiment_object, model_object
from gateway.authz.ports import Workspaces
from gateway.authz.schemas import (
    AuditEntries,
    EffectivePermissionsList,
    ObjectPermissions,
    PermissionLevels,
    PermissionsList,
    SetPermissions,
    UpdatePermissions,
    audit_entries,
)
from gateway.authz.service import AccessService, Securable
from gateway.authz.workspace_choice import workspace_for
from gateway.core.errors import ResourceNotFound
from gateway.core.numbers import is_number
from gateway.core.principal import Principal
from gateway.principals.guards import account_admin


class PermissionsController(Controller):
    """GET/PUT/PATCH `/api/2.0/permissions/{experiments|registered-models|workspaces}/{id}` (+ permissionLevels).

    An object the caller may not read answers 404 with the very status and message of a missing one.
    """

    path = "/api/2.0/permissions"
    opt = {"access": "read: CAN_READ on the object; change: CAN_MANAGE"}

    async def _decided(
        self,
        request: Request[Principal, Any, Any],
        kind: str,
        object_id: str,
        access: AccessService,
        workspaces: Workspaces,
        *,
        manage: bool = False,
    ) -> tuple[Principal, Securable]:
        """The caller and the object, the caller's access to it decided by the stored policy when refused: a grant,
        a group joined or an account admin role given through another replica moments ago counts at once
        (`Authorizer.deciding`)."""

        async def decide(caller: Principal) -> tuple[Principal, Securable]:
            target = await self._target(request, caller, kind, object_id, access, workspaces)
            if manage:
                access.check_can_manage(caller, target)
            return caller, target

        return await access.authorizer.deciding(request.user, decide)

    async def _target(
        self,
        request: Request[Principal, Any, Any],
        caller: Principal,
        kind: str,
        object_id: str,
        access: AccessService,
        workspaces: Workspaces,
    ) -> Securable:
        if kind == "workspaces":
            target = access.workspace(workspaces.link_named(object_id))
            access.check_can_view(caller, target)
            return target
        link = workspace_for(request, caller, workspaces, access.authorizer)
        if kind == "experiments":
            missing = f"No Experiment with id={object_id} exists"
            obj = experiment_object(link.workspace_id, object_id)
        elif kind == "registered-models":
            missing = f"Registered model with id={object_id} not found"
            obj = model_object(link.workspace_id, object_id)
        else:
            raise ResourceNotFound(
                f"No permissions API for '{kind}'; use experiments, registered-models or workspaces."
            )
        # Access is decided before the store (or the id table) is asked, and both refusals carry one
        # message: a caller who may not read the object cannot tell a hidden one from a missing one.
        access.authorizer.require(caller, link.workspace_id, obj, Level.CAN_READ, missing)
        try:
            if kind == "experiments":
                return await access.experiment(link, object_id)
            return await access.registered_model(link, object_id)
        except ResourceNotFound:
            raise ResourceNotFound(missing) from None

    @get("/{kind:str}/{object_id:str}", name="permissions get")
    async def get_acl(
        self,
        request: Request[Principal, Any, Any],
        kind: str,
        object_id: str,
        access: AccessService,
        workspaces: Workspaces,
    ) -> ObjectPermissions:
        _, target = await self._decided(request, kind, object_id, access, workspaces)
        return access.acl(target)

    @get("/{kind:str}/{object_id:str}/permissionLevels", name="permissions levels")
    async def get_levels(
        self,
        request: Request[Principal, Any, Any],
        kind: str,
        object_id: str,
        access: AccessService,
        workspaces: Workspaces,
    ) -> PermissionLevels:
        _, target = await self._decided(request, kind, object_id, access, workspaces)
        return access.levels(target)

    @put("/{kind:str}/{object_id:str}", name="permissions set")
    async def set_acl(
        self,
        request: Request[Principal, Any, Any],
        kind: str,
        object_id: str,
        data: SetPermissions,
        access: AccessService,
        workspaces: Workspaces,
    ) -> ObjectPermissions:
        caller, target = await self._decided(request, kind, object_id, access, workspaces, manage=True)
        return await access.set_acl(caller, target, data.access_control_list, replace=True)

    @patch("/{kind:str}/{object_id:str}", name="permissions update")
    async def update_acl(
        self,
        request: Request[Principal, Any, Any],
        kind: str,
        object_id: str,
        data: SetPermissions,
        access: AccessService,
        workspaces: Workspaces,
    ) -> ObjectPermissions:
        caller, target = await self._decided(request, kind, object_id, access, workspaces, manage=True)
        return await access.set_acl(caller, target, data.access_control_list, replace=False)


class UnityCatalogController(Controller):
    path = "/api/2.1/unity-catalog"
    opt = {"access": "account admins and holders of MANAGE; effective permissions of oneself: anyone"}

    @get("/permissions/{securable_type:str}/{full_name:str}", name="uc grants get")
    async def get_grants(
        self,
        request: Request[Principal, Any, Any],
        securable_type: str,
        full_name: str,
        access: AccessService,
        principal: str | None = None,
    ) -> PermissionsList:

        owner = await access.view_owner(securable_type, full_name)

        async def decide(caller: Principal) -> PermissionsList:
            obj = access.securable(caller, securable_type, full_name, owner_id=owner)
            access.check_uc_manager(caller, obj)
            return access.uc_assignments(caller, obj, principal)

        # The securable, the caller's MANAGE and the principal named (`principal`) as the stored policy has them
        # when the policy in use refuses or lacks them: made through another replica moments ago, they count.
        return await access.authorizer.deciding(request.user, decide)

    @patch("/permissions/{securable_type:str}/{full_name:str}", name="uc grants update")
    async def update_grants(
        self,
        request: Request[Principal, Any, Any],
        securable_type: str,
        full_name: str,
        data: UpdatePermissions,
        access: AccessService,
    ) -> PermissionsList:

        owner = await access.view_owner(securable_type, full_name)

        async def decide(caller: Principal) -> tuple[Principal, str]:
            obj = access.securable(caller, securable_type, full_name, owner_id=owner)
            access.check_uc_manager(caller, obj)
            return caller, obj

        caller, obj = await access.authorizer.deciding(request.user, decide)
        return await access.uc_update(caller, obj, data.changes)

    @get("/effective-permissions/{securable_type:str}/{full_name:str}", name="uc effective permissions")
    async def effective(
        self,
        request: Request[Principal, Any, Any],
        securable_type: str,
        full_name: str,
        access: AccessService,
        principal: str | None = None,
    ) -> EffectivePermissionsList:

        owner = await access.view_owner(securable_type, full_name)

        async def decide(caller: Principal) -> EffectivePermissionsList:
            obj = access.securable(caller, securable_type, full_name, owner_id=owner)
            if not access.is_self(caller, principal):
                access.check_uc_manager(caller, obj)
            return access.uc_effective(caller, obj, principal)

        return await access.authorizer.deciding(request.user, decide)


class AuditController(Controller):
    path = "/api/2.0/fedgate/audit-log"
    opt = {"access": "account admins"}
    guards = [account_admin()]

    @get("/", name="audit log")
    async def entries(
        self,
        request: Request[Principal, Any, Any],
        sessionmaker: async_sessionmaker[AsyncSession],
        page_token: str | None = None,
        since: datetime | None = None,
        actor: str | None = None,
        action: str | None = None,
        outcome: str | None = None,
        max_results: int = Parameter(query="max_results", default=100, ge=1, le=1000),
    ) -> AuditEntries:
        after_id = int(page_token) if page_token and is_number(page_token) else 0  # any other token: the start
        async with sessionmaker() as session:
            rows = await AuditRepository(session).query(
                after_id=after_id, since=since, actor=actor, action=action, outcome=outcome, limit=max_results
            )
        return audit_entries(rows, max_results)
