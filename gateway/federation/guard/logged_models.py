"""Rules of logged models (MLflow 3): each is governed by the grants on the experiment it belongs to."""

from __future__ import annotations

from gateway.authz.levels import Level
from gateway.federation.guard.checks import Checks
from gateway.federation.guard.request import Plan, Request


async def logged_model(checks: Checks, request: Request, wanted: Level) -> Plan:
    """`wanted` on the one logged model the call names (path, body or query)."""
    await checks.require_logged_model(request, request.single("model_id"), wanted)
    return Plan()
