"""Store answers of 5xx that are no failure of the store, answered as the error they are; error answers outside
MLflow's error shape, answered in it.

The gateway forwards a store's answer as it came, 5xx included: a store that fails reports its failure in its own
words, the client retries it (it retries 5xx for minutes), and an outage is never dressed up as something else.
Its words must be MLflow's error shape, though (`unshaped_error`): a page (Flask's HTML 500, werkzeug's 400),
plain text, FastAPI's `{"detail": ...}` or nothing is answered as an MLflow error with a status saying whose the
failure is. The gateway's own 5xx are 503 `TEMPORARILY_UNAVAILABLE` for a store it cannot reach and 504
`DEADLINE_EXCEEDED` for one that does not answer in time (README, "Status codes").

A few 5xx answers of MLflow 3.17.2 are no failure of the store but its fixed answer to what was asked, the same on
every retry. Those are listed here, each matched exactly (status, media type, body; route, where MLflow answers
so on some routes only), and answered as the error they are; any other 5xx in MLflow's shape goes out as the store
sent it.

- `POST /api/3.0/mlflow/traces/{trace_id}/assessments` naming an `assessment_id` that an assessment holds already, on
  whatever trace: MLflow keys assessments by their id alone, and its SQL store answers the failed insert with 500
  `INTERNAL_ERROR` "Failed to create assessment for trace '<the call's trace>' due to a constraint violation.". 400
  `RESOURCE_ALREADY_EXISTS`, naming no trace (`KNOWN_PATTERNS`).
- `POST /api/2.0/mlflow/experiments/update` naming a deleted experiment: MLflow's SQL store renames active
  experiments only and answers 500 `INVALID_STATE` "Cannot rename a non-active experiment.", which the stock client
  retried for minutes (a rename in the web UI of an experiment deleted meanwhile, say). 409 `INVALID_STATE`, saying
  to restore it first; the store changed nothing.
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
  without an error code. Its artifact router answers a second JSON 503 when serving is on but no destination is set
  (`--artifacts-destination ""`): `{"detail": "Artifact serving is not configured."}`, 501 as well, naming the
  flag.
- Every tracking route of a store started with `--artifacts-only` (an artifact proxy, no tracking server): MLflow's
  Flask handlers answer 503 text/html (`Endpoint: <rule> disabled due to the mlflow server running in
  `--artifacts-only` mode...`). 501 `NOT_IMPLEMENTED` as above. Its `/graphql` and OTLP `/v1/traces` are not
  refused: it answers them from a database of its own (`mlflow.db` in its working directory), as a tracking server
  would, so nothing here tells them apart (linking refuses such a store; start-up warns about a configured one).
- Every call the gateway addresses to a workspace of a store started without `--enable-workspaces` (its stores
  entry says `workspaces = true`): MLflow refuses the X-MLFLOW-WORKSPACE header before any handler runs, 500
  `FEATURE_DISABLED` `Workspace APIs are not available: workspaces are not enabled on this server` (MLflow maps
  no status to that code, hence its 500, which the stock client retries for minutes). 501 `NOT_IMPLEMENTED` as
  above. Its workspace routes answer a third 503 text/html (`... disabled because the server is running without
  workspaces support...`); the gateway answers those routes itself, and refuses to link a workspace addressed by
  workspace on a store whose server-info says `workspaces_enabled: false` (workspaces/service.py).

501 `NOT_IMPLEMENTED` is what MLflow itself answers for a feature its server was started without where it answers
in its own shape (the AI gateway's routes of a server without it: `_disable_if_gateway_disabled`); it is no outage,
and MLflow's client does not retry it. MLflow refuses each of these before its handler runs, so a write answered so
applied nothing (federation/service.py settles it).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import msgspec

from gateway.core.errors import AlreadyExists, GatewayError, InvalidState, ResourceNotFound
from gateway.core.route_table import EXPERIMENTS_UPDATE, FORWARDED_ROUTES, SERVER_VERSION, Body, RouteSpec, declared

# The largest store error body read to match it (MLflow's are a few hundred bytes).
MAX_ERROR_BODY = 64 * 1024

_NO_SPANS = (
    "Trace data is not stored in the tracking store: the trace has no spans there "
    "(a trace's data outside the store is read with get-trace-artifact)."
)

_NOT_ACTIVE = (
    "Cannot rename a non-active experiment: the experiment is deleted. Restore it "
    "(POST /api/2.0/mlflow/experiments/restore) before renaming it."
)

# route -> {(status, error_code, message): the error it is answered as}
KNOWN: dict[RouteSpec, dict[tuple[int, str, str], Callable[[], GatewayError]]] = {
    EXPERIMENTS_UPDATE: {
        (500, "INVALID_STATE", "Cannot rename a non-active experiment."): lambda: InvalidState(_NOT_ACTIVE),
    },
    declared("GET /mlflow/traces/get", 3): {
        (500, "INTERNAL_ERROR", "Trace data not stored in tracking store"): lambda: ResourceNotFound(_NO_SPANS),
    },
    declared("GET /mlflow/traces/batchGet", 3): {
        (500, "INTERNAL_ERROR", "Trace data not stored in tracking store"): lambda: ResourceNotFound(_NO_SPANS),
    },
}

_ID_TAKEN = (
    "An assessment with the assessment_id this call names exists already (the store keys assessments by their id "
    "alone, whatever trace holds them); leave assessment_id out and the store gives the new assessment one."
)

# route -> [(status, error_code, the message's pattern, the error it is answered as)]: answers naming the call's own
# objects in their message.
KNOWN_PATTERNS: dict[RouteSpec, list[tuple[int, str, re.Pattern[str], Callable[[], GatewayError]]]] = {
    declared("POST /mlflow/traces/{trace_id:str}/assessments", 3): [
        (
            500,
            "INTERNAL_ERROR",
            re.compile(r"Failed to create assessment for trace '[^']*' due to a constraint violation\."),
            lambda: AlreadyExists(_ID_TAKEN),
        )
    ],
}

# MLflow's 503 for a route of a server started without what it needs: its Flask handlers answer text/html naming
# the route's rule (`_disable_unless_serve_artifacts`, `_disable_if_artifacts_only`), its artifact router
# (`upload_artifact`, `download_artifact`) FastAPI's JSON.
FEATURE_OFF = 503
_HTML, _JSON = "text/html", "application/json"
_SERVING_OFF_TEXT = re.compile(
    r"Endpoint: /\S* disabled due to the mlflow server running with `--no-serve-artifacts`\. To enable artifacts "
    r"server functionality, run `mlflow server` with `--serve-artifacts`"
)
_SERVING_OFF_DETAIL = "Artifact serving is disabled. Run `mlflow server` with `--serve-artifacts` to enable."
# The artifact router's answer when serving is on but no destination is set (`--artifacts-destination ""`).
_NO_DESTINATION_DETAIL = "Artifact serving is not configured."
_ARTIFACTS_ONLY_TEXT = re.compile(
    r"Endpoint: /\S* disabled due to the mlflow server running in `--artifacts-only` mode\. To enable tracking "
    r"server functionality, run `mlflow server` without `--artifacts-only`"
)
# MLflow's answer to a workspace header it cannot serve (`resolve_workspace_for_request_if_enabled`), on every route.
WORKSPACE_HEADER_REFUSED = 500
_WORKSPACE_HEADER_REFUSAL = {
    "error_code": "FEATURE_DISABLED",
    "message": "Workspace APIs are not available: workspaces are not enabled on this server",
}
# The routes MLflow answers so: the artifact proxy's (tests/unit/test_store_answers.py holds them to MLflow's code).
ARTIFACT_PROXY: frozenset[RouteSpec] = frozenset(
    spec for spec in FORWARDED_ROUTES if not spec.absolute and spec.path.startswith("/mlflow-artifacts/")
)


class FeatureNotServed(GatewayError):
    """The store is up but was started without what the route needs: the same answer on every retry."""

    error_code = "NOT_IMPLEMENTED"
    status = 501


def known_failure(
    spec: RouteSpec, status: int, body: bytes, workspace: str = "", *, content_type: str | None = None
) -> GatewayError | None:
    """The error a known 5xx answer of the store stands for; None for any other answer (forwarded as it came).
    The forwarder reads every 5xx answer of a known size up to MAX_ERROR_BODY for it, whatever the route, and gives
    its `content_type` (its media type must be the one MLflow sends); None leaves the media type unchecked."""
    if status < 500 or len(body) > MAX_ERROR_BODY:
        return None
    media_type = None if content_type is None else content_type.split(";", 1)[0].strip().lower()
    store = f"The store of workspace '{workspace}'"
    if status == FEATURE_OFF and media_type in (None, _HTML):
        text = _text(body)
        if spec in ARTIFACT_PROXY and _SERVING_OFF_TEXT.fullmatch(text):
            return _not_serving_artifacts(store)
        if _ARTIFACTS_ONLY_TEXT.fullmatch(text):
            return FeatureNotServed(
                f"{store} is an artifact proxy without tracking: it runs with --artifacts-only. An operator must "
                "link the workspace to a tracking server (mlflow server without --artifacts-only)."
            )
        if media_type == _HTML:
            return None
    if media_type not in (None, _JSON):
        return None
    document = _document(body)
    if status == FEATURE_OFF and spec in ARTIFACT_PROXY and document == {"detail": _SERVING_OFF_DETAIL}:
        return _not_serving_artifacts(store)
    if status == FEATURE_OFF and spec in ARTIFACT_PROXY and document == {"detail": _NO_DESTINATION_DETAIL}:
        return FeatureNotServed(
            f"{store} serves artifacts without a destination: it runs with an empty --artifacts-destination. An "
            "operator must start it with --artifacts-destination set to where its artifacts are kept."
        )
    error_code, message = document.get("error_code"), document.get("message")
    if (
        status == WORKSPACE_HEADER_REFUSED
        and {"error_code": error_code, "message": message} == _WORKSPACE_HEADER_REFUSAL
    ):
        return FeatureNotServed(
            f"{store} runs without workspaces (no --enable-workspaces), though the gateway's configuration addresses "
            "it by workspace. An operator must start it with --enable-workspaces."
        )
    if not isinstance(error_code, str) or not isinstance(message, str):
        return None
    error = KNOWN.get(spec, {}).get((status, error_code, message))
    if error is not None:
        return error()
    for known_status, known_code, pattern, answer in KNOWN_PATTERNS.get(spec, ()):
        if (status, error_code) == (known_status, known_code) and pattern.fullmatch(message):
            return answer()
    return None


def _not_serving_artifacts(store: str) -> FeatureNotServed:
    return FeatureNotServed(
        f"{store} does not serve artifacts: it runs with --no-serve-artifacts. An operator must start it with "
        "--serve-artifacts."
    )


def _text(body: bytes) -> str:
    try:
        return body.decode()
    except UnicodeDecodeError:
        return ""


def _document(body: bytes) -> dict[str, object]:
    try:
        document = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return {}
    return document if isinstance(document, dict) else {}


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
    any other answer, which `unshaped_error` judges next when it is an error.

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


# The routes whose errors MLflow answers in its error shape: every one but a body handed to or taken from something
# else (an AI-gateway provider's answer, whose errors are the provider's; an OTLP export's).
_OWN_ERRORS = frozenset(Body) - {Body.PAYLOAD, Body.OPAQUE}
# The error code of an error answer not in MLflow's shape, by status: the one MLflow's client reads such a status
# as (`mlflow.exceptions.HTTP_STATUS_TO_ERROR_CODE`), BAD_REQUEST for any other 4xx.
_CLIENT_ERRORS = {404: "ENDPOINT_NOT_FOUND", 409: "ALREADY_EXISTS", 429: "RESOURCE_EXHAUSTED", 499: "CANCELLED"}
# What a store answers the gateway's own credentials with (MLflow's basic-auth app: 401 or 403 text/html; a proxy's
# 407): the caller's credentials are the gateway's, checked already, and the store's refusal is the gateway's.
_REFUSED_THE_GATEWAY = frozenset({401, 403, 407})


def reads_error(spec: RouteSpec, status: int) -> bool:
    """Whether an answer of `status` on `spec` is an error that must be in MLflow's shape (`unshaped_error`)."""
    return status >= 400 and spec.body in _OWN_ERRORS


