"""Store answers of 5xx that are the request's fault, answered as the 4xx they are.

The gateway forwards a store's answer as it came, 5xx included: a store that fails reports its failure in its own
words, the client retries it (it retries 5xx for minutes), and an outage is never dressed up as something else. The
gateway's own 5xx are 503 `TEMPORARILY_UNAVAILABLE` for a store it cannot reach and 504 `DEADLINE_EXCEEDED` for one
that does not answer in time (README, "Status codes").

A few 5xx answers of MLflow 3.17.2 are no failure of the store but its fixed answer to what was asked, the same on
every retry. Those are listed here, each matched by route, status, error code and message exactly, and answered as
the error they are; any other 5xx goes out as the store sent it.

- `GET /api/3.0/mlflow/traces/get` and `traces/batchGet` of a trace whose spans the store does not keep in its
  database (a trace started without spans, or one whose data is a `traces.json` in its artifact folder, which the
  stock client reads with `get-trace-artifact` and never asks these routes for): the SQL store raises
  `MlflowTracingException("Trace data not stored in tracking store")`, 500 `INTERNAL_ERROR`. The trace has no
  spans to answer with: 404 `RESOURCE_DOES_NOT_EXIST`.
- Every artifact proxy route (`/mlflow-artifacts/...`) of a store started with `--no-serve-artifacts`: MLflow answers
  503 itself, from its Flask handlers as text/html (`Endpoint: <rule> disabled due to the mlflow server running with
  `--no-serve-artifacts`...`) and from its artifact router (uploads, downloads) as FastAPI's JSON
  (`{"detail": "Artifact serving is disabled. ..."}`), neither in MLflow's error shape. The store is up and says
  the same on every retry: 501 `NOT_IMPLEMENTED` (the operation is not enabled on that store; the stock client does
  not retry a 501), naming the workspace and what the operator must change. Taken for a proxy's 503 it went out as
  `TEMPORARILY_UNAVAILABLE` with `Retry-After`, which the client retried for minutes, or as the router's JSON
  without an error code.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import msgspec

from gateway.core.errors import GatewayError, ResourceNotFound
from gateway.core.route_table import FORWARDED_ROUTES, SERVER_VERSION, Body, RouteSpec, declared

# The largest store error body read to match it (MLflow's are a few hundred bytes).
MAX_ERROR_BODY = 64 * 1024

_NO_SPANS = (
    "Trace data is not stored in the tracking store: the trace has no spans there "
    "(a trace's data outside the store is read with get-trace-artifact)."
)

# route -> {(status, error_code, message): the error it is answered as}
KNOWN: dict[RouteSpec, dict[tuple[int, str, str], Callable[[], GatewayError]]] = {
    declared("GET /mlflow/traces/get", 3): {
        (500, "INTERNAL_ERROR", "Trace data not stored in tracking store"): lambda: ResourceNotFound(_NO_SPANS),
    },
    declared("GET /mlflow/traces/batchGet", 3): {
        (500, "INTERNAL_ERROR", "Trace data not stored in tracking store"): lambda: ResourceNotFound(_NO_SPANS),
    },
}

# MLflow's 503 for an artifact route of a server started with `--no-serve-artifacts`: its Flask handlers'
# (`_disable_unless_serve_artifacts`, which names the route's rule) and its artifact router's (`upload_artifact`,
# `download_artifact`: FastAPI's HTTPException, answered `{"detail": ...}`).
ARTIFACT_SERVING_OFF = 503
_SERVING_OFF_TEXT = re.compile(
    r"Endpoint: /\S* disabled due to the mlflow server running with `--no-serve-artifacts`\. To enable artifacts "
    r"server functionality, run `mlflow server` with `--serve-artifacts`"
)
_SERVING_OFF_DETAIL = "Artifact serving is disabled. Run `mlflow server` with `--serve-artifacts` to enable."
# The routes MLflow answers so: the artifact proxy's (tests/unit/test_store_answers.py holds them to MLflow's code).
ARTIFACT_PROXY: frozenset[RouteSpec] = frozenset(
    spec for spec in FORWARDED_ROUTES if not spec.absolute and spec.path.startswith("/mlflow-artifacts/")
)


class FeatureNotServed(GatewayError):
    """The store is up but was started without what the route needs: the same answer on every retry."""

    error_code = "NOT_IMPLEMENTED"
    status = 501


def reads_failures(spec: RouteSpec) -> bool:
    """Whether a 5xx answer of `spec` must be read to tell a known one apart."""
    return spec in KNOWN or spec in ARTIFACT_PROXY


def known_failure(spec: RouteSpec, status: int, body: bytes, workspace: str = "") -> GatewayError | None:
    """The error a known 5xx answer of the store stands for; None for any other answer (forwarded as it came)."""
    if status < 500 or len(body) > MAX_ERROR_BODY:
        return None
    if spec in ARTIFACT_PROXY and status == ARTIFACT_SERVING_OFF and _serving_off(body):
        return FeatureNotServed(
            f"The store of workspace '{workspace}' does not serve artifacts: it runs with --no-serve-artifacts. "
            "An operator must start it with --serve-artifacts."
        )
    answers = KNOWN.get(spec)
    if answers is None:
        return None
    try:
        document = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return None
    if not isinstance(document, dict):
        return None
    error_code, message = document.get("error_code"), document.get("message")
    if not isinstance(error_code, str) or not isinstance(message, str):
        return None
    error = answers.get((status, error_code, message))
    return error() if error is not None else None


def _serving_off(body: bytes) -> bool:
    """Whether `body` is MLflow's answer for an artifact route of a server that does not serve artifacts."""
    if body[:1] == b"{":
        try:
            document = msgspec.json.decode(body)
        except msgspec.DecodeError:
            return False
        return isinstance(document, dict) and document == {"detail": _SERVING_OFF_DETAIL}
    try:
        text = body.decode()
    except UnicodeDecodeError:
        return False
    return _SERVING_OFF_TEXT.fullmatch(text) is not None


