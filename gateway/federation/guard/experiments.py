"""Rules of experiments, and of what is created or searched by naming experiments (runs, logged models, scorers)."""

from __future__ import annotations

import msgspec

from gateway.authz.decide import Authorizer, Everything
from gateway.authz.levels import Level, experiment_object, workspace_object
from gateway.core.errors import PermissionDenied, ResourceNotFound
from gateway.core.links import WorkspaceLink
from gateway.core.numbers import is_number
from gateway.core.principal import Principal
from gateway.core.reserved import PROMOTIONS_EXPERIMENT, promotions_experiment
from gateway.federation.guard.checks import Checks
from gateway.federation.guard.owners import recording_owner
from gateway.federation.guard.request import EMPTY_RESULT, Plan, Request


async def experiment(checks: Checks, request: Request, wanted: Level) -> Plan:
    """`wanted` on every experiment the call names (at least one); the source run of a new logged model or issue
    readable."""
    for experiment_id in request.experiment_ids(required=True):
        await checks.require_experiment(request, experiment_id, wanted)
    refuse_promotions_name(request.document.get("new_name"))  # experiments/update: a rename
    if request.ids.source_run_id:
        await checks.require_run(request, request.ids.source_run_id, Level.CAN_READ)
    return Plan()


async def experiment_create(checks: Checks, request: Request, wanted: Level) -> Plan:
    """Anyone who may use the workspace creates experiments and owns them; only workspace managers choose
    where their artifacts go."""
    principal, wid = request.principal, request.link.workspace_id
    checks.require_workspace(request, Level.CAN_USE)
    refuse_promotions_name(request.document.get("name"))
    chooses_location = "artifact_location" in request.document
    if chooses_location and not checks.authorizer.allows(principal, wid, workspace_object(wid), Level.CAN_MANAGE):
        raise PermissionDenied("Only account and workspace admins may choose an experiment's artifact location.")
    return Plan(after=recording_owner(checks, request, "experiment", "experiment_id"))


def experiment_created(checks: Checks, request: Request) -> Plan:
    """An account admin's new experiment is owned by them too."""
    return Plan(after=recording_owner(checks, request, "experiment", "experiment_id"))


def refuse_promotions_name(name: object) -> None:
    """The promotions experiment's name is the gateway's (in any spelling a store might match): an experiment made
    or renamed to it by someone else would be the one promotions copy into, theirs to read and change."""
    if promotions_experiment(name):
        raise PermissionDenied(
            f"The experiment name '{PROMOTIONS_EXPERIMENT}' is kept for the copies promotions make "
            "(POST /api/2.0/fedgate/registry/promote)."
        )


async def experiment_search(checks: Checks, request: Request, wanted: Level) -> Plan:
    """`experiment_id IN (readable)` is ANDed into the filter; nothing readable answers an empty page."""
    readable = checks.authorizer.readable_experiments(request.principal, request.link.workspace_id)
    if isinstance(readable, Everything):
        return Plan()
    if not readable:
        return Plan(answer=EMPTY_RESULT)
    clause = "experiment_id IN (" + ", ".join(f"'{e}'" for e in sorted(readable, key=_numeric)) + ")"
    return request.with_filter(clause)


async def experiment_ids(checks: Checks, request: Request, wanted: Level) -> Plan:
    """Searches by `experiment_ids` (runs, logged models, datasets): the list is cut to the readable ones."""
    asked = request.experiment_ids(required=False)
    if not asked:
        # A search of no experiment, which the store answers itself: MLflow checks it as any other (its filter,
        # order, page token) and finds no run and no logged model in it (`search_runs([])` is an empty page, not
        # an error), or refuses it (datasets). Nothing in it is there to narrow.
        return Plan()
    readable = checks.authorizer.readable_experiments(request.principal, request.link.workspace_id)
    kept = asked if isinstance(readable, Everything) else [e for e in asked if e in readable]
    if not kept:
        return Plan(answer=EMPTY_RESULT)
    return request.with_list("experiment_ids", kept) if kept != asked else Plan()


async def experiment_by_name(checks: Checks, request: Request, wanted: Level) -> Plan:
    """No id up front: the forwarder checks the experiment found (`found_experiment`)."""
    return Plan()


def found_experiment(authorizer: Authorizer, principal: Principal, link: WorkspaceLink, answer: bytes) -> None:
    """get-by-name's answer: the experiment found must be readable, or it was not found."""
    if principal.account_admin:
        return
    found = msgspec.json.decode(answer).get("experiment", {})
    experiment_id = str(found.get("experiment_id", ""))
    obj = experiment_object(link.workspace_id, experiment_id)
    if not authorizer.allows(principal, link.workspace_id, obj, Level.CAN_READ):
        raise ResourceNotFound(f"Could not find experiment with name '{found.get('name', '')}'")


def _numeric(value: str) -> tuple[int, str]:
    return (int(value), value) if is_number(value) else (0, value)
