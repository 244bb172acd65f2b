"""MLflow's REST surface through the gateway, compared with the store answering the same call directly.

The UI's datasets summary exists only under /ajax-api in MLflow 3.17.2, and is forwarded there. Malformed
requests get the store's own answer (status, error_code, message) whether the gateway forwards them or
refuses them itself; the refusals MLflow does not make are listed with the reason.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import mlflow
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.core.route_table import FORWARDED_ROUTES, Action
from gateway.devstack import GatewayProcess, MlflowServer
from tests.conftest import ADMIN_TOKEN, Stack
from tests.support.identity import Admin, Person, unique
from tests.support.mlflow_surface import artifact_serving_routes, normalised
from tests.support.own_gateway import own_gateway
from tests.support.stock_client import stock_client_env

pytestmark = pytest.mark.integration

SEARCH_DATASETS = "/ajax-api/2.0/mlflow/experiments/search-datasets"


@dataclass(frozen=True)
class Cast:
    owner: Person  # may use team-a, owns the experiment and run below
    stranger: Person  # may use team-a, holds nothing on that experiment
    experiment_id: str
    run_id: str


@pytest.fixture(scope="module")
def cast(stack: Stack) -> Iterator[Cast]:
    """The owner logs a dataset input into a run with the stock client, through the gateway."""
    import pandas as pd

    admin = Admin.of(stack)
    suffix = uuid.uuid4().hex[:6]
    owner = admin.person(f"owner.{suffix}@example.com")
    stranger = admin.person(f"stranger.{suffix}@example.com")
    for person in (owner, stranger):
        admin.grant("workspaces/team-a", "CAN_USE", user=person.name)
    with stock_client_env(MLFLOW_TRACKING_URI=stack.url, MLFLOW_TRACKING_TOKEN=owner.token):
        mlflow.set_tracking_uri(stack.url)
        mlflow.set_workspace("team-a")
        experiment_id = mlflow.create_experiment(unique("surface"))
        frame = pd.DataFrame({"x": [1, 2, 3], "y": [0, 1, 0]})
        with mlflow.start_run(experiment_id=experiment_id) as run:
            mlflow.log_input(mlflow.data.from_pandas(frame, name="train-set"), context="training")
        yield Cast(owner, stranger, experiment_id, run.info.run_id)


def test_the_ui_datasets_summary_is_forwarded_under_ajax_api(stack: Stack, cast: Cast) -> None:
    body = {"experiment_ids": [cast.experiment_id]}
    through = cast.owner.http(stack).post(f"{stack.url}{SEARCH_DATASETS}", json=body)
    assert through.status_code == 200, through.text
    direct = requests.post(f"{stack.stores['a'].url}{SEARCH_DATASETS}", json=body, timeout=30)
    assert direct.status_code == 200, direct.text
    assert through.json() == direct.json()
    summaries = through.json()["dataset_summaries"]
    assert [(s["experiment_id"], s["name"], s.get("context")) for s in summaries] == [
        (cast.experiment_id, "train-set", "training")
    ]
    # MLflow has no /api twin of this route, so neither has the gateway.
    api_twin = "/api/2.0/mlflow/experiments/search-datasets"
    assert requests.post(f"{stack.stores['a'].url}{api_twin}", json=body, timeout=30).status_code == 404
    missing = cast.owner.http(stack).post(f"{stack.url}{api_twin}", json=body)
    assert missing.status_code == 404 and missing.json()["error_code"] == "ENDPOINT_NOT_FOUND", missing.text


def test_the_datasets_summary_shows_only_readable_experiments(stack: Stack, cast: Cast) -> None:
    answer = cast.stranger.http(stack).post(
        f"{stack.url}{SEARCH_DATASETS}", json={"experiment_ids": [cast.experiment_id]}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json().get("dataset_summaries", []) == []


# -- malformed requests: the store's answer, whoever gives it ---------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    path: str
    body: bytes | None = None  # {run} and {experiment} are the owner's run and experiment
    query: str = ""
    gateway_only: str = ""  # why the gateway refuses what MLflow would not (empty: both answer alike)
    refused: tuple[int, str] = (400, "INVALID_PARAMETER_VALUE")  # the gateway's answer to a gateway_only case


SAME = [
    # A search of no experiment: MLflow checks it as any other and finds nothing in it, or refuses it (datasets).
    Case("no experiment to search", "POST", "/api/2.0/mlflow/runs/search", b"{}"),
    Case("an empty list of experiments", "POST", "/api/2.0/mlflow/runs/search", b'{"experiment_ids": []}'),
    Case(
        "no experiment, and a filter MLflow cannot read",
        "POST",
        "/api/2.0/mlflow/runs/search",
        b'{"experiment_ids": [], "filter": "bad ==="}',
    ),
    Case("no logged model's experiment", "POST", "/api/2.0/mlflow/logged-models/search", b'{"experiment_ids": []}'),
    Case("no dataset's experiment", "POST", SEARCH_DATASETS, b'{"experiment_ids": []}'),
    Case("run_id a number", "POST", "/api/2.0/mlflow/runs/delete", b'{"run_id": 31}'),
    Case("run_id null", "POST", "/api/2.0/mlflow/runs/delete", b'{"run_id": null}'),
    Case("run_id missing", "POST", "/api/2.0/mlflow/runs/delete", b"{}"),
    Case(
        "run_id repeated, the last a number", "POST", "/api/2.0/mlflow/runs/delete", b'{"run_id": "{run}", "run_id": 7}'
    ),
    Case("not JSON: MLflow reads {}", "POST", "/api/2.0/mlflow/runs/delete", b"not json"),
    Case("the body null: MLflow reads {}", "POST", "/api/2.0/mlflow/runs/delete", b"null"),
    Case("a JSON string MLflow decodes again", "POST", "/api/2.0/mlflow/runs/delete", b'"{\\"run_id\\": 5}"'),
    Case("runId: MLflow checks run_id", "POST", "/api/2.0/mlflow/runs/delete", b'{"runId": "{run}"}'),
    Case("run_id both ways", "POST", "/api/2.0/mlflow/runs/delete", b'{"runId": "{run}", "run_id": "{run}"}'),
    Case("experiment_id a number", "POST", "/api/2.0/mlflow/runs/create", b'{"experiment_id": 1}'),
    Case("experiment_id true", "POST", "/api/2.0/mlflow/runs/create", b'{"experiment_id": true}'),
    Case("experiment_id an object", "POST", "/api/2.0/mlflow/runs/create", b'{"experiment_id": {"a": 1}}'),
    Case("experiment_id a list", "POST", "/api/2.0/mlflow/experiments/delete", b'{"experiment_id": ["{experiment}"]}'),
    Case(
        "experiment_id a number, new_name too",
        "POST",
        "/api/2.0/mlflow/experiments/update",
        b'{"experiment_id": 0, "new_name": 5}',
    ),
    Case(
        "new_name a number",
        "POST",
        "/api/2.0/mlflow/experiments/update",
        b'{"experiment_id": "{experiment}", "new_name": 5}',
    ),
    Case("name a number", "POST", "/api/2.0/mlflow/experiments/create", b'{"name": 5}'),
    Case("experiment_ids a string", "POST", "/api/2.0/mlflow/runs/search", b'{"experiment_ids": "{experiment}"}'),
    Case(
        "max_results a word",
        "POST",
        "/api/2.0/mlflow/runs/search",
        b'{"experiment_ids": ["{experiment}"], "max_results": "abc"}',
    ),
    Case(
        "max_results too many",
        "POST",
        "/api/2.0/mlflow/runs/search",
        b'{"experiment_ids": ["{experiment}"], "max_results": 50001}',
    ),
    Case(
        "max_results huge",
        "POST",
        "/api/2.0/mlflow/runs/search",
        b'{"experiment_ids": ["{experiment}"], "max_results": 100000000000000000000000}',
    ),
    Case(
        "order_by numbers",
        "POST",
        "/api/2.0/mlflow/runs/search",
        b'{"experiment_ids": ["{experiment}"], "order_by": [1]}',
    ),
    Case(
        "metric key a number",
        "POST",
        "/api/2.0/mlflow/runs/log-metric",
        b'{"run_id": "{run}", "key": 5, "value": 1, "timestamp": 1}',
    ),
    Case(
        "metric value a word",
        "POST",
        "/api/2.0/mlflow/runs/log-metric",
        b'{"run_id": "{run}", "key": "k", "value": "abc", "timestamp": 1}',
    ),
    Case(
        "metric timestamp missing",
        "POST",
        "/api/2.0/mlflow/runs/log-metric",
        b'{"run_id": "{run}", "key": "k", "value": 1}',
    ),
    Case(
        "model_id a number, key missing",
        "POST",
        "/api/2.0/mlflow/runs/log-metric",
        b'{"run_id": "{run}", "model_id": 5}',
    ),
    Case(
        "param value a number",
        "POST",
        "/api/2.0/mlflow/runs/log-parameter",
        b'{"run_id": "{run}", "key": "p", "value": 5}',
    ),
    Case("batch run_id a number", "POST", "/api/2.0/mlflow/runs/log-batch", b'{"run_id": 5, "metrics": [{"key": 1}]}'),
    Case("batch run_id missing", "POST", "/api/2.0/mlflow/runs/log-batch", b'{"metrics": [{"key": "k"}]}'),
    Case(
        "batch metric without value",
        "POST",
        "/api/2.0/mlflow/runs/log-batch",
        b'{"run_id": "{run}", "metrics": [{"key": "k"}]}',
    ),
    Case(
        "batch params an object", "POST", "/api/2.0/mlflow/runs/log-batch", b'{"run_id": "{run}", "params": {"a": 1}}'
    ),
    Case(
        "batch tag without key",
        "POST",
        "/api/2.0/mlflow/runs/log-batch",
        b'{"run_id": "{run}", "tags": [{"value": "v"}]}',
    ),
    Case(
        "tag value a list", "POST", "/api/2.0/mlflow/runs/set-tag", b'{"run_id": "{run}", "key": "t", "value": ["x"]}'
    ),
    Case("status a fraction", "POST", "/api/2.0/mlflow/runs/update", b'{"run_id": "{run}", "status": 5.5}'),
    Case("registered model name a number", "POST", "/api/2.0/mlflow/registered-models/create", b'{"name": 5}'),
    Case(
        "model version source a number", "POST", "/api/2.0/mlflow/model-versions/create", b'{"name": "m", "source": 5}'
    ),
    Case("experiment_id empty in the query", "GET", "/api/2.0/mlflow/experiments/get", query="experiment_id="),
    Case("experiment_id missing from the query", "GET", "/api/2.0/mlflow/experiments/get"),
    Case("run_id missing from the query", "GET", "/api/2.0/mlflow/runs/get"),
    Case(
        "an unknown query parameter",
        "GET",
        "/api/2.0/mlflow/experiments/get",
        query="experiment_id={experiment}&bogus=1",
    ),
    Case(
        "NaN, which only Python's json reads",
        "POST",
        "/api/2.0/mlflow/runs/search",
        b'{"experiment_ids": ["{experiment}"], "filter": NaN}',
    ),
    Case("view_type a word", "GET", "/api/2.0/mlflow/experiments/search", query="max_results=5&view_type=sometimes"),
]
GATEWAY_ONLY = [
    Case(
        "a write MLflow would apply in part",
        "POST",
        "/api/2.0/mlflow/runs/log-batch",
        b'{"run_id": "{run}", "params": [{"key": "p", "value": "v"}, {"key": "q", "value": 1}], "metrics": []}',
        gateway_only="MLflow logs the first param, stops at the second and answers 200",
    ),
    Case(
        "an array",
        "POST",
        "/api/2.0/mlflow/runs/delete",
        b"[1, 2]",
        gateway_only="MLflow fails with 500 Internal Server Error",
    ),
    Case(
        "log-batch not JSON",
        "POST",
        "/api/2.0/mlflow/runs/log-batch",
        b"not json",
        gateway_only="MLflow fails with 500: it measures the body it could not read",
    ),
    Case(
        "a number beyond a double",
        "POST",
        "/api/2.0/mlflow/runs/search",
        b'{"experiment_ids": ["{experiment}"], "max_results": 1e400}',
        gateway_only="MLflow reads Infinity and fails with 500; the gateway reads only finite JSON",
    ),
    Case(
        "experiment_ids with a number",
        "POST",
        "/api/2.0/mlflow/runs/search",
        b'{"experiment_ids": [1]}',
        gateway_only="MLflow searches a partly parsed message: the gateway cannot tell which experiments it names",
    ),
    Case(
        "an id field this route lacks",
        "POST",
        "/api/2.0/mlflow/runs/search",
        b'{"experiment_ids": ["{experiment}"], "experiment_id": 5}',
        gateway_only="MLflow ignores unknown fields; the gateway reads the id fields of every body with one type",
    ),
    Case(
        "a proto JSON name",
        "POST",
        "/api/2.0/mlflow/runs/search",
        b'{"experimentIds": ["{experiment}"]}',
        gateway_only="aliases are refused at any depth (docs/security.md): the guard reads snake_case names only",
    ),
    Case(
        "an unknown *_id field",
        "POST",
        "/api/2.0/mlflow/runs/search",
        b'{"experiment_ids": ["{experiment}"], "foo_id": "x"}',
        gateway_only="an id the guard has no rule for refuses the call (deny by default)",
    ),
    Case(
        "a nested id of the wrong type",
        "POST",
        "/api/2.0/mlflow/runs/log-batch",
        b'{"run_id": "{run}", "metrics": [{"key": "k", "value": 1, "timestamp": 1, "model_id": 5}]}',
        gateway_only="MLflow logs from a partly parsed message; the gateway must authorize every logged model",
    ),
    Case(
        "the run named twice",
        "GET",
        "/api/2.0/mlflow/runs/get",
        query="run_id={run}&run_id=0123456789abcdef0123456789abcdef",
        gateway_only="the gateway authorizes every run a call names (missing: 404); MLflow reads the first value",
        refused=(404, "RESOURCE_DOES_NOT_EXIST"),
    ),
]


def _send(session: requests.Session | None, base: str, case: Case, cast: Cast) -> requests.Response:
    fill = {"{run}": cast.run_id, "{experiment}": cast.experiment_id}
    body, query = case.body, case.query
    for placeholder, value in fill.items():
        body = body.replace(placeholder.encode(), value.encode()) if body is not None else None
        query = query.replace(placeholder, value)
    url = f"{base}{case.path}" + (f"?{query}" if query else "")
    headers = {"Content-Type": "application/json"} if body is not None else {}
    return (session or requests.Session()).request(case.method, url, data=body, headers=headers, timeout=30)


def _answer(response: requests.Response) -> tuple[int, str | None, str | None]:
    try:
        body = response.json()
    except ValueError:
        return (response.status_code, None, None)
    return (response.status_code, body.get("error_code"), body.get("message"))


@pytest.mark.parametrize("case", SAME, ids=[case.name for case in SAME])
def test_malformed_requests_get_the_stores_own_answer(stack: Stack, cast: Cast, case: Case) -> None:
    direct = _answer(_send(None, stack.stores["a"].url, case, cast))
    through = _answer(_send(cast.owner.http(stack), stack.url, case, cast))
    assert through == direct


@pytest.mark.parametrize("case", GATEWAY_ONLY, ids=[case.name for case in GATEWAY_ONLY])
def test_refusals_mlflow_does_not_make_are_the_listed_ones(stack: Stack, cast: Cast, case: Case) -> None:
    """The gateway refuses these itself; MLflow answers otherwise, for the reason given."""
    direct = _answer(_send(None, stack.stores["a"].url, case, cast))
    through = _answer(_send(cast.owner.http(stack), stack.url, case, cast))
    assert through[:2] == case.refused, through
    assert direct != through, f"MLflow answers alike now: move {case.name!r} to SAME"


# -- the same, with generated bodies --------------------------------------------------------------------------

ROUTES_TRIED = {
    "runs/log-metric": {"run_id": "{run}", "key": "m", "value": 1.5, "timestamp": 1, "step": 0},
    "runs/log-batch": {"run_id": "{run}", "metrics": [{"key": "m", "value": 1, "timestamp": 1}], "tags": []},
    "runs/set-tag": {"run_id": "{run}", "key": "t", "value": "v"},
    "runs/search": {"experiment_ids": ["{experiment}"], "max_results": 5, "filter": "", "order_by": []},
}
# Fields a generated body changes; ids get only the owner's own, or values of another type (a string naming
# another object would be a question of access, answered before validation as in MLflow's own auth app).
ID_FIELDS = ("run_id", "run_uuid", "experiment_ids", "model_id")
OTHER_FIELDS = ("key", "value", "timestamp", "step", "metrics", "params", "tags", "max_results", "filter", "order_by")
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**25),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["", "x", "5", "1.5", "abc"]),
)
ANY_VALUE = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=2)
        | st.dictionaries(st.sampled_from(["key", "value", "timestamp", "step", "x"]), inner, max_size=3)
    ),
    max_leaves=5,
)
NOT_A_STRING = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False)),
    lambda inner: st.lists(inner, max_size=2),
    max_leaves=3,
)


def _generated_body(route: str) -> st.SearchStrategy[dict[str, Any]]:
    base = ROUTES_TRIED[route]
    change = st.one_of(
        st.tuples(st.sampled_from(OTHER_FIELDS), ANY_VALUE),
        st.tuples(st.sampled_from(ID_FIELDS), NOT_A_STRING),
        st.tuples(st.sampled_from(sorted(base)), st.just(None)),  # dropped (null) or ...
        st.tuples(st.sampled_from(sorted(base)), st.just(_DROP)),  # ... absent
    )
    return st.lists(change, min_size=1, max_size=3).map(lambda changes: _changed(base, changes))


_DROP = object()


def _changed(base: dict[str, Any], changes: list[tuple[str, Any]]) -> dict[str, Any]:
    body = dict(base)
    for name, value in changes:
        if value is _DROP:
            body.pop(name, None)
        else:
            body[name] = value
    return body


def _refused_by_the_gateway_alone(route: str, body: dict[str, Any], filled: bytes, store_failed: bool) -> bool:
    """The listed refusals MLflow does not make: an id of another type (MLflow acts on a partly parsed
    message), a write MLflow would read only in part (it applies the part, or fails on it with 500), a read it
    would read only in part and fails on, and a parameter whose check raises in MLflow's reading of the request
    (`max_results: null`: it fails with 500; guard/malformed.py)."""
    import msgspec

    from gateway.core.route_table import declared
    from gateway.federation.mlflow_requests import crashing_parameter, unread_part
    from gateway.federation.schemas import RequestIds

    try:
        msgspec.convert(body, RequestIds)
    except msgspec.ValidationError:
        return True
    spec = declared(f"POST /mlflow/{route}")
    if store_failed and crashing_parameter(spec, body, filled, "") is not None:
        return True
    return (spec.writes or store_failed) and unread_part(spec, filled, "") is not None


@pytest.mark.parametrize("route", sorted(ROUTES_TRIED))
@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(data=st.data())
def test_generated_malformed_bodies_get_the_stores_own_answer(
    stack: Stack, cast: Cast, route: str, data: st.DataObject
) -> None:
    """Both answer alike (the status; error code and message of a refusal), or the gateway refuses in a listed way
    MLflow does not (GATEWAY_ONLY): where MLflow's checks let the body through (and its handler then acts on a
    partly parsed message around a mistyped id, or fails with 500). A failure the store answers with Flask's HTML
    500 page goes out as 502 INTERNAL_ERROR in MLflow's shape."""
    from gateway.core.route_table import declared
    from gateway.federation.mlflow_requests import store_refusal

    document = data.draw(_generated_body(route))
    raw = json.dumps(document).encode()
    case = Case(route, "POST", f"/api/2.0/mlflow/{route}", raw)
    direct = _answer(_send(None, stack.stores["a"].url, case, cast))
    through = _answer(_send(cast.owner.http(stack), stack.url, case, cast))
    if through == direct or (direct[0] == 200 and through[0] == 200):
        return
    if direct[:2] == (500, None) and through[:2] == (502, "INTERNAL_ERROR"):
        return  # the store's HTML page of its own failure, in MLflow's shape (store_answers.unshaped_error)
    filled = raw.replace(b"{run}", cast.run_id.encode()).replace(b"{experiment}", cast.experiment_id.encode())
    assert store_refusal(declared(f"POST /mlflow/{route}"), filled, "") is None, (raw, direct, through)
    assert through[:2] == (400, "INVALID_PARAMETER_VALUE"), (raw, direct, through)
    assert _refused_by_the_gateway_alone(route, document, filled, direct[0] >= 500), (raw, direct, through)


