"""Rules of traces (v2 request ids and v3 trace ids, assessments, OTLP ingest): governed by their experiment."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.authz.decide import Everything
from gateway.authz.levels import Level
from gateway.core.ascii import ascii_lower
from gateway.core.errors import InvalidParameter, PermissionDenied, ResourceNotFound
from gateway.core.reserved import folded
from gateway.core.route_table import TRACES_LINK_PROMPTS, declared
from gateway.federation.guard.checks import Checks
from gateway.federation.guard.request import EMPTY_RESULT, Plan, Request, member
from gateway.federation.trace_tags import refuse_storage_tags

# The metadata keys by which the store links a trace, and an assessment, to the run that recorded it
# (mlflow.tracing.constant: TraceMetadataKey.SOURCE_RUN, AssessmentMetadataKey.SOURCE_RUN_ID).
SOURCE_RUN = "mlflow.sourceRun"
ASSESSMENT_SOURCE_RUN = "mlflow.assessment.sourceRunId"

TRACES_SEARCH_V2 = declared("GET /mlflow/traces")
TRACES_START_V2 = declared("POST /mlflow/traces")
TRACES_END_V2 = declared("PATCH /mlflow/traces/{request_id:str}")
TRACES_START_V3 = declared("POST /mlflow/traces", 3)
# The statuses of a v2 trace end the store records (mlflow.entities.TraceStatus, but TRACE_STATUS_UNSPECIFIED).
RECORDED_STATUSES = frozenset({"OK", "ERROR", "IN_PROGRESS"})
RECORDED_NUMBERS = frozenset({1, 2, 3})  # the same, as proto JSON may name them


async def trace_create(checks: Checks, request: Request, wanted: Level) -> Plan:
    """CAN_EDIT on every experiment the new trace (or OTLP export) goes into; it must name one. CAN_EDIT on every
    run its metadata names (`require_source_runs`). The assessments a v3 start carries name only assessments the
    trace holds (`require_own_assessments`)."""
    for experiment_id in request.trace_experiments():
        await checks.require_experiment(request, experiment_id, Level.CAN_EDIT)
    await require_source_runs(checks, request)
    await require_own_assessments(checks, request)
    return Plan()


async def require_source_runs(checks: Checks, request: Request) -> None:
    """CAN_EDIT on every run a trace or assessment being written names as the run that recorded it: a trace's
    `mlflow.sourceRun` (a v3 start's `trace_metadata`, a v2 start's or end's `request_metadata`), an assessment's
    `mlflow.assessment.sourceRunId` (those of a v3 start, of `assessments` create and update). A run the caller may
    not read is answered as a missing one (404), one it reads but may not change 403, as `runs/log-batch` is.

    The store takes these as links: a search of the run's traces (`run_id`, the run page's Traces tab) answers every
    trace naming it, and deleting the run deletes every assessment naming it, wherever they are. Logging a trace or
    an assessment to a run is a write to the run (the stock client sets both only inside a run of the caller's,
    `mlflow.start_run()`, an evaluation's run); before, anyone could put their trace among another's run's, in an
    experiment of their own, with a run id read anywhere."""
    for run_id in source_runs(request.document):
        await checks.require_run(request, run_id, Level.CAN_EDIT)


def source_runs(document: dict[str, Any]) -> list[str]:
    """The runs a trace call's body names as recording its trace or assessments, once each (none: an empty list):
    the value of every key a store may take for the link's (`names_source_run`, `names_assessment_run`). A value
    that is no run the caller may change is refused, whatever it is; MLflow's own clients write the keys as
    MLflow spells them."""
    found: list[object] = []
    trace = document.get("trace")
    info = trace.get("trace_info") if isinstance(trace, dict) else None
    if isinstance(info, dict):
        found += _named(info.get("trace_metadata"), names_source_run)
        for carried in _items(info.get("assessments")):
            found += _named(carried.get("metadata"), names_assessment_run)
    for item in _items(document.get("request_metadata")):
        if names_source_run(item.get("key")):
            found.append(item.get("value"))
    assessment = document.get("assessment")
    if isinstance(assessment, dict):
        found += _named(assessment.get("metadata"), names_assessment_run)
    return list(dict.fromkeys(run for run in found if isinstance(run, str) and run))


def names_source_run(key: object) -> bool:
    """Whether a store may take a trace's metadata `key` for `mlflow.sourceRun`. MLflow's sqlite and PostgreSQL
    stores compare it exactly (`trace_request_metadata.key = 'mlflow.sourceRun'`), but a MySQL one compares text
    by its collation, by default without regard to case, accents or trailing spaces: any key that folds to it."""
    return isinstance(key, str) and folded(key) == folded(SOURCE_RUN)


def names_assessment_run(key: object) -> bool:
    """Whether a store may take an assessment's metadata `key` for `mlflow.assessment.sourceRunId`. The entity reads
    the key exactly, but deleting a run deletes the assessments whose metadata, stored as JSON, holds
    `"mlflow.assessment.sourceRunId": "<run id>"`, found with SQL LIKE: anywhere in the text, so also after the
    quote of a key ending in one (`x"mlflow...`, written `"x\\"mlflow..."` in JSON), and on MySQL without regard to
    case (MLflow makes sqlite's LIKE case-sensitive; PostgreSQL's is). The JSON is ASCII (`json.dumps`), so only
    ASCII letters fold."""
    if not isinstance(key, str):
        return False
    lowered, wanted = ascii_lower(key), ASSESSMENT_SOURCE_RUN.lower()
    return lowered == wanted or lowered.endswith('"' + wanted)


def _named(mapping: object, names: Callable[[object], bool]) -> list[object]:
    """The values of a metadata map under every key `names` takes for a run's."""
    return [value for key, value in mapping.items() if names(key)] if isinstance(mapping, dict) else []


def _items(node: object) -> list[dict[str, Any]]:
    return [item for item in node if isinstance(item, dict)] if isinstance(node, list) else []


async def require_own_assessments(checks: Checks, request: Request) -> None:
    """A v3 start's assessments may name an assessment (their own `assessment_id`, the one they `overrides`) only
    when the store holds it on the trace being started; an assessment without an id gets one from the store.

    MLflow 3.17.2 keys an assessment by its id alone: a start naming a trace that exists merges each assessment it
    carries onto the row of that id, wherever it is (taking it off its trace, into the caller's), and deleting an
    assessment marks the one it `overrides` valid again, wherever it is. A reader of Alice's experiment, who knows
    her assessments' ids, took one into a trace of their own by starting it again, and made a feedback she had
    overridden count again by deleting an assessment of their own that claimed to override it."""
    info = request.document.get("trace")
    info = info.get("trace_info") if isinstance(info, dict) else None
    assessments = info.get("assessments") if isinstance(info, dict) else None
    if not assessments:
        return
    if not isinstance(assessments, list):
        raise InvalidParameter("'assessments' must be a list.")
    trace_id = info.get("trace_id") if isinstance(info, dict) else None
    for assessment in assessments:
        if not isinstance(assessment, dict):
            raise InvalidParameter("Each of 'assessments' must be an object.")
        for field in ("assessment_id", "overrides"):
            named = assessment.get(field)
            if named in (None, ""):
                continue
            if (
                isinstance(named, str)
                and isinstance(trace_id, str)
                and trace_id
                and await checks.lookups.holds_assessment(request.link, trace_id, named)
            ):
                continue
            if field == "overrides":
                raise ResourceNotFound(f"Assessment with ID '{named}' not found for trace '{trace_id}'")
            raise InvalidParameter(
                f"Assessment with ID '{named}' is not one of trace '{trace_id}': a started trace's new assessments "
                "get their ids from the store."
            )


async def trace_search(checks: Checks, request: Request, wanted: Level) -> Plan:
    """Readable experiments only: none readable answers an empty page, a mix of readable and hidden ones is
    refused (nested locations are not rewritten); naming no experiment needs CAN_READ on the workspace."""
    asked = request.trace_experiments()
    if not asked:
        # Nothing to narrow by: only a reader of the whole workspace may search it.
        checks.require_workspace(request, Level.CAN_READ)
        return Plan()
    readable = checks.authorizer.readable_experiments(request.principal, request.link.workspace_id)
    if isinstance(readable, Everything) or all(e in readable for e in asked):
        return Plan()
    kept = [e for e in asked if e in readable]
    if not kept:
        return Plan(answer=EMPTY_RESULT)
    for experiment_id in asked:  # a mixed list: refuse rather than rewrite nested locations
        await checks.require_experiment(request, experiment_id, Level.CAN_READ)
    return Plan()


async def trace(checks: Checks, request: Request, wanted: Level) -> Plan:
    """`wanted` on every trace and experiment the call names, CAN_EDIT on a run it links traces or assessments to
    (`require_source_runs`), CAN_READ on every prompt it links a trace to."""
    if request.ids.run_id:
        await checks.require_run(request, request.ids.run_id, Level.CAN_EDIT)
    experiment_ids = request.experiment_ids(required=False)
    for experiment_id in experiment_ids:
        await checks.require_experiment(request, experiment_id, wanted)
    trace_ids = request.trace_ids()
    if not (trace_ids or request.ids.run_id or experiment_ids):
        raise PermissionDenied("This trace call names no trace or experiment.")
    await checks.require_traces(request, trace_ids, wanted)
    await require_source_runs(checks, request)
    if request.spec == TRACES_LINK_PROMPTS:
        for name in linked_prompts(request):
            await checks.require_model(request, name, Level.CAN_READ)
    return Plan()


def admin_trace(checks: Checks, request: Request) -> Plan:
    """An account admin's trace call: every prompt linked still names a version the store reads."""
    if request.spec == TRACES_LINK_PROMPTS:
        linked_prompts(request)
    return Plan()


def linked_prompts(request: Request) -> list[str]:
    """The prompts (registered models, by name) a `traces/link-prompts` call links its trace to, once each.

    The store records `<name>/<version>` for the trace without reading the prompt (any name is taken), and trace
    searches by `prompt = "<name>/<version>"` answer from those records: a prompt the caller may not read is
    refused as a missing one, as the stock client links only the prompts a traced function loaded. Whoever calls, each
    must name its prompt and a version the store reads (`store_version`)."""
    versions = request.document.get("prompt_versions")
    if versions is None:
        return []
    if not isinstance(versions, list):
        raise InvalidParameter("'prompt_versions' must be a list.")
    names: list[str] = []
    for item in versions:
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str) or not name:
            raise InvalidParameter("Each of 'prompt_versions' must name its prompt ('name').")
        store_version(item.get("version"))
        names.append(name)
    return list(dict.fromkeys(names))


