"""msgspec Structs for the few parts of MLflow bodies the gateway reads; the rest passes through untouched."""

from __future__ import annotations

import msgspec


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
