"""The store's 5xx answers the gateway answers as the 4xx they are (federation/store_answers.py), and no others."""

from __future__ import annotations

import json

import pytest

from gateway.core.errors import ResourceNotFound
from gateway.core.route_table import RouteSpec, declared
from gateway.federation.store_answers import known_failure

GET_TRACE = declared("GET /mlflow/traces/get", 3)
BATCH_GET = declared("GET /mlflow/traces/batchGet", 3)
NO_SPANS = {
    "error_code": "INTERNAL_ERROR",
    "message": "Trace data not stored in tracking store",
    "sqlstate": "XXM00",
    "error_class": "CLIENT_INTERNAL_ERROR",
}


@pytest.mark.parametrize("spec", [GET_TRACE, BATCH_GET])
def test_a_trace_without_spans_in_the_store_is_not_found(spec: RouteSpec) -> None:
    error = known_failure(spec, 500, json.dumps(NO_SPANS).encode())
    assert isinstance(error, ResourceNotFound) and error.status == 404
    assert error.error_code == "RESOURCE_DOES_NOT_EXIST"


@pytest.mark.parametrize(
    ("spec", "status", "body"),
    [
        # Any other failure of the store is its own to report: a real outage stays a 5xx.
        (GET_TRACE, 500, json.dumps({**NO_SPANS, "message": "(sqlite3.OperationalError) database is locked"})),
        (GET_TRACE, 500, json.dumps({**NO_SPANS, "error_code": "TEMPORARILY_UNAVAILABLE"})),
        (GET_TRACE, 503, json.dumps(NO_SPANS)),
        (GET_TRACE, 500, "<!doctype html><title>500 Internal Server Error</title>"),
        (GET_TRACE, 500, json.dumps([NO_SPANS])),
        (GET_TRACE, 500, json.dumps({"error_code": 1, "message": NO_SPANS["message"]})),
        (GET_TRACE, 200, json.dumps(NO_SPANS)),
        # The same words on a route where the store does not answer so for a request's own reasons.
        (declared("GET /mlflow/traces/{trace_id:str}", 3), 500, json.dumps(NO_SPANS)),
        (declared("POST /mlflow/runs/create"), 500, json.dumps(NO_SPANS)),
    ],
)
def test_other_answers_go_out_as_they_came(spec: RouteSpec, status: int, body: str) -> None:
    assert known_failure(spec, status, body.encode()) is None
