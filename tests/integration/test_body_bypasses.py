"""Issue findings 1 and 2, as an attacker sent them: the store never acts on an id the guard did not authorize.

Bob may use team-a; Alice's experiment, run, logged model and traces are hidden from him. Each request
below once reached the store (JSON escapes in keys, proto JSON names, ids nested in the body); now each
is refused, and Alice's objects are checked unchanged through her own eyes afterwards.
"""

# ruff: noqa: F811  (the fixtures imported from test_access_control are redefined as parameters)
from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from gateway.core.errors import mlflow_error
from tests.conftest import Stack
from tests.integration.test_access_control import Org, Owned, alices_work, org  # noqa: F401
from tests.support.identity import unique

pytestmark = pytest.mark.integration


def send(session: requests.Session, method: str, url: str, raw: str) -> requests.Response:
    return session.request(method, url, data=raw.encode(), headers={"Content-Type": "application/json"})


def bobs_run(stack: Stack, org: Org) -> tuple[str, str]:
    bob = org.bob.http(stack)
    experiment_id = bob.post(f"{stack.url}/api/2.0/mlflow/experiments/create", json={"name": unique("bob")}).json()[
        "experiment_id"
    ]
    run = bob.post(f"{stack.url}/api/2.0/mlflow/runs/create", json={"experiment_id": experiment_id}).json()
    return experiment_id, run["run"]["info"]["run_id"]


def alices_run(stack: Stack, org: Org, run_id: str) -> dict[str, Any]:
    response = org.alice.http(stack).get(f"{stack.url}/api/2.0/mlflow/runs/get", params={"run_id": run_id})
    assert response.status_code == 200, response.text
    return dict(response.json()["run"])


@pytest.mark.parametrize(
    "route,template",
    [
        ("runs/delete", '{{"run_uuid": "{own}", "run\\u0049d": "{hidden}"}}'),  # runId, escaped: an alias
        ("runs/delete", '{{"run_uuid": "{own}", "run\\u005fid": "{hidden}"}}'),  # run_id, escaped
        ("runs/update", '{{"run_uuid": "{own}", "run\\u005fid": "{hidden}", "run_name": "pwned"}}'),
        ("runs/set-tag", '{{"run_uuid": "{own}", "run\\u005fid": "{hidden}", "key": "pwned", "value": "1"}}'),
        ("runs/delete-tag", '{{"run_uuid": "{own}", "run\\u005fid": "{hidden}", "key": "mlflow.runName"}}'),
        (
            "runs/log-metric",
            '{{"run_uuid": "{own}", "run\\u005fid": "{hidden}", "key": "pwned", "value": 1, "timestamp": 1}}',
        ),
        ("runs/log-parameter", '{{"run_uuid": "{own}", "run\\u005fid": "{hidden}", "key": "pwned", "value": "1"}}'),
        (
            "runs/log-batch",
            '{{"run_uuid": "{own}", "run\\u005fid": "{hidden}", "tags": [{{"key": "pwned", "value": "1"}}]}}',
        ),
        ("runs/restore", '{{"run_uuid": "{own}", "run\\u005fid": "{hidden}"}}'),
        ("runs/log-inputs", '{{"run_uuid": "{own}", "run\\u005fid": "{hidden}", "datasets": []}}'),
    ],
)
def test_an_escaped_or_aliased_run_id_never_reaches_a_hidden_run(
    stack: Stack, org: Org, alices_work: Owned, route: str, template: str
) -> None:
    _, own = bobs_run(stack, org)
    before = alices_run(stack, org, alices_work.run_id)
    raw = template.format(own=own, hidden=alices_work.run_id)
    response = send(org.bob.http(stack), "POST", f"{stack.url}/api/2.0/mlflow/{route}", raw)
    assert response.status_code in (400, 404), response.text
    assert response.json()["error_code"] in ("INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST")
    assert "Traceback" not in response.text
    after = alices_run(stack, org, alices_work.run_id)
    assert after["info"]["lifecycle_stage"] == before["info"]["lifecycle_stage"] == "active"
    assert after["data"] == before["data"]
    assert after["info"].get("run_name") == before["info"].get("run_name")


@pytest.fixture(scope="module")
def alices_logged_model(stack: Stack, org: Org, alices_work: Owned) -> str:
    response = org.alice.http(stack).post(
        f"{stack.url}/api/2.0/mlflow/logged-models",
        json={"experiment_id": alices_work.experiment_id, "name": unique("alice-lm")},
    )
    assert response.status_code == 200, response.text
    return str(response.json()["model"]["info"]["model_id"])


