"""Rules of runs: each is governed by the grants on the experiment it belongs to."""

from __future__ import annotations

from gateway.authz.levels import Level
from gateway.federation.guard.checks import Checks
from gateway.federation.guard.request import Plan, Request


async def run(checks: Checks, request: Request, wanted: Level) -> Plan:
    """`wanted` on every run the call names (body and query), and on the logged model it names, if any."""
    for run_id in request.run_ids():
        await checks.require_run(request, run_id, wanted)
    if request.ids.model_id:
        await checks.require_logged_model(request, request.ids.model_id, wanted)
    return Plan()
