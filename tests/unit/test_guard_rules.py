"""The guard's rules one by one: a matrix of rules, principals and routes, decided by the real Guard.

The Guard, its Authorizer and the policy snapshot are real (the snapshot is built with
test_policy_agreement's helper: users p1-p4, groups p5-p8). Only the guard's ports are fakes: the
stores (`Lookups`: which experiment holds a run, logged model or trace, per workspace) and the
gateway's registered-model and owner records (`Ownership`). Each case asserts the decision (allowed,
403 PERMISSION_DENIED, or 404 RESOURCE_DOES_NOT_EXIST where the guard hides that an object exists) and
the plan: the narrowed query or body of a search, an answer given without asking the store, the steps
that run after the store's answer.

Workspace team-a (1001):
- p1, the owner: CAN_MANAGE on experiment 1 and registered model "churn"; CAN_USE on the workspace
  through group p6.
- p2, an editor: CAN_EDIT on experiment 1 and "churn", CAN_READ on experiment 2, and
  CAN_MANAGE_STAGING_VERSIONS on "churn" through group p8.
- p3, a reader: CAN_READ on experiment 1 and "churn" through group p5.
- p4, a stranger: CAN_READ on experiment 2 only (enters the workspace, holds nothing on experiment 1).
Workspace team-b (1002): p4 manages it; p2 reads all of it; p3 may use it (through group p7) and
reads nothing; p1 holds nothing there.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, quote

import msgspec
import pytest

from gateway.authz.decide import Authorizer
from gateway.authz.levels import experiment_object, model_object, workspace_domain, workspace_object
from gateway.authz.live import LivePolicy
from gateway.authz.policy import Grant
from gateway.core.errors import (
    GatewayError,
    InvalidParameter,
    PermissionDenied,
    ResourceNotFound,
    StoreUnavailable,
)
from gateway.core.links import WorkspaceLink
from gateway.core.principal import Principal
from gateway.core.route_table import FORWARDED_ROUTES, SERVER_INFO, UI_ROUTES, WORKSPACE_ROUTES, RouteSpec
from gateway.federation.canonical import CanonicalBody, canonical_body, canonical_query
from gateway.federation.graphql import canonical_graphql
from gateway.federation.guard import Guard, Lookups, Ownership, Plan, Rule, rule_for
from gateway.federation.guard.graphql import EMPTY_SEARCH
from gateway.federation.guard.ports import JobRecord, Need
from gateway.federation.guard.request import EMPTY_RESULT
from gateway.federation.guard.rules import RULES
from gateway.federation.guard.table import ADMIN_PLANS, CHECKS
from gateway.federation.otlp import canonical_export
from gateway.federation.schemas import RequestIds
from tests.unit.test_policy_agreement import snapshot

TEAM_A = WorkspaceLink("team-a", 1001, "workspace", "store-a", "store-a", None)
TEAM_B = WorkspaceLink("team-b", 1002, "workspace", "store-b", "store-b", None)
A, B = TEAM_A.workspace_id, TEAM_B.workspace_id

R1, R2, RB = "a" * 32, "b" * 32, "c" * 32  # runs of experiment 1, experiment 2 (team-a), and of team-b
T1, T2 = "tr-" + "1" * 32, "tr-" + "2" * 32  # traces of experiments 1 and 2 (OTLP trace ids 11..1, 22..2)
CHURN, FRAUD = "1", "2"  # the gateway's ids of team-a's registered models "churn" and "fraud"

POLICY = snapshot(
    [
        Grant(1, workspace_domain(A), experiment_object(A, "1"), "CAN_MANAGE"),
        Grant(1, workspace_domain(A), model_object(A, CHURN), "CAN_MANAGE"),
        Grant(6, workspace_domain(A), workspace_object(A), "CAN_USE"),
        Grant(2, workspace_domain(A), experiment_object(A, "1"), "CAN_EDIT"),
        Grant(2, workspace_domain(A), experiment_object(A, "2"), "CAN_READ"),
        Grant(2, workspace_domain(A), model_object(A, CHURN), "CAN_EDIT"),
        Grant(8, workspace_domain(A), model_object(A, CHURN), "CAN_MANAGE_STAGING_VERSIONS"),
        Grant(5, workspace_domain(A), experiment_object(A, "1"), "CAN_READ"),
        Grant(5, workspace_domain(A), model_object(A, CHURN), "CAN_READ"),
        Grant(4, workspace_domain(A), experiment_object(A, "2"), "CAN_READ"),
        Grant(4, workspace_domain(B), workspace_object(B), "CAN_MANAGE"),
        Grant(2, workspace_domain(B), workspace_object(B), "CAN_READ"),
        Grant(7, workspace_domain(B), workspace_object(B), "CAN_USE"),
    ],
    [(1, 6), (2, 8), (3, 5), (3, 7)],
)


def _user(principal_id: int) -> Principal:
    return Principal(name=f"p{principal_id}", kind="user", id=principal_id, subjects=POLICY.subjects(principal_id))


ADMIN = Principal(name="admin", kind="bootstrap", account_admin=True)
OWNER, EDITOR, READER, STRANGER = (_user(i) for i in (1, 2, 3, 4))
PRINCIPALS = {"admin": ADMIN, "owner": OWNER, "editor": EDITOR, "reader": READER, "stranger": STRANGER}


# -- fakes of the guard's ports ---------------------------------------------------------------------


class FakeStores:
    """The stores' objects, per workspace: the experiment of each run, logged model and trace; stages."""

    objects = {
        A: {
            ("run", R1): "1",
            ("run", R2): "2",
            ("logged_model", "m-1"): "1",
            ("logged_model", "m-2"): "2",
            ("trace", T1): "1",
            ("trace", T2): "2",
            ("issue", "iss-1"): "1",
            ("label_schema", "ls-1"): "1",
            ("label_schema", "ls-2"): "2",
            ("review_queue", "rq-1"): "1",
        },
        B: {("run", RB): "7"},
    }
    stages = {(A, "churn", "1"): "Staging", (A, "churn", "2"): "Production"}
    assessments = {(A, T1, "a-1"), (A, T2, "a-2")}  # the assessments each trace holds

    def __init__(self) -> None:
        self.asked: list[tuple[str, str]] = []

    async def experiment_of(self, link: WorkspaceLink, kind: str, object_id: str) -> str | None:
        self.asked.append((kind, object_id))
        return self.objects.get(link.workspace_id, {}).get((kind, object_id))

    async def trace(self, link: WorkspaceLink, trace_id: str) -> dict[str, Any] | None:
        experiment_id = await self.experiment_of(link, "trace", trace_id)
        if experiment_id is None:
            return None
        return {"trace": {"trace_info": {"trace_location": {"mlflow_experiment": {"experiment_id": experiment_id}}}}}

    async def stage_of(self, link: WorkspaceLink, name: str, version: str) -> str:
        return self.stages.get((link.workspace_id, name, version), "")

    async def holds_assessment(self, link: WorkspaceLink, trace_id: str, assessment_id: str) -> bool:
        return (link.workspace_id, trace_id, assessment_id) in self.assessments

    async def holds_dataset(self, link: WorkspaceLink, dataset_id: str) -> bool:
        return True

    promotions = {(A, "9")}  # team-a's experiment 9 is named fedgate-promotions

    async def promotions_experiment(self, link: WorkspaceLink, experiment_id: str) -> bool:
        return (link.workspace_id, experiment_id) in self.promotions

    def forget_experiment(self, link: WorkspaceLink, experiment_id: str) -> None:
        pass  # nothing kept: every answer is this table's


@dataclass
class FakeRecords:
    """The gateway's registered-model ids per workspace, and what the guard recorded after answers."""

    models: dict[int, dict[str, str]] = field(default_factory=lambda: {A: {"churn": CHURN, "fraud": FRAUD}})
    owners: list[tuple[str, str, str, str]] = field(default_factory=list)
    changes: list[tuple[str, str, str, str | None]] = field(default_factory=list)
    failing: bool = False

    async def model_id(self, link: WorkspaceLink, name: str, *, adopt: bool) -> str | None:
        return self.models.get(link.workspace_id, {}).get(name)

    async def model_names(self, link: WorkspaceLink, model_ids: set[str]) -> list[str]:
        return [name for name, model_id in self.models.get(link.workspace_id, {}).items() if model_id in model_ids]

    async def record_owner(self, principal: Principal, link: WorkspaceLink, kind: str, created: str) -> None:
        if self.failing:
            raise ConnectionError("database down")
        self.owners.append((principal.name, link.name, kind, created))

    async def model_changed(self, link: WorkspaceLink, action: str, name: str, new_name: str | None) -> None:
        self.changes.append((link.name, action, name, new_name))


@dataclass
class FakeJobs:
    """The store jobs the gateway recorded, per workspace: job-1 of experiment 1 (started by an editor)."""

    jobs: dict[int, dict[str, JobRecord]] = field(
        default_factory=lambda: {
            A: {"job-1": JobRecord("job-1", "invoke_scorer", (Need("experiment", "1", "CAN_EDIT"),), "p2")}
        }
    )
    recorded: list[tuple[str, JobRecord, str | None]] = field(default_factory=list)

    async def record(self, link: WorkspaceLink, jobs: list[JobRecord], run_id: str | None) -> None:
        self.recorded.extend((link.name, job, run_id) for job in jobs)
        self.jobs.setdefault(link.workspace_id, {}).update({job.job_id: job for job in jobs})

    async def find(self, link: WorkspaceLink, job_ids: list[str]) -> dict[str, JobRecord]:
        known = self.jobs.get(link.workspace_id, {})
        return {job_id: known[job_id] for job_id in job_ids if job_id in known}


@dataclass
class World:
    guard: Guard
    stores: FakeStores
    records: FakeRecords
    undone: list[tuple[str, str, str]]
    jobs: FakeJobs = field(default_factory=FakeJobs)


@pytest.fixture
def world() -> World:
    policy = LivePolicy(None, views=None)  # type: ignore[arg-type]  # never reloads: the snapshot is set here
    policy.snapshot = POLICY
    records = FakeRecords()
    undone: list[tuple[str, str, str]] = []

    async def undo(link: WorkspaceLink, kind: str, object_id: str) -> None:
        undone.append((link.name, kind, object_id))

    stores = FakeStores()
    lookups: Lookups = stores
    ownership: Ownership = records
    jobs = FakeJobs()
    return World(Guard(Authorizer(policy), lookups, ownership, undo, jobs), stores, records, undone, jobs)


# -- calls and outcomes -----------------------------------------------------------------------------