def store_version(version: object) -> None:
    """A linked prompt's version must be one the store reads: MLflow 3.17.2 takes `int()` of it (an absent one is
    "") and answered anything else with a 500 page of its own."""
    if version is None:
        version = ""
    try:
        if not isinstance(version, str):
            raise ValueError(version)
        int(version)
    except ValueError:
        raise InvalidParameter(
            f"Invalid value {version!r} for parameter 'prompt_versions.version' supplied: a prompt's version is a "
            "number."
        ) from None


def refuse_unreadable_trace_fields(request: Request) -> None:
    """What MLflow 3.17.2's deprecated v2 trace routes cannot read and fail on with their own 500, whoever calls:

    - a v2 trace search (`GET /mlflow/traces`) naming an empty experiment id: MLflow reads `experiment_ids` as a
      repeated field (`request.args.getlist`), checks only that each is a string, and its store takes `int()` of
      each, so `?experiment_ids=` answered 500 (`invalid literal for int()`) to a reader of the whole workspace,
      whom the guard lets search without naming an experiment (it reads an empty value as naming nothing);
    - a v2 trace start (`POST /mlflow/traces`) without an experiment id, for the same `int()`, and a v3 one
      (`trace.trace_info.trace_location.mlflow_experiment.experiment_id`, a non-object `trace` included);
    - a v2 trace end (`PATCH /mlflow/traces/{request_id}`) without a status the store can record (OK, ERROR,
      IN_PROGRESS): MLflow maps an absent, unknown or unspecified one to no `TraceState` and fails.

    Refused with 400 INVALID_PARAMETER_VALUE before the store."""
    spec = request.spec
    if spec == TRACES_SEARCH_V2:
        if any(not value.strip() for value in request.params().get("experiment_ids", [])):
            raise InvalidParameter(
                "Invalid value '' for parameter 'experiment_ids' supplied: each experiment id of a trace search must "
                "be an experiment's id."
            )
    elif spec == TRACES_START_V2:
        experiment_id = request.document.get("experiment_id")
        if not isinstance(experiment_id, str) or not experiment_id.strip():
            raise InvalidParameter("Missing value for required parameter 'experiment_id'.")
    elif spec == TRACES_START_V3:
        info = member(member(request.document, "trace"), "trace_info")
        location = member(member(info, "trace_location"), "mlflow_experiment")
        experiment_id = location.get("experiment_id")
        if not isinstance(experiment_id, str) or not experiment_id.strip():
            raise InvalidParameter(
                "Missing value for required parameter 'trace.trace_info.trace_location.mlflow_experiment"
                ".experiment_id'."
            )
    elif spec == TRACES_END_V2:
        status = request.document.get("status")
        if not (
            (type(status) is str and status in RECORDED_STATUSES)
            or (type(status) is int and status in RECORDED_NUMBERS)
        ):
            raise InvalidParameter(
                f"Invalid value {status!r} for parameter 'status' supplied: a trace ends "
                f"{', '.join(sorted(RECORDED_STATUSES))}."
            )


def refuse_storage_tag_writes(request: Request) -> None:
    """No call sets a tag the store reads as where a trace's data lives (trace_tags.py), whoever calls: the key of
    a set-tag, the `tags` of a trace being started or ended (v2 list, v3 map)."""
    document = request.document
    keys: list[Any] = []
    if request.spec.method == "PATCH" and request.spec.path.endswith("/tags"):
        keys.append(document.get("key"))
    tags = document.get("tags")
    if isinstance(tags, list):
        keys.extend(tag.get("key") for tag in tags if isinstance(tag, dict))
    trace = document.get("trace")
    info = trace.get("trace_info") if isinstance(trace, dict) else None
    v3_tags = info.get("tags") if isinstance(info, dict) else None
    if isinstance(v3_tags, dict):
        keys.extend(v3_tags)
    refuse_storage_tags(keys)
