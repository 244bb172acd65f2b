"""The guard: one forwarded call, authorized on the canonical body the store will receive.

Order of a decision: the route's rule (a route without one is refused); an id in a field of the body (or a GET's
query) that the route's MLflow request message lacks is refused, whoever calls (mlflow_requests.ignored_id_field);
a trace call setting a tag the store reads as where the trace's data lives is refused (traces.py), and a call setting
or deleting one of the dual-tracking relay's provenance tags (provenance.py), whoever calls;
account admins pass, keeping the bookkeeping their calls need; everyone else must enter the workspace (404
otherwise), every id nested in the body is authorized (nested.py), a run named by the OTLP `x-mlflow-run-id` header
needs CAN_EDIT, and then the route's rule function decides (table.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.authz.decide import Authorizer
from gateway.authz.levels import Level
from gateway.core.errors import GatewayError, InvalidParameter, ResourceNotFound, hidden
from gateway.core.links import WorkspaceLink
from gateway.core.principal import Principal
from gateway.core.route_table import EXPERIMENTS_UPDATE, Resource, RouteSpec
from gateway.federation.canonical import CanonicalBody
from gateway.federation.guard.checks import Checks
from gateway.federation.guard.experiments import found_experiment
from gateway.federation.guard.malformed import DATASET_RECORDS, refuse_malformed
from gateway.federation.guard.nested import require_nested
from gateway.federation.guard.ports import JobRecords, Lookups, Ownership, Protection, Undo
from gateway.federation.guard.provenance import refuse_provenance_tag_writes
from gateway.federation.guard.request import Plan, Request, refuse_out_of_range_numbers
from gateway.federation.guard.rules import rule_for, wanted_level
from gateway.federation.guard.table import ADMIN_PLANS, CHECKS
from gateway.federation.guard.traces import refuse_storage_tag_writes, refuse_unreadable_trace_fields
from gateway.federation.mlflow_requests import ignored_id_field
from gateway.federation.schemas import RequestIds


class Guard:
    """Decides forwarded calls: `check` raises (403, or 404 as for a missing object) or returns the `Plan`."""

    def __init__(
        self,
        authorizer: Authorizer,
        lookups: Lookups,
        access: Ownership,
        undo: Undo,
        jobs: JobRecords | None = None,
        protection: Protection | None = None,
    ) -> None:
        self.authorizer = authorizer
        self.lookups = lookups  # where runs, logged models and traces live
        self._checks = Checks(authorizer, lookups, access, undo, jobs, protection)

    async def check(
        self,
        spec: RouteSpec,
        principal: Principal,
        link: WorkspaceLink,
        body: CanonicalBody | None,
        query: str,
        artifact_path: str | None,
        path_params: dict[str, Any],
        headers: list[tuple[str, str]],
        traces: dict[str, dict[str, Any]] | None = None,
    ) -> Plan:
        """Authorize a call on its canonical body (canonical.py): the one the store will receive. The store's
        answers for the traces read to decide it are put into `traces`, by id (`Request.traces`)."""
        rule = rule_for(spec)
        request = Request(
            spec,
            principal,
            link,
            body.ids if body is not None else RequestIds(),
            body.encoded if body is not None else None,
            body.document if body is not None else {},
            body.nested if body is not None else [],
            query,
            path_params,
            headers,
            artifact_path,
            body.graphql if body is not None else None,
            traces if traces is not None else {},
        )
        if (ignored := ignored_id_field(spec, request.document, request.params())) is not None:
            # The guard would count it as naming the call's object; the store never reads it (whoever calls).
            raise InvalidParameter(
                f"Field '{ignored}' is not read by this call (no field of MLflow's request message); name the "
                "object in the field the call reads."
            )
        if spec.resource is Resource.TRACE:
            refuse_storage_tag_writes(request)  # whoever calls: the store reads these as where data lives
        refuse_provenance_tag_writes(request)  # whoever calls: the dual-tracking relay's own (provenance.py)
        if spec == EXPERIMENTS_UPDATE and "new_name" in request.document:
            # A rename (whoever calls): the next write judges the experiment by the name it then has.
            for experiment_id in request.experiment_ids(required=False):
                self.lookups.forget_experiment(link, experiment_id)
        if principal.account_admin:
            refuse_unreadable(request)
            admin_plan = ADMIN_PLANS.get(rule)
            return admin_plan(self._checks, request) if admin_plan is not None else Plan()
        wanted = wanted_level(spec)
        if not self.enters(principal, link):
            raise hidden(f"Workspace '{link.name}' not found")
        refuse_unreadable(request)
        await require_nested(self._checks, request, wanted)
        for name, value in headers:
            if name == "x-mlflow-run-id":  # OTLP ingest links the traces it creates to this run
                await self._checks.require_run(request, value, Level.CAN_EDIT)
        return await CHECKS[rule](self._checks, request, wanted)

    def enters(self, principal: Principal, link: WorkspaceLink) -> bool:
        return self.authorizer.enters(principal, link.workspace_id)

    async def caught_up(self, principal: Principal) -> Principal | None:
        return await self.authorizer.caught_up(principal)

    async def check_found_experiment(self, principal: Principal, link: WorkspaceLink, answer: bytes) -> None:
        """get-by-name names no id up front: the experiment found must be readable, or it was not found."""
        found_experiment(self.authorizer, principal, link, answer)

    async def missing_after_failure(
        self, spec: RouteSpec, link: WorkspaceLink, path_params: Mapping[str, Any]
    ) -> GatewayError | None:
        """MLflow 3.17.2's dataset records read has no error catcher: every error there, a missing dataset included
        (a store with workspaces checks it is there), is Flask's HTML 500. Once the store failed so, the dataset is
        asked for: missing, the call answers 404 RESOURCE_DOES_NOT_EXIST as MLflow's other dataset routes do. The
        call has passed the guard already (the workspace's datasets are readable to the caller)."""
        if spec != DATASET_RECORDS or not (dataset_id := str(path_params.get("dataset_id") or "")):
            return None
        try:
            held = await self.lookups.holds_dataset(link, dataset_id)
        except GatewayError:
            return None  # the store cannot tell: its failure goes out as it is
        return None if held else ResourceNotFound(f"Dataset '{dataset_id}' not found.")


def refuse_unreadable(request: Request) -> None:
    """What the store cannot read and fails on with a 500 of its own, refused (400) whoever calls, once the caller
    is known to enter the workspace (to anyone else it does not exist): ids past a 64-bit integer, and the v2 and
    v3 trace fields the store takes `int()` of or maps to nothing, and the malformed values of malformed.py."""
    refuse_out_of_range_numbers(request)
    if request.spec.resource is Resource.TRACE:
        refuse_unreadable_trace_fields(request)
    refuse_malformed(request)
