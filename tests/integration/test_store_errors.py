"""Calls a store fails on, or answers outside MLflow's error shape, through the gateway to real mlflow servers.

Every answer is an MLflow error (`error_code`, `message`) with a status that says whose the failure is: a request
the store cannot read is refused before it (400), a store's page is answered in MLflow's shape, and the gateway
itself never answers 500. Each case asks the store directly first, to show what the gateway stands between.
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import pytest
import requests

from gateway.core.errors import mlflow_error
from tests.conftest import Stack
from tests.support.identity import unique

pytestmark = pytest.mark.integration
TIMEOUT = 60


def _experiment(stack: Stack) -> str:
    made = stack.http("team-a").post(
        f"{stack.url}/api/2.0/mlflow/experiments/create", json={"name": unique("store-errors")}, timeout=TIMEOUT
    )
    assert made.status_code == 200, made.text
    return str(made.json()["experiment_id"])


def _trace(stack: Stack, experiment_id: str) -> str:
    trace_id = f"tr-{uuid.uuid4().hex}"
    info = {
        "trace_id": trace_id,
        "trace_location": {"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": experiment_id}},
        "request_time": "2026-12-04T00:00:00Z",
        "state": "OK",
    }
    started = stack.http("team-a").post(
        f"{stack.url}/api/3.0/mlflow/traces", json={"trace": {"trace_info": info}}, timeout=TIMEOUT
    )
    assert started.status_code == 200, started.text
    return trace_id


def _assessment(trace_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "assessment": {
            "assessment_name": "correct",
            "trace_id": trace_id,
            "source": {"source_type": "HUMAN", "source_id": "reviewer"},
            "feedback": {"value": True},
            **fields,
        }
    }


def _mlflow_error(answer: requests.Response) -> dict[str, Any]:
    assert answer.headers["Content-Type"].startswith("application/json"), (answer.status_code, answer.text[:300])
    document = answer.json()
    assert isinstance(document.get("error_code"), str) and isinstance(document.get("message"), str), document
    return dict(document)


def test_a_trace_search_naming_an_empty_experiment_id_is_refused(stack: Stack) -> None:
    """MLflow 3.17.2's v2 trace search reads `experiment_ids` as a repeated field and its store takes `int()` of each:
    `?experiment_ids=` answered the store's 500 (`invalid literal for int()`) to a reader of the whole workspace,
    whom the guard lets search without naming an experiment. Refused before the store, whoever calls."""
    direct = requests.get(f"{stack.stores['a'].url}/api/2.0/mlflow/traces", params={"experiment_ids": ""}, timeout=60)
    assert (direct.status_code, direct.json()["error_code"]) == (500, "INTERNAL_ERROR"), direct.text
    experiment_id = _experiment(stack)
    session = stack.http("team-a")
    for query in ("experiment_ids=", "experiment_ids=%20"):
        answer = session.get(f"{stack.url}/api/2.0/mlflow/traces?{query}", timeout=TIMEOUT)
        assert answer.status_code == 400, (query, answer.status_code, answer.text)
        assert _mlflow_error(answer)["error_code"] == "INVALID_PARAMETER_VALUE"
    named = session.get(f"{stack.url}/api/2.0/mlflow/traces", params={"experiment_ids": experiment_id}, timeout=60)
    assert named.status_code == 200, named.text


def test_an_assessment_id_another_trace_holds_is_refused_as_taken(stack: Stack) -> None:
    """MLflow 3.17.2 keys an assessment by its id alone and takes a client's `assessment_id` on create: one that
    another trace holds answered the store's 500 ("constraint violation"), which the client retried for minutes.
    Through the gateway it is 400 RESOURCE_ALREADY_EXISTS, naming neither the other trace nor its experiment, and
    the other trace's assessment is left as it was; a new id of the caller's choosing is still taken."""
    experiment_id = _experiment(stack)
    first, second = _trace(stack, experiment_id), _trace(stack, experiment_id)
    session = stack.http("team-a")
    made = session.post(f"{stack.url}/api/3.0/mlflow/traces/{first}/assessments", json=_assessment(first), timeout=60)
    assert made.status_code == 200, made.text
    taken = made.json()["assessment"]["assessment_id"]
    direct = requests.post(
        f"{stack.stores['a'].url}/api/3.0/mlflow/traces/{first}/assessments",
        json=_assessment(first, assessment_id=taken),
        timeout=TIMEOUT,
    )
    assert (direct.status_code, direct.json()["error_code"]) == (500, "INTERNAL_ERROR"), direct.text
    for trace_id in (second, first):
        answer = session.post(
            f"{stack.url}/api/3.0/mlflow/traces/{trace_id}/assessments",
            json=_assessment(trace_id, assessment_id=taken, feedback={"value": False}),
            timeout=TIMEOUT,
        )
        assert answer.status_code == 400, (trace_id, answer.status_code, answer.text)
        error = _mlflow_error(answer)
        assert error["error_code"] == "RESOURCE_ALREADY_EXISTS", error
        assert first not in error["message"] and experiment_id not in error["message"], error
    kept = session.get(f"{stack.url}/api/3.0/mlflow/traces/{first}/assessments/{taken}", timeout=TIMEOUT)
    assert kept.status_code == 200 and kept.json()["assessment"]["feedback"]["value"] is True, kept.text
    chosen = f"a-{uuid.uuid4().hex}"
    fresh = session.post(
        f"{stack.url}/api/3.0/mlflow/traces/{second}/assessments",
        json=_assessment(second, assessment_id=chosen),
        timeout=TIMEOUT,
    )
    assert fresh.status_code == 200 and fresh.json()["assessment"]["assessment_id"] == chosen, fresh.text


def test_a_stores_error_page_reaches_the_client_as_an_mlflow_error(stack: Stack) -> None:
    """`get-artifact` without `path`: MLflow 3.17.2 indexes `request.args["path"]` unchecked, and Flask answers 400
    with its HTML page, which went out as it came (a client parsing the error read no JSON). It keeps its status,
    as MLflow's error BAD_REQUEST naming the workspace; a file's bytes still go out as they are."""
    session = stack.http("team-a")
    run = session.post(
        f"{stack.url}/api/2.0/mlflow/runs/create", json={"experiment_id": _experiment(stack)}, timeout=TIMEOUT
    )
    assert run.status_code == 200, run.text
    run_id = run.json()["run"]["info"]["run_id"]
    direct = requests.get(f"{stack.stores['a'].url}/get-artifact", params={"run_id": run_id}, timeout=TIMEOUT)
    assert (direct.status_code, direct.headers["Content-Type"]) == (400, "text/html; charset=utf-8"), direct.text
    answer = session.get(f"{stack.url}/get-artifact", params={"run_id": run_id}, timeout=TIMEOUT)
    assert answer.status_code == 400, answer.text
    assert _mlflow_error(answer) == mlflow_error(
        "BAD_REQUEST", "The store of workspace 'team-a' answered 400 with an HTML page."
    )
    info = answer.json()
    assert "<" not in info["message"]
    content = bytes(range(256)) * 4
    artifact = f"{run.json()['run']['info']['experiment_id']}/{run_id}/artifacts/bytes.bin"
    put = session.put(f"{stack.url}/api/2.0/mlflow-artifacts/artifacts/{artifact}", data=content, timeout=TIMEOUT)
    assert put.status_code == 200, put.text
    got = session.get(f"{stack.url}/get-artifact", params={"run_id": run_id, "path": "bytes.bin"}, timeout=TIMEOUT)
    assert (got.status_code, got.content) == (200, content)


@pytest.mark.parametrize("key", [[], {}, ["mlflow.artifactLocation"]], ids=["list", "object", "list-of-storage-tag"])
@pytest.mark.parametrize("version", ["2.0", "3.0"])
def test_a_trace_tag_key_that_is_no_string_is_the_stores_refusal(stack: Stack, key: Any, version: str) -> None:
    """The guard's check of storage tags looked each key up in a set, and a key the client sent as a list or an
    object raised inside the gateway: 500 "Internal error in the gateway". It names no storage tag; the store's
    own refusal (400, the parameter's type) answers it."""
    trace_id = _trace(stack, _experiment(stack))
    answer = stack.http("team-a").patch(
        f"{stack.url}/api/{version}/mlflow/traces/{trace_id}/tags", json={"key": key, "value": "v"}, timeout=60
    )
    assert answer.status_code == 400, answer.text
    assert _mlflow_error(answer)["error_code"] == "INVALID_PARAMETER_VALUE"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/2.0/mlflow/registered-models/create", {"name": "held\u0000name"}),
        ("/api/2.0/mlflow/runs/delete", {"run_id": "\u0000"}),
    ],
)
def test_a_name_or_id_holding_a_nul_character_is_refused_before_the_store(
    stack: Stack, path: str, body: dict[str, str]
) -> None:
    """The gateway's database cannot hold or look up text with a NUL character: a registered model of such a name
    was made by the store, then undone when its owner could not be recorded, and answered 503 with Retry-After, as
    was a run deletion whose run state could not be noted; the client retried both for minutes, the same answer each
    time. Refused (400) before the store acts: the store holds no such model."""
    answer = stack.http("team-a").post(f"{stack.url}{path}", json=body, timeout=TIMEOUT)
    assert answer.status_code == 400, answer.text
    error = _mlflow_error(answer)
    assert error["error_code"] == "INVALID_PARAMETER_VALUE" and "NUL" in error["message"], error
    assert "Retry-After" not in answer.headers
    models = requests.get(
        f"{stack.stores['a'].url}/api/2.0/mlflow/registered-models/search", params={"max_results": 1000}, timeout=60
    )
    assert all("\u0000" not in model["name"] for model in models.json().get("registered_models", [])), models.text