def alices_model_metrics(stack: Stack, org: Org, model_id: str) -> list[Any]:
    response = org.alice.http(stack).get(f"{stack.url}/api/2.0/mlflow/logged-models/{model_id}")
    assert response.status_code == 200, response.text
    return list(response.json()["model"].get("data", {}).get("metrics", []))


def test_ids_nested_in_a_body_are_authorized(
    stack: Stack, org: Org, alices_work: Owned, alices_logged_model: str
) -> None:
    experiment_id, own = bobs_run(stack, org)
    bob = org.bob.http(stack)
    hidden_model = alices_logged_model
    metric = {"key": "pwned", "value": 1, "timestamp": 1, "step": 0, "model_id": hidden_model}
    attempts = [
        ("runs/log-batch", {"run_id": own, "metrics": [metric]}),
        ("runs/log-metric", {"run_id": own, "key": "pwned", "value": 1, "timestamp": 1, "model_id": hidden_model}),
        ("runs/log-inputs", {"run_id": own, "models": [{"model_id": hidden_model}]}),
        ("runs/outputs", {"run_id": own, "models": [{"model_id": hidden_model, "step": 0}]}),
    ]
    for route, body in attempts:
        response = bob.post(f"{stack.url}/api/2.0/mlflow/{route}", json=body)
        assert response.status_code == 404, (route, response.text)
        assert response.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    assert alices_model_metrics(stack, org, hidden_model) == []
    # The same calls on Bob's own logged model go through: nested ids are checked, not forbidden.
    mine = bob.post(
        f"{stack.url}/api/2.0/mlflow/logged-models", json={"experiment_id": experiment_id, "name": unique("bob-lm")}
    ).json()["model"]["info"]["model_id"]
    logged = bob.post(
        f"{stack.url}/api/2.0/mlflow/runs/log-batch", json={"run_id": own, "metrics": [{**metric, "model_id": mine}]}
    )
    assert logged.status_code == 200, logged.text
    # A logged model created from a hidden run, the key escaped: refused before the store sees it.
    raw = f'{{"experiment_id": "{experiment_id}", "source\\u005frun_id": "{alices_work.run_id}"}}'
    assert send(bob, "POST", f"{stack.url}/api/2.0/mlflow/logged-models", raw).status_code == 404


def test_only_admins_choose_an_artifact_location_however_the_key_is_written(stack: Stack, org: Org) -> None:
    bob = org.bob.http(stack)
    for key in ("artifact_location", "artifact\\u005flocation", "artifactLocation"):
        raw = f'{{"name": "{unique("loc")}", "{key}": "file:///tmp/elsewhere"}}'
        response = send(bob, "POST", f"{stack.url}/api/2.0/mlflow/experiments/create", raw)
        assert response.status_code in (400, 403), (key, response.text)


def test_trace_bodies_cannot_reach_a_hidden_experiment(stack: Stack, org: Org, alices_work: Owned) -> None:
    mine, _ = bobs_run(stack, org)
    bob = org.bob.http(stack)

    def trace(experiment_id: str, info_key: str = "trace_info", trace_id: str | None = None) -> dict[str, Any]:
        info = {
            "trace_id": trace_id or f"tr-{unique('t').replace('-', '')}",
            "trace_location": {"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": experiment_id}},
            "request_time": "2026-12-02T00:00:00Z",
            "state": "OK",
        }
        return {"trace": {info_key: info}}

    url = f"{stack.url}/api/3.0/mlflow/traces"
    assert bob.post(url, json=trace(alices_work.experiment_id, "traceInfo")).status_code == 400
    assert bob.post(url, json=trace(alices_work.experiment_id)).status_code == 404
    created = bob.post(url, json=trace(mine))
    assert created.status_code == 200, created.text
    # Alice's trace: Bob may not merge into it by naming its id in a trace of his own experiment.
    alice = org.alice.http(stack)
    hers = alice.post(url, json=trace(alices_work.experiment_id))
    assert hers.status_code == 200, hers.text
    her_id = hers.json()["trace"]["trace_info"]["trace_id"]
    body = trace(mine, trace_id=her_id)
    body["trace"]["trace_info"]["tags"] = {"pwned": "1"}
    assert bob.post(url, json=body).status_code == 404
    tags = alice.get(f"{stack.url}/api/3.0/mlflow/traces/{her_id}").json()["trace"]["trace_info"].get("tags", {})
    assert "pwned" not in tags
    hidden = alices_work.experiment_id
    # Search: a second, escaped location naming Alice's experiment is read like any other.
    raw = (
        f'{{"locations": [{{"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {{"experiment_id": "{mine}"}}}},'
        f' {{"type": "MLFLOW_EXPERIMENT", "mlflow_\\u0065xperiment": {{"experiment_id": "{hidden}"}}}}],'
        f' "max_results": 100}}'
    )
    found = send(bob, "POST", f"{stack.url}/api/3.0/mlflow/traces/search", raw)
    assert found.status_code == 404 or all(
        t["trace_location"]["mlflow_experiment"]["experiment_id"] == mine for t in found.json().get("traces", [])
    ), found.text