# -- successes of every kind MLflow answers: none becomes a 502 ------------------------------------------------


@dataclass(frozen=True)
class Success:
    """A call MLflow answers with a success, sent once through the gateway and once to the store directly."""

    route: str  # as MLflow registers it ("METHOD /path", parameters as {name}): tests/support/mlflow_surface.py
    method: str
    path: str  # with "{unique}", a fresh name for each side, where the call makes something
    params: dict[str, str] | None = None
    body: bytes | None = None
    headers: dict[str, str] | None = None
    same_body: bool = True  # the two answers' bodies are equal (not where they name what each side made)


@dataclass(frozen=True)
class Made:
    """What the successes read: a file in the owner's run, a model version on it, a logged model and a trace with
    files of their own, made through the gateway."""

    experiment_id: str
    run_id: str
    model_name: str
    model_id: str
    trace_id: str


FILE = b"<html><body>not a page of the gateway's</body></html>"
ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"
# Forwarded routes whose MLflow handler answers other than JSON that no call here can make succeed: the AI
# gateway's invocations, where the store calls an LLM provider.
NOT_EXERCISED = frozenset(
    f"{spec.method} {normalised(spec.path)}"
    for spec in FORWARDED_ROUTES
    if spec.absolute and spec.path.startswith("/gateway/") and spec.action is Action.INVOKE
)