DECLARED = {(spec.name, spec.version): spec for spec in (*FORWARDED_ROUTES, *WORKSPACE_ROUTES, SERVER_INFO, *UI_ROUTES)}


@dataclass(frozen=True)
class Call:
    route: str  # "METHOD /path" as declared
    version: int = 2
    body: dict[str, Any] | None = None
    query: str = ""
    path: dict[str, str] = field(default_factory=dict)
    headers: tuple[tuple[str, str], ...] = ()
    artifact_path: str | None = None
    export: dict[str, Any] | None = None  # an OTLP/JSON span export instead of a JSON body
    graphql: dict[str, Any] | None = None  # a GraphQL request instead of a JSON body

    @property
    def spec(self) -> RouteSpec:
        return DECLARED[(self.route, self.version)]


async def decide(guard: Guard, principal: Principal, call: Call, link: WorkspaceLink = TEAM_A) -> Plan:
    """What the forwarder does: canonical body and query, then the guard."""
    headers = list(call.headers)
    body: CanonicalBody | None = None
    if call.export is not None:
        body, headers = canonical_export(json.dumps(call.export).encode(), [("content-type", "application/json")])
        headers += list(call.headers)
    elif call.graphql is not None:
        operation = canonical_graphql(json.dumps(call.graphql).encode())
        body = CanonicalBody(operation.body(), {}, RequestIds(), graphql=operation)
    elif call.body is not None:
        body = canonical_body(json.dumps(call.body).encode())
    query = canonical_query(call.query)
    return await guard.check(call.spec, principal, link, body, query, call.artifact_path, dict(call.path), headers)


@dataclass(frozen=True)
class Allowed:
    body: dict[str, Any] | None = None  # the narrowed body the store receives instead
    query: dict[str, list[str]] | None = None  # the narrowed query string, parsed
    answer: bytes | None = None  # answered without asking the store
    after: bool = False  # a step runs after the store's answer


@dataclass(frozen=True)
class Refused:
    error: type[GatewayError]
    message: str | None = None  # where it matters: a hidden object reads exactly like a missing one


ALLOW = Allowed()
AFTER = Allowed(after=True)
EMPTY = Allowed(answer=EMPTY_RESULT)
DENIED = Refused(PermissionDenied)
INVALID = Refused(InvalidParameter)
STATUS = {PermissionDenied: (403, "PERMISSION_DENIED"), ResourceNotFound: (404, "RESOURCE_DOES_NOT_EXIST")}


def no_experiment(experiment_id: str) -> Refused:
    return Refused(ResourceNotFound, f"No Experiment with id={experiment_id} exists")


def no_run(run_id: str) -> Refused:
    return Refused(ResourceNotFound, f"Run with id={run_id} not found")


def no_logged_model(model_id: str) -> Refused:
    return Refused(ResourceNotFound, f"Logged model with ID '{model_id}' not found.")


def no_trace(trace_id: str) -> Refused:
    return Refused(ResourceNotFound, f"Trace with ID {trace_id} is not found.")


def no_model(name: str) -> Refused:
    return Refused(ResourceNotFound, f"Registered Model with name={name} not found")


def no_job(job_id: str) -> Refused:
    return Refused(ResourceNotFound, f"Job with ID {job_id} not found")


def judge(**extra: Any) -> str:
    """A serialized LLM judge (as the UI sends it), with `extra` fields."""
    return json.dumps({"name": "s", "instructions_judge_pydantic_data": {"model": "openai:/gpt-4o"}, **extra})


NO_EXP1, NO_EXP2 = no_experiment("1"), no_experiment("2")
NO_CHURN = no_model("churn")


async def expect(
    outcome: Allowed | Refused, guard: Guard, principal: Principal, call: Call, link: WorkspaceLink
) -> None:
    """The decision (the error's class, status, code and, where given, message) and the plan."""
    if isinstance(outcome, Refused):
        with pytest.raises(GatewayError) as caught:
            await decide(guard, principal, call, link)
        error = caught.value
        assert type(error) is outcome.error, error.message
        if outcome.error in STATUS:
            assert (error.status, error.error_code) == STATUS[outcome.error]
        if outcome.message is not None:
            assert error.message == outcome.message
        return
    plan = await decide(guard, principal, call, link)
    assert plan.answer == outcome.answer
    assert (msgspec.json.decode(plan.body) if plan.body is not None else None) == outcome.body
    assert (parse_qs(plan.query, keep_blank_values=True) if plan.query is not None else None) == outcome.query
    assert (plan.after is not None) == outcome.after


def narrowed(document: dict[str, Any]) -> Allowed:
    return Allowed(body=document)


def narrowed_query(query: str) -> Allowed:
    return Allowed(query=parse_qs(query, keep_blank_values=True))


def metric(run_id: str, **extra: Any) -> dict[str, Any]:
    return {"run_id": run_id, "key": "loss", "value": 0.5, "timestamp": 1, "step": 0, **extra}


def trace_v3(experiment_id: str, trace_id: str = "tr-new", **info: Any) -> dict[str, Any]:
    location = {"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": experiment_id}}
    return {"trace": {"trace_info": {"trace_id": trace_id, "trace_location": location, **info}}}


def otlp_export(trace_hex: str) -> dict[str, Any]:
    span = {"traceId": trace_hex, "spanId": "1" * 16, "name": "s", "startTimeUnixNano": "1", "endTimeUnixNano": "2"}
    return {"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}


def locations(*experiment_ids: str) -> dict[str, Any]:
    return {
        "locations": [{"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": e}} for e in experiment_ids]
    }


RUN_FIELDS = "run { info { runUuid } modelVersions { name version } }"
QUERIES = {
    "mlflowGetRun": ("MlflowGetRunInput", RUN_FIELDS),
    "mlflowGetExperiment": ("MlflowGetExperimentInput", "experiment { experimentId name }"),
    "mlflowSearchRuns": ("MlflowSearchRunsInput", "runs { info { runUuid } modelVersions { name } }"),
    "mlflowGetMetricHistoryBulkInterval": ("MlflowGetMetricHistoryBulkIntervalInput", "metrics { runId value }"),
}


def graphql_request(field: str, **given: Any) -> dict[str, Any]:
    """A query of the UI's: one root field with its input as the variable `$data`."""
    input_type, selection = QUERIES[field]
    query = f"query Q($data: {input_type}!) {{ {field}(input: $data) {{ {selection} }} }}"
    return {"query": query, "operationName": "Q", "variables": {"data": given}}


def gql(field: str, **given: Any) -> Call:
    return Call("POST /graphql", graphql=graphql_request(field, **given))


def narrowed_search(*experiment_ids: str) -> Allowed:
    """A GraphQL search of runs, cut to these experiments (in the gateway's re-print of the query)."""
    operation = canonical_graphql(json.dumps(graphql_request("mlflowSearchRuns", experimentIds=["1", "2"])).encode())
    return Allowed(body=msgspec.json.decode(operation.body({"experimentIds": list(experiment_ids)})), after=True)


def version_from(source: str, **ids: str) -> Call:
    return Call("POST /mlflow/model-versions/create", body={"name": "churn", "source": source, **ids})


def read_only(source: str, **ids: str) -> Allowed:
    """A version made by someone who cannot write its files (or whose files this world cannot place): the store
    receives it with the gateway's mark, so its stages and aliases never protect those files."""
    tag = {"key": "fedgate.source_read_only", "value": "true"}
    return Allowed(body={"name": "churn", "source": source, **ids, "tags": [tag]})


def transition(version: str, stage: str) -> Call:
    return Call(
        "POST /mlflow/model-versions/transition-stage", body={"name": "churn", "version": version, "stage": stage}
    )


def link_prompts(*versions: dict[str, str]) -> Call:
    return Call("POST /mlflow/traces/link-prompts", body={"trace_id": T1, "prompt_versions": list(versions)})


ARTIFACTS = "/mlflow-artifacts/artifacts/{artifact_path:path}"
LOGGED_MODEL = "/mlflow/logged-models/{model_id:str}"
SEARCH_FILTER = "name LIKE 'a%'"