def test_otlp_spans_cannot_be_added_to_a_hidden_trace(stack: Stack, org: Org, alices_work: Owned) -> None:
    import gzip
    import uuid

    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    mine, _ = bobs_run(stack, org)
    alice, bob = org.alice.http(stack), org.bob.http(stack)
    hex_id = uuid.uuid4().hex
    info = {
        "trace_id": f"tr-{hex_id}",
        "trace_location": {
            "type": "MLFLOW_EXPERIMENT",
            "mlflow_experiment": {"experiment_id": alices_work.experiment_id},
        },
        "request_time": "2026-12-02T00:00:00Z",
        "state": "OK",
    }
    assert alice.post(f"{stack.url}/api/3.0/mlflow/traces", json={"trace": {"trace_info": info}}).status_code == 200

    def info_of_hers() -> dict[str, Any]:
        response = alice.get(f"{stack.url}/api/3.0/mlflow/traces/tr-{hex_id}")
        assert response.status_code == 200, response.text
        return dict(response.json()["trace"]["trace_info"])

    before = info_of_hers()

    def spans(trace_id: bytes) -> bytes:
        request = ExportTraceServiceRequest()
        span = request.resource_spans.add().scope_spans.add().spans.add()
        span.trace_id, span.span_id, span.name = trace_id, b"\x01" * 8, "pwned"
        span.start_time_unix_nano, span.end_time_unix_nano = 1, 2
        return gzip.compress(request.SerializeToString())

    headers = {
        "Content-Type": "application/x-protobuf",
        "Content-Encoding": "gzip",
        "x-mlflow-experiment-id": mine,
    }
    hidden = bob.post(f"{stack.url}/v1/traces", data=spans(bytes.fromhex(hex_id)), headers=headers)
    assert hidden.status_code == 404, hidden.text
    # Nor may the traces an export creates be linked to a hidden run.
    linked = bob.post(
        f"{stack.url}/v1/traces",
        data=spans(uuid.uuid4().bytes),
        headers={**headers, "x-mlflow-run-id": alices_work.run_id},
    )
    assert linked.status_code == 404, linked.text
    own = bob.post(f"{stack.url}/v1/traces", data=spans(uuid.uuid4().bytes), headers=headers)
    assert own.status_code == 200, own.text
    assert info_of_hers() == before