@pytest.fixture(scope="module")
def made(stack: Stack, cast: Cast) -> Made:
    session = stack.http("team-a")
    run_folder = f"{cast.experiment_id}/{cast.run_id}/artifacts"
    for name in ("page.html", "model/MLmodel"):
        uploaded = session.put(f"{stack.url}{ARTIFACTS}/{run_folder}/{name}", data=FILE)
        assert uploaded.status_code == 200, uploaded.text
    model_name = unique("answers")
    created = session.post(f"{stack.url}/api/2.0/mlflow/registered-models/create", json={"name": model_name})
    assert created.status_code == 200, created.text
    version = session.post(
        f"{stack.url}/api/2.0/mlflow/model-versions/create",
        json={"name": model_name, "source": f"mlflow-artifacts:/{run_folder}/model", "run_id": cast.run_id},
    )
    assert version.status_code == 200, version.text
    logged = session.post(f"{stack.url}/api/2.0/mlflow/logged-models", json={"experiment_id": cast.experiment_id})
    assert logged.status_code == 200, logged.text
    model = logged.json()["model"]["info"]
    location = model["artifact_uri"].removeprefix("mlflow-artifacts:").lstrip("/")
    assert session.put(f"{stack.url}{ARTIFACTS}/{location}/page.html", data=FILE).status_code == 200
    info = {
        "trace_id": f"tr-{uuid.uuid4().hex}",
        "trace_location": {"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": cast.experiment_id}},
        "request_time": "2026-12-03T00:00:00Z",
        "state": "OK",
    }
    started = session.post(f"{stack.url}/api/3.0/mlflow/traces", json={"trace": {"trace_info": info}})
    assert started.status_code == 200, started.text
    trace = started.json()["trace"]["trace_info"]
    folder = trace["tags"]["mlflow.artifactLocation"].removeprefix("mlflow-artifacts:").lstrip("/")
    assert session.put(f"{stack.url}{ARTIFACTS}/{folder}/traces.json", data=b'{"spans": []}').status_code == 200
    return Made(cast.experiment_id, cast.run_id, model_name, model["model_id"], trace["trace_id"])