def test_the_v2_trace_routes_refuse_what_the_store_cannot_record(stack: Stack) -> None:
    """MLflow 3.17.2's deprecated v2 trace start takes `int()` of its experiment id (as its v3 start does of the
    trace location's), and its trace end maps an absent or unknown status to no trace state: each answered the
    store's 500 to an account admin, whom the guard passes. Refused before the store (400), whoever calls; a
    well-formed start and end go through."""
    store, session = stack.stores["a"].url, stack.http("team-a")
    direct = requests.post(f"{store}/api/2.0/mlflow/traces", json={"timestamp_ms": 1}, timeout=TIMEOUT)
    assert direct.status_code == 500, direct.text
    for body in ({"timestamp_ms": 1}, {"experiment_id": "", "timestamp_ms": 1}):
        refused = session.post(f"{stack.url}/api/2.0/mlflow/traces", json=body, timeout=TIMEOUT)
        assert refused.status_code == 400, (body, refused.text)
        assert _mlflow_error(refused)["error_code"] == "INVALID_PARAMETER_VALUE"
    started = session.post(
        f"{stack.url}/api/2.0/mlflow/traces", json={"experiment_id": _experiment(stack), "timestamp_ms": 1}, timeout=60
    )
    assert started.status_code == 200, started.text
    request_id = started.json()["trace_info"]["request_id"]
    direct = requests.patch(f"{store}/api/2.0/mlflow/traces/{request_id}", json={"timestamp_ms": 2}, timeout=60)
    assert direct.status_code == 500, direct.text
    for body in ({"timestamp_ms": 2}, {"timestamp_ms": 2, "status": "DONE"}, {"timestamp_ms": 2, "status": []}):
        refused = session.patch(f"{stack.url}/api/2.0/mlflow/traces/{request_id}", json=body, timeout=TIMEOUT)
        assert refused.status_code == 400, (body, refused.text)
        assert _mlflow_error(refused)["error_code"] == "INVALID_PARAMETER_VALUE"
    ended = session.patch(
        f"{stack.url}/api/2.0/mlflow/traces/{request_id}", json={"timestamp_ms": 2, "status": "OK"}, timeout=TIMEOUT
    )
    assert ended.status_code == 200, ended.text
    # A v3 start without an experiment to start the trace in: the store's `int()` of none, 500 as well.
    direct = requests.post(f"{store}/api/3.0/mlflow/traces", json={"trace": {"trace_info": {}}}, timeout=TIMEOUT)
    assert direct.status_code == 500, direct.text
    unplaced = {"trace_info": {"trace_location": {"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {}}}}
    for body in ({"trace": " "}, {"trace": {"trace_info": {}}}, {"trace": unplaced}):
        refused = session.post(f"{stack.url}/api/3.0/mlflow/traces", json=body, timeout=TIMEOUT)
        assert refused.status_code == 400, (body, refused.text)
        assert _mlflow_error(refused)["error_code"] == "INVALID_PARAMETER_VALUE"


PAST_INT64 = "9" * 30


@pytest.mark.parametrize(
    ("method", "path", "params", "body"),
    [
        ("GET", "/api/2.0/mlflow/experiments/get", {"experiment_id": PAST_INT64}, None),
        ("POST", "/api/2.0/mlflow/runs/create", None, {"experiment_id": PAST_INT64}),
        ("POST", "/api/2.0/mlflow/runs/search", None, {"experiment_ids": [PAST_INT64]}),
        ("GET", "/api/3.0/mlflow/scorers/list", {"experiment_id": PAST_INT64}, None),
        ("GET", "/api/2.0/mlflow/model-versions/get", {"name": "any", "version": PAST_INT64}, None),
    ],
)
def test_an_id_past_a_64_bit_integer_is_refused_before_the_store(
    stack: Stack, method: str, path: str, params: dict[str, str] | None, body: dict[str, Any] | None
) -> None:
    """An experiment id or a model version in digits past a 64-bit integer: MLflow 3.17.2 takes `int()` of it and
    its database cannot hold it, 500 "Python int too large to convert to SQLite INTEGER" on every route naming
    one, to a caller the guard passes. Refused (400), whoever calls."""
    direct = requests.request(method, f"{stack.stores['a'].url}{path}", params=params, json=body, timeout=TIMEOUT)
    assert direct.status_code == 500, direct.text
    answer = stack.http("team-a").request(method, f"{stack.url}{path}", params=params, json=body, timeout=TIMEOUT)
    assert answer.status_code == 400, answer.text
    assert _mlflow_error(answer)["error_code"] == "INVALID_PARAMETER_VALUE"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/2.0/mlflow/experiments/search", {"max_results": []}),
        ("/api/2.0/mlflow/experiments/search", {"view_type": {}}),
        ("/api/2.0/mlflow/logged-models/search", {"max_results": ["1"], "experiment_ids": ["0"]}),
    ],
)
def test_a_search_of_a_value_of_the_wrong_type_is_the_callers_error(
    stack: Stack, path: str, body: dict[str, Any]
) -> None:
    """MLflow 3.17.2 stops parsing a request at a value of the wrong type and goes on with what it read, and these
    searches then failed with Flask's HTML 500. The request is the caller's error: 400 INVALID_PARAMETER_VALUE
    naming the field (judged once the store failed, so a search that passes is never parsed for it)."""
    direct = requests.post(f"{stack.stores['a'].url}{path}", json=body, timeout=TIMEOUT)
    assert direct.status_code == 500 and direct.headers["Content-Type"].startswith("text/html"), direct.text
    answer = stack.http("team-a").post(f"{stack.url}{path}", json=body, timeout=TIMEOUT)
    assert answer.status_code == 400, answer.text
    error = _mlflow_error(answer)
    assert error["error_code"] == "INVALID_PARAMETER_VALUE" and next(iter(body)) in error["message"], error


def _offset_token(offset: int) -> str:
    return base64.b64encode(json.dumps({"offset": offset}).encode()).decode()


SCORER = {"experiment_id": "{e}", "name": "missing"}
EVENT = {"entity": "MODEL_VERSION", "action": "CREATED"}
MODEL_JSON = {"artifact_path": "model", "flavors": {}, "utc_time_created": "2026-12-04 00:00:00.000000"}

# (method, path, where the bad value goes, the call's fields with {e}, {r}, {d} for the experiment, run and dataset,
# the bad value, a good one); "json" fields go in the body, "params" in the query.
MALFORMED: list[tuple[str, str, str, dict[str, Any], str, Any, Any]] = [
    ("POST", "/api/2.0/mlflow/runs/log-batch", "json", {"run_id": "{r}"}, "metrics", None, []),
    (
        "POST",
        "/api/2.0/mlflow/runs/log-batch",
        "json",
        {"run_id": "{r}"},
        "params",
        ["p"],
        [{"key": "p", "value": "1"}],
    ),
    ("POST", "/api/2.0/mlflow/runs/search", "json", {"experiment_ids": ["{e}"]}, "max_results", None, 5),
    ("POST", "/api/2.0/mlflow/traces", "json", {"experiment_id": "{e}", "timestamp_ms": 1}, "tags", ["t"], []),
    ("POST", "/api/2.0/mlflow/runs/log-model", "json", {"run_id": "{r}"}, "model_json", "-1", "MODEL"),
    ("POST", "/api/3.0/mlflow/datasets/create", "json", {"name": "{n}"}, "tags", "-1", '{"a": "b"}'),
    ("PATCH", "/api/3.0/mlflow/datasets/{d}/tags", "json", {}, "tags", "[]", '{"a": "b"}'),
    ("POST", "/api/3.0/mlflow/datasets/{d}/records", "json", {}, "records", '{"a": 1}', '[{"inputs": {"q": "x"}}]'),
    (
        "POST",
        "/api/3.0/mlflow/scorers/register",
        "json",
        {"experiment_id": "{e}", "name": "s"},
        "serialized_scorer",
        "[]",
        "{}",
    ),
    ("GET", "/api/2.0/mlflow/traces", "params", {}, "experiment_ids", "abc", "{e}"),
    (
        "POST",
        "/api/2.0/mlflow/runs/search",
        "json",
        {"experiment_ids": ["{e}"]},
        "page_token",
        "\u00b2",
        _offset_token(1),
    ),
    (
        "POST",
        "/api/2.0/mlflow/runs/search",
        "json",
        {"experiment_ids": ["{e}"]},
        "page_token",
        "MTIz",
        _offset_token(1),
    ),
    ("GET", "/api/2.0/mlflow/registered-models/search", "params", {}, "page_token", "\u00b2", _offset_token(1)),
    (
        "GET",
        "/api/3.0/mlflow/label-schemas/list",
        "params",
        {"experiment_id": "{e}"},
        "page_token",
        "MTIz",
        _offset_token(1),
    ),
    ("POST", "/api/2.0/mlflow/logged-models/search", "json", {"experiment_ids": ["{e}"]}, "page_token", "abc", None),
    ("GET", "/api/3.0/mlflow/datasets/{d}/records", "params", {}, "page_token", "abc", "5"),
    ("GET", "/api/3.0/mlflow/datasets/{d}/records", "params", {}, "page_token", "9" * 30, "5"),
    ("GET", "/api/3.0/mlflow/datasets/{d}/records", "params", {}, "max_results", "-1", "0"),
    (
        "POST",
        "/api/3.0/mlflow/traces/search",
        "json",
        {},
        "locations",
        [{"mlflow_experiment": {}}],
        [{"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": "{e}"}}],
    ),
    ("PUT", "/api/3.0/mlflow/scorers/online-config", "json", SCORER, "sample_rate", "abc", 0.5),
    ("PATCH", "/api/2.0/mlflow/webhooks/missing", "json", {}, "events", [{"entity": "PROMPT"}], [EVENT]),
    ("POST", "/api/2.0/mlflow/webhooks/missing/test", "json", {}, "event", {}, EVENT),
]
# The good value's answer where it is not 200: the scorer and webhook these name do not exist (the store reads the
# bad value before it looks for them).
GOOD_STATUS = {"sample_rate": 404, "events": 404, "event": 404}