@pytest.mark.parametrize("entry", ["v3 set-tag", "v2 set-tag", "v3 start", "otlp root attribute"])
def test_a_trace_tag_cannot_point_the_store_at_another_traces_files(
    stack: Stack, org: Org, alices_work: Owned, entry: str
) -> None:
    """`mlflow.artifactLocation` is where the store reads a trace's data and attachments from
    (`get-trace-artifact`). Set on a trace of Bob's own to the location of Alice's hidden trace, the store
    answered Bob with her trace data and her attachment; MLflow's set-tag handler lets the tag through, and its
    OTLP ingest writes root-span `mlflow.traceTag.*` attributes as tags unchecked."""
    import uuid

    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    mine, _ = bobs_run(stack, org)
    alice, bob = org.alice.http(stack), org.bob.http(stack)

    def info(experiment_id: str, hex_id: str) -> dict[str, Any]:
        return {
            "trace_id": f"tr-{hex_id}",
            "trace_location": {"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": experiment_id}},
            "request_time": "2026-12-03T00:00:00Z",
            "state": "OK",
        }

    started = alice.post(
        f"{stack.url}/api/3.0/mlflow/traces",
        json={"trace": {"trace_info": info(alices_work.experiment_id, uuid.uuid4().hex)}},
    )
    assert started.status_code == 200, started.text
    hers = started.json()["trace"]["trace_info"]
    location = hers["tags"]["mlflow.artifactLocation"]
    folder = location.removeprefix("mlflow-artifacts:").lstrip("/")
    attachment = str(uuid.uuid4())
    for name, data in (
        ("traces.json", b'{"spans": [], "note": "alice trace data"}'),
        (f"attachments/{attachment}", b"alice attachment"),
    ):
        uploaded = alice.put(f"{stack.url}/api/2.0/mlflow-artifacts/artifacts/{folder}/{name}", data=data)
        assert uploaded.status_code == 200, uploaded.text
    reads = ({"request_id": hers["trace_id"]}, {"request_id": hers["trace_id"], "path": attachment})
    assert [alice.get(f"{stack.url}/ajax-api/3.0/mlflow/get-trace-artifact", params=q).content for q in reads] == [
        b'{"spans": [], "note": "alice trace data"}',
        b"alice attachment",
    ]

    hex_id = uuid.uuid4().hex
    trace_id = f"tr-{hex_id}"
    if entry == "v3 start":
        body = {"trace": {"trace_info": {**info(mine, hex_id), "tags": {"mlflow.artifactLocation": location}}}}
        refused = bob.post(f"{stack.url}/api/3.0/mlflow/traces", json=body)
    elif entry == "otlp root attribute":
        export = ExportTraceServiceRequest()
        span = export.resource_spans.add().scope_spans.add().spans.add()
        span.trace_id, span.span_id, span.name = bytes.fromhex(hex_id), b"\x02" * 8, "root"
        span.start_time_unix_nano, span.end_time_unix_nano = 1, 2
        attribute = span.attributes.add()
        attribute.key, attribute.value.string_value = "mlflow.traceTag.mlflow.artifactLocation", location
        headers = {"Content-Type": "application/x-protobuf", "x-mlflow-experiment-id": mine}
        refused = bob.post(f"{stack.url}/v1/traces", data=export.SerializeToString(), headers=headers)
    else:
        started = bob.post(f"{stack.url}/api/3.0/mlflow/traces", json={"trace": {"trace_info": info(mine, hex_id)}})
        assert started.status_code == 200, started.text
        refused = bob.patch(
            f"{stack.url}/api/{entry[1]}.0/mlflow/traces/{trace_id}/tags",
            json={"key": "mlflow.artifactLocation", "value": location},
        )
    assert refused.status_code == 400, refused.text
    assert refused.json() == mlflow_error(
        "INVALID_PARAMETER_VALUE", "Tag 'mlflow.artifactLocation' is immutable and cannot be set on a trace."
    )
    for query in ({"request_id": trace_id}, {"request_id": trace_id, "path": attachment}):
        read = bob.get(f"{stack.url}/ajax-api/3.0/mlflow/get-trace-artifact", params=query)
        assert b"alice" not in read.content, read.content
    if entry.endswith("set-tag"):  # a tag of Bob's own choosing still reaches his trace
        tagged = bob.patch(
            f"{stack.url}/api/{entry[1]}.0/mlflow/traces/{trace_id}/tags", json={"key": "n", "value": "1"}
        )
        assert tagged.status_code == 200, tagged.text


def test_spellings_of_a_storage_tag_are_refused_as_the_store_would_read_them(stack: Stack, org: Org) -> None:
    """A few examples of the property of tests/unit/test_trace_tags.py against a real store: a key the store reads as
    `mlflow.artifactLocation` however the JSON spells it is refused; a look-alike the store keeps as a tag of its own
    reaches it as sent and leaves the trace's data where it was."""
    import uuid

    experiment_id, _ = bobs_run(stack, org)
    bob = org.bob.http(stack)
    trace_id = f"tr-{uuid.uuid4().hex}"
    info = {
        "trace_id": trace_id,
        "trace_location": {"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": experiment_id}},
        "request_time": "2026-12-03T00:00:00Z",
        "state": "OK",
    }
    started = bob.post(f"{stack.url}/api/3.0/mlflow/traces", json={"trace": {"trace_info": info}})
    assert started.status_code == 200, started.text
    own_location = started.json()["trace"]["trace_info"]["tags"]["mlflow.artifactLocation"]
    elsewhere = "mlflow-artifacts:/0/traces/tr-0/artifacts"
    url = f"{stack.url}/api/3.0/mlflow/traces/{trace_id}/tags"
    for raw in (
        '{"key": "mlflow.\\u0061rtifactLocation", "value": "%s"}',
        '{"key": "\\u006d\\u006c\\u0066\\u006c\\u006f\\u0077.trace.spansLocation", "value": "%s"}',
        '{"key": "team", "key": "mlflow.artifactLocation", "value": "%s"}',
    ):
        refused = send(bob, "PATCH", url, raw % elsewhere)
        assert refused.status_code == 400, (raw, refused.text)
        assert refused.json()["message"].endswith("is immutable and cannot be set on a trace."), refused.text
    look_alikes = ["MLflow.artifactLocation", " mlflow.artifactLocation", "mlflow.\u0430rtifactLocation"]
    for key in look_alikes:
        tagged = bob.patch(url, json={"key": key, "value": elsewhere})
        assert tagged.status_code == 200, (key, tagged.text)
    tags = bob.get(f"{stack.url}/api/3.0/mlflow/traces/{trace_id}").json()["trace"]["trace_info"]["tags"]
    assert tags["mlflow.artifactLocation"] == own_location
    assert {key: tags.get(key) for key in look_alikes} == dict.fromkeys(look_alikes, elsewhere)


