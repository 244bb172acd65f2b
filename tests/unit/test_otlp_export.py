"""OTLP exports: every MLflow trace id MLflow would derive is listed, and the store receives plain protobuf."""

from __future__ import annotations

import gzip
import json
import zlib

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from gateway.core.errors import InvalidParameter
from gateway.federation.otlp import SPAN_TRACE_ID, canonical_export

TRACE_A = bytes.fromhex("0af7651916cd43dd8448eb211c80319c")
TRACE_B = bytes.fromhex("00000000000000000000000000000001")


def export(*trace_ids: bytes) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    spans = request.resource_spans.add().scope_spans.add()
    for number, trace_id in enumerate(trace_ids, start=1):
        span = spans.spans.add()
        span.trace_id, span.span_id, span.name = trace_id, number.to_bytes(8, "big"), "s"
    return request


def test_trace_ids_are_read_as_mlflow_derives_them() -> None:
    from mlflow.entities.span import Span

    request = export(TRACE_A, TRACE_B, TRACE_A)
    body, headers = canonical_export(request.SerializeToString(), [("content-type", "application/x-protobuf")])
    expected = {Span.from_otel_proto(s).trace_id for s in request.resource_spans[0].scope_spans[0].spans}
    assert {item.value for item in body.nested} == expected == {"tr-" + TRACE_A.hex(), "tr-" + TRACE_B.hex()}
    assert {item.path for item in body.nested} == {SPAN_TRACE_ID}
    assert ExportTraceServiceRequest.FromString(body.encoded) == request
    assert headers == [("content-type", "application/x-protobuf")]


@pytest.mark.parametrize("encoding,compress", [("gzip", gzip.compress), ("deflate", zlib.compress)])
def test_compressed_exports_are_forwarded_decompressed(encoding: str, compress: object) -> None:
    raw = export(TRACE_A).SerializeToString()
    body, headers = canonical_export(
        compress(raw),  # type: ignore[operator]
        [("content-type", "application/x-protobuf"), ("content-encoding", encoding)],
    )
    assert body.encoded == raw and ("content-encoding", encoding) not in headers
    assert [item.value for item in body.nested] == ["tr-" + TRACE_A.hex()]


def test_otlp_json_ids_are_hex_and_forwarded_as_protobuf() -> None:
    document = {"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": TRACE_A.hex(), "spanId": "01" * 8}]}]}]}
    body, _ = canonical_export(json.dumps(document).encode(), [("content-type", "application/json")])
    assert [item.value for item in body.nested] == ["tr-" + TRACE_A.hex()]
    assert ExportTraceServiceRequest.FromString(body.encoded).resource_spans[0].scope_spans[0].spans[0].trace_id == (
        TRACE_A
    )


@pytest.mark.parametrize(
    "raw,headers",
    [
        (b"\x00garbage", [("content-type", "application/x-protobuf"), ("content-encoding", "gzip")]),
        (b"{}", [("content-type", "text/plain")]),
        (b'{"resourceSpans": [1]}', [("content-type", "application/json")]),
        (b"x", [("content-type", "application/x-protobuf"), ("content-encoding", "br")]),
    ],
)
def test_exports_that_cannot_be_read_are_refused(raw: bytes, headers: list[tuple[str, str]]) -> None:
    with pytest.raises(InvalidParameter):
        canonical_export(raw, headers)
