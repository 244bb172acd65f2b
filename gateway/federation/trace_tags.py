"""Trace tags the store reads as where a trace's data lives: the store sets them, a caller never does.

`mlflow.artifactLocation` is the directory the store reads a trace's data (`traces.json`) and attachments from
(`get-trace-artifact`, and trace reads whose spans are not in its database); the other three say where archived
spans are and whether archiving failed. MLflow 3.17.2's set-tag handlers refuse the last three only, and its
OTLP ingest writes root-span `mlflow.traceTag.<key>` attributes as tags without any check, so a caller who may
change one trace of its own could point that trace at another trace's files, in an experiment or workspace it
cannot read, and have the store answer with them. The gateway refuses every way a call sets one of them
(set-tag, the tags of a trace being started or ended, an OTLP export's attributes), whoever calls.
"""

from __future__ import annotations

from collections.abc import Iterable

from gateway.core.errors import InvalidParameter

# mlflow.utils.mlflow_tags: MLFLOW_ARTIFACT_LOCATION and the trace storage tags of IMMUTABLE_TAGS
# (tests/unit/test_trace_tags.py compares them with the installed MLflow).
STORAGE_TRACE_TAGS = frozenset(
    {
        "mlflow.artifactLocation",
        "mlflow.trace.spansLocation",
        "mlflow.trace.archiveLocation",
        "mlflow.trace.archivalFailure",
    }
)
# An OTLP root span's attribute `mlflow.traceTag.<key>` becomes the trace tag <key> (SpanAttributeKey).
OTLP_TAG_PREFIX = "mlflow.traceTag."


def refuse_storage_tags(keys: Iterable[object]) -> None:
    """400 INVALID_PARAMETER_VALUE, in MLflow's words, when any of `keys` is a storage tag. A key that is no string
    (a list, an object: unhashable, so no set lookup) names none; the store refuses it in its own words."""
    for key in keys:
        if isinstance(key, str) and key in STORAGE_TRACE_TAGS:
            raise InvalidParameter(f"Tag '{key}' is immutable and cannot be set on a trace.")
