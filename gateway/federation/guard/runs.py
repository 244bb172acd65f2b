"""Rules of runs: each is governed by the grants on the experiment it belongs to."""

from __future__ import annotations

from gateway.authz.levels import Level
from gateway.core.route_table import PRESIGNED_UPLOAD_URL, UI_UPLOAD_ARTIFACT
from gateway.federation.guard.checks import Checks
from gateway.federation.guard.request import Plan, Request


async def run(checks: Checks, request: Request, wanted: Level) -> Plan:
    """`wanted` on every run the call names (body and query), and on the logged model it names, if any; a file
    written into a run's or logged model's artifact folder must not change a protected model version's files."""
    for run_id in request.run_ids():
        await checks.require_run(request, run_id, wanted)
    if request.ids.model_id:
        await checks.require_logged_model(request, request.ids.model_id, wanted)
    if request.spec in (UI_UPLOAD_ARTIFACT, PRESIGNED_UPLOAD_URL) and checks.protection is not None:
        await _require_unprotected(checks, request)
    return Plan()


async def _require_unprotected(checks: Checks, request: Request) -> None:
    """The web UI's upload (`?run_uuid=&path=`) and a presigned upload URL (`run_id` or `model_id`, `path`) write
    `artifacts/<path>` of the run's or logged model's folder."""
    assert checks.protection is not None
    if request.spec == UI_UPLOAD_ARTIFACT:
        paths = request.params().get("path") or [""]
    else:
        paths = [str(request.document.get("path") or "")]
    objects = [*request.run_ids(), *([request.ids.model_id] if request.ids.model_id else [])]
    for object_id in objects:
        for path in paths:
            found = await checks.protection.in_object(request.link, object_id, within_artifacts(path))
            checks.require_files(request, found)


def within_artifacts(path: str) -> str:
    """A path relative to a run's or logged model's artifact root, as a path within its folder (`artifacts/...`).
    A path that climbs (`..`) or names nothing counts as the whole folder."""
    parts = [part for part in path.replace("\\", "/").split("/") if part not in ("", ".")]
    if ".." in parts:
        return ""
    return "/".join(["artifacts", *parts])
