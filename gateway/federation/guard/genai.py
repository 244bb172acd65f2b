"""Rules of the GenAI objects an experiment holds besides runs and traces: issues, label schemas, review queues.

Each belongs to one experiment and carries no grants of its own: creating and listing one names the experiment
(the `experiment` rule), reading or changing one names its id, whose experiment the store is asked for once
(`experiment_object`, here). Reading needs CAN_READ on that experiment, writing CAN_EDIT, deleting CAN_MANAGE.

Who completed a review item is the caller, as MLflow's own authentication binds it: the gateway writes the
caller's name into `completed_by` (and leaves it out when the item is reopened), whatever the client sent, so
no reviewer signs for another (a store without authentication would take the client's word).
"""

from __future__ import annotations

import msgspec

from gateway.authz.levels import Level
from gateway.core.route_table import Resource
from gateway.federation.guard.checks import Checks
from gateway.federation.guard.request import Plan, Request

SET_ITEM_STATUS = "POST /mlflow/review-queues/items/set-status"
REOPENED = ("PENDING", 1)  # ReviewStatus.PENDING, by name or number

# The kind of object each resource names (a key of checks.MISSING and of the lookups) and the field of its id.
OBJECTS: dict[Resource, tuple[str, str]] = {
    Resource.ISSUE: ("issue", "issue_id"),
    Resource.LABEL_SCHEMA: ("label_schema", "schema_id"),
    Resource.REVIEW_QUEUE: ("review_queue", "queue_id"),
}


async def experiment_object(checks: Checks, request: Request, wanted: Level) -> Plan:
    """`wanted` on the experiment of the issue, label schema or review queue the call names by its id."""
    kind, field = OBJECTS[request.spec.resource]
    await checks.require_in_experiment(request, kind, request.single(field), wanted)
    return attributed(checks, request)


def attributed(checks: Checks, request: Request) -> Plan:
    """A review item's status is set in the caller's name (account admins' calls too)."""
    if request.spec.name != SET_ITEM_STATUS or request.body is None:
        return Plan()
    document = dict(request.document)
    document.pop("completed_by", None)
    if document.get("status") not in REOPENED:
        document["completed_by"] = request.principal.name
    return Plan(body=msgspec.json.encode(document))