# Who:                          admin     owner     editor    reader    stranger
MATRIX: list[tuple[str, Call, tuple[Allowed | Refused, ...]]] = [
    # -- experiments (Rule.EXPERIMENT: read, edit, manage; runs, logged models and scorers created in one)
    ("get experiment", Call("GET /mlflow/experiments/get", query="experiment_id=1"),
     (ALLOW, ALLOW, ALLOW, ALLOW, NO_EXP1)),
    ("update experiment", Call("POST /mlflow/experiments/update", body={"experiment_id": "1", "new_name": "x"}),
     (ALLOW, ALLOW, ALLOW, DENIED, NO_EXP1)),
    ("delete experiment", Call("POST /mlflow/experiments/delete", body={"experiment_id": "1"}),
     (ALLOW, ALLOW, DENIED, DENIED, NO_EXP1)),
    ("experiment id that is no id", Call("GET /mlflow/experiments/get", query="experiment_id=1%20OR%201"),
     (ALLOW, no_experiment("1 OR 1"), no_experiment("1 OR 1"), no_experiment("1 OR 1"), no_experiment("1 OR 1"))),
    ("experiment id empty", Call("GET /mlflow/experiments/get", query="experiment_id="),
     (ALLOW, INVALID, INVALID, INVALID, INVALID)),
    ("create run", Call("POST /mlflow/runs/create", body={"experiment_id": "1"}),
     (ALLOW, ALLOW, ALLOW, DENIED, NO_EXP1)),
    ("create run naming no experiment", Call("POST /mlflow/runs/create", body={"run_name": "r"}),
     (ALLOW, INVALID, INVALID, INVALID, INVALID)),
    ("register scorer", Call("POST /mlflow/scorers/register", 3, body={"experiment_id": "1", "name": "s"}),
     (ALLOW, ALLOW, ALLOW, DENIED, NO_EXP1)),
    ("create logged model from a run of experiment 2",
     Call("POST /mlflow/logged-models", body={"experiment_id": "1", "source_run_id": R2}),
     (ALLOW, no_run(R2), ALLOW, DENIED, NO_EXP1)),
    # -- Rule.EXPERIMENT_CREATE: CAN_USE on the workspace; the creator becomes owner
    ("create experiment", Call("POST /mlflow/experiments/create", body={"name": "e"}),
     (AFTER, AFTER, DENIED, DENIED, DENIED)),
    ("create experiment choosing its artifact location",
     Call("POST /mlflow/experiments/create", body={"name": "e", "artifact_location": "s3://elsewhere"}),
     (AFTER, DENIED, DENIED, DENIED, DENIED)),
    # -- Rule.EXPERIMENT_SEARCH: the filter is narrowed
    ("search experiments", Call("POST /mlflow/experiments/search", body={"filter": SEARCH_FILTER, "max_results": 5}),
     (ALLOW,
      narrowed({"filter": f"{SEARCH_FILTER} AND experiment_id IN ('1')", "max_results": 5}),
      narrowed({"filter": f"{SEARCH_FILTER} AND experiment_id IN ('1', '2')", "max_results": 5}),
      narrowed({"filter": f"{SEARCH_FILTER} AND experiment_id IN ('1')", "max_results": 5}),
      narrowed({"filter": f"{SEARCH_FILTER} AND experiment_id IN ('2')", "max_results": 5}))),
    ("search experiments (GET)", Call("GET /mlflow/experiments/search", query="max_results=5"),
     (ALLOW,
      narrowed_query("max_results=5&filter=experiment_id IN ('1')"),
      narrowed_query("max_results=5&filter=experiment_id IN ('1', '2')"),
      narrowed_query("max_results=5&filter=experiment_id IN ('1')"),
      narrowed_query("max_results=5&filter=experiment_id IN ('2')"))),
    # -- Rule.EXPERIMENT_IDS: experiment_ids cut to the readable ones
    ("search runs", Call("POST /mlflow/runs/search", body={"experiment_ids": ["1", "2"], "max_results": 3}),
     (ALLOW,
      narrowed({"experiment_ids": ["1"], "max_results": 3}),
      ALLOW,
      narrowed({"experiment_ids": ["1"], "max_results": 3}),
      narrowed({"experiment_ids": ["2"], "max_results": 3}))),
    ("search runs of a hidden experiment", Call("POST /mlflow/runs/search", body={"experiment_ids": ["3"]}),
     (ALLOW, EMPTY, EMPTY, EMPTY, EMPTY)),
    # A search of no experiment goes to the store as sent: MLflow finds nothing in it, or refuses it (datasets).
    ("search runs naming no experiment", Call("POST /mlflow/runs/search", body={"filter": "x"}),
     (ALLOW, ALLOW, ALLOW, ALLOW, ALLOW)),
    ("search logged models naming none", Call("POST /mlflow/logged-models/search", body={"experiment_ids": []}),
     (ALLOW, ALLOW, ALLOW, ALLOW, ALLOW)),
    ("search datasets naming no experiment", Call("POST /mlflow/experiments/search-datasets", body={}),
     (ALLOW, ALLOW, ALLOW, ALLOW, ALLOW)),
    ("search logged models", Call("POST /mlflow/logged-models/search", body={"experiment_ids": ["2"]}),
     (ALLOW, EMPTY, ALLOW, EMPTY, ALLOW)),
    ("search datasets of experiments", Call("POST /mlflow/experiments/search-datasets", body={"experiment_ids": ["1"]}),
     (ALLOW, ALLOW, ALLOW, ALLOW, EMPTY)),
    # -- Rule.EXPERIMENT_BY_NAME: decided on the answer (test_get_by_name_checks_the_experiment_found)
    ("get experiment by name", Call("GET /mlflow/experiments/get-by-name", query="experiment_name=e"),
     (ALLOW, ALLOW, ALLOW, ALLOW, ALLOW)),
    # -- Rule.RUN: through the run's experiment
    ("get run", Call("GET /mlflow/runs/get", query=f"run_id={R1}"),
     (ALLOW, ALLOW, ALLOW, ALLOW, no_run(R1))),
    ("log metric", Call("POST /mlflow/runs/log-metric", body=metric(R1)),
     (ALLOW, ALLOW, ALLOW, DENIED, no_run(R1))),
    ("log metric onto a logged model of experiment 2",
     Call("POST /mlflow/runs/log-metric", body=metric(R1, model_id="m-2")),
     (ALLOW, no_logged_model("m-2"), DENIED, DENIED, no_run(R1))),
    ("delete run (CAN_EDIT, as Databricks)", Call("POST /mlflow/runs/delete", body={"run_id": R1}),
     (ALLOW, ALLOW, ALLOW, DENIED, no_run(R1))),
    ("metric history of two runs",
     Call("GET /mlflow/metrics/get-history-bulk-interval", query=f"run_ids={R1}&run_ids={R2}&metric_key=m"),
     (ALLOW, no_run(R2), ALLOW, no_run(R2), no_run(R1))),
    ("run of another workspace", Call("GET /mlflow/runs/get", query=f"run_id={RB}"),
     (ALLOW, no_run(RB), no_run(RB), no_run(RB), no_run(RB))),
    ("run id that is no id", Call("GET /mlflow/runs/get", query="run_id=../x"),
     (ALLOW, no_run("../x"), no_run("../x"), no_run("../x"), no_run("../x"))),
    ("run call naming no run", Call("POST /mlflow/runs/update", body={"status": "FINISHED"}),
     (ALLOW, INVALID, INVALID, INVALID, INVALID)),
    # -- Rule.LOGGED_MODEL
    ("get logged model", Call(f"GET {LOGGED_MODEL}", path={"model_id": "m-1"}),
     (ALLOW, ALLOW, ALLOW, ALLOW, no_logged_model("m-1"))),
    ("tag logged model", Call(f"PATCH {LOGGED_MODEL}/tags", path={"model_id": "m-1"}, body={"tags": []}),
     (ALLOW, ALLOW, ALLOW, DENIED, no_logged_model("m-1"))),
    ("delete logged model (CAN_EDIT)", Call(f"DELETE {LOGGED_MODEL}", path={"model_id": "m-1"}),
     (ALLOW, ALLOW, ALLOW, DENIED, no_logged_model("m-1"))),
    ("logged model named twice", Call(f"GET {LOGGED_MODEL}", path={"model_id": "m-1"}, query="model_id=m-2"),
     (ALLOW, INVALID, INVALID, INVALID, INVALID)),
    # -- Rule.MODEL_CREATE
    ("register model", Call("POST /mlflow/registered-models/create", body={"name": "new"}),
     (AFTER, AFTER, DENIED, DENIED, DENIED)),
    # -- Rule.MODEL_SEARCH: the filter is narrowed to readable names
    ("search models", Call("GET /mlflow/registered-models/search", query="filter=name LIKE 'c%'"),
     (ALLOW,
      narrowed_query("filter=name LIKE 'c%' AND name IN ('churn')"),
      narrowed_query("filter=name LIKE 'c%' AND name IN ('churn')"),
      narrowed_query("filter=name LIKE 'c%' AND name IN ('churn')"),
      EMPTY)),
    ("search model versions", Call("GET /mlflow/model-versions/search"),
     (ALLOW,
      narrowed_query("filter=name IN ('churn')"),
      narrowed_query("filter=name IN ('churn')"),
      narrowed_query("filter=name IN ('churn')"),
      EMPTY)),
    # -- Rule.MODEL: by name, through the gateway's id of it
    ("get model", Call("GET /mlflow/registered-models/get", query="name=churn"),
     (ALLOW, ALLOW, ALLOW, ALLOW, NO_CHURN)),
    ("get a model nobody was granted", Call("GET /mlflow/registered-models/get", query="name=fraud"),
     (ALLOW, no_model("fraud"), no_model("fraud"), no_model("fraud"), no_model("fraud"))),
    ("get a model that does not exist", Call("GET /mlflow/registered-models/get", query="name=nope"),
     (ALLOW, no_model("nope"), no_model("nope"), no_model("nope"), no_model("nope"))),
    ("tag model", Call("POST /mlflow/registered-models/set-tag", body={"name": "churn", "key": "k", "value": "v"}),
     (ALLOW, ALLOW, ALLOW, DENIED, NO_CHURN)),
    # Whether the model is a prompt (CAN_MANAGE), in any spelling a store might match.
    *(
        (f"{verb} the prompt marker as {key!r}",
         Call(f"{method} /mlflow/registered-models/{verb}", body={"name": "churn", "key": key, **extra}),
         (ALLOW, ALLOW, DENIED, DENIED, NO_CHURN))
        for key in (
            "mlflow.prompt.is_prompt", "MLFLOW.PROMPT.IS_PROMPT ", "mlflow.prómpt.is_prompt",
            ["mlflow.prompt.is_prompt"],
        )
        for verb, method, extra in (("set-tag", "POST", {"value": "false"}), ("delete-tag", "DELETE", {}))
    ),
    ("rename model (CAN_MANAGE)",
     Call("POST /mlflow/registered-models/rename", body={"name": "churn", "new_name": "churn-2"}),
     (AFTER, AFTER, DENIED, DENIED, NO_CHURN)),
    ("delete model", Call("DELETE /mlflow/registered-models/delete", body={"name": "churn"}),
     (AFTER, AFTER, DENIED, DENIED, NO_CHURN)),
    ("move a Staging version to Staging",
     transition("1", "Staging"),
     (ALLOW, ALLOW, ALLOW, DENIED, NO_CHURN)),
    ("move a Staging version to Production",
     transition("1", "Production"),
     (ALLOW, ALLOW, DENIED, DENIED, NO_CHURN)),
    ("move a Production version to Archived",
     transition("2", "Archived"),
     (ALLOW, ALLOW, DENIED, DENIED, NO_CHURN)),
    # -- Rule.MODEL_VERSION_CREATE: CAN_EDIT on the model, CAN_READ on the source
    ("version from a run of experiment 1", version_from(f"runs:/{R1}/model", run_id=R1),
     (ALLOW, ALLOW, ALLOW, DENIED, NO_CHURN)),
    ("version from a run of experiment 2", version_from(f"runs:/{R2}/model", run_id=R2),
     (ALLOW, no_run(R2), read_only(f"runs:/{R2}/model", run_id=R2), DENIED, NO_CHURN)),
    ("version from a logged model", version_from("models:/m-1"),
     (ALLOW, ALLOW, ALLOW, DENIED, NO_CHURN)),
    # copy_model_version's source: a version of a registered model the caller may read (where its files lie is the
    # store's to say, and this world has no store: marked).
    ("version from a registered model's uri", version_from("models:/churn/1"),
     (ALLOW, read_only("models:/churn/1"), read_only("models:/churn/1"), DENIED, NO_CHURN)),
    ("version from an alias of a model the caller may not read", version_from("models:/fraud@champion"),
     (ALLOW, no_model("fraud"), no_model("fraud"), DENIED, NO_CHURN)),
    ("version from a stage of a model the caller may not read", version_from("models:/fraud/Production"),
     (ALLOW, no_model("fraud"), no_model("fraud"), DENIED, NO_CHURN)),
    ("version from a model uri naming another host", version_from("models://other/churn/1"),
     (ALLOW, DENIED, DENIED, DENIED, NO_CHURN)),
    # A prompt's version: MLflow's placeholder source, on a version the store takes for a prompt's only.
    ("prompt version", Call("POST /mlflow/model-versions/create", body={
        "name": "churn", "source": "prompt-template", "tags": [{"key": "mlflow.prompt.is_prompt", "value": "true"}]}),
     (ALLOW, ALLOW, ALLOW, DENIED, NO_CHURN)),
    ("placeholder source of a model's version", Call("POST /mlflow/model-versions/create", body={
        "name": "churn", "source": "dummy-source", "tags": [
            {"key": "mlflow.prompt.is_prompt", "value": "TRUE"}, {"key": "mlflow.prompt.is_prompt", "value": "no"}]}),
     (ALLOW, DENIED, DENIED, DENIED, NO_CHURN)),
    ("version from an experiment's artifacts", version_from("mlflow-artifacts:/workspaces/team-a/1/r/artifacts/m"),
     (ALLOW, ALLOW, ALLOW, DENIED, NO_CHURN)),
    ("version from another workspace's artifacts", version_from("mlflow-artifacts:/workspaces/team-b/7/r/artifacts"),
     (ALLOW, DENIED, DENIED, DENIED, NO_CHURN)),
    ("version from any other location", version_from("s3://bucket/model"),
     (ALLOW, DENIED, DENIED, DENIED, NO_CHURN)),
    # -- Rule.ARTIFACT: the experiment the path lies in
    ("download artifact", Call(f"GET {ARTIFACTS}", artifact_path="1/r/artifacts/x"),
     (ALLOW, ALLOW, ALLOW, ALLOW, NO_EXP1)),
    ("upload artifact", Call(f"PUT {ARTIFACTS}", artifact_path="1/r/artifacts/x"),
     (ALLOW, ALLOW, ALLOW, DENIED, NO_EXP1)),
    ("delete artifact (CAN_MANAGE)", Call(f"DELETE {ARTIFACTS}", artifact_path="1/r/artifacts/x"),
     (ALLOW, ALLOW, DENIED, DENIED, NO_EXP1)),
    ("upload into a run of the path's experiment", Call(f"PUT {ARTIFACTS}", artifact_path=f"1/{R1}/artifacts/x"),
     (ALLOW, ALLOW, ALLOW, DENIED, NO_EXP1)),
    # The relay copies into (and failover reads from) the central copy of the run or model the path names (account
    # admins, who may write anywhere, are not checked).
    ("upload naming a run of another experiment", Call(f"PUT {ARTIFACTS}", artifact_path=f"1/{R2}/artifacts/x"),
     (ALLOW, no_run(R2), no_run(R2), DENIED, NO_EXP1)),
    ("download naming a logged model of another experiment",
     Call(f"GET {ARTIFACTS}", artifact_path="workspaces/team-a/1/models/m-2/artifacts/x"),
     (ALLOW, no_logged_model("m-2"), no_logged_model("m-2"), no_logged_model("m-2"), NO_EXP1)),
    ("download artifact of a workspace-prefixed path", Call(f"GET {ARTIFACTS}", artifact_path="workspaces/team-a/2/r"),
     (ALLOW, NO_EXP2, ALLOW, NO_EXP2, ALLOW)),
    ("list the artifact root (names no experiment)", Call("GET /mlflow-artifacts/artifacts", artifact_path=""),
     (ALLOW, DENIED, DENIED, DENIED, DENIED)),
    # -- Rule.TRACE_CREATE: CAN_EDIT on the experiment the trace goes into
    ("create trace (v3)", Call("POST /mlflow/traces", 3, body=trace_v3("1")),
     (ALLOW, ALLOW, ALLOW, DENIED, NO_EXP1)),
    # The store keys an assessment by its id alone: a start merges an assessment it carries onto that id's row
    # wherever it is, and deleting one marks the one it overrides valid again wherever it is.
    ("start a trace with a new assessment", Call("POST /mlflow/traces", 3, body=trace_v3("1", trace_id=T1, assessments=[
        {"assessment_name": "a", "feedback": {"value": 1}}])),
     (ALLOW, ALLOW, ALLOW, DENIED, NO_EXP1)),
    ("start a trace with an assessment it holds", Call("POST /mlflow/traces", 3, body=trace_v3("1", trace_id=T1,
        assessments=[{"assessment_id": "a-1", "overrides": "a-1", "feedback": {"value": 1}}])),
     (ALLOW, ALLOW, ALLOW, DENIED, NO_EXP1)),
    ("start a trace with another trace's assessment", Call("POST /mlflow/traces", 3, body=trace_v3("1", trace_id=T1,
        assessments=[{"assessment_id": "a-2", "feedback": {"value": 1}}])),
     (ALLOW, INVALID, INVALID, DENIED, NO_EXP1)),
    ("start a trace with an assessment of an id of its own", Call("POST /mlflow/traces", 3, body=trace_v3("1",
        assessments=[{"assessment_id": "a-new", "feedback": {"value": 1}}])),
     (ALLOW, INVALID, INVALID, DENIED, NO_EXP1)),
    ("start a trace overriding another trace's assessment", Call("POST /mlflow/traces", 3, body=trace_v3("1",
        trace_id=T1, assessments=[{"overrides": "a-2", "feedback": {"value": 1}}])),
     (ALLOW, Refused(ResourceNotFound, f"Assessment with ID 'a-2' not found for trace '{T1}'"),
      Refused(ResourceNotFound, f"Assessment with ID 'a-2' not found for trace '{T1}'"), DENIED, NO_EXP1)),
    ("create trace (v2)", Call("POST /mlflow/traces", body={"experiment_id": "1", "timestamp_ms": 1}),
     (ALLOW, ALLOW, ALLOW, DENIED, NO_EXP1)),
    ("create trace naming no experiment", Call("POST /mlflow/traces", body={"timestamp_ms": 1}),
     (INVALID, INVALID, INVALID, INVALID, INVALID)),
    # -- Rule.TRACE_SEARCH
    ("search traces (v3)", Call("POST /mlflow/traces/search", 3, body=locations("1")),
     (ALLOW, ALLOW, ALLOW, ALLOW, EMPTY)),
    ("search traces of experiments 1 and 2", Call("POST /mlflow/traces/search", 3, body=locations("1", "2")),
     (ALLOW, NO_EXP2, ALLOW, NO_EXP2, NO_EXP1)),
    ("search traces (v2)", Call("GET /mlflow/traces", query="experiment_ids=2"),
     (ALLOW, EMPTY, ALLOW, EMPTY, ALLOW)),
    ("search traces naming no experiment", Call("POST /mlflow/traces/search", 3, body={"max_results": 1}),
     (ALLOW, DENIED, DENIED, DENIED, DENIED)),
    # -- Rule.TRACE: through the trace's experiment
    ("get trace info (v2)", Call("GET /mlflow/traces/{request_id:str}/info", path={"request_id": T1}),
     (ALLOW, ALLOW, ALLOW, ALLOW, no_trace(T1))),
    ("tag trace (v3)", Call("PATCH /mlflow/traces/{trace_id:str}/tags", 3, path={"trace_id": T1}, body={"key": "k"}),
     (ALLOW, ALLOW, ALLOW, DENIED, no_trace(T1))),
    ("get traces of experiments 1 and 2",
     Call("GET /mlflow/traces/batchGet", 3, query=f"trace_ids={T1}&trace_ids={T2}"),
     (ALLOW, no_trace(T2), ALLOW, no_trace(T2), no_trace(T1))),
    ("link a trace to a run", Call("POST /mlflow/traces/link-to-run", body={"run_id": R1, "trace_ids": [T1]}),
     (ALLOW, ALLOW, ALLOW, DENIED, no_run(R1))),
    # The store records any prompt name for the trace: CAN_READ on each prompt (a registered model) linked.
    ("link a trace to a prompt", link_prompts({"name": "churn", "version": "1"}),
     (ALLOW, ALLOW, ALLOW, DENIED, no_trace(T1))),
    ("link a trace to a hidden prompt",
     link_prompts({"name": "churn", "version": "1"}, {"name": "fraud", "version": "2"}),
     (ALLOW, no_model("fraud"), no_model("fraud"), DENIED, no_trace(T1))),
    ("link a trace to a prompt that does not exist", link_prompts({"name": "nope", "version": "1"}),
     (ALLOW, no_model("nope"), no_model("nope"), DENIED, no_trace(T1))),
    ("link a trace to a prompt version without a name", link_prompts({"version": "1"}),
     (INVALID, INVALID, INVALID, DENIED, no_trace(T1))),
    # The store reads a version with int() (`+2`, ` 2`) and answered anything else with a 500 page.
    ("link a trace to a prompt version as the store reads it", link_prompts({"name": "churn", "version": " +2"}),
     (ALLOW, ALLOW, ALLOW, DENIED, no_trace(T1))),
    *(
        (f"link a trace to a prompt version {version!r}", link_prompts({"name": "churn", "version": version}),
         (INVALID, INVALID, INVALID, DENIED, no_trace(T1)))
        for version in ("one", "1.5", "", "0x1")
    ),
    ("link a trace to a prompt version of no version", link_prompts({"name": "churn"}),
     (INVALID, INVALID, INVALID, DENIED, no_trace(T1))),
    ("delete traces (CAN_EDIT)",
     Call("POST /mlflow/traces/delete-traces", body={"experiment_id": "1", "request_ids": [T1]}),
     (ALLOW, ALLOW, ALLOW, DENIED, no_trace(T1))),
    ("trace call naming nothing", Call("GET /mlflow/traces/get", 3),
     (ALLOW, DENIED, DENIED, DENIED, DENIED)),
    # -- issues, label schemas and review queues: created and listed in an experiment (Rule.EXPERIMENT), and
    #    by their own id through it (Rule.EXPERIMENT_OBJECT)
    ("create issue", Call("POST /mlflow/issues", 3, body={"experiment_id": "1", "name": "i", "description": "d"}),
     (ALLOW, ALLOW, ALLOW, DENIED, NO_EXP1)),
    ("create issue found by a run of experiment 2",
     Call("POST /mlflow/issues", 3, body={"experiment_id": "1", "name": "i", "source_run_id": R2}),
     (ALLOW, no_run(R2), ALLOW, DENIED, NO_EXP1)),
    ("search issues", Call("POST /mlflow/issues/search", 3, body={"experiment_id": "1"}),
     (ALLOW, ALLOW, ALLOW, ALLOW, NO_EXP1)),
    ("search issues naming no experiment", Call("POST /mlflow/issues/search", 3, body={}),
     (ALLOW, INVALID, INVALID, INVALID, INVALID)),
    # The store reads a POST's body alone: an experiment in the query names nothing (it searched every issue).
    ("search issues naming an experiment in the query only",
     Call("POST /mlflow/issues/search", 3, query="experiment_id=1", body={}),
     (ALLOW, INVALID, INVALID, INVALID, INVALID)),
    ("start a run naming its experiment in the query only",
     Call("POST /mlflow/runs/create", query="experiment_id=1", body={}),
     (ALLOW, INVALID, INVALID, INVALID, INVALID)),
    ("get issue", Call("GET /mlflow/issues/{issue_id:str}", 3, path={"issue_id": "iss-1"}),
     (ALLOW, ALLOW, ALLOW, ALLOW, Refused(ResourceNotFound, "Issue with ID 'iss-1' not found"))),
    ("update issue", Call("PATCH /mlflow/issues/{issue_id:str}", 3, path={"issue_id": "iss-1"},
                          body={"issue_id": "iss-1", "name": "n"}),
     (ALLOW, ALLOW, ALLOW, DENIED, Refused(ResourceNotFound))),
    ("update issue naming another in the body",
     Call("PATCH /mlflow/issues/{issue_id:str}", 3, path={"issue_id": "iss-1"}, body={"issue_id": "iss-2"}),
     (ALLOW, INVALID, INVALID, INVALID, INVALID)),
    ("list label schemas", Call("GET /mlflow/label-schemas/list", 3, query="experiment_id=2"),
     (ALLOW, NO_EXP2, ALLOW, NO_EXP2, ALLOW)),
    ("get label schema", Call("GET /mlflow/label-schemas/get", 3, query="schema_id=ls-1"),
     (ALLOW, ALLOW, ALLOW, ALLOW, Refused(ResourceNotFound, "Label schema with id 'ls-1' not found."))),
    ("delete label schema", Call("DELETE /mlflow/label-schemas/delete", 3, body={"schema_id": "ls-1"}),
     (ALLOW, ALLOW, DENIED, DENIED, Refused(ResourceNotFound))),
    ("create review queue", Call("POST /mlflow/review-queues/create", 3, body={"experiment_id": "1", "name": "q"}),
     (ALLOW, ALLOW, ALLOW, DENIED, NO_EXP1)),
    ("create review queue with a schema of experiment 2",
     Call("POST /mlflow/review-queues/create", 3, body={"experiment_id": "1", "name": "q", "schema_ids": ["ls-2"]}),
     (ALLOW, Refused(ResourceNotFound, "Label schema with id 'ls-2' not found."), ALLOW,
      Refused(ResourceNotFound, "Label schema with id 'ls-2' not found."), NO_EXP1)),
    ("review queue by name", Call("GET /mlflow/review-queues/get-by-name", 3, query="experiment_id=1&name=q"),
     (ALLOW, ALLOW, ALLOW, ALLOW, NO_EXP1)),
    ("add traces to a review queue", Call("POST /mlflow/review-queues/items/add", 3,
                                          body={"queue_id": "rq-1", "item_ids": [T1]}),
     (ALLOW, ALLOW, ALLOW, DENIED, Refused(ResourceNotFound))),
    ("add a trace of experiment 2 to a review queue",
     Call("POST /mlflow/review-queues/items/add", 3, body={"queue_id": "rq-1", "item_ids": [T2]}),
     (ALLOW, no_trace(T2), ALLOW, no_trace(T2), Refused(ResourceNotFound))),
    ("set a review item's status (in the caller's name)",
     Call("POST /mlflow/review-queues/items/set-status", 3,
          body={"queue_id": "rq-1", "item_id": T1, "status": "COMPLETE", "completed_by": "p3"}),
     (*(narrowed({"queue_id": "rq-1", "item_id": T1, "status": "COMPLETE", "completed_by": name})
        for name in ("admin", "p1", "p2")),
      DENIED, Refused(ResourceNotFound, "Review queue with id 'rq-1' not found."))),
    ("reopen a review item (nobody completed it)",
     Call("POST /mlflow/review-queues/items/set-status", 3,
          body={"queue_id": "rq-1", "item_id": T1, "status": "PENDING", "completed_by": "p3"}),
     (*(narrowed({"queue_id": "rq-1", "item_id": T1, "status": "PENDING"}),) * 3,
      DENIED, Refused(ResourceNotFound))),
    ("delete review queue", Call("POST /mlflow/review-queues/delete", 3, body={"queue_id": "rq-1"}),
     (ALLOW, ALLOW, DENIED, DENIED, Refused(ResourceNotFound))),
    # -- Rule.WORKSPACE_LEVEL: the level asked for, on the whole workspace
    ("create dataset", Call("POST /mlflow/datasets/create", 3, body={"name": "d", "experiment_ids": ["1"]}),
     (ALLOW, DENIED, DENIED, DENIED, DENIED)),
    ("online scorer configurations", Call("GET /mlflow/scorers/online-configs", 3, query="scorer_ids=s"),
     (ALLOW, DENIED, DENIED, DENIED, DENIED)),
    # -- Rule.AUTHENTICATED
    ("server version", Call("GET /version"),
     (ALLOW, ALLOW, ALLOW, ALLOW, ALLOW)),
    # -- the web UI's own calls, guarded as their REST twins
    ("UI: a run's artifact file", Call("GET /get-artifact", query=f"run_uuid={R1}&path=plot.png"),
     (ALLOW, ALLOW, ALLOW, ALLOW, no_run(R1))),
    ("UI: a model version's file", Call("GET /model-versions/get-artifact", query="name=churn&version=1&path=MLmodel"),
     (ALLOW, ALLOW, ALLOW, ALLOW, NO_CHURN)),
    ("UI: metric history of two runs",
     Call("GET /mlflow/metrics/get-history-bulk", query=f"run_id={R1}&run_id={R2}&metric_key=loss"),
     (ALLOW, no_run(R2), ALLOW, no_run(R2), no_run(R1))),
    ("UI: upload into a run", Call("POST /mlflow/upload-artifact", query=f"run_uuid={R1}&path=notes.txt"),
     (ALLOW, ALLOW, ALLOW, DENIED, no_run(R1))),
    ("UI: a trace's data", Call("GET /mlflow/get-trace-artifact", query=f"request_id={T1}"),
     (ALLOW, ALLOW, ALLOW, ALLOW, no_trace(T1))),
    ("UI: a trace's data (v3)", Call("GET /mlflow/get-trace-artifact", 3, query=f"request_id={T2}"),
     (ALLOW, no_trace(T2), ALLOW, no_trace(T2), ALLOW)),
    ("UI: a logged model's file",
     Call(f"GET {LOGGED_MODEL}/artifacts/files", path={"model_id": "m-1"}, query="artifact_file_path=MLmodel"),
     (ALLOW, ALLOW, ALLOW, ALLOW, no_logged_model("m-1"))),
    # -- Rule.GRAPHQL: the UI's queries, every id of their input (model versions filtered after the answer)
    ("GraphQL: get run", gql("mlflowGetRun", runId=R1),
     (ALLOW, AFTER, AFTER, AFTER, no_run(R1))),
    ("GraphQL: get run by its old name", gql("mlflowGetRun", runUuid=R2),
     (ALLOW, no_run(R2), AFTER, no_run(R2), AFTER)),
    ("GraphQL: get run naming two runs", gql("mlflowGetRun", runId=R1, runUuid=R2),
     (ALLOW, INVALID, INVALID, INVALID, INVALID)),
    ("GraphQL: get experiment", gql("mlflowGetExperiment", experimentId="2"),
     (ALLOW, NO_EXP2, ALLOW, NO_EXP2, ALLOW)),
    ("GraphQL: search runs", gql("mlflowSearchRuns", experimentIds=["1", "2"]),
     (ALLOW, narrowed_search("1"), AFTER, narrowed_search("1"), narrowed_search("2"))),
    ("GraphQL: search runs of unreadable experiments", gql("mlflowSearchRuns", experimentIds=["9"]),
     (ALLOW, Allowed(answer=EMPTY_SEARCH), Allowed(answer=EMPTY_SEARCH), Allowed(answer=EMPTY_SEARCH),
      Allowed(answer=EMPTY_SEARCH))),
    ("GraphQL: metric history", gql("mlflowGetMetricHistoryBulkInterval", runIds=[R1, R2], metricKey="loss"),
     (ALLOW, no_run(R2), ALLOW, no_run(R2), no_run(R1))),
    # -- Rule.JOB_START: CAN_EDIT on the job's experiment, its traces readable and in it, its run, prompt, code
    ("UI: a scorer on a trace of the experiment",
     Call("POST /mlflow/scorer/invoke", 3,
          body={"experiment_id": "1", "serialized_scorer": judge(), "trace_ids": [T1]}),
     (AFTER, AFTER, AFTER, DENIED, NO_EXP1)),
    ("UI: a scorer on a trace of another experiment",
     Call("POST /mlflow/scorer/invoke", 3,
          body={"experiment_id": "1", "serialized_scorer": judge(), "trace_ids": [T2]}),
     (AFTER, no_trace(T2), DENIED, DENIED, NO_EXP1)),
    ("UI: a scorer carrying its own code",
     Call("POST /mlflow/scorer/invoke", 3,
          body={"experiment_id": "1", "serialized_scorer": judge(call_source="import os"), "trace_ids": [T1]}),
     (AFTER, DENIED, DENIED, DENIED, NO_EXP1)),
    ("UI: an evaluation run", Call("POST /mlflow/genai/evaluate/invoke", 3,
                                   body={"experiment_id": "1", "trace_ids": [T1], "serialized_scorers": [judge()]}),
     (AFTER, AFTER, AFTER, DENIED, NO_EXP1)),
    ("UI: issue detection with the workspace's AI gateway endpoint", Call("POST /mlflow/issues/invoke", 3, body={
        "experiment_id": "1", "trace_ids": [T1], "categories": [], "provider": "x", "endpoint_name": "e"}),
     (AFTER, AFTER, DENIED, DENIED, NO_EXP1)),
    ("submit an evaluation job writing into a run of another workspace", Call("POST /jobs/", 3, body={
        "job_name": "invoke_genai_evaluate",
        "params": {"experiment_id": "1", "run_id": RB, "trace_ids": [T1], "serialized_scorers": [judge()]}}),
     (AFTER, no_run(RB), no_run(RB), DENIED, NO_EXP1)),
    ("submit an evaluation job writing into a run of a hidden experiment", Call("POST /jobs/", 3, body={
        "job_name": "invoke_genai_evaluate",
        "params": {"experiment_id": "1", "run_id": R2, "trace_ids": [T1], "serialized_scorers": [judge()]}}),
     (AFTER, no_run(R2), DENIED, DENIED, NO_EXP1)),
    ("submit an online scoring job", Call("POST /jobs/", 3, body={
        "job_name": "run_online_trace_scorer", "params": {"experiment_id": "1", "online_scorers": []}}),
     (AFTER, DENIED, DENIED, DENIED, DENIED)),
    ("submit a job the gateway has no rule for", Call("POST /jobs/", 3, body={
        "job_name": "anything", "params": {"experiment_id": "1"}}),
     (AFTER, DENIED, DENIED, DENIED, DENIED)),
    ("optimise a prompt", Call("POST /mlflow/prompt-optimization/jobs", 3, body={
        "experiment_id": "1", "source_prompt_uri": "prompts:/churn/1", "config": {"scorers": ["s"]}}),
     (AFTER, AFTER, AFTER, DENIED, NO_EXP1)),
    ("optimise a prompt one may not read", Call("POST /mlflow/prompt-optimization/jobs", 3, body={
        "experiment_id": "1", "source_prompt_uri": "prompts:/fraud@champion", "config": {}}),
     (AFTER, no_model("fraud"), no_model("fraud"), DENIED, NO_EXP1)),
    # -- Rule.JOB: a recorded job, its start's checks asked again (a read at CAN_READ); Rule.JOB_SEARCH: the list
    # kept to the jobs the caller may read
    ("get a job", Call("GET /jobs/{job_id:str}", 3, path={"job_id": "job-1"}),
     (ALLOW, ALLOW, ALLOW, ALLOW, no_job("job-1"))),
    ("get a job by its UI route", Call("GET /mlflow/jobs/{job_id:str}", 3, path={"job_id": "job-1"}),
     (ALLOW, ALLOW, ALLOW, ALLOW, no_job("job-1"))),
    ("get a prompt optimisation job",
     Call("GET /mlflow/prompt-optimization/jobs/{job_id:str}", 3, path={"job_id": "job-1"}),
     (ALLOW, ALLOW, ALLOW, ALLOW, no_job("job-1"))),
    ("cancel a prompt optimisation job",
     Call("POST /mlflow/prompt-optimization/jobs/{job_id:str}/cancel", 3, path={"job_id": "job-1"}),
     (ALLOW, ALLOW, ALLOW, DENIED, no_job("job-1"))),
    ("cancel a job", Call("PATCH /mlflow/jobs/cancel/{job_id:str}", 3, path={"job_id": "job-1"}),
     (ALLOW, ALLOW, ALLOW, DENIED, no_job("job-1"))),
    ("get a job the gateway did not start", Call("GET /mlflow/jobs/{job_id:str}", 3, path={"job_id": "job-x"}),
     (ALLOW, no_job("job-x"), no_job("job-x"), no_job("job-x"), no_job("job-x"))),
    ("delete a prompt optimisation job",
     Call("DELETE /mlflow/prompt-optimization/jobs/{job_id:str}", 3, path={"job_id": "job-1"}),
     (ALLOW, ALLOW, ALLOW, DENIED, no_job("job-1"))),
    ("search jobs", Call("POST /jobs/search", 3, body={"job_name": "invoke_scorer"}),
     (ALLOW, AFTER, AFTER, AFTER, AFTER)),
    ("search prompt optimisation jobs",
     Call("GET /mlflow/prompt-optimization/jobs/search", 3, query="experiment_id=1"),
     (ALLOW, AFTER, AFTER, AFTER, NO_EXP1)),
    # -- Rule.SCORER_REGISTER: a scorer carrying its own code is for workspace managers
    ("register a scorer carrying its own code", Call("POST /mlflow/scorers/register", 3, body={
        "experiment_id": "1", "name": "s", "serialized_scorer": judge(call_source="import os")}),
     (ALLOW, DENIED, DENIED, DENIED, NO_EXP1)),
]  # fmt: skip


