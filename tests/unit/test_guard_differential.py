"""Differential test of the guard against MLflow's own request parsing: the store acts only on what was authorized.

For every declared JSON route with a protobuf request message, hypothesis writes request bodies the way
an attacker would: snake_case and proto JSON names, JSON escapes in keys, repeated keys, ids at every
depth of the message, repeated fields, unknown fields, ids in the query string and the path. The real
Guard (real compiled policy, real Authorizer) decides, as a user who may manage experiment 1 and holds
nothing on experiment 2. Whatever it lets through is parsed by MLflow's server code (the handlers'
`_get_request_message` inside a Flask request) exactly as an `mlflow server` would; every run,
experiment, logged model and trace id the parsed message names must then be one of experiment 1's.

The store the guard asks "which experiment is this run in?" is a dictionary here: the store is not
our code, and its answers are the premise of the test, not the thing tested.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import pkgutil
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.authz.decide import Authorizer
from gateway.authz.levels import experiment_object, workspace_domain
from gateway.authz.live import LivePolicy
from gateway.authz.policy import Grant, PolicySnapshot, PrincipalInfo
from gateway.core.errors import GatewayError
from gateway.core.links import WorkspaceLink
from gateway.core.principal import Principal
from gateway.core.route_table import FORWARDED_ROUTES, Body, RouteSpec
from gateway.federation.canonical import CanonicalBody, canonical_body, canonical_query
from gateway.federation.guard import Guard, StoreLookups, rule_for

flask = pytest.importorskip("flask")
handlers = pytest.importorskip("mlflow.server.handlers")
descriptor = pytest.importorskip("google.protobuf.descriptor")

WORKSPACE_ID = 1001
LINK = WorkspaceLink("team-a", WORKSPACE_ID, "workspace", "store-a", "store-a", None)
USER = Principal(name="mallory@example.com", kind="user", id=1, subjects=frozenset({1}))

# The store's objects: experiment 1 is the user's, experiment 2 is hidden from them.
OWN = {
    "experiment": "1",
    "run": "a" * 32,
    "logged_model": "m-own",
    "trace": "tr-own",
    "issue": "iss-own",
    "label_schema": "ls-own",
    "review_queue": "rq-own",
}
HIDDEN = {
    "experiment": "2",
    "run": "b" * 32,
    "logged_model": "m-hidden",
    "trace": "tr-hidden",
    "issue": "iss-hidden",
    "label_schema": "ls-hidden",
    "review_queue": "rq-hidden",
}
IN_EXPERIMENTS = ("run", "logged_model", "trace", "issue", "label_schema", "review_queue")
EXPERIMENT_OF = {OWN[k]: "1" for k in IN_EXPERIMENTS} | {HIDDEN[k]: "2" for k in IN_EXPERIMENTS}
UNKNOWN = {
    "experiment": "77",
    "run": "c" * 32,
    "logged_model": "m-unknown",
    "trace": "tr-unknown",
    "issue": "iss-unknown",
    "label_schema": "ls-unknown",
    "review_queue": "rq-unknown",
}

# Fields of MLflow's request messages that name objects, by field name.
ID_KINDS = {
    "experiment_id": "experiment",
    "experiment_ids": "experiment",
    "run_id": "run",
    "run_uuid": "run",
    "run_ids": "run",
    "source_run_id": "run",
    "model_id": "logged_model",
    "trace_id": "trace",
    "trace_ids": "trace",
    "request_id": "trace",
    "request_ids": "trace",
    "issue_id": "issue",
    "schema_id": "label_schema",
    "schema_ids": "label_schema",
    "queue_id": "review_queue",
    "item_ids": "trace",  # the traces added to or removed from a review queue
}
PATH_KINDS = {"model_id": "logged_model", "request_id": "trace", "trace_id": "trace", "issue_id": "issue"}
# Rules that look registered models up in the database, and artifact paths: covered by integration tests.
NOT_HERE = {"model", "model-create", "model-search", "model-version-create", "artifact"}


def _endpoints() -> dict[tuple[str, str, int], Any]:
    import mlflow.protos
    from mlflow.protos import databricks_pb2

    found: dict[tuple[str, str, int], Any] = {}
    for module in pkgutil.walk_packages(mlflow.protos.__path__, "mlflow.protos."):
        if not module.name.endswith("_pb2"):
            continue
        try:
            loaded = importlib.import_module(module.name)
        except Exception:
            continue
        for service in loaded.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                options = method.GetOptions()
                if not options.HasExtension(databricks_pb2.rpc):
                    continue
                for endpoint in options.Extensions[databricks_pb2.rpc].endpoints:
                    path = re.sub(r"\{([^}]+)\}", lambda m: "{" + m.group(1).split(".")[-1] + "}", endpoint.path)
                    found.setdefault((endpoint.method, path, endpoint.since.major), method.input_type)
    return found


def _routes() -> list[tuple[RouteSpec, Any]]:
    endpoints = _endpoints()
    routes = []
    for spec in FORWARDED_ROUTES:
        if spec.body is not Body.JSON or rule_for(spec) in NOT_HERE:
            continue
        message = endpoints.get((spec.method, re.sub(r":\w+\}", "}", spec.path), spec.version))
        if message is not None:
            routes.append((spec, message))
    return routes


ROUTES = _routes()


def _snapshot() -> PolicySnapshot:
    principals = {1: PrincipalInfo(1, "user", USER.name)}
    grants = [Grant(1, workspace_domain(WORKSPACE_ID), experiment_object(WORKSPACE_ID, "1"), "CAN_MANAGE")]
    return PolicySnapshot(1, principals, [], grants, securables=[])


OBJECT_ANSWERS = (("/issues/", "issue"), ("/label-schemas/", "label_schema"), ("/review-queues/", "review_queue"))


class StoreDirectory:
    """What the store answers when the guard asks which experiment an object is in."""

    async def fetch(self, link: WorkspaceLink, path: str, query: str) -> tuple[int, bytes]:
        object_id = path.rsplit("/", 1)[-1] if "=" not in query else query.split("=", 1)[1]
        experiment = EXPERIMENT_OF.get(object_id)
        if experiment is None:
            return 404, b'{"error_code": "RESOURCE_DOES_NOT_EXIST"}'
        if "runs/get" in path:
            return 200, json.dumps({"run": {"info": {"experiment_id": experiment}}}).encode()
        if "logged-models" in path:
            return 200, json.dumps({"model": {"info": {"experiment_id": experiment}}}).encode()
        for part, key in (
            ("/issues/", "issue"),
            ("/label-schemas/", "label_schema"),
            ("/review-queues/", "review_queue"),
        ):
            if part in path:
                return 200, json.dumps({key: {"experiment_id": experiment}}).encode()
        location = {"mlflow_experiment": {"experiment_id": experiment}}
        return 200, json.dumps({"trace": {"trace_info": {"trace_location": location}}}).encode()


class NoModels:
    """The gateway's records of registered models, holding none: a prompt a trace is linked to is missing."""

    async def model_id(self, link: WorkspaceLink, name: str, *, adopt: bool) -> str | None:
        return None


