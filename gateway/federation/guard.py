"""Authorization of forwarded calls: every object a request names is tied to a grant before it is sent.

Each route of the route table has a rule here (a test walks them all). The rule says which objects
the request touches and the level it needs on them; anything the guard cannot tie to an object is
refused. Searches are narrowed before they are sent (never filtered afterwards), so pages are full,
page tokens work, and nothing hidden is ever counted.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

import msgspec

from gateway.authz.decide import Authorizer, Everything, hidden
from gateway.authz.levels import Level, experiment_object, model_object, workspace_object
from gateway.authz.service import AccessService
from gateway.core.errors import InvalidParameter, PermissionDenied, ResourceNotFound, StoreUnavailable
from gateway.core.links import WorkspaceLink
from gateway.core.principal import Principal
from gateway.core.route_table import Action, Resource, RouteSpec
from gateway.federation.canonical import CanonicalBody, NestedId
from gateway.federation.otlp import SPAN_TRACE_ID
from gateway.federation.schemas import RequestIds

log = logging.getLogger(__name__)

EMPTY_RESULT = b"{}"
EXPERIMENT_ID_RE = re.compile(r"^[0-9]{1,19}$")
RUN_ID_RE = re.compile(r"^[0-9a-f]{32}$")

# -- rules ------------------------------------------------------------------------------------------

WANTED = {
    Action.READ: Level.CAN_READ,
    Action.SEARCH: Level.CAN_READ,
    Action.CREATE: Level.CAN_EDIT,
    Action.EDIT: Level.CAN_EDIT,
    Action.MANAGE: Level.CAN_MANAGE,
}
# Where the anchors say otherwise (Databricks: CAN_EDIT creates, deletes and restores runs).
LEVEL_OVERRIDES: dict[str, Level] = {
    "POST /mlflow/runs/delete": Level.CAN_EDIT,
    "POST /mlflow/runs/restore": Level.CAN_EDIT,
    "DELETE /mlflow/logged-models/{model_id:str}": Level.CAN_EDIT,
    "POST /mlflow/registered-models/rename": Level.CAN_MANAGE,
    "POST /mlflow/traces/delete-traces": Level.CAN_EDIT,
}


def rule_for(spec: RouteSpec) -> str:
    """The rule a route is checked with; raises for a route nobody wrote a rule for (deny by default)."""
    if spec.action is Action.PUBLIC:
        return "public"
    if spec.resource is Resource.SERVER:
        return "authenticated"
    if spec.resource is Resource.WORKSPACE:
        return "workspace-admin" if spec.action is Action.ADMIN else "workspace-visible"
    handler = RULE_OVERRIDES.get(spec.name) or _HANDLERS.get((spec.resource, spec.action))
    if handler is None:
        raise LookupError(f"no authorization rule for {spec.name} v{spec.version}")
    return handler


_HANDLERS: dict[tuple[Resource, Action], str] = {
    **{(Resource.EXPERIMENT, a): "experiment" for a in (Action.READ, Action.EDIT, Action.MANAGE)},
    (Resource.EXPERIMENT, Action.CREATE): "experiment-create",
    (Resource.EXPERIMENT, Action.SEARCH): "experiment-search",
    (Resource.RUN, Action.CREATE): "experiment",
    **{(Resource.RUN, a): "run" for a in (Action.READ, Action.EDIT, Action.MANAGE)},
    (Resource.RUN, Action.SEARCH): "experiment-ids",
    (Resource.LOGGED_MODEL, Action.CREATE): "experiment",
    (Resource.LOGGED_MODEL, Action.SEARCH): "experiment-ids",
    **{(Resource.LOGGED_MODEL, a): "logged-model" for a in (Action.READ, Action.EDIT, Action.MANAGE)},
    (Resource.REGISTERED_MODEL, Action.CREATE): "model-create",
    (Resource.REGISTERED_MODEL, Action.SEARCH): "model-search",
    **{(Resource.REGISTERED_MODEL, a): "model" for a in (Action.READ, Action.EDIT, Action.MANAGE)},
    (Resource.MODEL_VERSION, Action.CREATE): "model-version-create",
    (Resource.MODEL_VERSION, Action.SEARCH): "model-search",
    **{(Resource.MODEL_VERSION, a): "model" for a in (Action.READ, Action.EDIT, Action.MANAGE)},
    **{(Resource.ARTIFACT, a): "artifact" for a in (Action.READ, Action.EDIT, Action.MANAGE)},
    (Resource.TRACE, Action.CREATE): "trace-create",
    (Resource.TRACE, Action.SEARCH): "trace-search",
    **{(Resource.TRACE, a): "trace" for a in (Action.READ, Action.EDIT, Action.MANAGE)},
    **{(Resource.DATASET, a): "workspace-level" for a in Action if a not in (Action.ADMIN, Action.PUBLIC)},
    **{(Resource.SCORER, a): "experiment" for a in (Action.READ, Action.CREATE, Action.EDIT, Action.MANAGE)},
}


RULE_OVERRIDES = {
    # No id up front: the experiment found is checked in the answer (unreadable = not found).
    "GET /mlflow/experiments/get-by-name": "experiment-by-name",
    "POST /mlflow/experiments/search-datasets": "experiment-ids",
    # Looks configurations up by scorer id, across experiments: only a reader of the whole workspace.
    "GET /mlflow/scorers/online-configs": "workspace-level",
}


def wanted_level(spec: RouteSpec) -> Level:
    return LEVEL_OVERRIDES.get(spec.name, WANTED.get(spec.action, Level.CAN_MANAGE))


# The store's own not-found messages, so a hidden object reads exactly like a missing one.
MISSING = {
    "run": "Run with id={id} not found",
    "logged_model": "Logged model with ID '{id}' not found.",
    "trace": "Trace with ID {id} is not found.",
}


# -- ids below the top level of a body -------------------------------------------------------------


class Nested(StrEnum):
    """What an id the top-level fields do not cover names (see canonical.py), and so how it is checked."""

    RUN = "run"
    LOGGED_MODEL = "logged_model"
    TRACE = "trace"
    NEW_TRACE = "new_trace"  # an id the call may create: if the trace exists already, the call writes to it
    BY_RULE = "by_rule"  # read and checked by the route's own rule
    NOT_AN_OBJECT = "not_an_object"  # span, assessment, source, request-client ids: nothing grants them


NestedRule = tuple[Nested, Level | None]  # None: the level the route asks for
_MAP = (Nested.NOT_AN_OBJECT, None)  # keys of a caller-chosen map (tags, metadata): data, not fields
_OWN_TRACE_ASSESSMENT: dict[str, NestedRule] = {
    "assessment.trace_id": (Nested.TRACE, None),
    "assessment.assessment_id": (Nested.NOT_AN_OBJECT, None),
    "assessment.span_id": (Nested.NOT_AN_OBJECT, None),
    "assessment.source.source_id": (Nested.NOT_AN_OBJECT, None),
    "assessment.metadata.*": _MAP,
}
# By route (name, API version) and path; a path listed nowhere refuses the call (deny by default).
# tests/unit/test_guard_differential.py proves these against MLflow's own request parsing.
NESTED_IDS: dict[tuple[str, int], dict[str, NestedRule]] = {
    ("POST /mlflow/runs/create", 2): {"user_id": (Nested.NOT_AN_OBJECT, None)},
    ("POST /mlflow/runs/log-batch", 2): {
        "metrics[].run_id": (Nested.RUN, None),
        "metrics[].model_id": (Nested.LOGGED_MODEL, None),  # the store logs the metric onto that model too
    },
    ("POST /mlflow/runs/log-inputs", 2): {"models[].model_id": (Nested.LOGGED_MODEL, Level.CAN_READ)},
    ("POST /mlflow/runs/outputs", 2): {"models[].model_id": (Nested.LOGGED_MODEL, Level.CAN_EDIT)},
    ("POST /mlflow/registered-models/create", 2): {"deployment_job_id": (Nested.NOT_AN_OBJECT, None)},
    ("PATCH /mlflow/registered-models/update", 2): {"deployment_job_id": (Nested.NOT_AN_OBJECT, None)},
    ("POST /mlflow/traces/delete-traces", 2): {"request_ids": (Nested.TRACE, None)},
    ("POST /mlflow/traces/delete-traces", 3): {"request_ids": (Nested.TRACE, None)},
    ("POST /mlflow/traces", 3): {
        "trace.trace_info.trace_id": (Nested.NEW_TRACE, Level.CAN_EDIT),  # an existing trace is merged into
        "trace.trace_info.trace_location.mlflow_experiment.experiment_id": (Nested.BY_RULE, None),
        "trace.trace_info.client_request_id": (Nested.NOT_AN_OBJECT, None),
        "trace.trace_info.trace_metadata.*": _MAP,
        "trace.trace_info.tags.*": _MAP,
        # The store files assessments under the trace being created, whatever they say.
        "trace.trace_info.assessments[].trace_id": (Nested.NOT_AN_OBJECT, None),
        "trace.trace_info.assessments[].assessment_id": (Nested.NOT_AN_OBJECT, None),
        "trace.trace_info.assessments[].span_id": (Nested.NOT_AN_OBJECT, None),
        "trace.trace_info.assessments[].source.source_id": (Nested.NOT_AN_OBJECT, None),
        "trace.trace_info.assessments[].metadata.*": _MAP,
        # Spans are not stored by this call (they travel through OTLP or artifacts).
        "trace.spans[].trace_id": (Nested.NOT_AN_OBJECT, None),
        "trace.spans[].span_id": (Nested.NOT_AN_OBJECT, None),
        "trace.spans[].parent_span_id": (Nested.NOT_AN_OBJECT, None),
        "trace.spans[].links[].trace_id": (Nested.NOT_AN_OBJECT, None),
        "trace.spans[].links[].span_id": (Nested.NOT_AN_OBJECT, None),
    },
    # OTLP: MLflow adds a span to its trace wherever that trace lives (otlp.py reads the trace ids).
    ("POST /v1/traces", 2): {SPAN_TRACE_ID: (Nested.NEW_TRACE, Level.CAN_EDIT)},
    ("POST /mlflow/traces/search", 3): {"locations[].mlflow_experiment.experiment_id": (Nested.BY_RULE, None)},
    ("POST /mlflow/traces/{trace_id:str}/assessments", 3): _OWN_TRACE_ASSESSMENT,
    ("PATCH /mlflow/traces/{trace_id:str}/assessments/{assessment_id:str}", 3): {
        **_OWN_TRACE_ASSESSMENT,
        "assessment_id": (Nested.NOT_AN_OBJECT, None),
    },
    ("DELETE /mlflow/traces/{trace_id:str}/assessments/{assessment_id:str}", 3): {
        "assessment_id": (Nested.NOT_AN_OBJECT, None)
    },
    ("DELETE /mlflow/datasets/{dataset_id:str}/records", 3): {"dataset_record_ids": (Nested.NOT_AN_OBJECT, None)},
}


def nested_rule(spec: RouteSpec, path: str) -> NestedRule | None:
    """The rule for an id at `path` of this route's body; None when there is none (the call is refused)."""
    rules = NESTED_IDS.get((spec.name, spec.version), {})
    if (rule := rules.get(path)) is not None:
        return rule
    for pattern, rule in rules.items():
        if pattern.endswith(".*") and path.startswith(pattern[:-1]):
            return rule
    return None


