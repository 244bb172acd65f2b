"""Litestar guards for the gateway's own API: account-admin routes say so on the route, not in the handler.

A guard runs after authentication and before the body is read or a dependency is built, so a handler
under one cannot forget the check, and a caller who may not use the route learns nothing from how its
body is judged. The refusal is the gateway's PermissionDenied: 403 PERMISSION_DENIED, audited as every
other refusal.
"""

from __future__ import annotations

from typing import Any, Protocol

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.types import Guard

from gateway.core.errors import PermissionDenied
from gateway.core.principal import Principal

ADMINS_ONLY = "Only account admins may do this."
# The app's state key of what brings a refused caller up to the stored policy (the Authorizer).
CATCH_UP = "authorizer"


class CatchUp(Protocol):
    async def caught_up(self, principal: Principal) -> Principal | None: ...


def account_admin(message: str = ADMINS_ONLY) -> Guard:
    """A guard that lets account admins through and refuses everyone else with `message`.

    A caller who is no account admin as the policy in use has it is refused only by the stored policy
    (`Authorizer.caught_up`, one query when this replica is not behind): the role given through another replica
    moments ago counts at once, and the handler then serves the caller as that policy has it (its groups too).
    """

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        caller = connection.scope.get("user")
        if not isinstance(caller, Principal):
            raise PermissionDenied(message)
        if caller.account_admin:
            return
        app = connection.scope.get("litestar_app")
        catch_up: CatchUp | None = app.state.get(CATCH_UP) if app is not None else None
        newer = await catch_up.caught_up(caller) if catch_up is not None else None
        if newer is None or not newer.account_admin:
            raise PermissionDenied(message)
        connection.scope["user"] = newer

    guard.account_admin = True  # type: ignore[attr-defined]  # lets tests tell this guard from others
    return guard


def is_account_admin_guard(guard: object) -> bool:
    return bool(getattr(guard, "account_admin", False))