@pytest.mark.parametrize(
    "raw",
    [
        '{"max_results": 1000, "view_type": 99}',  # an enum number MLflow does not know
        '{"max_results": 1000, "order_by": [1]}',  # a number where MLflow wants text
    ],
)
def test_a_search_keeps_its_narrowing_whatever_mlflow_cannot_parse(
    stack: Stack, org: Org, alices_work: Owned, raw: str
) -> None:
    """The guard ANDs `experiment_id IN (what bob may read)` into an experiment search's filter. MLflow stops
    parsing a body at the first value it cannot parse and searches with the fields read before it: the store once
    answered these with every experiment of the workspace, Alice's included."""
    bob = org.bob.http(stack)
    own, _ = bobs_run(stack, org)
    plain = bob.post(f"{stack.url}/api/2.0/mlflow/experiments/search", json={"max_results": 1000})
    assert plain.status_code == 200, plain.text
    listed = {e["experiment_id"] for e in plain.json()["experiments"]}
    assert own in listed and alices_work.experiment_id not in listed
    response = send(bob, "POST", f"{stack.url}/api/2.0/mlflow/experiments/search", raw)
    assert response.status_code == 400, response.text
    assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert alices_work.experiment_id not in response.text


def test_a_trace_id_used_again_is_judged_by_the_trace_that_has_it_now(
    stack: Stack, org: Org, alices_work: Owned
) -> None:
    """A v3 trace's id is the client's (`tr-<hex of the OTel trace id>`, which a `traceparent` a caller sends to a
    traced app chooses): deleted, it can be given again to a trace of another experiment. The guard kept the
    experiment it had first found for the id, so Bob, who made, read and deleted `tr-X` in his own experiment,
    then read Alice's trace `tr-X` in her hidden experiment and moved it, spans and all, into his own. (Alice may
    edit Bob's experiment, which he shared with her: her trace was judged there too.)"""
    import uuid

    mine, _ = bobs_run(stack, org)
    alice, bob = org.alice.http(stack), org.bob.http(stack)
    shared = bob.patch(
        f"{stack.url}/api/2.0/permissions/experiments/{mine}",
        json={"access_control_list": [{"user_name": org.alice.name, "permission_level": "CAN_EDIT"}]},
    )
    assert shared.status_code == 200, shared.text
    trace_id = f"tr-{uuid.uuid4().hex}"
    url = f"{stack.url}/api/3.0/mlflow/traces"

    def trace(experiment_id: str, tags: dict[str, str]) -> dict[str, Any]:
        location = {"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": experiment_id}}
        info = {"trace_id": trace_id, "trace_location": location, "request_time": "2026-12-04T00:00:00Z"}
        return {"trace": {"trace_info": {**info, "state": "OK", "tags": tags}}}

    assert bob.post(url, json=trace(mine, {"whose": "bob"})).status_code == 200
    assert bob.get(f"{url}/{trace_id}").status_code == 200
    deleted = bob.post(f"{url}/delete-traces", json={"experiment_id": mine, "request_ids": [trace_id]})
    assert deleted.status_code == 200, deleted.text
    assert deleted.json().get("traces_deleted") == 1, deleted.text
    hers = alice.post(url, json=trace(alices_work.experiment_id, {"whose": "alice", "secret": "alice's"}))
    assert hers.status_code == 200, hers.text

    read = bob.get(f"{url}/{trace_id}")
    assert read.status_code == 404, read.text
    assert "alice's" not in read.text
    moved = bob.post(url, json=trace(mine, {"whose": "bob"}))
    assert moved.status_code == 404, moved.text
    info = alice.get(f"{url}/{trace_id}").json()["trace"]["trace_info"]
    assert info["trace_location"]["mlflow_experiment"]["experiment_id"] == alices_work.experiment_id
    assert info["tags"]["whose"] == "alice"


