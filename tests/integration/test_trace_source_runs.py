"""Every way a trace call can name the run that recorded its trace or assessment: what the store records, and the
gateway's answer. Differential, against MLflow 3.17.2's own server (sqlite) and through the gateway.

The store links a trace to a run by its `mlflow.sourceRun` metadata (a search of the run's traces answers it) and by
an OTLP export's `x-mlflow-run-id` header, and an assessment to a run by its `mlflow.assessment.sourceRunId`
metadata: deleting the run deletes every assessment whose stored metadata JSON holds
`"mlflow.assessment.sourceRunId": "<run id>"` anywhere, found with SQL LIKE (so also after the escaped quote of a key
`x"mlflow.assessment.sourceRunId`). Each spelling below (keys in another case, with spaces, escaped, repeated,
after a quote; lists with the key twice; containers given twice; tags instead of metadata; OTLP span and resource
attributes) is sent as raw bytes, so repeated JSON keys reach each parser as written:

1. to the store directly, with a run of the store's: is the trace (or assessment) linked to that run?
2. through the gateway, by a reader of the run who may not change it, into an experiment of their own.

Every spelling the store links must be refused by the gateway, and nothing the gateway let through may be linked to
the reader's target run on the store: its traces searched by run, its assessments still there once the run is
deleted.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from tests.conftest import Stack
from tests.support.identity import Admin, unique

pytestmark = pytest.mark.integration
TIMEOUT = 60
SOURCE_RUN = "mlflow.sourceRun"
ASSESSMENT_RUN = "mlflow.assessment.sourceRunId"
STAMP = "2026-12-04T00:00:00Z"
SOURCE = {"source_type": "HUMAN", "source_id": "someone"}


@dataclass
class Target:
    """Where calls go: the store directly, or the gateway as one caller."""

    url: str
    session: requests.Session

    def call(self, method: str, path: str, body: str | bytes | None = None, **headers: str) -> requests.Response:
        data = body.encode() if isinstance(body, str) else body
        sent = {"Content-Type": "application/json", **headers} if data is not None else headers
        return self.session.request(method, self.url + path, data=data, headers=sent, timeout=TIMEOUT)

    def ok(self, method: str, path: str, body: str | None = None) -> dict[str, Any]:
        answer = self.call(method, path, body)
        assert answer.status_code == 200, (path, answer.text)
        return dict(answer.json())

    def experiment(self) -> str:
        return str(
            self.ok("POST", "/api/2.0/mlflow/experiments/create", json.dumps({"name": unique("runs")}))["experiment_id"]
        )

    def run(self, experiment_id: str) -> str:
        made = self.ok("POST", "/api/2.0/mlflow/runs/create", json.dumps({"experiment_id": experiment_id}))
        return str(made["run"]["info"]["run_id"])


@dataclass
class Made:
    """What a call made: its answer, and the trace (and assessment) it wrote, when it wrote one."""

    answer: requests.Response
    trace_id: str = ""
    assessment_id: str = ""


@dataclass
class Spelling:
    name: str
    kind: str  # "trace": linked by search; "assessment": deleted with the run
    send: Callable[[Target, str, str, str], Made]  # (target, experiment, run named, the caller's own run)
    notes: list[str] = field(default_factory=list)


def _escaped(key: str) -> str:
    return "\\u" + format(ord(key[0]), "04x") + key[1:]


def map_spellings(key: str) -> dict[str, Callable[[str, str, str], str]]:
    """`"<field>": <object>` texts naming run `r` (and the caller's own run `o`) under `key`, by spelling."""
    return {
        "as written": lambda f, r, o: f'"{f}": {{"{key}": "{r}"}}',
        "key escaped": lambda f, r, o: f'"{f}": {{"{_escaped(key)}": "{r}"}}',
        "key in upper case": lambda f, r, o: f'"{f}": {{"{key.upper()}": "{r}"}}',
        "key in lower case": lambda f, r, o: f'"{f}": {{"{key.lower()}": "{r}"}}',
        "key after a space": lambda f, r, o: f'"{f}": {{" {key}": "{r}"}}',
        "key before a space": lambda f, r, o: f'"{f}": {{"{key} ": "{r}"}}',
        "key after a quote": lambda f, r, o: f'"{f}": {{"x\\"{key}": "{r}"}}',
        "key twice, the run last": lambda f, r, o: f'"{f}": {{"{key}": "{o}", "{key}": "{r}"}}',
        "key twice, the run first": lambda f, r, o: f'"{f}": {{"{key}": "{r}", "{key}": "{o}"}}',
        "map twice, the run last": lambda f, r, o: f'"{f}": {{"{key}": "{o}"}}, "{f}": {{"{key}": "{r}"}}',
        "map twice, the run first": lambda f, r, o: f'"{f}": {{"{key}": "{r}"}}, "{f}": {{"{key}": "{o}"}}',
        "run id in upper case": lambda f, r, o: f'"{f}": {{"{key}": "{r.upper()}"}}',
    }


def list_spellings() -> dict[str, Callable[[str, str, str], str]]:
    """`"<field>": [...]` texts of a v2 key/value list naming run `r` as `mlflow.sourceRun`, by spelling."""
    key = SOURCE_RUN

    def item(name: str, value: str) -> str:
        return f'{{"key": "{name}", "value": "{value}"}}'

    return {
        "as written": lambda f, r, o: f'"{f}": [{item(key, r)}]',
        "key escaped": lambda f, r, o: f'"{f}": [{item(_escaped(key), r)}]',
        "key in upper case": lambda f, r, o: f'"{f}": [{item(key.upper(), r)}]',
        "key after a space": lambda f, r, o: f'"{f}": [{item(" " + key, r)}]',
        "key before a space": lambda f, r, o: f'"{f}": [{item(key + " ", r)}]',
        "key twice, the run last": lambda f, r, o: f'"{f}": [{item(key, o)}, {item(key, r)}]',
        "key twice, the run first": lambda f, r, o: f'"{f}": [{item(key, r)}, {item(key, o)}]',
        "list twice, the run last": lambda f, r, o: f'"{f}": [{item(key, o)}], "{f}": [{item(key, r)}]',
        "item's key twice": lambda f, r, o: f'"{f}": [{{"key": "x", "key": "{key}", "value": "{r}"}}]',
        "item's value twice": lambda f, r, o: f'"{f}": [{{"key": "{key}", "value": "{o}", "value": "{r}"}}]',
        "run id in upper case": lambda f, r, o: f'"{f}": [{item(key, r.upper())}]',
    }


def _trace_info(trace_id: str, experiment_id: str, extra: str) -> str:
    location = {"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": experiment_id}}
    base = json.dumps({"trace_id": trace_id, "trace_location": location, "request_time": STAMP, "state": "OK"})
    return base[:-1] + (", " + extra if extra else "") + "}"


