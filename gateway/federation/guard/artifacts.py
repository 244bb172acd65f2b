"""Rules of the artifact proxy: an artifact path is governed by the experiment it lies in."""

from __future__ import annotations

from gateway.authz.levels import RANK, Level
from gateway.core.errors import ResourceNotFound
from gateway.federation.guard.checks import EXPERIMENT_ID_RE, MISSING, RUN_ID_RE, Checks
from gateway.federation.guard.request import Plan, Request


async def artifact(checks: Checks, request: Request, wanted: Level) -> Plan:
    """`wanted` on the path's experiment; a path that names none needs CAN_MANAGE on the workspace.

    A path that names a run or logged model (`<exp>/<run>/...`, `<exp>/models/<model>/...`) must name one of
    that experiment, when it exists: the store files the bytes under the path's experiment, but the dual
    relay copies them into the central copy of the run or model the path names, and failover reads serve that
    copy. Before, an editor of one experiment wrote into (and, with the store down, read) the central copy of
    any run or logged model of the workspace by naming its id under their own experiment.
    """
    path = request.artifact_path or ""
    experiment_id = artifact_experiment(path)
    if experiment_id is None:
        # A path that names no experiment ("", ".", a bare root) could reach every experiment's files.
        checks.require_workspace(request, Level.CAN_MANAGE)
        return Plan()
    await checks.require_experiment(request, experiment_id, wanted)
    named = _named_object(path)
    if named is not None:
        kind, object_id = named
        found = await checks.lookups.experiment_of(request.link, kind, object_id)
        if found is not None and found != experiment_id:
            raise ResourceNotFound(MISSING[kind].format(id=object_id))
    if RANK[wanted] >= RANK[Level.CAN_EDIT] and checks.protection is not None:
        # An upload, deletion or multipart upload at, under or above the files of a protected model version.
        checks.require_files(request, await checks.protection.at_path(request.link, "/".join(_parts(path))))
    return Plan()


def artifact_experiment(path: str) -> str | None:
    """`[workspaces/<ws>/]<experiment_id>/...` → the experiment id, if the path names one."""
    parts = _parts(path)
    if parts and EXPERIMENT_ID_RE.match(parts[0]):
        return parts[0]
    return None


def _named_object(path: str) -> tuple[str, str] | None:
    """The run (`<exp>/<run id>/...`) or logged model (`<exp>/models/<model id>/...`) a path lies in, if any."""
    parts = _parts(path)
    if len(parts) >= 2 and RUN_ID_RE.match(parts[1]):
        return "run", parts[1]
    if len(parts) >= 3 and parts[1] == "models":
        return "logged_model", parts[2]
    return None


def _parts(path: str) -> list[str]:
    parts = [p for p in path.split("/") if p]
    if parts and parts[0].lower() == "workspaces":
        parts = parts[2:]
    return parts
