"""The trace tags the store reads as where a trace's data lives, and OTLP exports that would set them."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence

import pytest
from google.protobuf.json_format import ParseDict
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mlflow.protos.service_pb2 import EndTrace, SetTraceTag, SetTraceTagV3, StartTrace, StartTraceV3
from mlflow.utils.proto_json_utils import parse_dict
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from gateway.core.errors import InvalidParameter
from gateway.core.links import WorkspaceLink
from gateway.core.principal import Principal
from gateway.core.route_table import declared
from gateway.federation.canonical import canonical_body
from gateway.federation.guard.request import Request
from gateway.federation.guard.traces import refuse_storage_tag_writes
from gateway.federation.otlp import canonical_export
from gateway.federation.trace_tags import OTLP_TAG_PREFIX, STORAGE_TRACE_TAGS

GUEST = Principal(name="guest", kind="user", id=7)
LINK = WorkspaceLink("team-a", 1001, "workspace", "store-a", "store-a", None)


def test_the_storage_tags_are_mlflows() -> None:
    from mlflow.tracing.constant import SpanAttributeKey
    from mlflow.utils import mlflow_tags

    assert {mlflow_tags.MLFLOW_ARTIFACT_LOCATION} | (mlflow_tags.IMMUTABLE_TAGS - {mlflow_tags.MLFLOW_USER}) == set(
        STORAGE_TRACE_TAGS
    )
    assert SpanAttributeKey.TRACE_TAG_PREFIX == OTLP_TAG_PREFIX


def _export(key: str) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add()
    span.trace_id, span.span_id, span.name = b"\x0a" * 16, b"\x01" * 8, "root"
    attribute = span.attributes.add()
    attribute.key, attribute.value.string_value = key, "mlflow-artifacts:/2/traces/tr-x/artifacts"
    return request


@pytest.mark.parametrize("tag", sorted(STORAGE_TRACE_TAGS))
@pytest.mark.parametrize("media_type", ["application/x-protobuf", "application/json"])
def test_an_otlp_export_setting_a_storage_tag_is_refused(tag: str, media_type: str) -> None:
    request = _export(OTLP_TAG_PREFIX + tag)
    if media_type == "application/json":
        from google.protobuf.json_format import MessageToDict

        document = MessageToDict(request)
        span = document["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
        span["traceId"], span["spanId"] = "0a" * 16, "01" * 8
        raw = json.dumps(document).encode()
    else:
        raw = request.SerializeToString()
    with pytest.raises(InvalidParameter) as caught:
        canonical_export(raw, [("content-type", media_type)])
    assert caught.value.message == f"Tag '{tag}' is immutable and cannot be set on a trace."


def test_other_trace_tags_and_attributes_pass() -> None:
    for key in (OTLP_TAG_PREFIX + "team", "mlflow.artifactLocation", "service.name"):
        body, _ = canonical_export(_export(key).SerializeToString(), [("content-type", "application/x-protobuf")])
        assert ExportTraceServiceRequest.FromString(body.encoded) == _export(key)


# -- spellings of the storage tags on every trace route that sets tags, against MLflow's own reading ---------
#
# Whatever a call's bytes spell, the store stores the key it reads from the body the gateway forwards (the
# re-encoding of what the guard decoded): `_get_request_message` (json.loads, then the request's proto message)
# for the JSON routes, the protobuf for an OTLP export, and the key exactly as read (SQLite and PostgreSQL compare
# keys byte for byte). The property: the gateway refuses a call exactly when that store would store one of the four
# keys; a look-alike the store keeps as another key passes.

# Characters that look like those of the storage tags, and characters around or inside a key.
LOOK_ALIKES = {
    "a": ["\u0430", "\uff41", "\u00e1"],  # Cyrillic a, fullwidth a, a with acute
    "o": ["\u043e", "\u03bf", "\u00f6"],  # Cyrillic o, Greek omicron, o with diaeresis
    "e": ["\u0435", "\u00e9"],
    "c": ["\u0441"],
    "i": ["\u0131", "\u0456"],  # dotless i, Ukrainian i
    "l": ["\u04cf", "\u217c"],  # Cyrillic palochka, small roman numeral fifty
    "t": ["\U0001d42d"],  # mathematical bold t (a surrogate pair when escaped)
    ".": ["\uff0e", "\u2024"],  # fullwidth full stop, one dot leader
}
AROUND = ["", " ", "\t", "\n", "\u00a0", "\u200b", "\ufeff"]
INSIDE = ["\u200b", "\u00ad", "\u0301", " ", "\u0000"]
OTHER_KEYS = ["mlflow.traceName", "team", "mlflow.user", "mlflow.artifactLocations", "artifactLocation"]


@st.composite
def spellings(draw: st.DrawFn, keys: Sequence[str] = (*sorted(STORAGE_TRACE_TAGS), *OTHER_KEYS)) -> str:
    """A storage tag or another key, spelt exactly or as something like it."""
    key = draw(st.sampled_from(keys))
    change = draw(st.sampled_from(["exact", "exact", "case", "around", "look-alike", "inside"]))
    if change == "case":
        flips = set(draw(st.lists(st.integers(0, len(key) - 1), min_size=1, max_size=4)))
        key = "".join(ch.swapcase() if i in flips else ch for i, ch in enumerate(key))
    elif change == "around":
        key = draw(st.sampled_from(AROUND)) + key + draw(st.sampled_from(AROUND))
    elif change == "look-alike":
        i = draw(st.sampled_from([i for i, ch in enumerate(key) if ch in LOOK_ALIKES]))
        key = key[:i] + draw(st.sampled_from(LOOK_ALIKES[key[i]])) + key[i + 1 :]
    elif change == "inside":
        i = draw(st.integers(1, len(key) - 1))
        key = key[:i] + draw(st.sampled_from(INSIDE)) + key[i:]
    return key


def _escape(ch: str, upper: bool) -> str:
    units = ch.encode("utf-16-be")
    return "".join(
        f"\\u{int.from_bytes(units[i : i + 2], 'big'):04{'X' if upper else 'x'}}" for i in range(0, len(units), 2)
    )


@st.composite
def json_strings(draw: st.DrawFn, text: str) -> str:
    """`text` as a JSON string: each character as itself or as a \\uXXXX escape (a surrogate pair above the BMP)."""
    every = draw(st.sampled_from(["none", "all", "some"]))
    upper = draw(st.booleans())
    out = []
    for ch in text:
        must = ch in '"\\' or ord(ch) < 0x20
        if must or every == "all" or (every == "some" and draw(st.booleans())):
            out.append(_escape(ch, upper))
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


ROUTES = {
    "v3 set-tag": (declared("PATCH /mlflow/traces/{trace_id:str}/tags", 3), SetTraceTagV3),
    "v2 set-tag": (declared("PATCH /mlflow/traces/{request_id:str}/tags"), SetTraceTag),
    "v2 start": (declared("POST /mlflow/traces"), StartTrace),
    "v2 end": (declared("PATCH /mlflow/traces/{request_id:str}"), EndTrace),
    "v3 start": (declared("POST /mlflow/traces", 3), StartTraceV3),
}


@st.composite
def tagged_calls(draw: st.DrawFn) -> tuple[str, bytes]:
    """A call of a trace route that sets tags, as raw bytes, the keys spelt by `spellings`."""
    route = draw(st.sampled_from([*ROUTES, "otlp json"]))
    keys = draw(st.lists(spellings(), min_size=1, max_size=3))
    text = [draw(json_strings(key)) for key in keys]
    if route.endswith("set-tag"):
        # A second `key` member is read last by both the gateway and the store.
        body = "{" + ", ".join(f'"key": {key}' for key in text[:2]) + ', "value": "v"}'
    elif route in ("v2 start", "v2 end"):
        tags = ", ".join(f'{{"key": {key}, "value": "v"}}' for key in text)
        body = f'{{"experiment_id": "1", "timestamp_ms": 1, "tags": [{tags}]}}'
    elif route == "v3 start":
        tags = ", ".join(f'{key}: "v"' for key in text)
        location = '{"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": "1"}}'
        body = (
            f'{{"trace": {{"trace_info": {{"trace_id": "tr-{"a" * 32}", "trace_location": {location}, '
            f'"request_time": "2026-12-03T00:00:00Z", "state": "OK", "tags": {{{tags}}}}}}}}}'
        )
    else:  # an OTLP/JSON export: root-span attributes `mlflow.traceTag.<key>`, the prefix spelt like the key
        prefix = draw(spellings((OTLP_TAG_PREFIX.rstrip("."),))) + "."
        attributes = ", ".join(
            f'{{"key": {draw(json_strings(prefix + key))}, "value": {{"stringValue": "v"}}}}' for key in keys
        )
        span = f'{{"traceId": "{"0a" * 16}", "spanId": "{"01" * 8}", "name": "root", "attributes": [{attributes}]}}'
        body = f'{{"resourceSpans": [{{"scopeSpans": [{{"spans": [{span}]}}]}}]}}'
    return route, body.encode()


def _stored_keys(route: str, body: bytes) -> list[str]:
    """The tag keys MLflow 3.17.2 reads from a body it receives (handlers.py; `log_spans` for an export, whose root
    spans' `mlflow.traceTag.<key>` attributes become tags). An export is protobuf as the gateway forwards it, or
    OTLP/JSON as a client sends it (hex ids, as MLflow's OTLP route reads them)."""
    if route == "otlp json":
        if body.startswith(b"{"):
            document = json.loads(body)
            for resource in document["resourceSpans"]:
                for scope in resource["scopeSpans"]:
                    for span in scope["spans"]:
                        for name in ("traceId", "spanId"):
                            span[name] = base64.b64encode(bytes.fromhex(span[name])).decode()
            export = ParseDict(document, ExportTraceServiceRequest(), ignore_unknown_fields=True)
        else:
            export = ExportTraceServiceRequest.FromString(body)
        return [
            attribute.key[len(OTLP_TAG_PREFIX) :]
            for resource in export.resource_spans
            for scope in resource.scope_spans
            for span in scope.spans
            if not span.parent_span_id
            for attribute in span.attributes
            if attribute.key.startswith(OTLP_TAG_PREFIX)
        ]
    message = ROUTES[route][1]()
    parse_dict(json.loads(body), message)
    if route.endswith("set-tag"):
        return [message.key]
    if route == "v3 start":
        return list(message.trace.trace_info.tags)
    return [tag.key for tag in message.tags]


def _refused_by_the_gateway(route: str, raw: bytes) -> tuple[str, bytes]:
    """Why the gateway refuses the call ("storage tag", or "alias key": canonical.py refuses the camelCase
    spelling of an id field at any depth, a v3 tags map's keys included), or "" and the body it forwards."""
    try:
        if route == "otlp json":
            export, _ = canonical_export(raw, [("content-type", "application/json")])
            return "", export.encoded
        spec = ROUTES[route][0]
        body = canonical_body(raw)
        request = Request(spec, GUEST, LINK, body.ids, body.encoded, body.document, body.nested, "", {}, [], None)
        refuse_storage_tag_writes(request)
        return "", body.encoded
    except InvalidParameter as refusal:
        if refusal.message.endswith("is immutable and cannot be set on a trace."):
            return "storage tag", b""
        assert "use the snake_case field names" in refusal.message, refusal.message
        return "alias key", b""


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tagged_calls())
def test_a_call_is_refused_exactly_when_the_store_would_store_a_storage_tag(call: tuple[str, bytes]) -> None:
    route, raw = call
    refused, forwarded = _refused_by_the_gateway(route, raw)
    keys = _stored_keys(route, raw)  # what the store, sent these bytes, would store
    if refused == "storage tag":
        assert STORAGE_TRACE_TAGS & set(keys), (route, raw, keys)
    elif refused == "alias key":  # nothing reaches the store; the tag it names is never a storage tag
        assert route == "v3 start", (route, raw)
    else:  # what the store receives instead are the keys the caller sent, none of them a storage tag
        assert _stored_keys(route, forwarded) == keys, (route, raw)
        assert not STORAGE_TRACE_TAGS & set(keys), (route, raw, keys)