@pytest.mark.parametrize(
    ("principal", "call", "outcome"),
    [
        pytest.param(PRINCIPALS[who], call, outcome, id=f"{label} / {who}")
        for label, call, outcomes in MATRIX
        for who, outcome in zip(PRINCIPALS, outcomes, strict=True)
    ],
)
async def test_matrix(world: World, principal: Principal, call: Call, outcome: Allowed | Refused) -> None:
    await expect(outcome, world.guard, principal, call, TEAM_A)


# -- another workspace: its manager, a reader of all of it, a principal who may only use it, outsiders ----

MANAGER, WORKSPACE_READER, USER_ONLY = STRANGER, EDITOR, READER  # p4, p2 and p3 in team-b
# Who:                          manager   reader    user only
IN_TEAM_B: list[tuple[str, Call, tuple[Allowed | Refused, ...]]] = [
    ("search experiments", Call("POST /mlflow/experiments/search", body={}), (ALLOW, ALLOW, EMPTY)),
    ("search models", Call("GET /mlflow/registered-models/search"), (ALLOW, ALLOW, EMPTY)),
    ("create experiment", Call("POST /mlflow/experiments/create", body={"name": "e"}), (AFTER, AFTER, AFTER)),
    ("create experiment choosing its artifact location",
     Call("POST /mlflow/experiments/create", body={"name": "e", "artifact_location": "s3://b"}),
     (AFTER, DENIED, DENIED)),
    ("get experiment", Call("GET /mlflow/experiments/get", query="experiment_id=7"),
     (ALLOW, ALLOW, no_experiment("7"))),
    ("experiment id that is no id", Call("GET /mlflow/experiments/get", query="experiment_id=7%20OR%201"),
     (no_experiment("7 OR 1"),) * 3),
    ("get a run of team-b", Call("GET /mlflow/runs/get", query=f"run_id={RB}"), (ALLOW, ALLOW, no_run(RB))),
    ("log to a run of team-b", Call("POST /mlflow/runs/log-metric", body=metric(RB)), (ALLOW, DENIED, no_run(RB))),
    ("get a run of team-a", Call("GET /mlflow/runs/get", query=f"run_id={R1}"), (no_run(R1),) * 3),
    ("download artifact", Call(f"GET {ARTIFACTS}", artifact_path="7/r/artifacts/x"),
     (ALLOW, ALLOW, no_experiment("7"))),
    ("list the artifact root", Call("GET /mlflow-artifacts/artifacts", artifact_path=""), (ALLOW, DENIED, DENIED)),
    ("create dataset", Call("POST /mlflow/datasets/create", 3, body={"name": "d"}), (ALLOW, DENIED, DENIED)),
    ("search traces naming no experiment", Call("POST /mlflow/traces/search", 3, body={}), (ALLOW, ALLOW, DENIED)),
    ("list webhooks (CAN_MANAGE on the workspace)", Call("GET /mlflow/webhooks"), (ALLOW, DENIED, DENIED)),
    ("create webhook", Call("POST /mlflow/webhooks", body={"name": "h", "url": "https://h.example.com/x"}),
     (ALLOW, DENIED, DENIED)),
]  # fmt: skip