@pytest.mark.parametrize(
    ("method", "path", "place", "fields", "name", "bad", "good"),
    MALFORMED,
    ids=[f"{case[1]}-{case[4]}-{case[5]!r}" for case in MALFORMED],
)
def test_a_malformed_value_the_store_fails_on_is_refused_before_it(
    stack: Stack, method: str, path: str, place: str, fields: dict[str, Any], name: str, bad: Any, good: Any
) -> None:
    """A value MLflow 3.17.2 fails on with its own 500 (in its error shape or Flask's HTML page: `int(None)` of a
    null `max_results`, `.get` of a list item or of JSON text that is no object, `base64.b64decode` of a page token
    outside ASCII, `int('abc')` of a v2 trace search's experiment id, `float('abc')` of a scoring config's sample
    rate, a webhook event naming no entity or action it knows): the caller's error, 400
    INVALID_PARAMETER_VALUE naming the parameter, refused before the store, to an account admin too. The same call
    with a value the store reads goes through."""
    session = stack.http("team-a")
    experiment_id = _experiment(stack)
    run = session.post(f"{stack.url}/api/2.0/mlflow/runs/create", json={"experiment_id": experiment_id}, timeout=60)
    assert run.status_code == 200, run.text
    run_id = run.json()["run"]["info"]["run_id"]
    dataset = session.post(
        f"{stack.url}/api/3.0/mlflow/datasets/create",
        json={"name": unique("ds"), "experiment_ids": [experiment_id]},
        timeout=TIMEOUT,
    )
    assert dataset.status_code == 200, dataset.text
    names = {"e": experiment_id, "r": run_id, "d": dataset.json()["dataset"]["dataset_id"], "n": unique("ds")}

    def filled(value: Any) -> Any:
        if value == "MODEL":
            return json.dumps({**MODEL_JSON, "run_id": run_id})
        if isinstance(value, str):
            for key, named in names.items():
                value = value.replace(f"{{{key}}}", named)
        if isinstance(value, list):
            return [filled(item) for item in value]
        if isinstance(value, dict):
            return {key: filled(item) for key, item in value.items()}
        return value

    def call(caller: requests.Session, base: str, value: Any) -> requests.Response:
        sent = {key: filled(item) for key, item in fields.items()}
        if value is not None or place == "json":
            sent[name] = filled(value)
        return caller.request(method, f"{base}{filled(path)}", timeout=TIMEOUT, **{place: sent})

    direct = call(requests.Session(), stack.stores["a"].url, bad)
    assert direct.status_code == 500, (direct.status_code, direct.text[:300])
    answer = call(session, stack.url, bad)
    assert answer.status_code == 400, answer.text
    error = _mlflow_error(answer)
    assert error["error_code"] == "INVALID_PARAMETER_VALUE" and f"'{name}'" in error["message"], error
    passed = call(session, stack.url, good)
    assert passed.status_code == GOOD_STATUS.get(name, 200), passed.text