def _otlp_export(experiment_id: str) -> Success:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    export = ExportTraceServiceRequest()
    span = export.resource_spans.add().scope_spans.add().spans.add()
    span.trace_id, span.span_id, span.name = uuid.uuid4().bytes, b"\x01" * 8, "answers"
    span.start_time_unix_nano, span.end_time_unix_nano = 1, 2
    return Success(
        "POST /v1/traces",
        "POST",
        "/v1/traces",
        body=export.SerializeToString(),
        headers={"Content-Type": "application/x-protobuf", "x-mlflow-experiment-id": experiment_id},
    )


def _successes(made: Made) -> list[Success]:
    """One call of each forwarded route MLflow answers other than JSON (a file, an empty answer, text, protobuf),
    and of each way it answers JSON (a proto message, an empty one, a compact trace listing, Flask's jsonify,
    FastAPI's models)."""
    run_folder = f"{made.experiment_id}/{made.run_id}/artifacts"
    artifact = "PUT {}/mlflow-artifacts/artifacts/{{artifact_path}}"
    download = "GET {}/mlflow-artifacts/artifacts/{{artifact_path}}"
    trace_file = {"request_id": made.trace_id}
    return [
        # Uploads: MLflow's artifact router answers 200 with no body and no Content-Type (5e664ad).
        Success(artifact.format("/api/2.0"), "PUT", f"{ARTIFACTS}/{run_folder}/up-{{unique}}.bin", body=FILE),
        Success(
            artifact.format("/ajax-api/2.0"),
            "PUT",
            f"/ajax-api/2.0/mlflow-artifacts/artifacts/{run_folder}/up-{{unique}}.bin",
            body=FILE,
        ),
        # The UI's upload button: 200 application/json with an empty body.
        Success(
            "POST /ajax-api/2.0/mlflow/upload-artifact",
            "POST",
            "/ajax-api/2.0/mlflow/upload-artifact",
            params={"run_uuid": made.run_id, "path": "ui-{unique}.txt"},
            body=FILE,
            headers={"Content-Type": "application/octet-stream"},
        ),
        # Downloads: a file's bytes with its guessed type, as an attachment.
        Success(download.format("/api/2.0"), "GET", f"{ARTIFACTS}/{run_folder}/page.html"),
        Success(
            download.format("/ajax-api/2.0"), "GET", f"/ajax-api/2.0/mlflow-artifacts/artifacts/{run_folder}/page.html"
        ),
        Success("GET /get-artifact", "GET", "/get-artifact", params={"run_id": made.run_id, "path": "page.html"}),
        Success(
            "GET /model-versions/get-artifact",
            "GET",
            "/model-versions/get-artifact",
            params={"name": made.model_name, "version": "1", "path": "MLmodel"},
        ),
        Success(
            "GET /ajax-api/2.0/mlflow/logged-models/{model_id}/artifacts/files",
            "GET",
            f"/ajax-api/2.0/mlflow/logged-models/{made.model_id}/artifacts/files",
            params={"artifact_file_path": "page.html"},
        ),
        Success(
            "GET /ajax-api/2.0/mlflow/get-trace-artifact",
            "GET",
            "/ajax-api/2.0/mlflow/get-trace-artifact",
            params=trace_file,
        ),
        Success(
            "GET /ajax-api/3.0/mlflow/get-trace-artifact",
            "GET",
            "/ajax-api/3.0/mlflow/get-trace-artifact",
            params=trace_file,
        ),
        # The version as text/html; an OTLP export's protobuf.
        Success("GET /version", "GET", "/version"),
        _otlp_export(made.experiment_id),
        # The UI's proxy to a deployments server: without one, MLflow answers an empty listing to either method.
        Success(
            "GET /ajax-api/2.0/mlflow/gateway-proxy",
            "GET",
            "/ajax-api/2.0/mlflow/gateway-proxy",
            params={"gateway_path": "api/2.0/endpoints/"},
        ),
        Success(
            "POST /ajax-api/2.0/mlflow/gateway-proxy",
            "POST",
            "/ajax-api/2.0/mlflow/gateway-proxy",
            body=json.dumps({"gateway_path": "gateway/chat/invocations", "json_data": {}}).encode(),
            headers={"Content-Type": "application/json"},
        ),
        # JSON, each way MLflow makes it: an empty proto message (`{}`), a message, a compact trace listing,
        # a file's deletion, Flask's jsonify (GraphQL), FastAPI's models.
        Success(
            "POST /api/2.0/mlflow/runs/set-tag",
            "POST",
            "/api/2.0/mlflow/runs/set-tag",
            body=json.dumps({"run_id": made.run_id, "key": "answers", "value": "{unique}"}).encode(),
            headers={"Content-Type": "application/json"},
        ),
        Success(
            "DELETE /api/2.0/mlflow/registered-models/delete-tag",
            "DELETE",
            "/api/2.0/mlflow/registered-models/delete-tag",
            body=json.dumps({"name": made.model_name, "key": "absent"}).encode(),
            headers={"Content-Type": "application/json"},
        ),
        Success("GET /api/2.0/mlflow/runs/get", "GET", "/api/2.0/mlflow/runs/get", params={"run_id": made.run_id}),
        Success(
            "POST /api/3.0/mlflow/traces/search",
            "POST",
            "/api/3.0/mlflow/traces/search",
            body=json.dumps(
                {
                    "locations": [
                        {"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": made.experiment_id}}
                    ],
                    "max_results": 1,
                }
            ).encode(),
            headers={"Content-Type": "application/json"},
            same_body=False,
        ),
        Success(
            "DELETE /api/2.0/mlflow-artifacts/artifacts/{artifact_path}",
            "DELETE",
            f"{ARTIFACTS}/{run_folder}/up-{{unique}}.bin",
        ),
        Success(
            "POST /graphql",
            "POST",
            "/graphql",
            body=json.dumps(
                {
                    "query": "query q($input: MlflowGetRunInput) "
                    "{ mlflowGetRun(input: $input) { run { info { status } } } }",
                    "operationName": "q",
                    "variables": {"input": {"runId": made.run_id}},
                }
            ).encode(),
            headers={"Content-Type": "application/json"},
        ),
        Success("GET /api/3.0/mlflow/mcp-servers", "GET", "/api/3.0/mlflow/mcp-servers", same_body=False),
        Success("GET /gateway/mlflow/v1/models", "GET", "/gateway/mlflow/v1/models", same_body=False),
    ]