async def _no_run_directory(run_id: str, workspace: str) -> str | None:
    return None


async def _no_undo(link: WorkspaceLink, kind: str, object_id: str) -> None:
    return None


def _guard() -> Guard:
    policy = LivePolicy(None, views=None)  # type: ignore[arg-type]  # never reloads: the snapshot is set here
    policy.snapshot = _snapshot()
    lookups = StoreLookups(StoreDirectory().fetch, _no_run_directory)
    return Guard(Authorizer(policy), lookups, NoModels(), _no_undo)  # type: ignore[arg-type]


GUARD = _guard()
ORACLE = flask.Flask("oracle")
LOOP = asyncio.new_event_loop()


# -- bodies ------------------------------------------------------------------------------------------

ids_of = {kind: st.sampled_from([OWN[kind], HIDDEN[kind], UNKNOWN[kind]]) for kind in OWN}


def _scalar(field: Any) -> st.SearchStrategy[Any]:
    kind = ID_KINDS.get(field.name)
    if kind is not None:
        return ids_of[kind]
    if field.type == descriptor.FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if field.type in (descriptor.FieldDescriptor.TYPE_STRING, descriptor.FieldDescriptor.TYPE_BYTES):
        return st.sampled_from(["x", "Production", "", "runs:/" + HIDDEN["run"]])
    if field.type == descriptor.FieldDescriptor.TYPE_ENUM:
        return st.sampled_from([v.name for v in field.enum_type.values])
    if field.type in (descriptor.FieldDescriptor.TYPE_DOUBLE, descriptor.FieldDescriptor.TYPE_FLOAT):
        return st.floats(allow_nan=False, allow_infinity=False, width=32)
    return st.integers(min_value=0, max_value=2**31)