def start_v3(target: Target, experiment_id: str, extra: str = "", trace_id: str = "") -> Made:
    trace_id = trace_id or f"tr-{uuid.uuid4().hex}"
    answer = target.call(
        "POST",
        "/api/3.0/mlflow/traces",
        f'{{"trace": {{"trace_info": {_trace_info(trace_id, experiment_id, extra)}}}}}',
    )
    return Made(answer, trace_id)


def _assessment(trace_id: str, extra: str) -> str:
    plain = {
        "trace_id": trace_id,
        "assessment_name": "judged",
        "source": SOURCE,
        "create_time": STAMP,
        "last_update_time": STAMP,
        "feedback": {"value": "fine"},
    }
    return json.dumps(plain)[:-1] + ", " + extra + "}"


def v3_start_assessment(target: Target, experiment_id: str, text: str) -> Made:
    trace_id = f"tr-{uuid.uuid4().hex}"
    made = start_v3(target, experiment_id, f'"assessments": [{_assessment(trace_id, text)}]', trace_id)
    if made.answer.status_code == 200:
        info = target.ok("GET", f"/api/3.0/mlflow/traces/{trace_id}")["trace"]["trace_info"]
        made.assessment_id = info["assessments"][0]["assessment_id"]
    return made


def create_assessment(target: Target, experiment_id: str, text: str) -> Made:
    trace = start_v3(target, experiment_id)
    assert trace.answer.status_code == 200, trace.answer.text
    answer = target.call(
        "POST",
        f"/api/3.0/mlflow/traces/{trace.trace_id}/assessments",
        f'{{"assessment": {_assessment(trace.trace_id, text)}}}',
    )
    assessment_id = answer.json()["assessment"]["assessment_id"] if answer.status_code == 200 else ""
    return Made(answer, trace.trace_id, assessment_id)


def update_assessment(target: Target, experiment_id: str, text: str) -> Made:
    trace = start_v3(target, experiment_id)
    assert trace.answer.status_code == 200, trace.answer.text
    path = f"/api/3.0/mlflow/traces/{trace.trace_id}/assessments"
    plain = {
        "trace_id": trace.trace_id,
        "assessment_name": "judged",
        "source": SOURCE,
        "feedback": {"value": "fine"},
    }
    assessment_id = target.ok("POST", path, json.dumps({"assessment": plain}))["assessment"]["assessment_id"]
    body = f'{{"assessment": {_assessment(trace.trace_id, text)}, "update_mask": "metadata"}}'
    return Made(target.call("PATCH", f"{path}/{assessment_id}", body), trace.trace_id, assessment_id)


