"""Rules of the artifact proxy: an artifact path is governed by the experiment it lies in."""

from __future__ import annotations

from gateway.authz.levels import Level
from gateway.federation.guard.checks import EXPERIMENT_ID_RE, Checks
from gateway.federation.guard.request import Plan, Request


async def artifact(checks: Checks, request: Request, wanted: Level) -> Plan:
    """`wanted` on the path's experiment; a path that names none needs CAN_MANAGE on the workspace."""
    experiment_id = artifact_experiment(request.artifact_path or "")
    if experiment_id is None:
        # A path that names no experiment ("", ".", a bare root) could reach every experiment's files.
        checks.require_workspace(request, Level.CAN_MANAGE)
        return Plan()
    checks.require_experiment(request, experiment_id, wanted)
    return Plan()


def artifact_experiment(path: str) -> str | None:
    """`[workspaces/<ws>/]<experiment_id>/...` → the experiment id, if the path names one."""
    parts = [p for p in path.split("/") if p]
    if parts and parts[0].lower() == "workspaces":
        parts = parts[2:]
    if parts and EXPERIMENT_ID_RE.match(parts[0]):
        return parts[0]
    return None
