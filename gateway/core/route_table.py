"""The explicit table of every MLflow route the gateway serves, with the resource and action each touches.

Nothing is proxied that is not declared here: an undeclared path answers ENDPOINT_NOT_FOUND. Each
declaration names the resource kind, the action (what privilege authorization will ask for) and where
the ids of the touched objects travel, so authorization and routing plug in per route.

Each route is mounted where MLflow serves it: at `/api/<v>.0` and its `/ajax-api/<v>.0` twin, or at
`/ajax-api/<v>.0` only for the few routes MLflow registers for its web UI alone (`ajax_only`), or at an
absolute path. Both twins are forwarded to `/api/<v>.0`, the path every MLflow-compatible store serves
(Databricks and Azure ML have no `/ajax-api`); an `ajax_only` route is forwarded to `/ajax-api/<v>.0`.
`NOT_SERVED` lists, by family and with the reason, every other route MLflow 3.17.2 registers:
tests/unit/test_mlflow_surface.py derives MLflow's own route map from the installed package and fails on
a route that is in neither list, and on a declared route forwarded to a path the store does not serve.

What each feature does with a route is declared here too, as `Trait` flags (indexed, mirrored,
failover-readable, ...), and routes that code names one by one are the constants at the end: a
feature reads `spec.indexed`, never a set of route-name strings a typo could silently empty.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Flag, StrEnum, auto


class Resource(StrEnum):
    EXPERIMENT = "experiment"
    RUN = "run"
    LOGGED_MODEL = "logged_model"
    REGISTERED_MODEL = "registered_model"
    MODEL_VERSION = "model_version"
    ARTIFACT = "artifact"
    TRACE = "trace"
    DATASET = "dataset"
    SCORER = "scorer"
    ISSUE = "issue"  # an issue of an experiment's traces (GenAI quality)
    LABEL_SCHEMA = "label_schema"  # a labelling schema of an experiment (human feedback)
    REVIEW_QUEUE = "review_queue"  # a human-review queue of an experiment's traces
    WEBHOOK = "webhook"  # a registry webhook of the workspace: the store posts its events to a URL
    MCP_SERVER = "mcp_server"  # an entry of the workspace's MCP server registry: versions, tags, aliases, endpoints
    AI_GATEWAY = "ai_gateway"  # the store's AI gateway: endpoints, model definitions, bindings, budgets, guardrails
    AI_GATEWAY_SECRET = "ai_gateway_secret"  # an AI-gateway provider key (secret) of the workspace
    JOB = "job"  # a job of the store's job runner (scorers, evaluation, issue detection, prompt optimisation)
    WORKSPACE = "workspace"
    SERVER = "server"
    QUERY = "query"  # a GraphQL operation of the web UI: it names runs and experiments in its variables
    UI = "ui"  # the web UI's own page and files (the MLflow build the gateway serves itself)


class Action(StrEnum):
    READ = "read"  # get one object the caller names
    SEARCH = "search"  # list or search; results scoped to what the caller may read
    CREATE = "create"  # create inside a container (experiment, workspace)
    EDIT = "edit"  # change an object or log into it
    MANAGE = "manage"  # delete, restore, purge
    ADMIN = "admin"  # account-admin operations
    INVOKE = "invoke"  # call an AI-gateway endpoint: the store calls an LLM provider
    PUBLIC = "public"  # capability probes; no credentials needed


class Body(StrEnum):
    JSON = "json"  # small JSON bodies, read whole
    UPLOAD = "upload"  # artifact bytes, streamed to the store
    DOWNLOAD = "download"  # artifact bytes, streamed back to the client
    OPAQUE = "opaque"  # non-JSON bodies passed through whole (OTLP protobuf)
    PAYLOAD = "payload"  # a body the store hands to an LLM provider: forwarded as sent, nothing of it is read
    GRAPHQL = "graphql"  # a GraphQL request: parsed, held to the allow-list, re-printed (federation/graphql.py)


class Trait(Flag):
    """What the gateway's features do with a route, beyond forwarding it."""

    INDEXED = auto()  # an accepted write updates the account-wide index (index write-through)
    MIRRORED = auto()  # a dual workspace's accepted write is queued for the central store (dual outbox)
    BATCHED = auto()  # mirrored run data the relay coalesces into log-batch calls (dual/mirror.py)
    CREATES = auto()  # the answer names the object the write created (the index and the relay need its id)
    FAILOVER = auto()  # a dual workspace's read served from the central copy while its store is down
    RUN_TEXT = auto()  # writes text into a run (params, tags, metric names, run name, inputs): the leak guard reads it
    RUN_TAGS = auto()  # sets or deletes tags of an existing run, keys of the caller's choosing: the property guard
    DESTINATIONS = auto()  # makes the store send requests to a destination the call names: the allow-list decides
    STARTS_RUN = auto()  # the store creates a run outside runs/create, named in its answer: recorded from there


NO_TRAITS = Trait(0)
INDEXED, MIRRORED, BATCHED = Trait.INDEXED, Trait.MIRRORED, Trait.BATCHED
CREATES, FAILOVER = Trait.CREATES, Trait.FAILOVER
RUN_TEXT, RUN_TAGS, DESTINATIONS = Trait.RUN_TEXT, Trait.RUN_TAGS, Trait.DESTINATIONS
STARTS_RUN = Trait.STARTS_RUN

READ_ACTIONS = frozenset({Action.READ, Action.SEARCH, Action.PUBLIC})


