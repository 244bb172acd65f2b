"""Differential: a write reaches the store only when MLflow reads all of it.

MLflow's `_get_request_message` parses a request message field by field, in the order of the body's keys, and at
the first value it cannot parse it stops and goes on with the fields read before: a log-batch whose second param
has a number for its value logged the first param, dropped the rest (the points after it included) and answered
200, while the index and the dual outbox recorded the whole document. The gateway refuses such a write (400).

`unread_part` checks a log-batch's points in one pass (`_read_whole`) rather than through json_format; here both
ways are held to each other and to json_format itself, on random bodies, and the forwarder to MLflow's own reading.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.core.errors import GatewayError
from gateway.core.route_table import RUNS_LOG_BATCH, RUNS_LOG_PARAMETER, RUNS_SET_TAG
from gateway.federation.canonical import canonical_body
from gateway.federation.mlflow_requests import ClientPoint, _WholeMetric, partial_read, unread_part
from tests.unit.test_pipeline import TEAM_A, RecordingStore, call, forwarder

json_format = pytest.importorskip("google.protobuf.json_format")
service_pb2 = pytest.importorskip("mlflow.protos.service_pb2")
LOOP = asyncio.new_event_loop()

# Values of every JSON type, and the spellings json_format reads for numbers: some points it reads, some not.
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**64), 2**64),
    st.floats(allow_nan=False),  # infinities: 1e999 in the body
    st.sampled_from(["NaN", "Infinity", "-Infinity", "nan", "1.5", "7", " 7", "1e3", "", "x", "\u00e9"]),
    st.just([1]),
    st.just({"a": 1}),
)
NUMBERS_AS_TEXT = ["NaN", "Infinity", "-Infinity", "nan", "inf", "1.5", "7", " 7", "1e3", "", "x", "0x10"]
FINITE = st.floats(allow_nan=False, allow_infinity=False)
POINT_KEYS = ("key", "value", "timestamp", "step", "model_id", "dataset_name", "run_id", "datasetDigest", "other")


@st.composite
def points(draw: st.DrawFn) -> dict[str, Any]:
    """A point as the stock client sends it, sometimes with one field of another value or type, or one more field,
    or a point of any fields."""
    point: dict[str, Any] = {"key": draw(st.sampled_from(["m", "n"])), "value": draw(FINITE), "timestamp": 1}
    point["step"] = 0
    match draw(st.integers(0, 4)):
        case 1:
            point[draw(st.sampled_from(POINT_KEYS))] = draw(SCALARS)
        case 2:
            point = {key: draw(SCALARS) for key in draw(st.lists(st.sampled_from(POINT_KEYS), max_size=4, unique=True))}
        case 3:  # a number spelled as text, or text that is no number
            point[draw(st.sampled_from(["value", "timestamp", "step"]))] = draw(st.sampled_from(NUMBERS_AS_TEXT))
    return point


@st.composite
def log_batches(draw: st.DrawFn) -> dict[str, Any]:
    """A log-batch body: its fields in any order, its points and params sometimes of a shape MLflow cannot read."""
    pair = st.fixed_dictionaries({"key": st.sampled_from(["p", "q"]), "value": st.one_of(st.just("v"), SCALARS)})
    fields: dict[str, Any] = {
        "run_id": "a" * 32,
        "metrics": draw(st.one_of(st.lists(points(), max_size=5), SCALARS)),
        "params": draw(st.lists(pair, max_size=3)),
        "tags": draw(st.lists(pair, max_size=2)),
    }
    keys = draw(st.permutations(draw(st.lists(st.sampled_from(sorted(fields)), min_size=1, unique=True))))
    return {key: fields[key] for key in keys}


def _json_format_reads_all(document: Any) -> bool:
    try:
        json_format.ParseDict(document, service_pb2.LogBatch(), ignore_unknown_fields=True)
    except json_format.ParseError:
        return False
    except Exception:
        return True  # MLflow fails on it (a 500): nothing of it is applied
    return True


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=log_batches())
def test_the_one_pass_check_of_points_agrees_with_json_format(document: dict[str, Any]) -> None:
    try:
        canonical = canonical_body(json.dumps(document).encode())
    except GatewayError:
        return  # refused before anything else is asked
    slow = unread_part(RUNS_LOG_BATCH, canonical.encoded, "")
    fast, points = partial_read(RUNS_LOG_BATCH, canonical.encoded, "", canonical.document)
    assert fast == slow
    assert (slow is None) == _json_format_reads_all(json.loads(canonical.encoded))
    if points is not None:  # handed to the after-write hooks: the document's points, each in the clients' shape
        assert slow is None
        assert points == msgspec.convert(canonical.document["metrics"], list[ClientPoint])
        assert [msgspec.to_builtins(point) for point in points] == [
            {**point, "value": float(point["value"])} for point in canonical.document["metrics"]
        ]


@settings(max_examples=300, deadline=None)
@given(point=points())
def test_a_point_read_in_one_pass_is_one_json_format_reads_whole(point: dict[str, Any]) -> None:
    try:
        msgspec.convert([point], list[_WholeMetric])
    except msgspec.ValidationError:
        return
    json_format.ParseDict(point, service_pb2.Metric(), ignore_unknown_fields=True)  # no ParseError


@settings(max_examples=300, deadline=None)
@given(point=points())
def test_a_point_in_the_clients_shape_is_one_the_one_pass_check_reads_whole(point: dict[str, Any]) -> None:
    """`ClientPoint` (tried first, its points handed to the index) is narrower than `_WholeMetric`."""
    try:
        msgspec.convert([point], list[ClientPoint])
    except msgspec.ValidationError:
        return
    assert sorted(point) == ["key", "step", "timestamp", "value"]
    msgspec.convert([point], list[_WholeMetric])  # no ValidationError
    json_format.ParseDict(point, service_pb2.Metric(), ignore_unknown_fields=True)  # no ParseError


def test_the_one_pass_shape_names_fields_of_mlflows_metric_message() -> None:
    fields = service_pb2.Metric.DESCRIPTOR.fields_by_name
    for name in (*_WholeMetric.__struct_fields__, *ClientPoint.__struct_fields__):
        assert name in fields, name


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=log_batches())
def test_the_store_gets_a_log_batch_only_when_mlflow_reads_all_of_it(document: dict[str, Any]) -> None:
    store = RecordingStore()
    try:
        LOOP.run_until_complete(
            forwarder(TEAM_A, store=store).forward(call(RUNS_LOG_BATCH, header="team-a", body=document))
        )
    except GatewayError as refused:
        assert refused.status == 400
    for sent in store.sent:
        assert _json_format_reads_all(json.loads(sent.body)), sent.body


@pytest.mark.parametrize(
    ("spec", "body"),
    [
        # The first param is logged and the points after the second never read: refused whole.
        (RUNS_LOG_BATCH, {"run_id": "a" * 32, "params": [{"key": "p", "value": "v"}, {"key": "q", "value": 1}]}),
        (RUNS_LOG_BATCH, {"run_id": "a" * 32, "metrics": [{"key": "m", "value": 1, "timestamp": 1, "step": [0]}]}),
        (RUNS_LOG_BATCH, {"run_id": "a" * 32, "tags": [{"key": "t", "value": {"x": 1}}], "params": []}),
    ],
)
def test_a_write_mlflow_would_read_in_part_is_refused(spec: Any, body: dict[str, Any]) -> None:
    store = RecordingStore()
    with pytest.raises(GatewayError) as refused:
        LOOP.run_until_complete(forwarder(TEAM_A, store=store).forward(call(spec, header="team-a", body=body)))
    assert refused.value.status == 400 and refused.value.error_code == "INVALID_PARAMETER_VALUE"
    assert store.sent == []


@pytest.mark.parametrize(
    ("spec", "body"),
    [
        (RUNS_LOG_BATCH, {"run_id": "a" * 32, "metrics": [{"key": "m", "value": "NaN", "timestamp": 1, "step": 0}]}),
        (RUNS_LOG_BATCH, {"run_id": "a" * 32, "metrics": [{"key": "m", "value": 1, "model_id": "m-1"}]}),
        (RUNS_SET_TAG, {"run_id": "a" * 32, "key": "k", "value": "v"}),
        (RUNS_LOG_PARAMETER, {"run_id": "a" * 32, "key": "k", "value": "v"}),
    ],
)
def test_a_write_mlflow_reads_whole_is_forwarded(spec: Any, body: dict[str, Any]) -> None:
    store = RecordingStore()
    LOOP.run_until_complete(forwarder(TEAM_A, store=store).forward(call(spec, header="team-a", body=body)))
    assert len(store.sent) == 1