# -- plans ------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Plan:
    """What the forwarder does differently because of authorization."""

    body: bytes | None = None  # a narrowed request body
    query: str | None = None  # a narrowed query string
    answer: bytes | None = None  # answer without asking the store (nothing visible to search)
    after: Callable[[int, bytes], Awaitable[bytes | None]] | None = None  # needs the store's answer
    notes: dict[str, Any] = field(default_factory=dict)


class Lookups:
    """Which experiment a run, logged model or trace belongs to: asked of the store once, then cached."""

    def __init__(
        self,
        fetch: Callable[[WorkspaceLink, str, str], Awaitable[tuple[int, bytes]]],
        run_experiment: Callable[[str, str], Awaitable[str | None]],
        size: int = 100_000,
    ) -> None:
        self._fetch = fetch
        self._run_experiment = run_experiment
        self._cache: OrderedDict[tuple[int, str, str], str] = OrderedDict()
        self._size = size

    async def experiment_of(self, link: WorkspaceLink, kind: str, object_id: str) -> str | None:
        key = (link.workspace_id, kind, object_id)
        if (cached := self._cache.get(key)) is not None:
            return cached
        experiment = None
        if kind == "run":
            experiment = await self._run_experiment(object_id, link.name)
        if experiment is None:
            experiment = await self._ask_store(link, kind, object_id)
        if experiment is not None:
            self._cache[key] = experiment
            if len(self._cache) > self._size:
                self._cache.popitem(last=False)
        return experiment

    async def stage_of(self, link: WorkspaceLink, name: str, version: str) -> str:
        query = urlencode({"name": name, "version": version})
        status, body = await self._fetch(link, "/api/2.0/mlflow/model-versions/get", query)
        if status != 200:
            return ""
        return str((msgspec.json.decode(body).get("model_version") or {}).get("current_stage", ""))

    async def _ask_store(self, link: WorkspaceLink, kind: str, object_id: str) -> str | None:
        quoted = quote(object_id, safe="")
        if kind == "run":
            status, body = await self._fetch(link, "/api/2.0/mlflow/runs/get", f"run_id={quoted}")
            path: tuple[str, ...] = ("run", "info", "experiment_id")
        elif kind == "logged_model":
            status, body = await self._fetch(link, f"/api/2.0/mlflow/logged-models/{quoted}", "")
            path = ("model", "info", "experiment_id")
        else:
            status, body = await self._fetch(link, f"/api/3.0/mlflow/traces/{quoted}", "")
            path = ("trace", "trace_info", "trace_location", "mlflow_experiment", "experiment_id")
        if status != 200:
            return None
        node: Any = msgspec.json.decode(body)
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        return str(node) if node is not None else None