def start_v2(target: Target, experiment_id: str, text: str) -> Made:
    extra = ", " + text if text else ""
    answer = target.call(
        "POST", "/api/2.0/mlflow/traces", f'{{"experiment_id": "{experiment_id}", "timestamp_ms": 1{extra}}}'
    )
    return Made(answer, answer.json()["trace_info"]["request_id"] if answer.status_code == 200 else "")


def end_v2(target: Target, experiment_id: str, text: str) -> Made:
    started = start_v2(target, experiment_id, "")
    assert started.answer.status_code == 200, started.answer.text
    request_id = started.trace_id
    body = f'{{"request_id": "{request_id}", "timestamp_ms": 2, "status": "OK", {text}}}'
    return Made(target.call("PATCH", f"/api/2.0/mlflow/traces/{request_id}", body), request_id)


def otlp(target: Target, experiment_id: str, where: str, name: str, value: str) -> Made:
    """An OTLP export of one root span; `value` named by `name` as a span attribute, a resource attribute or the
    `x-mlflow-run-id` header."""
    export = ExportTraceServiceRequest()
    resource = export.resource_spans.add()
    span = resource.scope_spans.add().spans.add()
    hex_id = uuid.uuid4().hex
    span.trace_id, span.span_id, span.name = bytes.fromhex(hex_id), b"\x02" * 8, "root"
    span.start_time_unix_nano, span.end_time_unix_nano = 1_700_000_000_000_000_000, 1_700_000_001_000_000_000
    headers = {"Content-Type": "application/x-protobuf", "x-mlflow-experiment-id": experiment_id}
    if where == "span":
        span.attributes.add(key=name, value=AnyValue(string_value=value))
    elif where == "resource":
        resource.resource.attributes.add(key=name, value=AnyValue(string_value=value))
    else:
        headers[name] = value
    answer = target.call("POST", "/v1/traces", export.SerializeToString(), **headers)
    return Made(answer, f"tr-{hex_id}")


def spellings() -> list[Spelling]:
    found: list[Spelling] = []

    def add(name: str, kind: str, send: Callable[[Target, str, str, str], Made]) -> None:
        found.append(Spelling(name, kind, send))

    for spelt, text in map_spellings(SOURCE_RUN).items():
        add(
            f"v3 start, trace_metadata: {spelt}",
            "trace",
            lambda t, e, r, o, x=text: start_v3(t, e, x("trace_metadata", r, o)),
        )
    add("v3 start, in tags", "trace", lambda t, e, r, o: start_v3(t, e, f'"tags": {{"{SOURCE_RUN}": "{r}"}}'))
    add(
        "v3 start, traceMetadata alias",
        "trace",
        lambda t, e, r, o: start_v3(t, e, f'"traceMetadata": {{"{SOURCE_RUN}": "{r}"}}'),
    )
    for spelt, text in map_spellings(ASSESSMENT_RUN).items():
        add(
            f"v3 start's assessment: {spelt}",
            "assessment",
            lambda t, e, r, o, x=text: v3_start_assessment(t, e, x("metadata", r, o)),
        )
        add(
            f"assessment created: {spelt}",
            "assessment",
            lambda t, e, r, o, x=text: create_assessment(t, e, x("metadata", r, o)),
        )
        add(
            f"assessment updated: {spelt}",
            "assessment",
            lambda t, e, r, o, x=text: update_assessment(t, e, x("metadata", r, o)),
        )
    for spelt, text in list_spellings().items():
        add(
            f"v2 start, request_metadata: {spelt}",
            "trace",
            lambda t, e, r, o, x=text: start_v2(t, e, x("request_metadata", r, o)),
        )
        add(
            f"v2 end, request_metadata: {spelt}",
            "trace",
            lambda t, e, r, o, x=text: end_v2(t, e, x("request_metadata", r, o)),
        )
    add("v2 start, in tags", "trace", lambda t, e, r, o: start_v2(t, e, list_spellings()["as written"]("tags", r, o)))
    add(
        "v2 start, requestMetadata alias",
        "trace",
        lambda t, e, r, o: start_v2(t, e, list_spellings()["as written"]("requestMetadata", r, o)),
    )
    add("OTLP, x-mlflow-run-id header", "trace", lambda t, e, r, o: otlp(t, e, "header", "x-mlflow-run-id", r))
    add("OTLP, span attribute mlflow.sourceRun", "trace", lambda t, e, r, o: otlp(t, e, "span", SOURCE_RUN, r))
    add(
        "OTLP, span attribute mlflow.traceTag.mlflow.sourceRun",
        "trace",
        lambda t, e, r, o: otlp(t, e, "span", "mlflow.traceTag." + SOURCE_RUN, r),
    )
    add("OTLP, resource attribute mlflow.sourceRun", "trace", lambda t, e, r, o: otlp(t, e, "resource", SOURCE_RUN, r))
    return found