# Keys of a map or JSON value, which MLflow reads as data: some spelled as field names or their aliases.
caller_keys = st.sampled_from(["k", "runId", "experimentId", "traceInfo", "run_id", "experiment_id"])


@st.composite
def message_pairs(draw: st.DrawFn, message: Any, depth: int = 0) -> list[tuple[str, Any]]:
    """A message as key/value pairs: some fields, spelled either way, sometimes twice, plus strangers."""
    pairs: list[tuple[str, Any]] = []
    fields = list(message.fields)
    for field in draw(st.lists(st.sampled_from(fields), max_size=6)) if fields else []:
        if field.type == descriptor.FieldDescriptor.TYPE_MESSAGE:
            if field.message_type.GetOptions().map_entry or depth >= 4:
                value: Any = draw(st.dictionaries(caller_keys, st.sampled_from(["v", HIDDEN["run"]]), max_size=3))
            elif field.message_type.full_name == "google.protobuf.Value":  # any JSON: keys of the caller's choosing
                value = draw(st.dictionaries(caller_keys, st.sampled_from(["v", HIDDEN["run"]]) | ids_of["run"]))
            elif field.message_type.full_name.startswith("google.protobuf."):
                continue
            else:
                one = message_pairs(field.message_type, depth + 1)
                value = draw(st.lists(one, min_size=1, max_size=2) if field.is_repeated else one)
        else:
            one_scalar = _scalar(field)
            value = draw(st.lists(one_scalar, min_size=1, max_size=3) if field.is_repeated else one_scalar)
        key = draw(st.sampled_from([field.name, field.json_name]))
        pairs.append((key, value))
    if draw(st.booleans()):
        pairs.append((draw(st.sampled_from(["unknown_field", "runId", "model_id"])), draw(ids_of["run"])))
    return pairs


def _encode(node: Any, escape: st.DataObject) -> str:
    if isinstance(node, list) and node and all(isinstance(p, tuple) and len(p) == 2 for p in node):
        return "{" + ",".join(f"{_key(k, escape)}:{_encode(v, escape)}" for k, v in node) + "}"
    if isinstance(node, list):
        return "[" + ",".join(_encode(v, escape) for v in node) + "]"
    if node == []:
        return "{}"
    return json.dumps(node)


def _key(key: str, escape: st.DataObject) -> str:
    """A key, some of its characters written as JSON escapes (the store decodes them)."""
    chars = [f"\\u{ord(c):04x}" if escape.draw(st.integers(0, 4)) == 0 else c for c in key]
    return '"' + "".join(chars) + '"'


def _path_params(spec: RouteSpec, data: st.DataObject) -> dict[str, str]:
    params = {}
    for name in re.findall(r"\{(\w+):\w+\}", spec.path):
        kind = PATH_KINDS.get(name)
        params[name] = data.draw(ids_of[kind]) if kind else "p1"
    return params