def _sent(session: requests.Session, base: str, success: Success, unique_name: str) -> requests.Response:
    fill = {"{unique}": unique_name}
    path, body, params = success.path, success.body, dict(success.params or {})
    for placeholder, value in fill.items():
        path = path.replace(placeholder, value)
        body = body.replace(placeholder.encode(), value.encode()) if body is not None else None
        params = {key: item.replace(placeholder, value) for key, item in params.items()}
    return session.request(
        success.method, f"{base}{path}", params=params, data=body, headers=success.headers or {}, timeout=60
    )


def _kind(response: requests.Response) -> str:
    return response.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()


def test_every_kind_of_success_mlflow_answers_passes_through(stack: Stack, made: Made) -> None:
    """Each call answered by the store with a success reaches the client as that success, with the store's
    status, Content-Type (or none) and body: a 502 here is the gateway taking MLflow's own answer for a proxy's
    page."""
    wrong = []
    for success in _successes(made):
        through = _sent(stack.http("team-a"), stack.url, success, unique("through"))
        direct = _sent(requests.Session(), stack.stores["a"].url, success, unique("direct"))
        assert 200 <= direct.status_code < 300, (success.route, direct.status_code, direct.text[:300])
        # The Content-Type as the store sent it, or none where it sent none (the artifact upload's 200): the
        # gateway invented application/json there before.
        seen = (through.status_code, through.headers.get("Content-Type"), through.content if success.same_body else b"")
        expected = (
            direct.status_code,
            direct.headers.get("Content-Type"),
            direct.content if success.same_body else b"",
        )
        if seen != expected:
            wrong.append(f"{success.route}: through {seen[:2]} {through.text[:200]!r}, direct {expected[:2]}")
    assert wrong == [], wrong


