"""msgspec Structs for the few parts of MLflow bodies the gateway reads; the rest passes through untouched."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import msgspec


class IdFields(NamedTuple):
    """The fields a call names its experiments, runs and traces in, by kind; a kind's fields stand in for one
    another (v2 `request_id` for v3 `trace_id`, `run_uuid` for `run_id`, a list for one id)."""

    experiments: tuple[str, ...]
    runs: tuple[str, ...]
    traces: tuple[str, ...]


# Every field the guard reads as naming a call's objects (guard/request.py, from the body, the query and for traces
# the path); one an MLflow route's request message lacks is refused (mlflow_requests.ignored_id_field).
GUARD_ID_FIELDS = IdFields(
    experiments=("experiment_id", "experiment_ids"),
    runs=("run_id", "run_uuid", "run_ids"),
    traces=("request_id", "trace_id", "trace_ids"),
)


class RequestIds(msgspec.Struct):
    """Object ids a request body may carry. Decoding it also proves the body is one JSON object."""

    run_id: str | None = None
    run_uuid: str | None = None
    run_ids: list[str] | None = None
    experiment_id: str | None = None
    experiment_ids: list[str] | None = None
    name: str | None = None
    new_name: str | None = None
    model_id: str | None = None
    source_run_id: str | None = None
    source: str | None = None
    trace_id: str | None = None
    trace_ids: list[str] | None = None
    request_id: str | None = None
    dataset_id: str | None = None
    issue_id: str | None = None
    schema_id: str | None = None  # a label schema
    queue_id: str | None = None  # a review queue


class _CreatedRunInfo(msgspec.Struct):
    run_id: str
    experiment_id: str


class _CreatedRun(msgspec.Struct):
    info: _CreatedRunInfo


class CreateRunResponse(msgspec.Struct):
    run: _CreatedRun


def started_run(request: Mapping[str, Any], response: Mapping[str, Any]) -> tuple[str, str | None] | None:
    """(run id, experiment id) of the run a STARTS_RUN route's answer names: the prompt lab's `run` (as
    runs/create answers), evaluation's and issue detection's `run_id`, prompt optimisation's `job.run_id`; the
    experiment is the answer's, else the request's. None when the answer names no run."""
    run = response.get("run")
    info = run.get("info") if isinstance(run, dict) else None
    info = info if isinstance(info, dict) else {}
    job: Mapping[str, Any] = response["job"] if isinstance(response.get("job"), dict) else {}
    run_id = info.get("run_id") or response.get("run_id") or job.get("run_id")
    if not isinstance(run_id, str) or not run_id:
        return None
    experiment_id = info.get("experiment_id") or job.get("experiment_id") or request.get("experiment_id")
    return run_id, str(experiment_id) if experiment_id else None