def test_a_missing_datasets_records_are_not_found(stack: Stack) -> None:
    """MLflow 3.17.2's dataset records read has no error catcher: a store with workspaces refuses a dataset that is
    not there with RESOURCE_DOES_NOT_EXIST, which the handler answers as Flask's HTML 500 (out as 502
    INTERNAL_ERROR, which the stock client retried for minutes). Through the gateway it is 404
    RESOURCE_DOES_NOT_EXIST, as MLflow answers a read of the dataset itself; a dataset that is there is read."""
    central = stack.stores["central"].url
    upstream = {"X-MLFLOW-WORKSPACE": "upstream-c"}
    missing = f"d-{uuid.uuid4().hex}"
    direct = requests.get(f"{central}/api/3.0/mlflow/datasets/{missing}/records", headers=upstream, timeout=TIMEOUT)
    assert direct.status_code == 500 and direct.headers["Content-Type"].startswith("text/html"), direct.text[:300]
    itself = requests.get(f"{central}/api/3.0/mlflow/datasets/{missing}", headers=upstream, timeout=TIMEOUT)
    assert (itself.status_code, itself.json()["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST"), itself.text
    session = stack.http("team-c")
    answer = session.get(f"{stack.url}/api/3.0/mlflow/datasets/{missing}/records", timeout=TIMEOUT)
    assert answer.status_code == 404, (answer.status_code, answer.text[:300])
    error = _mlflow_error(answer)
    assert error["error_code"] == "RESOURCE_DOES_NOT_EXIST" and missing in error["message"], error
    made = session.post(
        f"{stack.url}/api/2.0/mlflow/experiments/create", json={"name": unique("records")}, timeout=TIMEOUT
    )
    assert made.status_code == 200, made.text
    dataset = session.post(
        f"{stack.url}/api/3.0/mlflow/datasets/create",
        json={"name": unique("ds"), "experiment_ids": [made.json()["experiment_id"]]},
        timeout=TIMEOUT,
    )
    assert dataset.status_code == 200, dataset.text
    dataset_id = dataset.json()["dataset"]["dataset_id"]
    found = session.get(f"{stack.url}/api/3.0/mlflow/datasets/{dataset_id}/records", timeout=TIMEOUT)
    assert (found.status_code, json.loads(found.json()["records"])) == (200, []), found.text