def test_every_route_mlflow_answers_other_than_json_is_exercised(made: Made) -> None:
    """A forwarded route whose MLflow handler can succeed with something other than JSON (tests/support/
    mlflow_surface.py reads them from MLflow's code) has a call above, or a reason it cannot succeed here."""
    from tests.support.mlflow_surface import JSON, answer_forms

    forms = answer_forms()
    exercised = {success.route for success in _successes(made)}
    missing = []
    for spec in FORWARDED_ROUTES:
        for path in spec.paths():
            route = f"{spec.method} {normalised(path)}"
            upstream = f"{spec.method} {normalised(spec.upstream_prefix + spec.path)}"
            if forms[upstream] != {JSON} and upstream not in NOT_EXERCISED and route not in exercised:
                missing.append(route)
    assert missing == [], f"no call here succeeds on these routes MLflow answers other than JSON: {missing}"
    assert set(NOT_EXERCISED) <= {f"{s.method} {normalised(s.upstream_prefix + s.path)}" for s in FORWARDED_ROUTES}


@pytest.mark.parametrize("method", ["HEAD", "OPTIONS"])
def test_a_head_or_options_request_of_a_forwarded_route_is_no_502(stack: Stack, made: Made, method: str) -> None:
    """MLflow's Flask answers HEAD and OPTIONS of its routes itself (200 and an empty body, the OPTIONS one
    text/html); through the gateway neither is taken for a proxy's page."""
    for path, params in (
        ("/api/2.0/mlflow/runs/get", {"run_id": made.run_id}),
        (f"{ARTIFACTS}/{made.experiment_id}/{made.run_id}/artifacts/page.html", {}),
        ("/version", {}),
    ):
        answer = stack.http("team-a").request(method, f"{stack.url}{path}", params=params, timeout=60)
        assert answer.status_code != 502 and answer.status_code < 500, (method, path, answer.status_code, answer.text)