def unshaped_error(
    spec: RouteSpec, status: int, content_type: str, body: bytes | None, workspace: str = ""
) -> GatewayError | None:
    """The error a store's error answer (4xx, 5xx) stands for when it is not in MLflow's error shape (a JSON object
    with an `error_code` and a `message`, as every MLflow handler answers): Flask's or werkzeug's HTML pages (a 500
    of a handler that raised something not MLflow's, a 400 of a query parameter it indexed without checking),
    FastAPI's `{"detail": ...}`, plain text, an empty body. None for an MLflow error, which goes out as it came,
    and for an answer not read here (`reads_error`). `body`: the answer, read when it is JSON of a known size up to
    MAX_ERROR_BODY, or b"" for an answer of no length (None: not read).

    A client reads the error code and the message; the status says whose the failure is. A 4xx keeps its status,
    with the code MLflow's client reads it as. A 401, 403 or 407 refused the gateway's credentials, not the caller's
    (502). A 500 or any other 5xx is the store's failure (502 INTERNAL_ERROR), a 501 what it does not implement, a
    502 or 503 an outage (TEMPORARILY_UNAVAILABLE, with Retry-After), a 504 a timeout. The store's own words are
    kept where FastAPI gave one (`detail` as text); a page is named, not passed on."""
    if not reads_error(spec, status):
        return None
    media_type = content_type.split(";", 1)[0].strip().lower()
    detail = ""
    if body == b"":
        what = "no body"
    elif media_type == _JSON:
        if body is None:
            return None  # not read (no length, or longer than MLflow's errors): passed on as it came
        document = _document(body)
        if isinstance(document.get("error_code"), str) and isinstance(document.get("message"), str):
            return None
        found = document.get("detail")
        what = "JSON that is not an MLflow error"
        if isinstance(found, str) and found.strip():
            detail = f": {found.strip()[:500]}"
    elif media_type == _HTML:
        what = "an HTML page"
    else:
        what = f"a body of type '{media_type or 'unknown'}'"
    if status in _REFUSED_THE_GATEWAY:
        code, answered = "INTERNAL_ERROR", 502
    elif status < 500:
        code, answered = _CLIENT_ERRORS.get(status, "BAD_REQUEST"), status
    elif status == 501:
        code, answered = "NOT_IMPLEMENTED", 501
    elif status in (502, 503):
        code, answered = "TEMPORARILY_UNAVAILABLE", status
    elif status == 504:
        code, answered = "DEADLINE_EXCEEDED", 504
    else:
        code, answered = "INTERNAL_ERROR", 502
    headers = {"Retry-After": "5"} if code == "TEMPORARILY_UNAVAILABLE" else {}
    message = f"The store of workspace '{workspace}' answered {status} with {what}{detail}."
    return GatewayError(message, error_code=code, status=answered, headers=headers)