@pytest.mark.parametrize(
    ("principal", "call", "outcome"),
    [
        pytest.param(principal, call, outcome, id=f"{label} / {who}")
        for label, call, outcomes in IN_TEAM_B
        for (who, principal), outcome in zip(
            (("manager", MANAGER), ("reader", WORKSPACE_READER), ("user only", USER_ONLY)), outcomes, strict=True
        )
    ],
)
async def test_workspace_levels(world: World, principal: Principal, call: Call, outcome: Allowed | Refused) -> None:
    await expect(outcome, world.guard, principal, call, TEAM_B)


@pytest.mark.parametrize("call", [call for _, call, _ in MATRIX], ids=[label for label, _, _ in MATRIX])
async def test_a_workspace_where_one_holds_nothing_does_not_exist(world: World, call: Call) -> None:
    """team-a's owner holds nothing in team-b: every call there reads as a missing workspace."""
    await expect(Refused(ResourceNotFound, "Workspace 'team-b' not found"), world.guard, OWNER, call, TEAM_B)


@pytest.mark.parametrize("spec", [*WORKSPACE_ROUTES, SERVER_INFO], ids=lambda spec: f"{spec.name} v{spec.version}")
async def test_routes_the_gateway_answers_itself_are_refused_when_forwarded(world: World, spec: RouteSpec) -> None:
    """The workspaces API and server-info are served by the gateway; should one reach the guard, only admins pass."""
    call = Call(spec.name, spec.version)
    for principal in (OWNER, EDITOR, READER, STRANGER):
        await expect(DENIED, world.guard, principal, call, TEAM_A)
    await expect(ALLOW, world.guard, ADMIN, call, TEAM_A)