class Guard:
    def __init__(
        self,
        authorizer: Authorizer,
        lookups: Lookups,
        access: AccessService,
        undo: Callable[[WorkspaceLink, str, str], Awaitable[None]],
    ) -> None:
        self.authorizer = authorizer
        self.lookups = lookups
        self.access = access  # owners of new objects, registered-model ids
        self._undo = undo  # compensates a creation whose owner could not be recorded

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
    ) -> Plan:
        """Authorize a call on its canonical body (canonical.py): the one the store will receive."""
        rule = rule_for(spec)
        ids = body.ids if body is not None else RequestIds()
        if principal.account_admin:
            return self._admin_plan(spec, principal, link, ids, body.encoded if body is not None else None)
        ctx = _Context(
            spec,
            principal,
            link,
            ids,
            body.encoded if body is not None else None,
            body.document if body is not None else {},
            body.nested if body is not None else [],
            query,
            path_params,
            headers,
            artifact_path,
        )
        wanted = wanted_level(spec)
        if not self.authorizer.enters(principal, link.workspace_id):
            raise hidden(f"Workspace '{link.name}' not found")
        await self._require_nested(ctx, wanted)
        for name, value in headers:
            if name == "x-mlflow-run-id":  # OTLP ingest links the traces it creates to this run
                await self._require_run(ctx, value, Level.CAN_EDIT)
        return await self._by_rule(ctx, rule, wanted)

    async def _by_rule(self, ctx: _Context, rule: str, wanted: Level) -> Plan:
        spec, principal, link = ctx.spec, ctx.principal, ctx.link
        az = self.authorizer
        wid = link.workspace_id
        if rule in ("authenticated", "experiment-by-name"):
            return Plan()
        if rule in ("workspace-visible", "workspace-admin"):
            raise PermissionDenied("Only account admins manage workspaces here.")
        if rule == "workspace-level":
            az.require_workspace(principal, wid, link.name, wanted)
            return Plan()
        if rule == "experiment":
            for experiment_id in ctx.experiment_ids(required=True):
                self._require_experiment(ctx, experiment_id, wanted)
            if spec.resource is Resource.LOGGED_MODEL and ctx.ids.source_run_id:
                await self._require_run(ctx, ctx.ids.source_run_id, Level.CAN_READ)
            return Plan()
        if rule == "experiment-create":
            az.require_workspace(principal, wid, link.name, Level.CAN_USE)
            chooses_location = "artifact_location" in ctx.document
            if chooses_location and not az.allows(principal, wid, workspace_object(wid), Level.CAN_MANAGE):
                raise PermissionDenied(
                    "Only account and workspace admins may choose an experiment's artifact location."
                )
            return Plan(after=self._granting(principal, link, "experiment", "experiment_id"))
        if rule == "experiment-search":
            return self._narrow_experiment_search(ctx)
        if rule == "experiment-ids":
            return self._narrow_experiment_ids(ctx)
        if rule == "run":
            for run_id in ctx.run_ids():
                await self._require_run(ctx, run_id, wanted)
            if ctx.ids.model_id:
                await self._require_logged_model(ctx, ctx.ids.model_id, wanted)
            return Plan()
        if rule == "logged-model":
            await self._require_logged_model(ctx, ctx.single("model_id"), wanted)
            return Plan()
        if rule == "model-create":
            az.require_workspace(principal, wid, link.name, Level.CAN_USE)
            return Plan(after=self._granting(principal, link, "registered_model", "name", ctx.ids.name))
        if rule == "model-search":
            return await self._narrow_model_search(ctx)
        if rule == "model":
            name = ctx.single("name")
            if spec.name == "POST /mlflow/model-versions/transition-stage":
                wanted = await self._stage_level(ctx, name)
            await self._require_model(ctx, name, wanted)
            return self._model_bookkeeping(spec, link, name, ctx)
        if rule == "model-version-create":
            await self._require_model(ctx, ctx.single("name"), Level.CAN_EDIT)
            await self._require_version_source(ctx)
            return Plan()
        if rule == "artifact":
            self._require_artifact(ctx, wanted)
            return Plan()
        if rule == "trace-create":
            for experiment_id in ctx.trace_experiments():
                self._require_experiment(ctx, experiment_id, Level.CAN_EDIT)
            return Plan()
        if rule == "trace-search":
            return self._narrow_trace_search(ctx)
        if rule == "trace":
            if ctx.ids.run_id:
                await self._require_run(ctx, ctx.ids.run_id, Level.CAN_EDIT)
            experiment_ids = ctx.experiment_ids(required=False)
            for experiment_id in experiment_ids:
                self._require_experiment(ctx, experiment_id, wanted)
            trace_ids = ctx.trace_ids()
            if not (trace_ids or ctx.ids.run_id or experiment_ids):
                raise PermissionDenied("This trace call names no trace or experiment.")
            for trace_id in trace_ids:
                await self._require_trace(ctx, trace_id, wanted)
            return Plan()
        raise PermissionDenied("This call cannot be tied to an object you hold a grant on.")

    async def _require_nested(self, ctx: _Context, wanted: Level) -> None:
        """Every id below the top level of the body is authorized, or the call is refused."""
        for item in ctx.nested:
            rule = nested_rule(ctx.spec, item.path)
            if rule is None:
                raise InvalidParameter(f"Field '{item.path}' is not accepted in this call.")
            kind, level = rule
            if kind in (Nested.BY_RULE, Nested.NOT_AN_OBJECT) or item.value is None:
                continue
            values = item.value if isinstance(item.value, list) else [item.value]
            for value in values:
                if not isinstance(value, str):
                    raise InvalidParameter(f"Field '{item.path}' must be a string id.")
                if kind is Nested.RUN:
                    await self._require_run(ctx, value, level or wanted)
                elif kind is Nested.LOGGED_MODEL:
                    await self._require_logged_model(ctx, value, level or wanted)
                elif kind is Nested.TRACE:
                    await self._require_trace(ctx, value, level or wanted)
                elif kind is Nested.NEW_TRACE and value:
                    experiment_id = await self.lookups.experiment_of(ctx.link, "trace", value)
                    if experiment_id is not None:
                        self._require_experiment(ctx, experiment_id, level or wanted)

    # -- admins: everything, plus the same bookkeeping -------------------------------------------------

    def _admin_plan(
        self, spec: RouteSpec, principal: Principal, link: WorkspaceLink, ids: RequestIds | None, body: bytes | None
    ) -> Plan:
        ids = ids or RequestIds()
        rule = rule_for(spec)
        if rule == "experiment-create":
            return Plan(after=self._granting(principal, link, "experiment", "experiment_id"))
        if rule == "model-create":
            return Plan(after=self._granting(principal, link, "registered_model", "name", ids.name))
        if rule == "model" and ids.name:
            return self._model_bookkeeping(spec, link, ids.name, None, body)
        return Plan()

    # -- single objects -------------------------------------------------------------------------------

    def _require_experiment(self, ctx: _Context, experiment_id: str, wanted: str) -> None:
        if not EXPERIMENT_ID_RE.match(experiment_id):
            raise ResourceNotFound(f"No Experiment with id={experiment_id} exists")
        obj = experiment_object(ctx.link.workspace_id, experiment_id)
        self.authorizer.require(
            ctx.principal, ctx.link.workspace_id, obj, wanted, f"No Experiment with id={experiment_id} exists"
        )

    async def _require_run(self, ctx: _Context, run_id: str, wanted: str) -> None:
        if not RUN_ID_RE.match(run_id):
            raise ResourceNotFound(MISSING["run"].format(id=run_id))
        await self._require_in_experiment(ctx, "run", run_id, wanted)

    async def _require_logged_model(self, ctx: _Context, model_id: str, wanted: str) -> None:
        await self._require_in_experiment(ctx, "logged_model", model_id, wanted)

    async def _require_trace(self, ctx: _Context, trace_id: str, wanted: str) -> None:
        await self._require_in_experiment(ctx, "trace", trace_id, wanted)

    async def _require_in_experiment(self, ctx: _Context, kind: str, object_id: str, wanted: str) -> None:
        """A run, logged model or trace is governed by the grants on the experiment it belongs to."""
        missing = MISSING[kind].format(id=object_id)
        experiment_id = await self.lookups.experiment_of(ctx.link, kind, object_id)
        if experiment_id is None:
            raise ResourceNotFound(missing)
        obj = experiment_object(ctx.link.workspace_id, experiment_id)
        self.authorizer.require(ctx.principal, ctx.link.workspace_id, obj, wanted, missing)

    async def _require_model(self, ctx: _Context, name: str, wanted: str) -> None:
        missing = f"Registered Model with name={name} not found"
        model_id = await self.access.model_id(ctx.link, name, adopt=True)
        if model_id is None:
            raise ResourceNotFound(missing)
        obj = model_object(ctx.link.workspace_id, model_id)
        self.authorizer.require(ctx.principal, ctx.link.workspace_id, obj, wanted, missing)

    def _require_artifact(self, ctx: _Context, wanted: str) -> None:
        experiment_id = _artifact_experiment(ctx.artifact_path or "")
        if experiment_id is None:
            # A path that names no experiment ("", ".", a bare root) could reach every experiment's files.
            self.authorizer.require_workspace(ctx.principal, ctx.link.workspace_id, ctx.link.name, Level.CAN_MANAGE)
            return
        self._require_experiment(ctx, experiment_id, wanted)

    async def _require_version_source(self, ctx: _Context) -> None:
        """You may not register a model version from a run, logged model or location you cannot read."""
        ids = ctx.ids
        if ids.run_id:
            await self._require_run(ctx, ids.run_id, Level.CAN_READ)
        if ids.model_id:
            await self._require_logged_model(ctx, ids.model_id, Level.CAN_READ)
        source = ids.source or ""
        if source.startswith("models:/"):
            model_id = source[len("models:/") :].split("/", 1)[0]
            if not model_id.startswith("m-"):
                raise PermissionDenied("A model version's source must be a logged model id (models:/m-...).")
            await self._require_logged_model(ctx, model_id, Level.CAN_READ)
        elif source.startswith("runs:/"):
            await self._require_run(ctx, source[len("runs:/") :].split("/", 1)[0], Level.CAN_READ)
        elif source.startswith("mlflow-artifacts:/"):
            from gateway.core.paths import canonical_artifact_path

            path = canonical_artifact_path(source[len("mlflow-artifacts:") :].lstrip("/"))
            parts = path.split("/")
            if parts[0].lower() == "workspaces" and (len(parts) < 2 or parts[1] != ctx.link.name):
                raise PermissionDenied("A model version's source must lie in this workspace.")
            experiment_id = _artifact_experiment(path)
            if experiment_id is None:
                raise PermissionDenied("A model version's source must lie inside an experiment you can read.")
            self._require_experiment(ctx, experiment_id, Level.CAN_READ)
        else:
            raise PermissionDenied(
                "A model version's source must be a run (runs:/), a logged model (models:/) or an "
                "mlflow-artifacts: location; other locations are for admins only."
            )

    async def _stage_level(self, ctx: _Context, name: str) -> Level:
        """Anything touching Production needs CAN_MANAGE_PRODUCTION_VERSIONS; other stages need STAGING."""
        document = ctx.document
        target = str(document.get("stage", "")).lower()
        current = await self.lookups.stage_of(ctx.link, name, str(document.get("version", "")))
        if "production" in (target, current.lower()):
            return Level.CAN_MANAGE_PRODUCTION_VERSIONS
        return Level.CAN_MANAGE_STAGING_VERSIONS

    # -- searches -------------------------------------------------------------------------------------

    def _narrow_experiment_search(self, ctx: _Context) -> Plan:
        readable = self.authorizer.readable_experiments(ctx.principal, ctx.link.workspace_id)
        if isinstance(readable, Everything):
            return Plan()
        if not readable:
            return Plan(answer=EMPTY_RESULT)
        clause = "experiment_id IN (" + ", ".join(f"'{e}'" for e in sorted(readable, key=_numeric)) + ")"
        return ctx.with_filter(clause)

    def _narrow_experiment_ids(self, ctx: _Context) -> Plan:
        asked = ctx.experiment_ids(required=False)
        if not asked:
            raise InvalidParameter("experiment_ids must name at least one experiment.")
        readable = self.authorizer.readable_experiments(ctx.principal, ctx.link.workspace_id)
        kept = asked if isinstance(readable, Everything) else [e for e in asked if e in readable]
        if not kept:
            return Plan(answer=EMPTY_RESULT)
        return ctx.with_list("experiment_ids", kept) if kept != asked else Plan()

    def _narrow_trace_search(self, ctx: _Context) -> Plan:
        asked = ctx.trace_experiments()
        if not asked:
            # Nothing to narrow by: only a reader of the whole workspace may search it.
            self.authorizer.require_workspace(ctx.principal, ctx.link.workspace_id, ctx.link.name, Level.CAN_READ)
            return Plan()
        readable = self.authorizer.readable_experiments(ctx.principal, ctx.link.workspace_id)
        if isinstance(readable, Everything) or all(e in readable for e in asked):
            return Plan()
        kept = [e for e in asked if e in readable]
        if not kept:
            return Plan(answer=EMPTY_RESULT)
        for experiment_id in asked:  # a mixed list: refuse rather than rewrite nested locations
            self._require_experiment(ctx, experiment_id, Level.CAN_READ)
        return Plan()

    async def _narrow_model_search(self, ctx: _Context) -> Plan:
        readable = self.authorizer.readable_models(ctx.principal, ctx.link.workspace_id)
        if isinstance(readable, Everything):
            return Plan()
        names = await self.access.model_names(ctx.link, readable)
        quoted = [_quote(name) for name in sorted(names)]
        listed = [q for q in quoted if q is not None]
        if not listed:
            return Plan(answer=EMPTY_RESULT)
        return ctx.with_filter("name IN (" + ", ".join(listed) + ")")

    # -- bookkeeping around the store's answer ----------------------------------------------------------

    def _granting(
        self, principal: Principal, link: WorkspaceLink, kind: str, field_name: str, name: str | None = None
    ) -> Callable[[int, bytes], Awaitable[bytes | None]]:
        async def after(status: int, answer: bytes) -> bytes | None:
            if status != 200:
                return None
            created = msgspec.json.decode(answer).get(field_name) if kind == "experiment" else name
            if created:
                await self._record_owner(principal, link, kind, str(created))
            return None

        return after

    async def _record_owner(self, principal: Principal, link: WorkspaceLink, kind: str, created: str) -> None:
        """The creator's CAN_MANAGE is recorded before the answer goes out; never an ownerless object."""
        for attempt in range(3):
            try:
                await self.access.record_owner(principal, link, kind, created)
                return
            except Exception as exc:
                log.warning("recording the owner of %s %s failed (%s)", kind, created, type(exc).__name__)
                await asyncio.sleep(0.2 * (attempt + 1))
        await self._undo(link, kind, created)
        raise StoreUnavailable(
            f"The {kind.replace('_', ' ')} was created but its owner could not be recorded, "
            "so the creation was undone; try again."
        )

    def _model_bookkeeping(
        self, spec: RouteSpec, link: WorkspaceLink, name: str, ctx: _Context | None, body: bytes | None = None
    ) -> Plan:
        if spec.name == "POST /mlflow/registered-models/rename":
            raw = ctx.body if ctx is not None else body
            new_name = msgspec.json.decode(raw or b"{}").get("new_name") if raw else None

            async def renamed(status: int, answer: bytes) -> bytes | None:
                if status == 200 and new_name:
                    await self.access.model_changed(link, "rename", name, str(new_name))
                return None

            return Plan(after=renamed)
        if spec.name == "DELETE /mlflow/registered-models/delete":

            async def deleted(status: int, answer: bytes) -> bytes | None:
                if status == 200:
                    await self.access.model_changed(link, "delete", name, None)
                return None

            return Plan(after=deleted)
        return Plan()

    async def check_found_experiment(self, principal: Principal, link: WorkspaceLink, answer: bytes) -> None:
        """get-by-name names no id up front: the experiment found must be readable, or it was not found."""
        if principal.account_admin:
            return
        experiment = msgspec.json.decode(answer).get("experiment", {})
        experiment_id = str(experiment.get("experiment_id", ""))
        obj = experiment_object(link.workspace_id, experiment_id)
        if not self.authorizer.allows(principal, link.workspace_id, obj, Level.CAN_READ):
            raise ResourceNotFound(f"Could not find experiment with name '{experiment.get('name', '')}'")