# The bodies of routes MLflow answers with JSON (a proto message, a model, a GraphQL result). The other kinds pass
# the store's answer through as it came: a file's bytes (DOWNLOAD), MLflow 3.17.2's artifact upload, which answers
# 200 with no body and no Content-Type (UPLOAD), an OTLP export's protobuf (OPAQUE), an AI-gateway provider's answer,
# server-sent events when streamed (PAYLOAD).
JSON_BODIES = frozenset({Body.JSON, Body.GRAPHQL})
# Routes with a JSON request that MLflow answers with something else: `/version`, the version as text/html.
ANSWERED_OTHERWISE = frozenset({SERVER_VERSION})


def answers_json(spec: RouteSpec) -> bool:
    """Whether MLflow 3.17.2 answers `spec` with `application/json` whenever it succeeds: the routes whose body is
    one of `JSON_BODIES`, but those of `ANSWERED_OTHERWISE`. An inclusion: a route of a new kind of body passes
    through as it came until it is listed here. tests/unit/test_store_answers.py holds this to what MLflow's own
    handlers answer, route by route (tests/support/mlflow_surface.py `answer_forms`)."""
    return spec.body in JSON_BODIES and spec not in ANSWERED_OTHERWISE


def foreign_error(spec: RouteSpec, status: int, content_type: str) -> tuple[int, str] | None:
    """(status, error_code) for a store answer that cannot be MLflow's own and is not in its shape (not JSON): a 502,
    503 or 504 page of a proxy in front of the store (MLflow's server answers none of them but the 503 of a feature it
    was started without, which `known_failure` reads first where the gateway knows it), a redirect, which the
    gateway does not follow (the store could not be used as configured: 502), and a success of a route MLflow answers
    with JSON (`answers_json`) that is not JSON or has no body (a 204; a proxy's sign-in page answered 200), which a
    client would read as a success it cannot parse and a browser would render in the gateway's origin (502). None for
    any other answer, which goes out as it came: MLflow's own 4xx and 500 answers are its words, JSON or not.

    A client reading such a page fails on the body rather than on the error; in MLflow's shape it reads an error code
    and waits out the outage as for any 503."""
    if status in (204, 205) and answers_json(spec):
        return 502, "INTERNAL_ERROR"
    if content_type.split(";", 1)[0].strip().lower() == "application/json":
        return None
    if 200 <= status < 300 and answers_json(spec):
        return 502, "INTERNAL_ERROR"
    if 300 <= status < 400 and status != 304:
        return 502, "INTERNAL_ERROR"
    if status in (502, 503):
        return status, "TEMPORARILY_UNAVAILABLE"
    if status == 504:
        return status, "DEADLINE_EXCEEDED"
    return None