def _mlflow_reads(spec: RouteSpec, message: Any, body: bytes | None, query: str) -> Any | None:
    """The request message MLflow's handler would build from these bytes; None when it refuses them."""
    from google.protobuf import message_factory
    from mlflow.exceptions import MlflowException
    from mlflow.protos import service_pb2  # noqa: F401  (registers the message classes)

    cls = message_factory.GetMessageClass(message)
    with ORACLE.test_request_context(
        "/x", method=spec.method, data=body or b"", content_type="application/json", query_string=query
    ):
        try:
            return handlers._get_request_message(cls())
        except MlflowException:
            return None


def _named_ids(message: Any) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for field, value in message.ListFields():
        kind = ID_KINDS.get(field.name)
        if field.type == descriptor.FieldDescriptor.TYPE_MESSAGE and not field.message_type.GetOptions().map_entry:
            for item in value if field.is_repeated else [value]:
                found.extend(_named_ids(item))
        elif kind is not None:
            found.extend((kind, str(v)) for v in (value if field.is_repeated else [value]))
    return found


HIDDEN_IDS = {(kind, value) for kind, value in HIDDEN.items()}


def _passed(
    spec: RouteSpec, message: Any, body: CanonicalBody | None, query: str, path_params: dict[str, str]
) -> tuple[bytes | None, Any] | None:
    """What the store is sent of a call the guard lets through and how MLflow reads it (None: MLflow refuses it);
    None when the guard refuses the call (the store sees nothing) or answers it itself."""
    try:
        plan = LOOP.run_until_complete(GUARD.check(spec, USER, LINK, body, query, None, path_params, []))
    except GatewayError:
        return None
    if plan.answer is not None:
        return None
    forwarded = plan.body if plan.body is not None else (body.encoded if body is not None else None)
    return forwarded, _mlflow_reads(spec, message, forwarded, plan.query if plan.query is not None else query)


@pytest.mark.parametrize("spec,message", ROUTES, ids=[f"{s.name} v{s.version}" for s, _ in ROUTES])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_the_store_acts_only_on_ids_the_guard_authorized(spec: RouteSpec, message: Any, data: st.DataObject) -> None:
    pairs = data.draw(message_pairs(message))
    path_params = _path_params(spec, data)
    if spec.method == "GET":
        query_pairs = [(k, v) for k, v in pairs if not isinstance(v, list) or all(isinstance(i, str) for i in v)]
        query = canonical_query(
            "&".join(f"{k}={v}" for k, vs in query_pairs for v in (vs if isinstance(vs, list) else [vs]))
        )
        raw = None
    else:
        query = canonical_query(data.draw(st.sampled_from(["", f"run_id={HIDDEN['run']}", "experiment_id=2"])))
        raw = _encode(pairs, data).encode() if pairs else b"{}"
    try:
        body = canonical_body(raw) if raw is not None else None
    except GatewayError:
        return  # refused: the store saw nothing
    if (passed := _passed(spec, message, body, query, path_params)) is None:
        return
    forwarded, parsed = passed
    acted_on = set(_named_ids(parsed)) if parsed is not None else set()
    acted_on |= {(PATH_KINDS[name], value) for name, value in path_params.items() if name in PATH_KINDS}
    assert not acted_on & HIDDEN_IDS, f"the store would act on hidden {acted_on & HIDDEN_IDS} after {forwarded!r}"


def test_the_differential_test_covers_the_routes_that_carry_ids() -> None:
    covered = {f"{spec.name} v{spec.version}" for spec, _ in ROUTES}
    assert len(covered) >= 50
    for name in ("POST /mlflow/runs/delete v2", "POST /mlflow/runs/log-batch v2", "POST /mlflow/traces v3"):
        assert name in covered


