"""The access console's JSON API, `/api/2.0/fedgate/console/access/...`: what its pages call.

Every route refuses (403 PERMISSION_DENIED, audited) whoever is neither an account admin nor a workspace
admin, with a guard that runs before a body is read (`console_guard`); what a workspace admin sees and
revokes is then limited to its workspaces by the service. Calls from the page carry the session cookie,
so the revoke (a POST) passes the cross-site checks of `gateway/authn/browser.py` in the middleware.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from litestar import Controller, Request, get, post
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.params import Parameter
from litestar.types import Guard

from gateway.authz.schemas import AuditEntries
from gateway.console.access.schemas import (
    ConsoleViewer,
    EffectivePermissions,
    PrincipalDetail,
    PrincipalPage,
    RevokeRequest,
    RevokeResponse,
)
from gateway.console.access.service import NOT_ALLOWED, AccessConsole
from gateway.core.errors import PermissionDenied
from gateway.core.principal import Principal

API_PATH = "/api/2.0/fedgate/console/access"
ACCESS_NOTE = "account admins; workspace admins within the workspaces they administer"


def console_guard(console: AccessConsole) -> Guard:
    """Lets account admins and workspace admins through; everyone else is refused before anything is read.

    A caller who is neither as the policy in use has it is refused only by the stored policy
    (`Authorizer.caught_up`, one query when this replica is not behind): an account admin role or a workspace's
    CAN_MANAGE given through another replica moments ago counts at once, and the handlers then serve the caller
    as that policy has it.
    """

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        caller = connection.scope.get("user")
        if not isinstance(caller, Principal):
            raise PermissionDenied(NOT_ALLOWED)
        if console.viewer(caller) is not None:
            return
        newer = await console.caught_up(caller)
        if newer is None or console.viewer(newer) is None:
            raise PermissionDenied(NOT_ALLOWED)
        connection.scope["user"] = newer

    return guard


class AccessConsoleController(Controller):
    path = API_PATH
    opt = {"access": ACCESS_NOTE}

    @get("/viewer", name="console access viewer")
    async def viewer(self, request: Request[Principal, Any, Any], access_console: AccessConsole) -> ConsoleViewer:
        return access_console.describe(access_console.require(request.user))

    @get("/principals", name="console access principals")
    async def principals(
        self,
        request: Request[Principal, Any, Any],
        access_console: AccessConsole,
        kind: str | None = None,
        filter: str | None = None,  # the query parameter's name
        page_token: str | None = None,
        max_results: int = Parameter(query="max_results", default=100, ge=1, le=500),
    ) -> PrincipalPage:
        viewer = access_console.require(request.user)
        return access_console.principals(viewer, kind=kind, text=filter, page_token=page_token, max_results=max_results)

    @get("/principals/{principal_id:int}", name="console access principal")
    async def principal(
        self, request: Request[Principal, Any, Any], access_console: AccessConsole, principal_id: int
    ) -> PrincipalDetail:
        return access_console.principal(access_console.require(request.user), principal_id)

    @get("/principals/{principal_id:int}/effective", name="console access effective permissions")
    async def effective(
        self, request: Request[Principal, Any, Any], access_console: AccessConsole, principal_id: int
    ) -> EffectivePermissions:
        return await access_console.effective(access_console.require(request.user), principal_id)

    @post("/revoke", name="console access revoke", status_code=200)
    async def revoke(
        self, request: Request[Principal, Any, Any], access_console: AccessConsole, data: RevokeRequest
    ) -> RevokeResponse:
        return await access_console.revoke(access_console.require(request.user), data)

    @get("/audit", name="console access audit log")
    async def audit(
        self,
        request: Request[Principal, Any, Any],
        access_console: AccessConsole,
        actor: str | None = None,
        action: str | None = None,
        target: str | None = None,
        workspace: str | None = None,
        outcome: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        page_token: str | None = None,
        max_results: int = Parameter(query="max_results", default=50, ge=1, le=500),
    ) -> AuditEntries:
        return await access_console.audit(
            access_console.require(request.user),
            actor=actor,
            action=action,
            target=target,
            workspace=workspace,
            outcome=outcome,
            since=since,
            until=until,
            page_token=page_token,
            max_results=max_results,
        )
