"""Writes that carry text into objects of a run, beyond the run itself: which run each is linked to, and its text.

The leak guard (leaks.py) checks the `RUN_TEXT` routes, which name their run. The code of a run that read a secret
also writes traces, assessments of them and logged models, whose stores keep text of the caller's choosing. Such
a write is checked as a write of the run it is linked to, where the gateway can tell that link cheaply:

- in the body itself: a trace being started or ended names its run in its metadata (`mlflow.sourceRun`, set by the
  stock client for a trace recorded inside a run), a logged model being created its `source_run_id`, an
  assessment the run it was made by (`mlflow.assessment.sourceRunId`), a registry's model version being created
  its `run_id`;
- through the object the call names, asked of the store: a trace's tags and assessments are linked to the trace's
  `mlflow.sourceRun` (never cached: the guard reads the trace of every trace call from the store, and its answer
  is passed on with the call, `PendingCall.traces`, so it is read once), a logged model's tags and params to its
  `source_run_id` (a logged model's id is the store's, never reused, and its source run never changes: kept per
  worker), and so is a model version created from the logged model its body's `model_id` names
  (`mlflow.register_model("models:/m-...")` names no run). Asked only when a run of the worker's set read a secret
  at all, and only for a body that carries text.

Not linked, so not checked (docs/secrets.md): OTLP span exports (`/v1/traces`: a span names no run, and the stock
client exports a trace's spans before the trace's metadata), artifacts (trace data, attachments, model files),
experiments, datasets, and the registry but for a version's creation (a version's later tags and description,
`model-versions/update` and `set-tag`, name no run, only the version). The link is what the body or the object
says: a body that names no run, or another run, is checked against that run's secrets alone, as a run's writes
are. A trace's or assessment's metadata names only a run the caller may change: the guard refuses any other before
the leak guard reads the call (federation/guard/traces.py, `require_source_runs`).

Pure functions here (tests/unit/test_leak_scan.py); the store reads are leaks.py's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.core.route_table import LOGGED_MODELS_CREATE, MODEL_VERSIONS_CREATE, RouteSpec, declared
from gateway.federation.mlflow_aliases import USER_KEYED_PATHS
from gateway.secrets.scan import ENUM_FIELDS, ID_SUFFIXES, Text

SOURCE_RUN = "mlflow.sourceRun"  # mlflow.tracing.constant.TraceMetadataKey.SOURCE_RUN
ASSESSMENT_SOURCE_RUN = "mlflow.assessment.sourceRunId"  # AssessmentMetadataKey.SOURCE_RUN_ID

TRACES_START_V3 = declared("POST /mlflow/traces", 3)
TRACES_START_V2 = declared("POST /mlflow/traces")
TRACES_END_V2 = declared("PATCH /mlflow/traces/{request_id:str}")
TRACES_SET_TAG_V2 = declared("PATCH /mlflow/traces/{request_id:str}/tags")
TRACES_SET_TAG_V3 = declared("PATCH /mlflow/traces/{trace_id:str}/tags", 3)
ASSESSMENTS_CREATE = declared("POST /mlflow/traces/{trace_id:str}/assessments", 3)
ASSESSMENTS_UPDATE = declared("PATCH /mlflow/traces/{trace_id:str}/assessments/{assessment_id:str}", 3)
LOGGED_MODELS_SET_TAGS = declared("PATCH /mlflow/logged-models/{model_id:str}/tags")
LOGGED_MODELS_LOG_PARAMS = declared("POST /mlflow/logged-models/{model_id:str}/params")

# The object whose run a write is linked to through the store: (kind, the path parameter naming it).
THROUGH_TRACE = frozenset({TRACES_END_V2, TRACES_SET_TAG_V2, TRACES_SET_TAG_V3, ASSESSMENTS_CREATE, ASSESSMENTS_UPDATE})
THROUGH_MODEL = frozenset({LOGGED_MODELS_SET_TAGS, LOGGED_MODELS_LOG_PARAMS})
# A write naming in its body the logged model whose source run it is linked to, besides the run it names itself.
MODEL_IN_BODY = frozenset({MODEL_VERSIONS_CREATE})
IN_BODY = frozenset(
    {TRACES_START_V3, TRACES_START_V2, TRACES_END_V2, LOGGED_MODELS_CREATE, MODEL_VERSIONS_CREATE, *THROUGH_TRACE}
)
LINKED_ROUTES = IN_BODY | THROUGH_MODEL

# Where a string sits (the path of the field, or of the map whose key or value it is), described for a message:
# (kind of a value, kind of a map's key). The longest listed prefix of a path wins.
_TRACE = {
    "": ("trace field", "trace field"),
    "trace.trace_info.tags": ("trace tag value", "trace tag key"),
    "trace.trace_info.trace_metadata": ("trace metadata value", "trace metadata key"),
    "trace.trace_info.request_preview": ("trace request preview", ""),
    "trace.trace_info.response_preview": ("trace response preview", ""),
    "trace.trace_info.assessments[]": ("assessment field", "assessment field"),
    "tags[].key": ("trace tag key", ""),
    "tags[].value": ("trace tag value", ""),
    "request_metadata[]": ("trace metadata", ""),
    "key": ("trace tag key", ""),
    "value": ("trace tag value", ""),
}
_ASSESSMENT = {
    "": ("assessment field", "assessment field"),
    "assessment.assessment_name": ("assessment name", ""),
    "assessment.rationale": ("assessment rationale", ""),
    "assessment.feedback": ("feedback value", "feedback value"),
    "assessment.expectation": ("expectation value", "expectation value"),
    "assessment.metadata": ("assessment metadata value", "assessment metadata key"),
}
_LOGGED_MODEL = {
    "": ("logged model field", "logged model field"),
    "name": ("logged model name", ""),
    "params[].key": ("logged model param key", ""),
    "params[].value": ("logged model param value", ""),
    "tags[].key": ("logged model tag key", ""),
    "tags[].value": ("logged model tag value", ""),
}
_MODEL_VERSION = {
    "": ("model version field", "model version field"),
    "name": ("registered model name", ""),
    "description": ("model version description", ""),
    "source": ("model version source", ""),
    "run_link": ("model version run link", ""),
    "tags[].key": ("model version tag key", ""),
    "tags[].value": ("model version tag value", ""),
}
_KINDS: dict[RouteSpec, dict[str, tuple[str, str]]] = {
    TRACES_START_V3: _TRACE,
    TRACES_START_V2: _TRACE,
    TRACES_END_V2: _TRACE,
    TRACES_SET_TAG_V2: _TRACE,
    TRACES_SET_TAG_V3: _TRACE,
    ASSESSMENTS_CREATE: _ASSESSMENT,
    ASSESSMENTS_UPDATE: _ASSESSMENT,
    LOGGED_MODELS_CREATE: _LOGGED_MODEL,
    LOGGED_MODELS_SET_TAGS: _LOGGED_MODEL,
    LOGGED_MODELS_LOG_PARAMS: _LOGGED_MODEL,
    MODEL_VERSIONS_CREATE: _MODEL_VERSION,
}


def body_runs(spec: RouteSpec, document: Mapping[str, Any]) -> list[str]:
    """The runs the body of a linked write names as its own (none when it names none)."""
    found: list[object] = []
    if spec == TRACES_START_V3:
        info = _at(document, "trace", "trace_info")
        found.append(_at(info, "trace_metadata", SOURCE_RUN))
        for assessment in _list(_at(info, "assessments")):
            found.append(_at(assessment, "metadata", ASSESSMENT_SOURCE_RUN))
    elif spec in (TRACES_START_V2, TRACES_END_V2):
        for item in _list(document.get("request_metadata")):
            if isinstance(item, dict) and item.get("key") == SOURCE_RUN:
                found.append(item.get("value"))
    elif spec == LOGGED_MODELS_CREATE:
        found.append(document.get("source_run_id"))
    elif spec == MODEL_VERSIONS_CREATE:
        found.append(document.get("run_id"))
    elif spec in (ASSESSMENTS_CREATE, ASSESSMENTS_UPDATE):
        found.append(_at(document, "assessment", "metadata", ASSESSMENT_SOURCE_RUN))
    return list(dict.fromkeys(run for run in found if isinstance(run, str) and run))


def linked_object(
    spec: RouteSpec, path_params: Mapping[str, Any], document: Mapping[str, Any]
) -> tuple[str, str] | None:
    """The object, asked of the store, whose run a write is linked to: ("trace" or "logged_model", its id); None for
    a write linked by its body alone, or naming no such object."""
    if spec in THROUGH_MODEL:
        kind, object_id = "logged_model", path_params.get("model_id")
    elif spec in MODEL_IN_BODY:
        kind, object_id = "logged_model", document.get("model_id")
    elif spec in THROUGH_TRACE:
        kind, object_id = "trace", path_params.get("trace_id", path_params.get("request_id"))
    else:
        return None
    return (kind, object_id) if isinstance(object_id, str) and object_id else None


def source_run(kind: str, answer: Mapping[str, Any]) -> str | None:
    """The run a trace (`GET /api/3.0/mlflow/traces/{id}`) or logged model (`GET .../logged-models/{id}`) was
    recorded by, from the store's answer."""
    if kind == "trace":
        run = _at(answer, "trace", "trace_info", "trace_metadata", SOURCE_RUN)
    else:
        run = _at(answer, "model", "info", "source_run_id")
    return run if isinstance(run, str) and run else None