# -- ids nested in bodies ---------------------------------------------------------------------------

LOG_BATCH = "POST /mlflow/runs/log-batch"
ASSESS = "POST /mlflow/traces/{trace_id:str}/assessments"


def assessment(trace_id: str, **kind: Any) -> dict[str, Any]:
    return {"assessment": {"trace_id": trace_id, "assessment_name": "judged", **kind}}


@pytest.mark.parametrize(
    ("principal", "call", "outcome"),
    [
        # log-batch: each metric's run and logged model at the route's level (CAN_EDIT)
        (EDITOR, Call(LOG_BATCH, body={"run_id": R1, "metrics": [metric(R1, model_id="m-1")]}), ALLOW),
        (EDITOR, Call(LOG_BATCH, body={"run_id": R1, "metrics": [metric(R2)]}), DENIED),
        (OWNER, Call(LOG_BATCH, body={"run_id": R1, "metrics": [metric(R2)]}), no_run(R2)),
        (EDITOR, Call(LOG_BATCH, body={"run_id": R1, "metrics": [metric(R1, model_id="m-2")]}), DENIED),
        (OWNER, Call(LOG_BATCH, body={"run_id": R1, "metrics": [metric(R1, model_id="m-2")]}), no_logged_model("m-2")),
        (EDITOR, Call(LOG_BATCH, body={"run_id": R1, "metrics": [{**metric(R1), "run_id": 7}]}), INVALID),  # no string
        # log-inputs reads a logged model (CAN_READ), outputs write to one (CAN_EDIT)
        (EDITOR, Call("POST /mlflow/runs/log-inputs", body={"run_id": R1, "models": [{"model_id": "m-2"}]}), ALLOW),
        (EDITOR, Call("POST /mlflow/runs/outputs", body={"run_id": R1, "models": [{"model_id": "m-2"}]}), DENIED),
        (OWNER, Call("POST /mlflow/runs/log-inputs", body={"run_id": R1, "models": [{"model_id": "m-2"}]}),
         no_logged_model("m-2")),
        # a v3 trace whose id exists already is written to, wherever it lives; a new one is created
        (EDITOR, Call("POST /mlflow/traces", 3, body=trace_v3("1", trace_id=T2)), DENIED),
        (OWNER, Call("POST /mlflow/traces", 3, body=trace_v3("1", trace_id=T2)), NO_EXP2),
        (OWNER, Call("POST /mlflow/traces", 3, body=trace_v3("1", trace_id=T1)), ALLOW),
        # keys of caller-chosen maps are data, even when they end in _id
        (EDITOR, Call("POST /mlflow/traces", 3, body=trace_v3("1", tags={"source_run_id": R2})), ALLOW),
        # and so is anything below a feedback's or expectation's value (a google.protobuf.Value), at any depth
        (EDITOR, Call(ASSESS, 3, path={"trace_id": T1}, body=assessment(T1, feedback={"value": {
            "source_id": "rater", "votes": [{"run_id": R2, "trace_ids": [T2]}]}})), ALLOW),
        (EDITOR, Call(ASSESS, 3, path={"trace_id": T1}, body=assessment(T1, expectation={"value": [
            {"doc_uuid": "d", "nested": {"experiment_id": "2"}}]})), ALLOW),
        (EDITOR, Call(ASSESS, 3, path={"trace_id": T2}, body=assessment(T2, feedback={"value": {"run_id": R1}})),
         DENIED),
        # beside the value, not below it: no rule, the call is refused
        (OWNER, Call(ASSESS, 3, path={"trace_id": T1}, body=assessment(T1, feedback={"value": 1, "value_id": R1})),
         Refused(InvalidParameter, "Field 'assessment.feedback.value_id' is not accepted in this call.")),
        (OWNER, Call(ASSESS, 3, path={"trace_id": T1}, body=assessment(T1, feedback={"error": {"run_id": R1}})),
         Refused(InvalidParameter, "Field 'assessment.feedback.error.run_id' is not accepted in this call.")),
        # OTLP: every span's trace; and the run the export links its traces to
        (EDITOR, Call("POST /v1/traces", export=otlp_export("2" * 32), headers=(("x-mlflow-experiment-id", "1"),)),
         DENIED),
        (OWNER, Call("POST /v1/traces", export=otlp_export("2" * 32), headers=(("x-mlflow-experiment-id", "1"),)),
         NO_EXP2),
        (OWNER, Call("POST /v1/traces", export=otlp_export("3" * 32), headers=(("x-mlflow-experiment-id", "1"),)),
         ALLOW),
        (EDITOR, Call("POST /v1/traces", export=otlp_export("3" * 32),
                      headers=(("x-mlflow-experiment-id", "1"), ("x-mlflow-run-id", R2))), DENIED),
        (EDITOR, Call("POST /v1/traces", export=otlp_export("3" * 32),
                      headers=(("x-mlflow-experiment-id", "1"), ("x-mlflow-run-id", R1))), ALLOW),
        # delete-traces: each of request_ids, at the route's level (CAN_EDIT)
        (EDITOR, Call("POST /mlflow/traces/delete-traces", 3, body={"experiment_id": "1", "request_ids": [T1, T2]}),
         DENIED),
    ],
)  # fmt: skip
async def test_nested_ids(world: World, principal: Principal, call: Call, outcome: Allowed | Refused) -> None:
    await expect(outcome, world.guard, principal, call, TEAM_A)