@dataclass(frozen=True, slots=True)
class RouteSpec:
    method: str
    path: str  # relative to the API prefix, Litestar syntax for path parameters
    resource: Resource
    action: Action
    ids: tuple[str, ...] = ()  # request fields (path, query or body) that name touched objects
    version: int = 2  # mounted at /api/<v>.0 and /ajax-api/<v>.0
    body: Body = Body.JSON
    absolute: bool = False  # `path` is the full path, not under an API prefix
    traits: Trait = NO_TRAITS
    ajax_only: bool = False  # MLflow serves it under /ajax-api only: mounted and forwarded there alone
    # A query parameter holding a path inside the named object's artifacts (the UI's artifact calls): refused
    # unless it is a canonical relative path (core/paths.py), whoever calls.
    relative_path: str = ""

    @property
    def name(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def indexed(self) -> bool:
        return Trait.INDEXED in self.traits

    @property
    def mirrored(self) -> bool:
        return Trait.MIRRORED in self.traits

    @property
    def batched(self) -> bool:
        return Trait.BATCHED in self.traits

    @property
    def creates(self) -> bool:
        """The answer names what the write created."""
        return Trait.CREATES in self.traits

    @property
    def failover(self) -> bool:
        """Readable from the central copy while a dual workspace's store is down."""
        return Trait.FAILOVER in self.traits

    @property
    def run_text(self) -> bool:
        """Writes text the store keeps with a run: params, tags, metric names, the run name, dataset inputs."""
        return Trait.RUN_TEXT in self.traits

    @property
    def run_tags(self) -> bool:
        """Sets or deletes tags of an existing run under keys the caller chooses (set-tag, delete-tag, log-batch)."""
        return Trait.RUN_TAGS in self.traits

    @property
    def destinations(self) -> bool:
        """Makes the store send requests to a destination the call names (webhooks, AI-gateway providers)."""
        return Trait.DESTINATIONS in self.traits

    @property
    def starts_run(self) -> bool:
        """The store creates a run outside runs/create (prompt lab, evaluation and issue detection, prompt
        optimisation): its id is read from the answer, for run routes, the index and the dual relay."""
        return Trait.STARTS_RUN in self.traits

    @property
    def writes(self) -> bool:
        """Changes what the store keeps (any call but a read or a search)."""
        return self.method != "GET" and self.action not in READ_ACTIONS

    @property
    def idempotent(self) -> bool:
        """Safe to retry upstream on a dropped connection."""
        return not self.writes

    def paths(self) -> list[str]:
        """Where the gateway serves the route."""
        if self.absolute:
            return [self.path]
        version = f"{self.version}.0"
        if self.ajax_only:
            return [f"/ajax-api/{version}{self.path}"]
        return [f"/api/{version}{self.path}", f"/ajax-api/{version}{self.path}"]

    @property
    def upstream_prefix(self) -> str:
        """What goes before `path` in the store's URL, whichever alias the client called."""
        if self.absolute:
            return ""
        return f"/{'ajax-api' if self.ajax_only else 'api'}/{self.version}.0"


E, RU, LM = Resource.EXPERIMENT, Resource.RUN, Resource.LOGGED_MODEL
RM, MV, AR = Resource.REGISTERED_MODEL, Resource.MODEL_VERSION, Resource.ARTIFACT
TR, DS, SC = Resource.TRACE, Resource.DATASET, Resource.SCORER
IS, LS, RQ = Resource.ISSUE, Resource.LABEL_SCHEMA, Resource.REVIEW_QUEUE
WH, GW, GS = Resource.WEBHOOK, Resource.AI_GATEWAY, Resource.AI_GATEWAY_SECRET
MCP, JOB = Resource.MCP_SERVER, Resource.JOB
READ, SEARCH, CREATE = Action.READ, Action.SEARCH, Action.CREATE
EDIT, MANAGE, INVOKE = Action.EDIT, Action.MANAGE, Action.INVOKE

R = RouteSpec
RUN_ID = ("run_id", "run_uuid")

FORWARDED_ROUTES: tuple[RouteSpec, ...] = (
    # Experiments
    R("GET", "/mlflow/experiments/get-by-name", E, READ, ("experiment_name",), traits=FAILOVER),
    R("POST", "/mlflow/experiments/create", E, CREATE, traits=INDEXED | MIRRORED | CREATES),
    R("POST", "/mlflow/experiments/search", E, SEARCH, traits=FAILOVER),
    R("GET", "/mlflow/experiments/search", E, SEARCH, traits=FAILOVER),
    R("GET", "/mlflow/experiments/get", E, READ, ("experiment_id",), traits=FAILOVER),
    R("POST", "/mlflow/experiments/delete", E, MANAGE, ("experiment_id",), traits=INDEXED | MIRRORED),
    R("POST", "/mlflow/experiments/restore", E, MANAGE, ("experiment_id",), traits=INDEXED | MIRRORED),
    R("POST", "/mlflow/experiments/update", E, EDIT, ("experiment_id",), traits=INDEXED | MIRRORED),
    R("POST", "/mlflow/experiments/set-experiment-tag", E, EDIT, ("experiment_id",), traits=INDEXED | MIRRORED),
    R("POST", "/mlflow/experiments/delete-experiment-tag", E, EDIT, ("experiment_id",), traits=INDEXED | MIRRORED),
    # The datasets summary of the UI's experiment page: MLflow serves it under /ajax-api only.
    R("POST", "/mlflow/experiments/search-datasets", E, SEARCH, ("experiment_ids",), ajax_only=True),
    # Runs, params, metrics, tags, inputs and outputs
    R("POST", "/mlflow/runs/create", RU, CREATE, ("experiment_id",), traits=INDEXED | MIRRORED | CREATES),
    # The UI's prompt lab: the store creates a run (params, tags, an evaluation table) from the body in one call.
    R(
        "POST",
        "/mlflow/runs/create-promptlab-run",
        RU,
        CREATE,
        ("experiment_id",),
        ajax_only=True,
        traits=MIRRORED | CREATES | STARTS_RUN,
    ),
    R("POST", "/mlflow/runs/update", RU, EDIT, RUN_ID, traits=INDEXED | MIRRORED | RUN_TEXT),
    R("POST", "/mlflow/runs/delete", RU, MANAGE, RUN_ID, traits=INDEXED | MIRRORED),
    R("POST", "/mlflow/runs/restore", RU, MANAGE, RUN_ID, traits=INDEXED | MIRRORED),
    R(
        "POST",
        "/mlflow/runs/log-metric",
        RU,
        EDIT,
        (*RUN_ID, "model_id"),
        traits=INDEXED | MIRRORED | BATCHED | RUN_TEXT,
    ),
    R("POST", "/mlflow/runs/log-parameter", RU, EDIT, RUN_ID, traits=INDEXED | MIRRORED | BATCHED | RUN_TEXT),
    R("POST", "/mlflow/runs/set-tag", RU, EDIT, RUN_ID, traits=INDEXED | MIRRORED | BATCHED | RUN_TEXT | RUN_TAGS),
    R("POST", "/mlflow/runs/delete-tag", RU, EDIT, RUN_ID, traits=INDEXED | MIRRORED | RUN_TAGS),
    R("POST", "/mlflow/runs/log-batch", RU, EDIT, RUN_ID, traits=INDEXED | MIRRORED | BATCHED | RUN_TEXT | RUN_TAGS),
    R("POST", "/mlflow/runs/log-model", RU, EDIT, RUN_ID, traits=MIRRORED | RUN_TEXT),
    R("POST", "/mlflow/runs/log-inputs", RU, EDIT, RUN_ID, traits=INDEXED | MIRRORED | RUN_TEXT),
    R("POST", "/mlflow/runs/outputs", RU, EDIT, RUN_ID, traits=MIRRORED),
    R("GET", "/mlflow/runs/get", RU, READ, RUN_ID, traits=FAILOVER),
    R("POST", "/mlflow/runs/search", RU, SEARCH, ("experiment_ids",), traits=FAILOVER),
    R("GET", "/mlflow/artifacts/list", RU, READ, RUN_ID),
    R("POST", "/mlflow/artifacts/presigned-upload-url", RU, EDIT, ("run_id", "model_id")),
    R("POST", "/mlflow/artifacts/presigned-download-url", RU, READ, ("run_id", "model_id")),
    R("GET", "/mlflow/metrics/get-history", RU, READ, RUN_ID, traits=FAILOVER),
    R("GET", "/mlflow/metrics/get-history-bulk-interval", RU, READ, ("run_ids",)),
    # Logged models (MLflow 3)
    R("POST", "/mlflow/logged-models", LM, CREATE, ("experiment_id", "source_run_id"), traits=MIRRORED | CREATES),
    R("POST", "/mlflow/logged-models/search", LM, SEARCH, ("experiment_ids",)),
    R("GET", "/mlflow/logged-models/{model_id:str}", LM, READ, ("model_id",)),
    R("PATCH", "/mlflow/logged-models/{model_id:str}", LM, EDIT, ("model_id",), traits=MIRRORED),
    R("DELETE", "/mlflow/logged-models/{model_id:str}", LM, MANAGE, ("model_id",), traits=MIRRORED),
    R("PATCH", "/mlflow/logged-models/{model_id:str}/tags", LM, EDIT, ("model_id",), traits=MIRRORED),
    R("DELETE", "/mlflow/logged-models/{model_id:str}/tags/{tag_key:str}", LM, EDIT, ("model_id",), traits=MIRRORED),
    R("POST", "/mlflow/logged-models/{model_id:str}/params", LM, EDIT, ("model_id",), traits=MIRRORED),
    R("GET", "/mlflow/logged-models/{model_id:str}/artifacts/directories", LM, READ, ("model_id",)),
    # Model registry
    R("POST", "/mlflow/registered-models/create", RM, CREATE, ("name",), traits=MIRRORED),
    R("POST", "/mlflow/registered-models/rename", RM, EDIT, ("name",), traits=MIRRORED),
    R("PATCH", "/mlflow/registered-models/update", RM, EDIT, ("name",), traits=MIRRORED),
    R("DELETE", "/mlflow/registered-models/delete", RM, MANAGE, ("name",), traits=MIRRORED),
    R("GET", "/mlflow/registered-models/get", RM, READ, ("name",)),
    R("GET", "/mlflow/registered-models/search", RM, SEARCH),
    R("POST", "/mlflow/registered-models/get-latest-versions", RM, READ, ("name",)),
    R("GET", "/mlflow/registered-models/get-latest-versions", RM, READ, ("name",)),
    R("POST", "/mlflow/registered-models/set-tag", RM, EDIT, ("name",), traits=MIRRORED),
    R("DELETE", "/mlflow/registered-models/delete-tag", RM, EDIT, ("name",), traits=MIRRORED),
    R("POST", "/mlflow/registered-models/alias", RM, EDIT, ("name",), traits=MIRRORED),
    R("DELETE", "/mlflow/registered-models/alias", RM, EDIT, ("name",), traits=MIRRORED),
    R("GET", "/mlflow/registered-models/alias", RM, READ, ("name",)),
    R(
        "POST",
        "/mlflow/model-versions/create",
        MV,
        CREATE,
        ("name", "run_id", "model_id", "source"),
        traits=MIRRORED | CREATES,
    ),
    R("PATCH", "/mlflow/model-versions/update", MV, EDIT, ("name",), traits=MIRRORED),
    # The level depends on the stages (authz/levels.py transition_level, asked by the guard), and the registry
    # workflow serves the route itself (registry/routes.py): one stage change of a model at a time, each logged.
    R("POST", "/mlflow/model-versions/transition-stage", MV, EDIT, ("name",), traits=MIRRORED),
    R("DELETE", "/mlflow/model-versions/delete", MV, MANAGE, ("name",), traits=MIRRORED),
    R("GET", "/mlflow/model-versions/get", MV, READ, ("name",)),
    R("GET", "/mlflow/model-versions/search", MV, SEARCH),
    R("GET", "/mlflow/model-versions/get-download-uri", MV, READ, ("name",)),
    R("POST", "/mlflow/model-versions/set-tag", MV, EDIT, ("name",), traits=MIRRORED),
    R("DELETE", "/mlflow/model-versions/delete-tag", MV, EDIT, ("name",), traits=MIRRORED),
    # Artifact proxy (`mlflow-artifacts:` URIs); the touched run or model is read from the path.
    R("GET", "/mlflow-artifacts/artifacts", AR, READ, ("path",), traits=FAILOVER),
    R(
        "GET",
        "/mlflow-artifacts/artifacts/{artifact_path:path}",
        AR,
        READ,
        ("artifact_path",),
        body=Body.DOWNLOAD,
        traits=FAILOVER,
    ),
    R(
        "PUT",
        "/mlflow-artifacts/artifacts/{artifact_path:path}",
        AR,
        EDIT,
        ("artifact_path",),
        body=Body.UPLOAD,
        traits=MIRRORED,
    ),
    R("DELETE", "/mlflow-artifacts/artifacts/{artifact_path:path}", AR, MANAGE, ("artifact_path",), traits=MIRRORED),
    R("POST", "/mlflow-artifacts/mpu/create/{artifact_path:path}", AR, EDIT, ("artifact_path",)),
    R("POST", "/mlflow-artifacts/mpu/complete/{artifact_path:path}", AR, EDIT, ("artifact_path",)),
    R("POST", "/mlflow-artifacts/mpu/abort/{artifact_path:path}", AR, EDIT, ("artifact_path",)),
    R("GET", "/mlflow-artifacts/presigned/{artifact_path:path}", AR, READ, ("artifact_path",)),
    # Traces: v2 (request_id) and v3 (trace_id), assessments, OTLP ingest
    R("POST", "/mlflow/traces", TR, CREATE, ("experiment_id",)),
    R("GET", "/mlflow/traces", TR, SEARCH, ("experiment_ids",)),
    R("PATCH", "/mlflow/traces/{request_id:str}", TR, EDIT, ("request_id",)),
    R("GET", "/mlflow/traces/{request_id:str}/info", TR, READ, ("request_id",)),
    R("PATCH", "/mlflow/traces/{request_id:str}/tags", TR, EDIT, ("request_id",)),
    R("DELETE", "/mlflow/traces/{request_id:str}/tags", TR, EDIT, ("request_id",)),
    R("POST", "/mlflow/traces/delete-traces", TR, MANAGE, ("experiment_id",)),
    R("POST", "/mlflow/traces/link-to-run", TR, EDIT, ("run_id", "trace_ids")),
    R("POST", "/mlflow/traces/link-prompts", TR, EDIT, ("trace_id",)),
    R("POST", "/mlflow/traces", TR, CREATE, version=3),
    R("POST", "/mlflow/traces/search", TR, SEARCH, version=3),
    R("GET", "/mlflow/traces/get", TR, READ, ("trace_id",), version=3),
    R("GET", "/mlflow/traces/batchGet", TR, READ, ("trace_ids",), version=3),
    R("POST", "/mlflow/traces/batchGetInfos", TR, READ, ("trace_ids",), version=3),
    R("POST", "/mlflow/traces/delete-traces", TR, MANAGE, ("experiment_id",), version=3),
    R("POST", "/mlflow/traces/calculate-filter-correlation", TR, SEARCH, ("experiment_ids",), version=3),
    R("POST", "/mlflow/traces/metrics", TR, SEARCH, version=3),
    R("GET", "/mlflow/traces/{trace_id:str}", TR, READ, ("trace_id",), version=3),
    R("PATCH", "/mlflow/traces/{trace_id:str}/tags", TR, EDIT, ("trace_id",), version=3),
    R("DELETE", "/mlflow/traces/{trace_id:str}/tags", TR, EDIT, ("trace_id",), version=3),
    R("POST", "/mlflow/traces/{trace_id:str}/assessments", TR, EDIT, ("trace_id",), version=3),
    R("GET", "/mlflow/traces/{trace_id:str}/assessments/{assessment_id:str}", TR, READ, ("trace_id",), version=3),
    R("PATCH", "/mlflow/traces/{trace_id:str}/assessments/{assessment_id:str}", TR, EDIT, ("trace_id",), version=3),
    R("DELETE", "/mlflow/traces/{trace_id:str}/assessments/{assessment_id:str}", TR, EDIT, ("trace_id",), version=3),
    R("POST", "/v1/traces", TR, CREATE, ("x-mlflow-experiment-id",), body=Body.OPAQUE, absolute=True),
    # Evaluation datasets (MLflow 3)
    R("POST", "/mlflow/datasets/create", DS, CREATE, ("experiment_ids",), version=3),
    R("POST", "/mlflow/datasets/search", DS, SEARCH, ("experiment_ids",), version=3),
    R("GET", "/mlflow/datasets/search", DS, SEARCH, ("experiment_ids",), version=3),
    R("GET", "/mlflow/datasets/{dataset_id:str}", DS, READ, ("dataset_id",), version=3),
    R("DELETE", "/mlflow/datasets/{dataset_id:str}", DS, MANAGE, ("dataset_id",), version=3),
    R("PATCH", "/mlflow/datasets/{dataset_id:str}/tags", DS, EDIT, ("dataset_id",), version=3),
    R("DELETE", "/mlflow/datasets/{dataset_id:str}/tags/{key:str}", DS, EDIT, ("dataset_id",), version=3),
    R("POST", "/mlflow/datasets/{dataset_id:str}/records", DS, EDIT, ("dataset_id",), version=3),
    R("GET", "/mlflow/datasets/{dataset_id:str}/records", DS, READ, ("dataset_id",), version=3),
    R("DELETE", "/mlflow/datasets/{dataset_id:str}/records", DS, EDIT, ("dataset_id",), version=3),
    R("GET", "/mlflow/datasets/{dataset_id:str}/experiment-ids", DS, READ, ("dataset_id",), version=3),
    R("POST", "/mlflow/datasets/{dataset_id:str}/add-experiments", DS, EDIT, ("dataset_id",), version=3),
    R("POST", "/mlflow/datasets/{dataset_id:str}/remove-experiments", DS, EDIT, ("dataset_id",), version=3),
    # Scorers (MLflow 3 GenAI evaluation), scoped to an experiment
    R("POST", "/mlflow/scorers/register", SC, CREATE, ("experiment_id",), version=3, traits=DESTINATIONS),
    R("GET", "/mlflow/scorers/list", SC, READ, ("experiment_id",), version=3),
    R("GET", "/mlflow/scorers/versions", SC, READ, ("experiment_id",), version=3),
    R("GET", "/mlflow/scorers/get", SC, READ, ("experiment_id",), version=3),
    R("DELETE", "/mlflow/scorers/delete", SC, MANAGE, ("experiment_id",), version=3),
    R("GET", "/mlflow/scorers/online-configs", SC, READ, ("experiment_id",), version=3),
    R("PUT", "/mlflow/scorers/online-config", SC, EDIT, ("experiment_id",), version=3),
    # Issues of an experiment's traces (MLflow 3 GenAI); each follows its experiment
    R("POST", "/mlflow/issues", IS, CREATE, ("experiment_id", "source_run_id"), version=3),
    R("POST", "/mlflow/issues/search", IS, SEARCH, ("experiment_id",), version=3),
    R("GET", "/mlflow/issues/{issue_id:str}", IS, READ, ("issue_id",), version=3),
    R("PATCH", "/mlflow/issues/{issue_id:str}", IS, EDIT, ("issue_id",), version=3),
    # Label schemas (human feedback) of an experiment
    R("POST", "/mlflow/label-schemas/create", LS, CREATE, ("experiment_id",), version=3),
    R("GET", "/mlflow/label-schemas/get", LS, READ, ("schema_id",), version=3),
    R("GET", "/mlflow/label-schemas/get-by-name", LS, READ, ("experiment_id",), version=3),
    R("GET", "/mlflow/label-schemas/list", LS, SEARCH, ("experiment_id",), version=3),
    R("PATCH", "/mlflow/label-schemas/update", LS, EDIT, ("schema_id",), version=3),
    R("DELETE", "/mlflow/label-schemas/delete", LS, MANAGE, ("schema_id",), version=3),
    # Review queues of an experiment's traces, and their items
    R("POST", "/mlflow/review-queues/create", RQ, CREATE, ("experiment_id",), version=3),
    R("GET", "/mlflow/review-queues/get", RQ, READ, ("queue_id",), version=3),
    R("GET", "/mlflow/review-queues/get-by-name", RQ, READ, ("experiment_id",), version=3),
    R("GET", "/mlflow/review-queues/list", RQ, SEARCH, ("experiment_id",), version=3),
    R("POST", "/mlflow/review-queues/update", RQ, EDIT, ("queue_id",), version=3),
    R("POST", "/mlflow/review-queues/delete", RQ, MANAGE, ("queue_id",), version=3),
    R("POST", "/mlflow/review-queues/get-or-create-user", RQ, CREATE, ("experiment_id",), version=3),
    R("POST", "/mlflow/review-queues/items/add", RQ, EDIT, ("queue_id",), version=3),
    R("GET", "/mlflow/review-queues/items/list", RQ, READ, ("queue_id",), version=3),
    R("POST", "/mlflow/review-queues/items/remove", RQ, EDIT, ("queue_id",), version=3),
    R("POST", "/mlflow/review-queues/items/set-status", RQ, EDIT, ("queue_id",), version=3),
    # Registry webhooks of the workspace: the store posts to the URL (checked against the allow-list)
    R("POST", "/mlflow/webhooks", WH, CREATE, traits=DESTINATIONS),
    R("GET", "/mlflow/webhooks", WH, SEARCH),
    R("GET", "/mlflow/webhooks/{webhook_id:str}", WH, READ, ("webhook_id",)),
    R("PATCH", "/mlflow/webhooks/{webhook_id:str}", WH, EDIT, ("webhook_id",), traits=DESTINATIONS),
    R("DELETE", "/mlflow/webhooks/{webhook_id:str}", WH, MANAGE, ("webhook_id",)),
    R("POST", "/mlflow/webhooks/{webhook_id:str}/test", WH, EDIT, ("webhook_id",), traits=DESTINATIONS),
    # The store's AI gateway: provider keys (their api_base checked against the allow-list) and configuration
    R("POST", "/mlflow/gateway/secrets/create", GS, CREATE, version=3, traits=DESTINATIONS),
    R("GET", "/mlflow/gateway/secrets/get", GS, READ, ("secret_id",), version=3),
    R("GET", "/mlflow/gateway/secrets/list", GS, SEARCH, version=3),
    R("POST", "/mlflow/gateway/secrets/update", GS, EDIT, ("secret_id",), version=3, traits=DESTINATIONS),
    R("DELETE", "/mlflow/gateway/secrets/delete", GS, MANAGE, ("secret_id",), version=3),
    R("GET", "/mlflow/gateway/secrets/config", GS, READ, version=3, ajax_only=True),
    R("POST", "/mlflow/gateway/endpoints/create", GW, CREATE, version=3),
    R("GET", "/mlflow/gateway/endpoints/get", GW, READ, ("endpoint_id",), version=3),
    R("GET", "/mlflow/gateway/endpoints/list", GW, SEARCH, version=3),
    R("POST", "/mlflow/gateway/endpoints/update", GW, EDIT, ("endpoint_id",), version=3),
    R("DELETE", "/mlflow/gateway/endpoints/delete", GW, MANAGE, ("endpoint_id",), version=3),
    R("POST", "/mlflow/gateway/endpoints/set-tag", GW, EDIT, ("endpoint_id",), version=3),
    R("DELETE", "/mlflow/gateway/endpoints/delete-tag", GW, EDIT, ("endpoint_id",), version=3),
    R("POST", "/mlflow/gateway/endpoints/models/attach", GW, EDIT, ("endpoint_id",), version=3),
    R("POST", "/mlflow/gateway/endpoints/models/detach", GW, EDIT, ("endpoint_id",), version=3),
    R("POST", "/mlflow/gateway/endpoints/bindings/create", GW, EDIT, ("endpoint_id",), version=3),
    R("DELETE", "/mlflow/gateway/endpoints/bindings/delete", GW, EDIT, ("endpoint_id",), version=3),
    R("GET", "/mlflow/gateway/endpoints/bindings/list", GW, SEARCH, version=3),
    R("POST", "/mlflow/gateway/model-definitions/create", GW, CREATE, version=3, traits=DESTINATIONS),
    R("GET", "/mlflow/gateway/model-definitions/get", GW, READ, ("model_definition_id",), version=3),
    R("GET", "/mlflow/gateway/model-definitions/list", GW, SEARCH, version=3),
    R(
        "POST",
        "/mlflow/gateway/model-definitions/update",
        GW,
        EDIT,
        ("model_definition_id",),
        version=3,
        traits=DESTINATIONS,
    ),
    R("DELETE", "/mlflow/gateway/model-definitions/delete", GW, MANAGE, ("model_definition_id",), version=3),
    R("POST", "/mlflow/gateway/budgets/create", GW, CREATE, version=3),
    R("GET", "/mlflow/gateway/budgets/get", GW, READ, ("budget_policy_id",), version=3),
    R("GET", "/mlflow/gateway/budgets/list", GW, SEARCH, version=3),
    R("POST", "/mlflow/gateway/budgets/update", GW, EDIT, ("budget_policy_id",), version=3),
    R("DELETE", "/mlflow/gateway/budgets/delete", GW, MANAGE, ("budget_policy_id",), version=3),
    R("GET", "/mlflow/gateway/budgets/windows", GW, SEARCH, version=3),
    R("POST", "/mlflow/gateway/guardrails/create", GW, CREATE, version=3),
    R("GET", "/mlflow/gateway/guardrails/get", GW, READ, ("guardrail_id",), version=3),
    R("GET", "/mlflow/gateway/guardrails/list", GW, SEARCH, version=3),
    R("GET", "/mlflow/gateway/guardrails/list-for-endpoint", GW, SEARCH, ("endpoint_id",), version=3),
    R("PATCH", "/mlflow/gateway/guardrails/update-config", GW, EDIT, ("guardrail_id",), version=3),
    R("DELETE", "/mlflow/gateway/guardrails/delete", GW, MANAGE, ("guardrail_id",), version=3),
    R("POST", "/mlflow/gateway/guardrails/add-to-endpoint", GW, EDIT, ("guardrail_id",), version=3),
    R("DELETE", "/mlflow/gateway/guardrails/remove-from-endpoint", GW, EDIT, ("guardrail_id",), version=3),
    # The UI's provider discovery (MLflow serves it under /ajax-api only)
    R("GET", "/mlflow/gateway/supported-providers", GW, READ, version=3, ajax_only=True),
    R("GET", "/mlflow/gateway/supported-models", GW, READ, version=3, ajax_only=True),
    R("GET", "/mlflow/gateway/provider-config", GW, READ, version=3, ajax_only=True),
    # Invocations of the AI gateway's endpoints: the store calls the provider; answers stream back as they come
    *(
        R(method, f"/gateway{path}", GW, action, body=Body.PAYLOAD, absolute=True)
        for method, path, action in (
            ("POST", "/{endpoint_name:str}/mlflow/invocations", INVOKE),
            ("POST", "/proxy/{endpoint_name:str}/{path:path}", INVOKE),
            ("GET", "/mlflow/v1/models", SEARCH),
            ("POST", "/mlflow/v1/chat/completions", INVOKE),
            ("POST", "/openai/v1/chat/completions", INVOKE),
            ("POST", "/openai/v1/embeddings", INVOKE),
            ("POST", "/openai/v1/responses", INVOKE),
            ("POST", "/openai/v1/responses/compact", INVOKE),
            ("POST", "/anthropic/v1/messages", INVOKE),
            ("POST", "/gemini/v1beta/models/{endpoint_name:str}:generateContent", INVOKE),
            ("POST", "/gemini/v1beta/models/{endpoint_name:str}:streamGenerateContent", INVOKE),
            ("POST", "/typesafe/v1/systemone", INVOKE),
        )
    ),
    # The UI's proxy to the store's deployments server (MLFLOW_DEPLOYMENTS_TARGET, the store operator's choice)
    R("GET", "/mlflow/gateway-proxy", GW, SEARCH, ajax_only=True),
    R("POST", "/mlflow/gateway-proxy", GW, INVOKE, body=Body.PAYLOAD, ajax_only=True),
    # The MCP server registry. A server's name holds a slash (`com.example/server`) and MLflow mounts
    # `{name:path}` followed by suffixes, in this order (the first that matches wins, as in the store's router):
    # one handler per method serves them all and picks the route by pattern (federation/routes.py).
    R("POST", "/mlflow/mcp-servers", MCP, CREATE, version=3),
    R("GET", "/mlflow/mcp-servers", MCP, SEARCH, version=3),
    R("GET", "/mlflow/mcp-servers/endpoints", MCP, SEARCH, version=3),
    R("POST", "/mlflow/mcp-servers/{name:path}/versions/{version:path}/tags", MCP, EDIT, version=3),
    R("DELETE", "/mlflow/mcp-servers/{name:path}/versions/{version:path}/tags/{key:path}", MCP, EDIT, version=3),
    R("GET", "/mlflow/mcp-servers/{name:path}/versions/{version:path}", MCP, READ, version=3),
    R("PATCH", "/mlflow/mcp-servers/{name:path}/versions/{version:path}", MCP, EDIT, version=3),
    R("DELETE", "/mlflow/mcp-servers/{name:path}/versions/{version:path}", MCP, MANAGE, version=3),
    R("POST", "/mlflow/mcp-servers/{name:path}/versions", MCP, CREATE, version=3),
    R("GET", "/mlflow/mcp-servers/{name:path}/versions", MCP, SEARCH, version=3),
    R("POST", "/mlflow/mcp-servers/{name:path}/endpoints", MCP, CREATE, version=3),
    R("GET", "/mlflow/mcp-servers/{name:path}/endpoints/{endpoint_id:str}", MCP, READ, version=3),
    R("PATCH", "/mlflow/mcp-servers/{name:path}/endpoints/{endpoint_id:str}", MCP, EDIT, version=3),
    R("DELETE", "/mlflow/mcp-servers/{name:path}/endpoints/{endpoint_id:str}", MCP, MANAGE, version=3),
    R("GET", "/mlflow/mcp-servers/{name:path}/endpoints", MCP, SEARCH, version=3),
    R("POST", "/mlflow/mcp-servers/{name:path}/tags", MCP, EDIT, version=3),
    R("DELETE", "/mlflow/mcp-servers/{name:path}/tags/{key:path}", MCP, EDIT, version=3),
    R("POST", "/mlflow/mcp-servers/{name:path}/aliases", MCP, EDIT, version=3),
    R("GET", "/mlflow/mcp-servers/{name:path}/aliases/{alias:path}", MCP, READ, version=3),
    R("DELETE", "/mlflow/mcp-servers/{name:path}/aliases/{alias:path}", MCP, EDIT, version=3),
    R("GET", "/mlflow/mcp-servers/{name:path}", MCP, READ, version=3),
    R("PATCH", "/mlflow/mcp-servers/{name:path}", MCP, EDIT, version=3),
    R("DELETE", "/mlflow/mcp-servers/{name:path}", MCP, MANAGE, version=3),
    # Jobs of the store's job runner (federation/guard/jobs.py): started by naming what they act on, which the
    # caller must be able to change; read, cancelled and listed only as recorded when the gateway started them.
    R("POST", "/jobs/", JOB, CREATE, version=3, ajax_only=True, traits=DESTINATIONS),
    R("POST", "/jobs/search", JOB, SEARCH, version=3, ajax_only=True),
    R("GET", "/jobs/{job_id:str}", JOB, READ, ("job_id",), version=3, ajax_only=True),
    R("PATCH", "/jobs/cancel/{job_id:str}", JOB, EDIT, ("job_id",), version=3, ajax_only=True),
    R("GET", "/mlflow/jobs/{job_id:str}", JOB, READ, ("job_id",), version=3, ajax_only=True),
    R("PATCH", "/mlflow/jobs/cancel/{job_id:str}", JOB, EDIT, ("job_id",), version=3, ajax_only=True),
    # The UI's calls that start jobs: a scorer on traces, an evaluation run, issue detection (the last two
    # create the run the job writes into, named in the answer)
    R("POST", "/mlflow/scorer/invoke", JOB, CREATE, ("experiment_id",), version=3, ajax_only=True, traits=DESTINATIONS),
    R(
        "POST",
        "/mlflow/genai/evaluate/invoke",
        JOB,
        CREATE,
        ("experiment_id",),
        version=3,
        ajax_only=True,
        traits=DESTINATIONS | MIRRORED | CREATES | STARTS_RUN,
    ),
    R(
        "POST",
        "/mlflow/issues/invoke",
        JOB,
        CREATE,
        ("experiment_id",),
        version=3,
        ajax_only=True,
        traits=DESTINATIONS | MIRRORED | CREATES | STARTS_RUN,
    ),
    # Prompt optimisation: a job over a prompt (a registered model) that writes its optimised version, with a run
    R(
        "POST",
        "/mlflow/prompt-optimization/jobs",
        JOB,
        CREATE,
        ("experiment_id",),
        version=3,
        traits=DESTINATIONS | MIRRORED | CREATES | STARTS_RUN,
    ),
    R("POST", "/mlflow/prompt-optimization/jobs/search", JOB, SEARCH, ("experiment_id",), version=3),
    R("GET", "/mlflow/prompt-optimization/jobs/search", JOB, SEARCH, ("experiment_id",), version=3),
    R("GET", "/mlflow/prompt-optimization/jobs/{job_id:str}", JOB, READ, ("job_id",), version=3),
    R("DELETE", "/mlflow/prompt-optimization/jobs/{job_id:str}", JOB, MANAGE, ("job_id",), version=3),
    R("POST", "/mlflow/prompt-optimization/jobs/{job_id:str}/cancel", JOB, EDIT, ("job_id",), version=3),
    # Server version, used by the tracing exporter before span export
    R("GET", "/version", Resource.SERVER, READ, absolute=True),
    # The web UI's own calls (MLflow registers them outside the proto services), guarded as their REST twins:
    # a run's artifact file, a model version's, the metric history of several runs, an upload into a run, a
    # trace's data, a logged model's file, and the UI's GraphQL queries (allow-listed: federation/graphql.py).
    R("GET", "/get-artifact", RU, READ, RUN_ID, absolute=True, body=Body.DOWNLOAD, relative_path="path"),
    R(
        "GET",
        "/model-versions/get-artifact",
        MV,
        READ,
        ("name",),
        absolute=True,
        body=Body.DOWNLOAD,
        relative_path="path",
    ),
    R("GET", "/mlflow/metrics/get-history-bulk", RU, READ, RUN_ID, ajax_only=True),
    R(
        "POST",
        "/mlflow/upload-artifact",
        RU,
        EDIT,
        RUN_ID,
        ajax_only=True,
        body=Body.UPLOAD,
        relative_path="path",
        traits=MIRRORED,
    ),
    R(
        "GET",
        "/mlflow/get-trace-artifact",
        TR,
        READ,
        ("request_id",),
        ajax_only=True,
        body=Body.DOWNLOAD,
        relative_path="path",
    ),
    R(
        "GET",
        "/mlflow/get-trace-artifact",
        TR,
        READ,
        ("request_id",),
        version=3,
        ajax_only=True,
        body=Body.DOWNLOAD,
        relative_path="path",
    ),
    R(
        "GET",
        "/mlflow/logged-models/{model_id:str}/artifacts/files",
        LM,
        READ,
        ("model_id",),
        ajax_only=True,
        body=Body.DOWNLOAD,
        relative_path="artifact_file_path",
    ),
    R("POST", "/graphql", Resource.QUERY, READ, absolute=True, body=Body.GRAPHQL),
)

# Routes the gateway answers itself (declared here too, so the route audit covers them).
SERVER_INFO = R("GET", "/mlflow/server-info", Resource.SERVER, Action.PUBLIC, version=3)
WORKSPACE_ROUTES: tuple[RouteSpec, ...] = (
    R("GET", "/mlflow/workspaces", Resource.WORKSPACE, SEARCH, version=3),
    R("POST", "/mlflow/workspaces", Resource.WORKSPACE, Action.ADMIN, version=3),
    R("GET", "/mlflow/workspaces/{workspace_name:str}", Resource.WORKSPACE, READ, ("workspace_name",), version=3),
    R(
        "PATCH",
        "/mlflow/workspaces/{workspace_name:str}",
        Resource.WORKSPACE,
        Action.ADMIN,
        ("workspace_name",),
        version=3,
    ),
    R(
        "DELETE",
        "/mlflow/workspaces/{workspace_name:str}",
        Resource.WORKSPACE,
        Action.ADMIN,
        ("workspace_name",),
        version=3,
    ),
)

# The web UI's page and files, and its usage reports: answered by the gateway itself (gateway/ui/), never
# forwarded. The page and the files are the public MLflow build; the page sends a browser without a session
# to sign in. UI telemetry needs a caller and goes nowhere: the gateway answers that it is off.
UI_ROUTES: tuple[RouteSpec, ...] = (
    R("GET", "/", Resource.UI, Action.PUBLIC, absolute=True),
    R("GET", "/static-files/{path:path}", Resource.UI, Action.PUBLIC, absolute=True),
    R("GET", "/build/{filename:path}", Resource.UI, Action.PUBLIC, absolute=True),
    R("GET", "/mlflow/ui-telemetry", Resource.SERVER, READ, version=3, ajax_only=True),
    R("POST", "/mlflow/ui-telemetry", Resource.SERVER, READ, version=3, ajax_only=True),
)
UI_PAGE, UI_STATIC_FILES, UI_BUILD_FILES, UI_TELEMETRY_GET, UI_TELEMETRY_POST = UI_ROUTES


def declared(name: str, version: int = 2) -> RouteSpec:
    """The forwarded route `name` ("POST /mlflow/runs/create") of API `version`; LookupError if none is declared."""
    for spec in FORWARDED_ROUTES:
        if spec.name == name and spec.version == version:
            return spec
    raise LookupError(f"no forwarded route {name} (API version {version}) is declared")


def having(trait: Trait) -> tuple[RouteSpec, ...]:
    """The forwarded routes with `trait`."""
    return tuple(spec for spec in FORWARDED_ROUTES if trait in spec.traits)


# Routes that code names one by one (a misspelt name fails at import, not silently).
EXPERIMENTS_CREATE = declared("POST /mlflow/experiments/create")
EXPERIMENTS_UPDATE = declared("POST /mlflow/experiments/update")
EXPERIMENTS_DELETE = declared("POST /mlflow/experiments/delete")
EXPERIMENTS_RESTORE = declared("POST /mlflow/experiments/restore")
EXPERIMENTS_SET_TAG = declared("POST /mlflow/experiments/set-experiment-tag")
EXPERIMENTS_DELETE_TAG = declared("POST /mlflow/experiments/delete-experiment-tag")
EXPERIMENTS_GET = declared("GET /mlflow/experiments/get")
EXPERIMENTS_GET_BY_NAME = declared("GET /mlflow/experiments/get-by-name")
EXPERIMENTS_SEARCH = declared("POST /mlflow/experiments/search")
EXPERIMENTS_SEARCH_GET = declared("GET /mlflow/experiments/search")
RUNS_CREATE = declared("POST /mlflow/runs/create")
RUNS_UPDATE = declared("POST /mlflow/runs/update")
RUNS_DELETE = declared("POST /mlflow/runs/delete")
RUNS_RESTORE = declared("POST /mlflow/runs/restore")
RUNS_LOG_METRIC = declared("POST /mlflow/runs/log-metric")
RUNS_LOG_PARAMETER = declared("POST /mlflow/runs/log-parameter")
RUNS_SET_TAG = declared("POST /mlflow/runs/set-tag")
RUNS_DELETE_TAG = declared("POST /mlflow/runs/delete-tag")
RUNS_LOG_BATCH = declared("POST /mlflow/runs/log-batch")
RUNS_LOG_MODEL = declared("POST /mlflow/runs/log-model")
RUNS_LOG_INPUTS = declared("POST /mlflow/runs/log-inputs")
RUNS_OUTPUTS = declared("POST /mlflow/runs/outputs")
RUNS_GET = declared("GET /mlflow/runs/get")
RUNS_SEARCH = declared("POST /mlflow/runs/search")
ARTIFACTS_LIST = declared("GET /mlflow/artifacts/list")
PRESIGNED_UPLOAD_URL = declared("POST /mlflow/artifacts/presigned-upload-url")
PRESIGNED_DOWNLOAD_URL = declared("POST /mlflow/artifacts/presigned-download-url")
METRIC_HISTORY = declared("GET /mlflow/metrics/get-history")
METRIC_HISTORY_BULK = declared("GET /mlflow/metrics/get-history-bulk-interval")
LOGGED_MODELS_CREATE = declared("POST /mlflow/logged-models")
LOGGED_MODELS_DELETE = declared("DELETE /mlflow/logged-models/{model_id:str}")
LOGGED_MODELS_DELETE_TAG = declared("DELETE /mlflow/logged-models/{model_id:str}/tags/{tag_key:str}")
REGISTERED_MODELS_CREATE = declared("POST /mlflow/registered-models/create")
REGISTERED_MODELS_RENAME = declared("POST /mlflow/registered-models/rename")
REGISTERED_MODELS_DELETE = declared("DELETE /mlflow/registered-models/delete")
MODEL_VERSIONS_CREATE = declared("POST /mlflow/model-versions/create")
MODEL_VERSIONS_DELETE = declared("DELETE /mlflow/model-versions/delete")
MODEL_VERSIONS_TRANSITION_STAGE = declared("POST /mlflow/model-versions/transition-stage")
REGISTERED_MODELS_SET_ALIAS = declared("POST /mlflow/registered-models/alias")
REGISTERED_MODELS_DELETE_ALIAS = declared("DELETE /mlflow/registered-models/alias")
REGISTERED_MODELS_SET_TAG = declared("POST /mlflow/registered-models/set-tag")
REGISTERED_MODELS_DELETE_TAG = declared("DELETE /mlflow/registered-models/delete-tag")
MODEL_VERSIONS_SET_TAG = declared("POST /mlflow/model-versions/set-tag")
MODEL_VERSIONS_DELETE_TAG = declared("DELETE /mlflow/model-versions/delete-tag")
TRACES_LINK_PROMPTS = declared("POST /mlflow/traces/link-prompts")
ARTIFACT_UPLOAD = declared("PUT /mlflow-artifacts/artifacts/{artifact_path:path}")
ARTIFACT_DELETE = declared("DELETE /mlflow-artifacts/artifacts/{artifact_path:path}")
UI_UPLOAD_ARTIFACT = declared("POST /mlflow/upload-artifact")  # the UI's upload button: ?run_uuid&path
GATEWAY_PROXY_INVOKE = declared("POST /mlflow/gateway-proxy")
SERVER_VERSION = declared("GET /version")
GRAPHQL = declared("POST /graphql")


# -- what MLflow serves and the gateway does not ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class NotServed:
    """A family of routes MLflow 3.17.2 registers that the gateway does not serve (they answer ENDPOINT_NOT_FOUND), in
    `mlflow server`'s default map or added by its basic-auth app (`--app-name basic-auth`).

    Serving a family means declaring its routes above (with a guard rule) and deleting it here; the README's
    "What is not served" lists the same families.
    """

    family: str
    reason: str
    routes: frozenset[str]  # "METHOD /path" exactly as MLflow registers them, path parameters as {name}


def _expand(prefixes: tuple[str, ...], declarations: tuple[str, ...]) -> frozenset[str]:
    """ "GET|POST /path" under every prefix, one "METHOD /prefix/path" per method."""
    routes: set[str] = set()
    for declaration in declarations:
        methods, path = declaration.split(" ", 1)
        routes.update(f"{method} {prefix}{path}" for method in methods.split("|") for prefix in prefixes)
    return frozenset(routes)


def _api(version: int, *declarations: str) -> frozenset[str]:
    return _expand((f"/api/{version}.0", f"/ajax-api/{version}.0"), declarations)


def _ajax(version: int, *declarations: str) -> frozenset[str]:
    return _expand((f"/ajax-api/{version}.0",), declarations)


def _absolute(*declarations: str) -> frozenset[str]:
    return _expand(("",), declarations)


NOT_SERVED: tuple[NotServed, ...] = (
    NotServed(
        "Assistant",
        "MLflow serves its AI assistant to localhost only: it runs tools on the store's host",
        _ajax(
            3,
            "GET|PUT /mlflow/assistant/config",
            "POST /mlflow/assistant/message",
            "GET /mlflow/assistant/providers",
            "GET /mlflow/assistant/providers/{provider}/health",
            "GET /mlflow/assistant/providers/{provider}/models",
            "PATCH /mlflow/assistant/sessions/{session_id}",
            "POST /mlflow/assistant/sessions/{session_id}/permission",
            "GET /mlflow/assistant/sessions/{session_id}/stream",
            "POST /mlflow/assistant/sessions/{session_id}/tool-result",
            "POST /mlflow/assistant/skills/install",
        ),
    ),
    NotServed(
        "Demo data",
        "a UI button that creates, and hard-deletes, a demo experiment outside any grant",
        _ajax(3, "POST /mlflow/demo/generate", "POST /mlflow/demo/delete"),
    ),
    NotServed(
        "Store accounts",
        "the users, roles and permissions of a store behind MLflow's basic-auth app (`mlflow server --app-name "
        "basic-auth`): the gateway calls such a store as its admin, so forwarding them would let any caller "
        "administer the store's accounts; the gateway's own principals and grants are SCIM and the permissions API",
        _api(
            2,
            "POST /mlflow/users/create",
            "GET /mlflow/users/current",
            "GET /mlflow/users/get",
            "GET /mlflow/users/list",
            "PATCH /mlflow/users/update-admin",
            "PATCH /mlflow/users/update-password",
            "DELETE /mlflow/users/delete",
        )
        | _expand(("/api/2.0",), ("POST /mlflow/users/create-ui",))
        | _api(
            3,
            "POST /mlflow/roles/create",
            "GET /mlflow/roles/get",
            "GET /mlflow/roles/list",
            "PATCH /mlflow/roles/update",
            "DELETE /mlflow/roles/delete",
            "POST /mlflow/roles/assign",
            "DELETE /mlflow/roles/unassign",
            "GET /mlflow/roles/users/list",
            "POST /mlflow/roles/permissions/add",
            "GET /mlflow/roles/permissions/list",
            "PATCH /mlflow/roles/permissions/update",
            "DELETE /mlflow/roles/permissions/remove",
            "GET /mlflow/users/current/permissions",
            "GET /mlflow/users/permissions/get",
            "GET /mlflow/users/permissions/list",
            "POST /mlflow/users/permissions/grant",
            "POST /mlflow/users/permissions/revoke",
            "GET /mlflow/users/roles/list",
        )
        | _absolute("GET /signup"),
    ),
    NotServed(
        "GraphQL over GET",
        "the web UI posts its queries; a query in a URL is what a cross-site link or image could send with the "
        "browser's session cookie",
        _absolute("GET /graphql"),
    ),
)