def linked_texts(spec: RouteSpec, document: Mapping[str, Any]) -> list[Text]:
    """Every string of a linked write's body that a store may keep, each with the kind of field it is in: below a
    field whose keys are the caller's (a trace's tags and metadata, an assessment's metadata and value), keys too;
    elsewhere not the ids (`*_id`, `*_ids`, `*_uuid`) nor a top-level `status`."""
    kinds = _KINDS[spec]
    found: list[Text] = []

    def kind(path: str, key: bool) -> str:
        best = ""
        for prefix in kinds:
            if len(prefix) > len(best) and (path == prefix or path.startswith((f"{prefix}.", f"{prefix}["))):
                best = prefix
        value_kind, key_kind = kinds[best]
        return (key_kind or value_kind) if key else value_kind

    def add(path: str, text: str, key: bool = False) -> None:
        found.append(Text(kind(path, key), text.encode("utf-8", "surrogatepass")))

    def visit(node: Any, path: str, keyed: bool) -> None:
        if type(node) is str:
            add(path, node)
        elif type(node) is dict:
            for name, value in node.items():
                if keyed:  # a key of the caller's choosing: text, and so is all below it
                    add(path, name, key=True)
                    visit(value, path, True)
                    continue
                if name.endswith(ID_SUFFIXES) or (not path and name in ENUM_FIELDS):
                    continue
                where = f"{path}.{name}" if path else name
                visit(value, where, where in USER_KEYED_PATHS)
        elif type(node) is list:
            for value in node:
                visit(value, path if keyed else f"{path}[]", keyed)

    visit(document, "", False)
    return found


def _at(node: object, *names: str) -> object:
    for name in names:
        node = node.get(name) if isinstance(node, dict) else None
    return node


def _list(node: object) -> list[object]:
    return node if isinstance(node, list) else []