@pytest.mark.parametrize(
    ("call", "path"),
    [
        (Call(LOG_BATCH, body={"run_id": R1, "params": [{"key": "k", "value": "v", "param_id": "x"}]}),
         "params[].param_id"),
        (Call("POST /mlflow/runs/log-metric", body=metric(R1, parent_run_id=R1)), "parent_run_id"),
        (Call("POST /mlflow/traces/search", 3, body={**locations("1"), "filter": {"run_id": R1}}), "filter.run_id"),
    ],
)  # fmt: skip
async def test_an_id_at_a_path_without_a_rule_refuses_the_call(world: World, call: Call, path: str) -> None:
    """Deny by default: even the owner, and before the route's own rule is asked."""
    for principal in (OWNER, STRANGER):
        refused = Refused(InvalidParameter, f"Field '{path}' is not accepted in this call.")
        await expect(refused, world.guard, principal, call, TEAM_A)


# -- the bookkeeping around the store's answer ------------------------------------------------------


@pytest.mark.parametrize("principal", [ADMIN, OWNER], ids=["admin", "owner"])
async def test_the_creator_owns_a_new_experiment_before_the_answer_goes_out(world: World, principal: Principal) -> None:
    plan = await decide(world.guard, principal, Call("POST /mlflow/experiments/create", body={"name": "e"}))
    assert plan.after is not None
    assert await plan.after(400, b'{"error_code": "RESOURCE_ALREADY_EXISTS"}') is None
    assert world.records.owners == []
    assert await plan.after(200, b'{"experiment_id": "42"}') is None
    assert world.records.owners == [(principal.name, "team-a", "experiment", "42")]


@pytest.mark.parametrize("principal", [ADMIN, OWNER], ids=["admin", "owner"])
async def test_the_creator_owns_a_new_registered_model(world: World, principal: Principal) -> None:
    plan = await decide(world.guard, principal, Call("POST /mlflow/registered-models/create", body={"name": "new"}))
    assert plan.after is not None
    await plan.after(200, b'{"registered_model": {"name": "new"}}')
    assert world.records.owners == [(principal.name, "team-a", "registered_model", "new")]


async def test_a_creation_whose_owner_cannot_be_recorded_is_undone(world: World) -> None:
    world.records.failing = True
    plan = await decide(world.guard, OWNER, Call("POST /mlflow/experiments/create", body={"name": "e"}))
    assert plan.after is not None
    with pytest.raises(StoreUnavailable):
        await plan.after(200, b'{"experiment_id": "42"}')
    assert world.undone == [("team-a", "experiment", "42")]


@pytest.mark.parametrize("principal", [ADMIN, OWNER], ids=["admin", "owner"])
async def test_the_models_id_follows_a_rename_and_a_delete(world: World, principal: Principal) -> None:
    rename = Call("POST /mlflow/registered-models/rename", body={"name": "churn", "new_name": "churn-2"})
    plan = await decide(world.guard, principal, rename)
    assert plan.after is not None
    await plan.after(404, b"{}")
    await plan.after(200, b"{}")
    delete = await decide(
        world.guard, principal, Call("DELETE /mlflow/registered-models/delete", body={"name": "churn"})
    )
    assert delete.after is not None
    await delete.after(200, b"{}")
    assert world.records.changes == [("team-a", "rename", "churn", "churn-2"), ("team-a", "delete", "churn", None)]


async def test_get_by_name_checks_the_experiment_found(world: World) -> None:
    answer = b'{"experiment": {"experiment_id": "1", "name": "e"}}'
    for principal in (ADMIN, OWNER, EDITOR, READER):
        await world.guard.check_found_experiment(principal, TEAM_A, answer)
    with pytest.raises(ResourceNotFound) as caught:
        await world.guard.check_found_experiment(STRANGER, TEAM_A, answer)
    assert caught.value.message == "Could not find experiment with name 'e'"


async def test_an_id_that_cannot_be_a_run_never_reaches_the_store(world: World) -> None:
    for run_id in ("../" + R1[3:], R1.upper(), R1 + "0"):
        with pytest.raises(ResourceNotFound):
            await decide(world.guard, OWNER, Call("GET /mlflow/runs/get", query=f"run_id={quote(run_id)}"))
    assert world.stores.asked == []


async def test_a_hidden_object_answers_exactly_as_a_missing_one(world: World) -> None:
    missing_run = "d" * 32  # in no store
    errors = []
    for run_id in (R1, missing_run):
        with pytest.raises(ResourceNotFound) as caught:
            await decide(world.guard, STRANGER, Call("GET /mlflow/runs/get", query=f"run_id={run_id}"))
        errors.append((caught.value.status, caught.value.error_code, caught.value.message.replace(run_id, "<id>")))
    assert errors[0] == errors[1] == (404, "RESOURCE_DOES_NOT_EXIST", "Run with id=<id> not found")


# -- the table itself -------------------------------------------------------------------------------


def test_every_rule_has_a_function_and_every_route_a_rule() -> None:
    assert set(CHECKS) == set(Rule)
    assert set(ADMIN_PLANS) <= set(Rule)
    assert set(RULES) == set(DECLARED)
    assert {rule_for(spec) for spec in DECLARED.values()} == set(Rule)


def test_the_matrix_covers_every_rule_a_forwarded_call_can_have() -> None:
    answered_by_the_gateway = {Rule.PUBLIC, Rule.WORKSPACE_VISIBLE, Rule.WORKSPACE_ADMIN}
    covered = {rule_for(call.spec) for _, call, _ in MATRIX}
    assert covered == set(Rule) - answered_by_the_gateway


# -- jobs: recorded from the store's answer, lists kept to what one may see --------------------------


async def test_a_started_job_is_recorded_from_the_answer_with_the_checks_it_passed(world: World) -> None:
    call = Call("POST /mlflow/genai/evaluate/invoke", 3,
                body={"experiment_id": "1", "trace_ids": [T1], "serialized_scorers": [judge()]})  # fmt: skip
    plan = await decide(world.guard, EDITOR, call)
    assert plan.after is not None
    assert await plan.after(200, b'{"job_id": "job-9", "run_id": "' + R1.encode() + b'"}') is None
    assert world.jobs.recorded == [
        ("team-a", JobRecord("job-9", "invoke_genai_evaluate", (Need("experiment", "1", "CAN_EDIT"),), "p2"), R1)
    ]
    await expect(ALLOW, world.guard, OWNER, Call("GET /jobs/{job_id:str}", 3, path={"job_id": "job-9"}), TEAM_A)
    await expect(no_job("job-9"), world.guard, STRANGER, Call("GET /jobs/{job_id:str}", 3, path={"job_id": "job-9"}),
                 TEAM_A)  # fmt: skip
    # Recorded in team-a only: the same id in another workspace is not this job.
    await expect(no_job("job-9"), world.guard, STRANGER, Call("GET /jobs/{job_id:str}", 3, path={"job_id": "job-9"}),
                 TEAM_B)  # fmt: skip