# -- request reading ------------------------------------------------------------------------------


@dataclass(slots=True)
class _Context:
    spec: RouteSpec
    principal: Principal
    link: WorkspaceLink
    ids: RequestIds
    body: bytes | None  # canonical
    document: dict[str, Any]  # the body, decoded
    nested: list[NestedId]  # ids below the top level of the body
    query: str
    path_params: dict[str, Any]
    headers: list[tuple[str, str]]
    artifact_path: str | None
    _params: dict[str, list[str]] | None = None

    def params(self) -> dict[str, list[str]]:
        """The query string, parsed once per request."""
        if self._params is None:
            self._params = parse_qs(self.query, keep_blank_values=True)
        return self._params

    def single(self, name: str) -> str:
        """One id from the path, the body or the query; several different values are refused."""
        values: set[str] = set()
        if name in self.path_params:
            values.add(str(self.path_params[name]))
        body_value = getattr(self.ids, name, None)
        if body_value:
            values.add(str(body_value))
        values.update(v for v in self.params().get(name, []) if v)
        if len(values) != 1:
            raise InvalidParameter(f"Exactly one '{name}' is required." if not values else f"'{name}' given twice.")
        return values.pop()

    def experiment_ids(self, *, required: bool) -> list[str]:
        found: list[str] = []
        if self.ids.experiment_id:
            found.append(self.ids.experiment_id)
        found.extend(self.ids.experiment_ids or [])
        params = self.params()
        found.extend(params.get("experiment_id", []))
        found.extend(params.get("experiment_ids", []))
        found = list(dict.fromkeys(str(e) for e in found))
        if required and not found:
            raise InvalidParameter("This call must name its experiment (experiment_id).")
        return found

    def run_ids(self) -> list[str]:
        found = [v for v in (self.ids.run_id, self.ids.run_uuid) if v]
        found.extend(self.ids.run_ids or [])
        params = self.params()
        for name in ("run_id", "run_uuid", "run_ids"):
            found.extend(v for v in params.get(name, []) if v)
        found = list(dict.fromkeys(found))
        if not found and not self.ids.model_id:
            raise InvalidParameter("This call must name its run (run_id).")
        return found

    def trace_ids(self) -> list[str]:
        found = [v for v in (self.ids.trace_id, self.ids.request_id) if v]
        found.extend(self.ids.trace_ids or [])
        for name in ("request_id", "trace_id"):
            if name in self.path_params:
                found.append(str(self.path_params[name]))
        for name in ("trace_ids", "request_id", "trace_id"):
            found.extend(v for v in self.params().get(name, []) if v)
        return list(dict.fromkeys(found))

    def trace_experiments(self) -> list[str]:
        """Experiments a trace call writes to or searches: body fields, v3 locations, or the OTLP header."""
        found = self.experiment_ids(required=False)
        info = _member(_member(self.document, "trace"), "trace_info")
        location = _member(_member(info, "trace_location"), "mlflow_experiment")
        if location.get("experiment_id"):
            found.append(str(location["experiment_id"]))
        locations = self.document.get("locations") or []
        if not isinstance(locations, list):
            raise InvalidParameter("'locations' must be a list.")
        for item in locations:
            if not isinstance(item, dict):
                raise InvalidParameter("Each of 'locations' must be an object.")
            experiment = _member(item, "mlflow_experiment")
            if experiment.get("experiment_id"):
                found.append(str(experiment["experiment_id"]))
        found.extend(value for name, value in self.headers if name == "x-mlflow-experiment-id")
        if self.spec.resource is Resource.TRACE and self.spec.action is Action.CREATE and not found:
            raise InvalidParameter("A trace must name the experiment it belongs to.")
        return list(dict.fromkeys(found))

    def with_filter(self, clause: str) -> Plan:
        """AND a clause into the search filter (MLflow filters only know AND, so this cannot be undone)."""
        if self.spec.method == "GET":
            params = dict(self.params())
            current = (params.get("filter") or [""])[0].strip()
            params["filter"] = [f"{current} AND {clause}" if current else clause]
            return Plan(query=urlencode(params, doseq=True))
        document = dict(self.document)
        current = str(document.get("filter") or "").strip()
        document["filter"] = f"{current} AND {clause}" if current else clause
        return Plan(body=msgspec.json.encode(document))

    def with_list(self, name: str, values: list[str]) -> Plan:
        if self.spec.method == "GET":
            params = dict(self.params())
            params[name] = values
            return Plan(query=urlencode(params, doseq=True))
        document = dict(self.document)
        document[name] = values
        return Plan(body=msgspec.json.encode(document))


def _member(node: dict[str, Any], key: str) -> dict[str, Any]:
    """A nested message of the body: absent reads as empty, anything but an object is refused."""
    value = node.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidParameter(f"Field '{key}' must be an object.")
    return value


def _artifact_experiment(path: str) -> str | None:
    """`[workspaces/<ws>/]<experiment_id>/...` → the experiment id, if the path names one."""
    parts = [p for p in path.split("/") if p]
    if parts and parts[0].lower() == "workspaces":
        parts = parts[2:]
    if parts and EXPERIMENT_ID_RE.match(parts[0]):
        return parts[0]
    return None


def _quote(name: str) -> str | None:
    if "'" not in name:
        return f"'{name}'"
    if '"' not in name:
        return f'"{name}"'
    return None  # cannot be written in MLflow's filter grammar


def _numeric(value: str) -> tuple[int, str]:
    return (int(value), value) if value.isdigit() else (0, value)