def _every_field(message: Any, depth: int = 0) -> dict[str, Any]:
    """A body naming every field of a message once, snake_case, with the user's own ids."""
    body: dict[str, Any] = {}
    for field in message.fields:
        if field.type == descriptor.FieldDescriptor.TYPE_MESSAGE:
            if field.message_type.GetOptions().map_entry:
                body[field.name] = {"session_id": "s-1", "user_id": "u-1"}  # caller-chosen keys that look like ids
                continue
            if field.message_type.full_name.startswith("google.protobuf.") or depth >= 4:
                continue
            value: Any = _every_field(field.message_type, depth + 1)
        else:
            kind = ID_KINDS.get(field.name)
            value = OWN[kind] if kind else "x"
        body[field.name] = [value] if field.is_repeated else value
    return body


@pytest.mark.parametrize("spec,message", ROUTES, ids=[f"{s.name} v{s.version}" for s, _ in ROUTES])
def test_no_field_of_mlflows_own_request_messages_is_refused_as_unknown(spec: RouteSpec, message: Any) -> None:
    """Deny by default must not refuse what MLflow's clients send: every nested id path has a rule."""
    if spec.method == "GET":
        return
    body = canonical_body(json.dumps(_every_field(message)).encode())
    try:
        LOOP.run_until_complete(GUARD.check(spec, USER, LINK, body, "", None, _own_path_params(spec), []))
    except GatewayError as exc:
        assert "is not accepted in this call" not in str(exc), str(exc)


def _own_path_params(spec: RouteSpec) -> dict[str, str]:
    return {name: OWN[PATH_KINDS[name]] if name in PATH_KINDS else "p1" for name in re.findall(r"\{(\w+):", spec.path)}


# Routes whose rule requires the call to name its experiments (the `experiment` rule), with MLflow's message.
MUST_NAME_EXPERIMENTS = [(spec, message) for spec, message in ROUTES if rule_for(spec).value == "experiment"]


@st.composite
def experiment_fields(draw: st.DrawFn) -> list[tuple[str, str]]:
    """`experiment_id` and `experiment_ids` as name/value pairs, in any order, given any number of times, with the
    user's own experiment, a hidden one, or an empty value: a body's keys (the last of a repeated key wins) or a GET's
    query parameters (MLflow reads a single field's first value)."""
    names = st.sampled_from(["experiment_id", "experiment_ids"])
    values = st.sampled_from([OWN["experiment"], OWN["experiment"], HIDDEN["experiment"], ""])
    return draw(st.lists(st.tuples(names, values), min_size=1, max_size=4))


@pytest.mark.parametrize(
    "spec,message", MUST_NAME_EXPERIMENTS, ids=[f"{s.name} v{s.version}" for s, _ in MUST_NAME_EXPERIMENTS]
)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pairs=experiment_fields())
def test_a_call_that_must_name_its_experiment_is_read_by_the_store_as_naming_it(
    spec: RouteSpec, message: Any, pairs: list[tuple[str, str]]
) -> None:
    """The guard lets a call that must name its experiment through only for the experiments it checked; the store
    must read the call as naming them too. An empty value or a field MLflow's message lacks names nothing to the
    store, which then acted on no experiment in particular: every experiment's scorers (`scorers/list`) and issues
    (`issues/search`) were answered."""
    if spec.method == "GET":
        query, body = canonical_query("&".join(f"{name}={value}" for name, value in pairs)), None
    else:
        document: dict[str, Any] = {}
        for name, value in pairs:
            document[name] = [value] if name.endswith("_ids") else value
        query, body = "", canonical_body(json.dumps(document).encode())
    if (passed := _passed(spec, message, body, query, _own_path_params(spec))) is None:
        return
    _, parsed = passed
    if parsed is None:
        return  # MLflow refuses it
    named = {value for kind, value in _named_ids(parsed) if kind == "experiment" and value}
    assert named == {OWN["experiment"]}, f"the store reads {named or 'no experiment'} from {pairs!r}"
