"""Rules of the whole workspace and of the server: entry, workspace-wide levels, and what only admins may do."""

from __future__ import annotations

from gateway.authz.levels import Level
from gateway.core.errors import PermissionDenied
from gateway.federation.guard.checks import Checks
from gateway.federation.guard.request import Plan, Request


async def authenticated(checks: Checks, request: Request, wanted: Level) -> Plan:
    """Anyone who may enter the workspace (checked before every rule)."""
    return Plan()


async def workspace_level(checks: Checks, request: Request, wanted: Level) -> Plan:
    """The level asked for, on the workspace itself (datasets; scorer configurations looked up across experiments)."""
    checks.require_workspace(request, wanted)
    return Plan()


async def workspaces_api(checks: Checks, request: Request, wanted: Level) -> Plan:
    """The workspaces API is answered by the gateway itself; forwarded, it is for account admins only."""
    raise PermissionDenied("Only account admins manage workspaces here.")


async def unguarded(checks: Checks, request: Request, wanted: Level) -> Plan:
    """Public routes are answered by the gateway itself: forwarded, they name nothing anyone holds a grant on."""
    raise PermissionDenied("This call cannot be tied to an object you hold a grant on.")
