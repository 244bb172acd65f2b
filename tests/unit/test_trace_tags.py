"""The trace tags the store reads as where a trace's data lives, and OTLP exports that would set them."""

from __future__ import annotations

import json

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from gateway.core.errors import InvalidParameter
from gateway.federation.otlp import canonical_export
from gateway.federation.trace_tags import OTLP_TAG_PREFIX, STORAGE_TRACE_TAGS


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