def test_a_conditional_or_partial_download_passes_through(stack: Stack, made: Made) -> None:
    """MLflow answers a download's If-None-Match with 304 and a Range with 206 when it honours them; whatever it
    answers reaches the client as it came."""
    url = f"{stack.url}/get-artifact"
    params = {"run_id": made.run_id, "path": "page.html"}
    whole = stack.http("team-a").get(url, params=params, timeout=60)
    assert whole.status_code == 200 and whole.content == FILE
    for headers in ({"If-None-Match": whole.headers.get("ETag", '"x"')}, {"Range": "bytes=0-5"}):
        answer = stack.http("team-a").get(url, params=params, headers=headers, timeout=60)
        assert answer.status_code in (200, 206, 304), (headers, answer.status_code, answer.text)
        if answer.status_code == 206:
            assert answer.content == FILE[:6]


# -- a store that does not serve artifacts -----------------------------------------------------------------------


@dataclass(frozen=True)
class Unserved:
    """A workspace `bare` whose store runs with `--no-serve-artifacts` (its runs' files at `mlflow-artifacts:`
    locations, which its artifact routes refuse with 503), behind a gateway of its own on a database of its own."""

    store: MlflowServer
    gateway: GatewayProcess
    experiment_id: str
    run_id: str

    def http(self) -> requests.Session:
        session = requests.Session()
        session.headers.update({"Authorization": f"Bearer {ADMIN_TOKEN}", "X-MLFLOW-WORKSPACE": "bare"})
        return session