async def test_a_job_list_keeps_the_recorded_jobs_one_may_see(world: World) -> None:
    answer = msgspec.json.encode({"jobs": [{"job_id": "job-1", "params": {}}, {"job_id": "job-x", "params": {}}]})
    search = Call("POST /jobs/search", 3, body={})
    kept = {}
    for name, principal in (("editor", EDITOR), ("reader", READER), ("stranger", STRANGER)):
        plan = await decide(world.guard, principal, search)
        assert plan.after is not None
        replaced = await plan.after(200, answer)
        kept[name] = [job["job_id"] for job in msgspec.json.decode(replaced or answer)["jobs"]]
    # A reader of the job's experiment reads its jobs; a job the gateway did not start is nobody's.
    assert kept == {"editor": ["job-1"], "reader": ["job-1"], "stranger": []}


async def test_a_submitted_jobs_username_is_not_passed_on(world: World) -> None:
    params = {"experiment_id": "1", "trace_ids": [T1], "serialized_scorer": judge(), "username": "admin"}
    plan = await decide(
        world.guard, EDITOR, Call("POST /jobs/", 3, body={"job_name": "invoke_scorer", "params": params})
    )
    assert plan.body is not None
    sent = msgspec.json.decode(plan.body)
    assert "username" not in sent["params"] and sent["params"]["trace_ids"] == [T1]


# -- trace tags that say where a trace's data lives (federation/trace_tags.py) ------------------------

SET_TAG_V3, SET_TAG_V2 = "PATCH /mlflow/traces/{trace_id:str}/tags", "PATCH /mlflow/traces/{request_id:str}/tags"
ARTIFACTS, ARCHIVE, SPANS = "mlflow.artifactLocation", "mlflow.trace.archiveLocation", "mlflow.trace.spansLocation"
STORAGE_TAG_CALLS = [
    Call(SET_TAG_V3, 3, {"key": ARTIFACTS, "value": "x"}, path={"trace_id": T1}),
    Call(SET_TAG_V2, 2, {"key": ARTIFACTS, "value": "x"}, path={"request_id": T1}),
    Call(SET_TAG_V3, 3, {"key": ARCHIVE, "value": "x"}, path={"trace_id": T1}),
    Call("POST /mlflow/traces", 3, trace_v3("1", tags={ARTIFACTS: "mlflow-artifacts:/2/traces/t/artifacts"})),
    Call("POST /mlflow/traces", 2, {"experiment_id": "1", "tags": [{"key": SPANS, "value": "x"}]}),
    Call(
        "PATCH /mlflow/traces/{request_id:str}",
        2,
        {"tags": [{"key": ARTIFACTS, "value": "x"}]},
        path={"request_id": T1},
    ),
]


@pytest.mark.parametrize("call", STORAGE_TAG_CALLS, ids=lambda c: f"{c.route} v{c.version}")
@pytest.mark.parametrize("principal", [ADMIN, OWNER], ids=["admin", "owner"])
async def test_no_call_sets_a_trace_tag_saying_where_its_data_lives(
    world: World, principal: Principal, call: Call
) -> None:
    """The store reads a trace's files from `mlflow.artifactLocation`: pointed at another trace's, even by the
    owner of the trace tagged, it would answer with them. Refused in MLflow's words, whoever calls."""
    with pytest.raises(InvalidParameter) as caught:
        await decide(world.guard, principal, call)
    key = next(k for k in (ARTIFACTS, ARCHIVE, SPANS) if k in json.dumps(call.body))
    assert caught.value.message == f"Tag '{key}' is immutable and cannot be set on a trace."


async def test_other_trace_tags_and_deleting_a_storage_tag_pass(world: World) -> None:
    note = Call(SET_TAG_V3, 3, {"key": "note", "value": "x"}, path={"trace_id": T1})
    await expect(ALLOW, world.guard, OWNER, note, TEAM_A)
    await expect(ALLOW, world.guard, OWNER, Call("POST /mlflow/traces", 3, trace_v3("1", tags={"n": "1"})), TEAM_A)
    delete = Call(
        "DELETE /mlflow/traces/{trace_id:str}/tags", 3, {"key": "mlflow.trace.archivalFailure"}, path={"trace_id": T1}
    )
    await expect(ALLOW, world.guard, OWNER, delete, TEAM_A)


async def test_a_submitted_prompt_optimisation_is_checked_and_recorded_by_the_prompt_its_job_reads(
    world: World,
) -> None:
    """`POST /jobs/` hands its parameters to the job as they are: `optimize_prompts_job` reads `prompt_uri` (the
    prompt-optimization route's body calls it `source_prompt_uri`, and the store renames it)."""
    params = {"experiment_id": "1", "prompt_uri": "prompts:/fraud/1", "source_prompt_uri": "prompts:/churn/1"}
    submit = Call("POST /jobs/", 3, body={"job_name": "optimize_prompts", "params": params})
    await expect(no_model("fraud"), world.guard, EDITOR, submit, TEAM_A)
    plan = await decide(world.guard, ADMIN, submit)
    assert plan.after is not None
    await plan.after(200, msgspec.json.encode({"job_id": "job-7"}))
    recorded = {job.job_id: job for _, job, _ in world.jobs.recorded}["job-7"]
    assert Need("model", "fraud", "CAN_EDIT") in recorded.needs
    assert Need("model", "churn", "CAN_EDIT") not in recorded.needs
    await expect(
        no_job("job-7"), world.guard, EDITOR, Call("GET /jobs/{job_id:str}", 3, path={"job_id": "job-7"}), TEAM_A
    )


# -- the promotions experiment ------------------------------------------------------------------------

FILES = "/mlflow-artifacts/artifacts/{artifact_path:path}"  # (ARTIFACTS is a trace tag by now)
R9 = "9" * 32  # a run of team-a's experiment 9, the promotions experiment (`FakeStores.promotions`)
# Who:                                 workspace editor   workspace manager   its owner   account admin
PROMOTIONS: list[tuple[str, Call, tuple[Allowed | Refused, ...]]] = [
    ("create a logged model in it", Call("POST /mlflow/logged-models", body={"experiment_id": "9", "name": "m"}),
     (DENIED, ALLOW, DENIED, ALLOW)),
    ("finalize a logged model of it", Call(f"PATCH {LOGGED_MODEL}", body={"status": "LOGGED_MODEL_READY"},
                                           path={"model_id": "m-9"}),
     (DENIED, ALLOW, DENIED, ALLOW)),
    ("tag a logged model of it", Call(f"PATCH {LOGGED_MODEL}/tags", body={"tags": [{"key": "k", "value": "v"}]},
                                      path={"model_id": "m-9"}),
     (DENIED, ALLOW, DENIED, ALLOW)),
    ("upload a file over a copy's", Call(f"PUT {FILES}", artifact_path="9/models/m-9/artifacts/MLmodel"),
     (DENIED, ALLOW, DENIED, ALLOW)),
    ("log to a run of it", Call("POST /mlflow/runs/log-metric", body=metric(R9)), (DENIED, ALLOW, DENIED, ALLOW)),
    ("create a run in it", Call("POST /mlflow/runs/create", body={"experiment_id": "9"}),
     (DENIED, ALLOW, DENIED, ALLOW)),
    ("rename it", Call("POST /mlflow/experiments/update", body={"experiment_id": "9", "new_name": "x"}),
     (DENIED, ALLOW, DENIED, ALLOW)),
    ("read it", Call("GET /mlflow/experiments/get", query="experiment_id=9"), (ALLOW, ALLOW, ALLOW, ALLOW)),
    ("read a copy's file", Call(f"GET {FILES}", artifact_path="9/models/m-9/artifacts/MLmodel"),
     (ALLOW, ALLOW, ALLOW, ALLOW)),
    ("get a logged model of it", Call(f"GET {LOGGED_MODEL}", path={"model_id": "m-9"}), (ALLOW, ALLOW, ALLOW, ALLOW)),
    ("log to a run of another experiment", Call("POST /mlflow/runs/log-metric", body=metric(R2)),
     (ALLOW, ALLOW, no_run(R2), ALLOW)),
    ("create an experiment of its name", Call("POST /mlflow/experiments/create", body={"name": "fedgate-promotions"}),
     (DENIED, DENIED, DENIED, AFTER)),
    ("... spelt as a store may match it",
     Call("POST /mlflow/experiments/create", body={"name": " FEDGATE-PROMOTIONS"}), (DENIED, DENIED, DENIED, AFTER)),
    ("rename another experiment to its name",
     Call("POST /mlflow/experiments/update", body={"experiment_id": "2", "new_name": "Fedgate-Promotions"}),
     (DENIED, DENIED, no_experiment("2"), ALLOW)),
]  # fmt: skip

PROMOTIONS_POLICY = snapshot(
    [
        Grant(1, workspace_domain(A), workspace_object(A), "CAN_EDIT"),
        Grant(2, workspace_domain(A), workspace_object(A), "CAN_MANAGE"),
        Grant(3, workspace_domain(A), experiment_object(A, "9"), "CAN_MANAGE"),
    ],
    [],
)


@pytest.mark.parametrize(
    ("who", "call", "outcome"),
    [
        pytest.param(who, call, outcome, id=f"{label} / {who}")
        for label, call, outcomes in PROMOTIONS
        for who, outcome in zip(("editor", "manager", "owner", "admin"), outcomes, strict=True)
    ],
)
async def test_the_promotions_experiment_is_changed_by_promotions_and_workspace_managers_alone(
    who: str, call: Call, outcome: Allowed | Refused
) -> None:
    """Promotions copy a version's files into a logged model of the workspace's `fedgate-promotions` experiment;
    anyone who could edit the workspace's experiments wrote there (logged models of their own, named and tagged for
    a coming promotion; files over a copy's). Through the gateway only the workspace's managers (and account admins)
    change it or what is in it, whatever one holds on it, and no one else makes or renames an experiment to its
    name."""
    policy = LivePolicy(None, views=None)  # type: ignore[arg-type]  # never reloads: the snapshot is set here
    policy.snapshot = PROMOTIONS_POLICY
    stores = FakeStores()
    stores.objects = {A: {("run", R9): "9", ("logged_model", "m-9"): "9", ("run", R2): "2"}}

    async def undo(link: WorkspaceLink, kind: str, object_id: str) -> None:
        return None

    guard = Guard(Authorizer(policy), stores, FakeRecords(), undo, FakeJobs())
    principals = {
        "admin": ADMIN,
        **{
            name: Principal(name=f"p{i}", kind="user", id=i, subjects=PROMOTIONS_POLICY.subjects(i))
            for name, i in (("editor", 1), ("manager", 2), ("owner", 3))
        },
    }
    await expect(outcome, guard, principals[who], call, TEAM_A)