def linked_traces(store: Target, experiment_id: str, run_id: str) -> set[str]:
    """The store's answer to a search of the run's traces (what `search_traces(run_id=...)` asks)."""
    location = {"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": experiment_id}}
    body = {"locations": [location], "filter": f"attribute.run_id = '{run_id}'", "max_results": 500}
    found = store.ok("POST", "/api/3.0/mlflow/traces/search", json.dumps(body))
    return {info["trace_id"] for info in found.get("traces", [])}


def assessment_left(store: Target, made: Made) -> bool:
    answer = store.call("GET", f"/api/3.0/mlflow/traces/{made.trace_id}/assessments/{made.assessment_id}")
    assert answer.status_code in (200, 404), answer.text
    return answer.status_code == 200


def test_every_spelling_the_store_takes_as_naming_a_run_is_refused_to_a_caller_who_may_not_change_it(
    stack: Stack,
) -> None:
    store = Target(stack.stores["a"].url, requests.Session())
    admin = Admin.of(stack)
    owner = admin.person(f"{unique('owner')}@example.com")
    reader = admin.person(f"{unique('reader')}@example.com")
    for person in (owner, reader):
        admin.grant("workspaces/team-a", "CAN_USE", user=person.name)
    owners = Target(stack.url, owner.http(stack))
    readers = Target(stack.url, reader.http(stack))
    owners_experiment = owners.experiment()
    target_run = owners.run(owners_experiment)  # the owner's: the reader reads it, may not change it
    admin.grant(f"experiments/{owners_experiment}", "CAN_READ", user=reader.name, workspace="team-a")
    readers_experiment = readers.experiment()
    readers_run = readers.run(readers_experiment)
    cases = spellings()

    # 1. What the store records, each spelling naming a run of its own.
    store_experiment = store.experiment()
    links: dict[str, bool] = {}
    for case in cases:
        named, other = store.run(store_experiment), store.run(store_experiment)
        made = case.send(store, store_experiment, named, other)
        if made.answer.status_code != 200:
            links[case.name] = False  # the store refused it: nothing recorded
            case.notes.append(f"store {made.answer.status_code}")
            continue
        if case.kind == "trace":
            links[case.name] = made.trace_id in linked_traces(store, store_experiment, named)
        else:
            assert assessment_left(store, made), case.name
            store.ok("POST", "/api/2.0/mlflow/runs/delete", json.dumps({"run_id": named}))
            links[case.name] = not assessment_left(store, made)

    # 2. The gateway's answer to the reader, each spelling naming the owner's run.
    answers: dict[str, int] = {}
    let_through: list[tuple[Spelling, Made]] = []
    for case in cases:
        made = case.send(readers, readers_experiment, target_run, readers_run)
        answers[case.name] = made.answer.status_code
        assert made.answer.status_code < 500, (case.name, made.answer.text)
        if made.answer.status_code == 200:
            let_through.append((case, made))
        else:
            assert made.answer.json()["error_code"], (case.name, made.answer.text)

    def row(case: Spelling) -> str:
        store_said = ("links" if links[case.name] else "no link") + "".join(f" ({note})" for note in case.notes)
        return f"{case.name:70} store {store_said}; gateway {answers[case.name]}"

    table = "\n".join(row(case) for case in cases)
    print("\n" + table)
    # The detection works: the plain spellings link on the store.
    for plain in (
        "v3 start, trace_metadata: as written",
        "v3 start's assessment: as written",
        "assessment created: as written",
        "assessment updated: as written",
        "v2 start, request_metadata: as written",
        "v2 end, request_metadata: as written",
        "OTLP, x-mlflow-run-id header",
    ):
        assert links[plain], (plain, table)
    leaks = [case.name for case in cases if links[case.name] and answers[case.name] < 400]
    assert leaks == [], table

    # Nothing the gateway let through names the owner's run on the store: no trace of the reader's is found by it,
    # and every assessment it let through outlives the run.
    assert linked_traces(store, readers_experiment, target_run) == set(), table
    store.ok("POST", "/api/2.0/mlflow/runs/delete", json.dumps({"run_id": target_run}))
    gone = [case.name for case, made in let_through if case.kind == "assessment" and not assessment_left(store, made)]
    assert gone == [], table
