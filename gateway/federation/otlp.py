"""OTLP span exports (`POST /v1/traces`) decoded once, like JSON bodies: the store gets what the guard read.

MLflow files each exported span under the MLflow trace `tr-<hex of the OTel trace id>`, and when that
trace exists already it adds the span to it in whatever experiment the trace lives in, not the one the
`x-mlflow-experiment-id` header names. So the guard must know every trace id of an export, and the
store must receive exactly the export those ids were read from: the body is decompressed (gzip,
deflate), parsed as protobuf or OTLP/JSON as MLflow parses it, and forwarded as plain protobuf. An export
whose spans set a trace tag that says where the trace's data lives (trace_tags.py) is refused.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from typing import Any

import msgspec
from google.protobuf.json_format import Error as JsonFormatError
from google.protobuf.json_format import ParseDict
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from gateway.core.errors import InvalidParameter
from gateway.federation.canonical import CanonicalBody, NestedId, reencoded_headers
from gateway.federation.schemas import RequestIds
from gateway.federation.trace_tags import OTLP_TAG_PREFIX, refuse_storage_tags

SPAN_TRACE_ID = "resource_spans[].scope_spans[].spans[].trace_id"
MAX_DECOMPRESSED = 64 * 1024 * 1024
_HEX_ID_FIELDS = ("traceId", "spanId", "parentSpanId")


def canonical_export(raw: bytes, headers: list[tuple[str, str]]) -> tuple[CanonicalBody, list[tuple[str, str]]]:
    """The export as protobuf bytes, its MLflow trace ids as nested ids, and the headers to forward."""
    media_type = encoding = ""
    for name, value in headers:
        if name == "content-type":
            media_type = value.split(";")[0].strip().lower()
        elif name == "content-encoding":
            encoding = value.strip().lower()
    body = _decompress(raw, encoding)
    export = ExportTraceServiceRequest()
    try:
        if media_type == "application/json":
            ParseDict(_hex_ids_to_base64(msgspec.json.decode(body)), export, ignore_unknown_fields=True)
        elif media_type == "application/x-protobuf":
            export.ParseFromString(body)
        else:
            raise InvalidParameter("OTLP exports are application/x-protobuf or application/json.")
    except (DecodeError, JsonFormatError, msgspec.DecodeError, ValueError, TypeError, AttributeError, binascii.Error):
        raise InvalidParameter("Invalid OpenTelemetry export.") from None
    spans = [span for resource in export.resource_spans for scope in resource.scope_spans for span in scope.spans]
    # A root span's `mlflow.traceTag.<key>` attribute becomes a tag of its trace: never one saying where data lives.
    refuse_storage_tags(
        attribute.key.removeprefix(OTLP_TAG_PREFIX)
        for span in spans
        for attribute in span.attributes
        if attribute.key.startswith(OTLP_TAG_PREFIX)
    )
    trace_ids = {"tr-" + format(int.from_bytes(span.trace_id, "big"), "032x") for span in spans if span.trace_id}
    nested = [NestedId(SPAN_TRACE_ID, trace_id) for trace_id in sorted(trace_ids)]
    export_body = CanonicalBody(export.SerializeToString(), {}, RequestIds(), nested)
    return export_body, reencoded_headers(headers, "application/x-protobuf")


def _decompress(raw: bytes, encoding: str) -> bytes:
    if encoding in ("", "identity"):
        return raw
    if encoding not in ("gzip", "deflate"):
        raise InvalidParameter(f"Unsupported Content-Encoding '{encoding[:32]}'.")
    for wbits in (zlib.MAX_WBITS | 16,) if encoding == "gzip" else (zlib.MAX_WBITS, -zlib.MAX_WBITS):
        inflater = zlib.decompressobj(wbits)
        try:
            body = inflater.decompress(raw, MAX_DECOMPRESSED)
        except zlib.error:
            continue
        if inflater.unconsumed_tail:
            raise InvalidParameter("The OTLP export is larger than 64 MiB once decompressed.")
        return body
    raise InvalidParameter(f"The OTLP export is not valid {encoding} data.")


def _hex_ids_to_base64(document: Any) -> Any:
    """OTLP/JSON writes span and trace ids in hex; protobuf's JSON mapping reads bytes as base64 (as MLflow)."""
    if not isinstance(document, dict):
        raise ValueError("not an object")
    for resource in document.get("resourceSpans") or []:
        for scope in (resource or {}).get("scopeSpans") or []:
            for span in (scope or {}).get("spans") or []:
                for name in _HEX_ID_FIELDS:
                    if isinstance(span, dict) and (value := span.get(name)):
                        span[name] = base64.b64encode(bytes.fromhex(value)).decode("ascii")
    return document
