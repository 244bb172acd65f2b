"""Litestar guards for the gateway's own API: account-admin routes say so on the route, not in the handler.

A guard runs after authentication and before the body is read or a dependency is built, so a handler
under one cannot forget the check, and a caller who may not use the route learns nothing from how its
body is judged. The refusal is the gateway's PermissionDenied: 403 PERMISSION_DENIED, audited as every
other refusal.
"""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.types import Guard

from gateway.core.errors import PermissionDenied
from gateway.core.principal import Principal

ADMINS_ONLY = "Only account admins may do this."


def account_admin(message: str = ADMINS_ONLY) -> Guard:
    """A guard that lets account admins through and refuses everyone else with `message`."""

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        caller = connection.scope.get("user")
        if not (isinstance(caller, Principal) and caller.account_admin):
            raise PermissionDenied(message)

    guard.account_admin = True  # type: ignore[attr-defined]  # lets tests tell this guard from others
    return guard


def is_account_admin_guard(guard: object) -> bool:
    return bool(getattr(guard, "account_admin", False))