@pytest.fixture(scope="module")
def unserved(stack: Stack) -> Iterator[Unserved]:
    store = MlflowServer(stack.workdir / "store-unserved", serve_artifacts=False).start(timeout=180)
    try:
        with own_gateway(
            stack.database_url,
            stack.workdir / "fedgate-unserved.toml",
            f"""
[account]
id = "7001"
[stores.bare]
url = "{store.url}"
[[workspaces]]
name = "bare"
id = "6001"
store = "bare"
""",
            prefix="unserved",
        ) as own:
            gateway = own.process
            session = requests.Session()
            session.headers.update({"Authorization": f"Bearer {ADMIN_TOKEN}", "X-MLFLOW-WORKSPACE": "bare"})
            created = session.post(
                f"{gateway.url}/api/2.0/mlflow/experiments/create", json={"name": unique("unserved")}, timeout=60
            )
            assert created.status_code == 200, created.text
            experiment_id = created.json()["experiment_id"]
            run = session.post(
                f"{gateway.url}/api/2.0/mlflow/runs/create", json={"experiment_id": experiment_id}, timeout=60
            )
            assert run.status_code == 200, run.text
            info = run.json()["run"]["info"]
            assert info["artifact_uri"].startswith("mlflow-artifacts:/"), info
            yield Unserved(store, gateway, experiment_id, info["run_id"])
    finally:
        store.stop()


def _unserved_call(route: str, made: Unserved) -> tuple[str, str, dict[str, str], bytes | None]:
    """(method, path, query, body) of a call of `route` ("METHOD /path" as MLflow registers it) on `made`'s run."""
    method, template = route.split(" ", 1)
    folder = f"{made.experiment_id}/{made.run_id}/artifacts"
    path = template.replace("{artifact_path}", f"{folder}/file.txt")
    if template.endswith("/mlflow-artifacts/artifacts"):
        return method, path, {"path": folder}, None
    if "/mpu/" in template:
        body = {"path": "file.txt", "num_parts": 1, "upload_id": "u1", "parts": []}
        return method, path, {}, json.dumps(body).encode()
    return method, path, {}, b"bytes of a file" if method == "PUT" else None


def test_every_artifact_route_of_a_store_that_does_not_serve_artifacts_answers_501(unserved: Unserved) -> None:
    """MLflow answers 503 itself on every artifact route (read from its code) when it runs with
    `--no-serve-artifacts`: text/html from its Flask handlers, `{"detail": ...}` from its artifact router. The store
    is up and will say the same on every retry; through the gateway it is 501 NOT_IMPLEMENTED in MLflow's shape,
    naming the workspace and the fix, and without Retry-After (before: 503 TEMPORARILY_UNAVAILABLE "not an MLflow
    error" with Retry-After for the Flask ones, the router's JSON without an error code for the others)."""
    routes = sorted(artifact_serving_routes())
    assert any(route.startswith("PUT ") for route in routes) and any(" /ajax-api/" in route for route in routes)
    wrong = []
    for route in routes:
        method, path, query, body = _unserved_call(route, unserved)
        direct = requests.request(method, f"{unserved.store.url}{path}", params=query, data=body, timeout=60)
        assert direct.status_code == 503 and "--serve-artifacts" in direct.text, (route, direct.status_code)
        through = unserved.http().request(method, f"{unserved.gateway.url}{path}", params=query, data=body, timeout=60)
        document = through.json() if _kind(through) == "application/json" else {}
        seen = (through.status_code, document.get("error_code"), "Retry-After" in through.headers)
        message = str(document.get("message", ""))
        if seen != (501, "NOT_IMPLEMENTED", False) or "'bare'" not in message or "--serve-artifacts" not in message:
            wrong.append(f"{route}: {seen} {through.text[:300]!r}")
    assert wrong == [], wrong


def test_the_stock_client_is_told_at_once_that_the_store_does_not_serve_artifacts(
    unserved: Unserved, tmp_path: Any
) -> None:
    """log_artifact (a small file and a 4 MB one, which the store refuses before reading it), list_artifacts and
    download_artifacts (of the run's `mlflow-artifacts:` location: by `runs:/`, the client reports any failure as
    a path that does not exist) of the stock client fail at once with the gateway's 501 NOT_IMPLEMENTED: MLflow's client
    does not retry a 501, where it retried the 503 for minutes. Run calls of the workspace still succeed."""
    from mlflow import MlflowClient
    from mlflow.artifacts import download_artifacts

    run_root = f"mlflow-artifacts:/{unserved.experiment_id}/{unserved.run_id}/artifacts"
    small, large = tmp_path / "small.txt", tmp_path / "large.bin"
    small.write_text("a small file")
    large.write_bytes(b"x" * (4 * 1024 * 1024))
    with stock_client_env(
        MLFLOW_TRACKING_URI=unserved.gateway.url,
        MLFLOW_TRACKING_TOKEN=ADMIN_TOKEN,
        MLFLOW_HTTP_REQUEST_MAX_RETRIES="0",
    ):
        mlflow.set_tracking_uri(unserved.gateway.url)
        mlflow.set_workspace("bare")
        client = MlflowClient(unserved.gateway.url)
        refused = []
        for call in (
            lambda: client.log_artifact(unserved.run_id, str(small)),
            lambda: client.log_artifact(unserved.run_id, str(large)),
            lambda: client.list_artifacts(unserved.run_id),
            lambda: download_artifacts(artifact_uri=f"{run_root}/small.txt", dst_path=str(tmp_path / "out")),
        ):
            with pytest.raises(requests.HTTPError) as caught:
                call()
            assert caught.value.response is not None, caught.value
            refused.append((caught.value.response.status_code, caught.value.response.json()["error_code"]))
        assert refused == [(501, "NOT_IMPLEMENTED")] * 4
        client.log_param(unserved.run_id, "still", "served")
        assert client.get_run(unserved.run_id).data.params == {"still": "served"}