def test_an_empty_value_beside_an_id_in_a_query_is_refused(stack: Stack, org: Org, alices_work: Owned) -> None:
    """The guard reads an empty query value as naming nothing and checks the other values; MLflow reads a single
    field's first value, empty or not. `scorers/list?experiment_id=&experiment_id=<Bob's>` was checked as a listing
    of Bob's experiment, and the store, given no experiment, listed the scorers of every experiment: Alice's judge,
    its instructions with it. The same query of v2 trace search failed in the store with a 500."""
    from mlflow.genai.judges import make_judge

    secret = f"alice_judge_{unique('j').replace('-', '_')}"
    judge = make_judge(
        name=secret,
        instructions="Is {{ outputs }} what Alice's customers want?",
        model="openai:/gpt-4o-mini",
        feedback_value_type=bool,
    )
    registered = requests.post(  # on the store itself: where a judge's model may call is not what this is about
        f"{stack.stores['a'].url}/api/3.0/mlflow/scorers/register",
        json={
            "experiment_id": alices_work.experiment_id,
            "name": secret,
            "serialized_scorer": json.dumps(judge.model_dump()),
        },
        timeout=30,
    )
    assert registered.status_code == 200, registered.text
    own, _ = bobs_run(stack, org)
    bob = org.bob.http(stack)
    url = f"{stack.url}/api/3.0/mlflow/scorers/list"
    plain = bob.get(url, params={"experiment_id": own})
    assert plain.status_code == 200, plain.text
    assert secret not in plain.text
    assert bob.get(url, params={"experiment_id": alices_work.experiment_id}).status_code == 404
    for query in ([("experiment_id", ""), ("experiment_id", own)], [("experiment_id", own), ("experiment_id", "")]):
        response = bob.get(url, params=query)
        assert response.status_code == 400, response.text
        assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"
        assert secret not in response.text
    traces = bob.get(f"{stack.url}/api/2.0/mlflow/traces", params=[("experiment_ids", ""), ("experiment_ids", own)])
    assert traces.status_code == 400, traces.text
    assert traces.json()["error_code"] == "INVALID_PARAMETER_VALUE"


def test_an_id_in_a_field_the_call_does_not_read_is_refused(stack: Stack, org: Org, alices_work: Owned) -> None:
    """The guard reads `experiment_id` and `experiment_ids` alike as naming a call's experiments; MLflow's request
    message of `issues/search` has only `experiment_id` and ignores the other. `{"experiment_ids": ["<Bob's>"]}`
    was checked as a search of Bob's experiment, and the store, given no experiment, answered the issues of every
    experiment: Alice's, description and all."""
    alice, bob = org.alice.http(stack), org.bob.http(stack)
    secret = unique("alice-issue")
    created = alice.post(
        f"{stack.url}/api/3.0/mlflow/issues",
        json={"experiment_id": alices_work.experiment_id, "name": secret, "description": "Alice's customers' data"},
    )
    assert created.status_code == 200, created.text
    own, _ = bobs_run(stack, org)
    url = f"{stack.url}/api/3.0/mlflow/issues/search"
    plain = bob.post(url, json={"experiment_id": own})
    assert plain.status_code == 200, plain.text
    assert secret not in plain.text
    assert bob.post(url, json={"experiment_id": alices_work.experiment_id}).status_code == 404
    for body in ({"experiment_ids": [own]}, {"experiment_id": "", "experiment_ids": [own]}):
        response = bob.post(url, json=body)
        assert response.status_code == 400, response.text
        assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"
        assert secret not in response.text
    # A run's deletion names its run in `run_id` alone: `run_uuid` stands for nothing there.
    _, run = bobs_run(stack, org)
    refused = bob.post(f"{stack.url}/api/2.0/mlflow/runs/delete", json={"run_id": run, "run_uuid": run})
    assert refused.status_code == 400, refused.text
    assert bob.post(f"{stack.url}/api/2.0/mlflow/runs/delete", json={"run_id": run}).status_code == 200
