"""The store's answers the gateway does not pass on as they came (federation/store_answers.py): the 5xx it answers
as the 4xx they are, and no others; the successes that cannot be MLflow's, on the routes MLflow answers with JSON,
held route by route to what MLflow 3.17.2's handlers answer."""

from __future__ import annotations

import json

import pytest

from gateway.core.errors import AlreadyExists, InvalidState, ResourceNotFound
from gateway.core.route_table import (
    ARTIFACT_UPLOAD,
    EXPERIMENTS_UPDATE,
    FORWARDED_ROUTES,
    UI_UPLOAD_ARTIFACT,
    Body,
    RouteSpec,
    declared,
)
from gateway.federation.store_answers import (
    ARTIFACT_PROXY,
    FeatureNotServed,
    answers_json,
    foreign_error,
    known_failure,
    unshaped_error,
)
from tests.support.mlflow_surface import JSON

GET_TRACE = declared("GET /mlflow/traces/get", 3)
BATCH_GET = declared("GET /mlflow/traces/batchGet", 3)
HTML, JSON_TYPE = "text/html; charset=utf-8", "application/json"
NO_SPANS = {
    "error_code": "INTERNAL_ERROR",
    "message": "Trace data not stored in tracking store",
    "sqlstate": "XXM00",
    "error_class": "CLIENT_INTERNAL_ERROR",
}


@pytest.mark.parametrize("spec", [GET_TRACE, BATCH_GET])
def test_a_trace_without_spans_in_the_store_is_not_found(spec: RouteSpec) -> None:
    error = known_failure(spec, 500, json.dumps(NO_SPANS).encode(), content_type=JSON_TYPE)
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
    assert known_failure(spec, status, body.encode(), content_type=JSON_TYPE) is None


# -- which successes must be JSON, held to MLflow's own handlers ---------------------------------------------------

# Forwarded routes whose handler returns what the code reading it cannot tell (tests/support/mlflow_surface.py
# `answer_forms` gives them as `unread: ...`), with what MLflow 3.17.2's code answers there: True for
# application/json on every success.
REVIEWED: dict[str, tuple[bool, str]] = {
    "GET /ajax-api/2.0/mlflow/gateway-proxy": (
        True,
        '{"endpoints": []} without a deployments target, else the target\'s endpoint listing (an object), which '
        "Flask answers as JSON",
    ),
    "POST /ajax-api/2.0/mlflow/gateway-proxy": (
        False,
        "the deployments target's answer to an invocation, any JSON value: Flask answers a string as text/html",
    ),
    **dict.fromkeys(
        (
            "POST /gateway/openai/v1/embeddings",
            "POST /gateway/openai/v1/responses/compact",
            "POST /gateway/gemini/v1beta/models/{endpoint_name}:generateContent",
            "POST /gateway/typesafe/v1/systemone",
        ),
        (False, "the AI gateway's call of a provider, answered in the provider's protocol"),
    ),
}
# Forwarded routes MLflow answers with application/json whose answer the gateway passes through as it came all the
# same (their body is not JSON_BODIES), with the reason.
PASSED_THROUGH: dict[str, str] = {
    "GET /gateway/mlflow/v1/models": "the AI gateway's routes speak a provider's protocol and pass through whole",
    "POST /ajax-api/2.0/mlflow/upload-artifact": (
        "the UI's upload answers 200 application/json with an empty body; an upload's answer passes as it came"
    ),
}
NOT_JSON_FORMS = ("not json: ", "file: ", "text: ")


@pytest.fixture(scope="module")
def answers_of_mlflow() -> dict[str, frozenset[str]]:
    pytest.importorskip("mlflow.server")
    from tests.support.mlflow_surface import answer_forms

    return answer_forms()


def _upstream(spec: RouteSpec) -> str:
    from tests.support.mlflow_surface import normalised

    return f"{spec.method} {normalised(spec.upstream_prefix + spec.path)}"


def _mlflow_answers_json(route: str, forms: frozenset[str]) -> bool | None:
    """True if MLflow answers every success of `route` with JSON, False if some success is not, None if its code
    does not tell and nobody reviewed it."""
    if any(form.startswith(NOT_JSON_FORMS) for form in forms):
        return False
    if forms == {JSON}:
        return True
    return REVIEWED[route][0] if route in REVIEWED else None


def test_every_forwarded_route_is_held_to_what_mlflow_answers(answers_of_mlflow: dict[str, frozenset[str]]) -> None:
    """A route whose MLflow handler can succeed with a file, text, protobuf, a stream, an empty answer without a
    content type or a 204 is no JSON route (before 5e664ad the artifact upload was one, and every log_artifact
    through the gateway was a 502); a route MLflow always answers with JSON keeps the protection of becef5a, unless
    listed in PASSED_THROUGH. A new route, or a changed handler, that the code does not tell fails until reviewed."""
    wrong, unreviewed, lost = [], [], []
    for spec in FORWARDED_ROUTES:
        route = _upstream(spec)
        forms = answers_of_mlflow[route]
        expected = _mlflow_answers_json(route, forms)
        if expected is None:
            unreviewed.append(f"{route}: {sorted(forms)}")
        elif answers_json(spec) and not expected:
            wrong.append(f"{route}: MLflow answers {sorted(forms)}")
        elif expected and not answers_json(spec) and route not in PASSED_THROUGH:
            lost.append(route)
    assert unreviewed == [], f"read these handlers and list what they answer in REVIEWED: {unreviewed}"
    assert wrong == [], f"answers_json holds these to JSON, which MLflow does not always answer (a 502): {wrong}"
    assert lost == [], f"MLflow answers these with JSON only; answers_json lets anything through: {lost}"


def test_the_reviewed_lists_name_forwarded_routes_the_code_does_not_tell(
    answers_of_mlflow: dict[str, frozenset[str]],
) -> None:
    forwarded = {_upstream(spec) for spec in FORWARDED_ROUTES}
    for route in REVIEWED:
        assert route in forwarded, f"REVIEWED names {route}, which is not forwarded"
        forms = answers_of_mlflow[route]
        assert forms != {JSON} and not any(form.startswith(NOT_JSON_FORMS) for form in forms), (
            f"MLflow's code tells how {route} answers now ({sorted(forms)}): drop it from REVIEWED"
        )
    for route in PASSED_THROUGH:
        assert route in forwarded and _mlflow_answers_json(route, answers_of_mlflow[route]), route


def test_mlflows_artifact_upload_answers_200_without_a_body_or_a_content_type(
    answers_of_mlflow: dict[str, frozenset[str]],
) -> None:
    """What 5e664ad found, read from MLflow's artifact router: `Response(status_code=200)`. The gateway passes it
    through (answers_json is False, and foreign_error lets it go) on both aliases."""
    for path in ("/api/2.0", "/ajax-api/2.0"):
        forms = answers_of_mlflow[f"PUT {path}/mlflow-artifacts/artifacts/{{artifact_path}}"]
        assert forms == {"not json: Response(status_code=200)"}, forms
    assert not answers_json(ARTIFACT_UPLOAD) and not answers_json(UI_UPLOAD_ARTIFACT)
    for content_type in ("", "text/plain", "application/octet-stream"):
        assert foreign_error(ARTIFACT_UPLOAD, 200, content_type) is None
    assert foreign_error(ARTIFACT_UPLOAD, 201, "") is None


@pytest.mark.parametrize("spec", [spec for spec in FORWARDED_ROUTES if not answers_json(spec)], ids=str)
def test_a_route_that_is_not_json_passes_any_success_through(spec: RouteSpec) -> None:
    for status in (200, 201, 204, 206, 304):
        for content_type in ("", "text/plain; charset=utf-8", "text/html", "application/x-protobuf"):
            assert foreign_error(spec, status, content_type) is None, (status, content_type)


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8", "Application/JSON"])
def test_a_json_success_of_a_json_route_passes(content_type: str) -> None:
    for spec in FORWARDED_ROUTES:
        if answers_json(spec):
            assert foreign_error(spec, 200, content_type) is None, spec.name


@pytest.mark.parametrize(("status", "content_type"), [(200, "text/html"), (200, ""), (201, "text/plain"), (204, "")])
def test_a_success_that_is_not_json_on_a_json_route_is_a_502(status: int, content_type: str) -> None:
    """becef5a: a proxy's sign-in page answered 200 (or a 204) in front of the store is no MLflow answer."""
    assert foreign_error(declared("POST /mlflow/runs/search"), status, content_type) == (502, "INTERNAL_ERROR")
    assert foreign_error(declared("POST /graphql"), status, content_type) == (502, "INTERNAL_ERROR")


# -- a store started with --no-serve-artifacts -------------------------------------------------------------------

# What `mlflow server --no-serve-artifacts` answers (503) on its artifact routes, as a real one sent it: its Flask
# handlers' text (naming the route's rule) and its artifact router's JSON.
FLASK_OFF = (
    "Endpoint: /api/2.0/mlflow-artifacts/artifacts disabled due to the mlflow server running with "
    "`--no-serve-artifacts`. To enable artifacts server functionality, run `mlflow server` with `--serve-artifacts`"
)
ROUTER_OFF = '{"detail":"Artifact serving is disabled. Run `mlflow server` with `--serve-artifacts` to enable."}'
LIST = declared("GET /mlflow-artifacts/artifacts")


@pytest.mark.parametrize("spec", sorted(ARTIFACT_PROXY, key=str), ids=str)
@pytest.mark.parametrize("body", [FLASK_OFF, FLASK_OFF.replace("artifacts disabled", "mpu/create/<path:x> disabled")])
def test_a_store_that_does_not_serve_artifacts_is_501_not_implemented(spec: RouteSpec, body: str) -> None:
    for content_type, answer in ((HTML, body), (JSON_TYPE, ROUTER_OFF)):
        error = known_failure(spec, 503, answer.encode(), "lab", content_type=content_type)
        assert isinstance(error, FeatureNotServed), answer
        # A caller that does not give the media type (dual/mirror.py) is answered by the body alone.
        assert isinstance(known_failure(spec, 503, answer.encode(), "lab"), FeatureNotServed), answer
        assert (error.status, error.error_code, error.headers) == (501, "NOT_IMPLEMENTED", {})
        assert "'lab'" in error.message and "--serve-artifacts" in error.message


NO_DESTINATION = '{"detail":"Artifact serving is not configured."}'
DOWNLOAD = declared("GET /mlflow-artifacts/artifacts/{artifact_path:path}")
UPLOAD = declared("PUT /mlflow-artifacts/artifacts/{artifact_path:path}")


@pytest.mark.parametrize("spec", [DOWNLOAD, UPLOAD], ids=str)
def test_a_store_serving_artifacts_without_a_destination_is_501_not_implemented(spec: RouteSpec) -> None:
    """MLflow's artifact router (`_get_artifact_repo`) when serving is on and `--artifacts-destination` is empty;
    matched exactly: an answer that is not quite it, or the same answer of a route that is no artifact route, stays
    as the store sent it."""
    for content_type in (JSON_TYPE, None):
        error = known_failure(spec, 503, NO_DESTINATION.encode(), "lab", content_type=content_type)
        assert isinstance(error, FeatureNotServed)
        assert (error.status, error.error_code, error.headers) == (501, "NOT_IMPLEMENTED", {})
        assert "'lab'" in error.message and "--artifacts-destination" in error.message
    for route, status, content_type, body in (
        (spec, 500, JSON_TYPE, NO_DESTINATION),
        (spec, 503, HTML, NO_DESTINATION),
        (spec, 503, JSON_TYPE, '{"detail":"Artifact serving is not configured"}'),
        (spec, 503, JSON_TYPE, '{"detail":"Artifact serving is not configured.","more":1}'),
        (declared("POST /mlflow/runs/create"), 503, JSON_TYPE, NO_DESTINATION),  # not an artifact route
    ):
        assert known_failure(route, status, body.encode(), "lab", content_type=content_type) is None, (status, body)


@pytest.mark.parametrize(
    ("spec", "status", "content_type", "body"),
    [
        (LIST, 500, HTML, FLASK_OFF),  # MLflow answers it 503 only
        (LIST, 503, HTML, "<html><body>503 Service Temporarily Unavailable</body></html>"),  # a proxy's: an outage
        (LIST, 503, HTML, FLASK_OFF + "\n<script>"),
        (LIST, 503, HTML, FLASK_OFF.replace("--no-serve-artifacts", "--artifacts-only")),
        (LIST, 503, JSON_TYPE, '{"detail": "Artifact serving is disabled.", "more": 1}'),
        (LIST, 503, JSON_TYPE, '{"error_code": "TEMPORARILY_UNAVAILABLE", "message": "Artifact serving is disabled."}'),
        (LIST, 503, HTML, "\xff\xfe"),
        (LIST, 503, JSON_TYPE, FLASK_OFF),  # MLflow's text, but not as MLflow sends it
        (LIST, 503, "text/plain", FLASK_OFF),
        (LIST, 503, "", FLASK_OFF),
        (LIST, 503, HTML, ROUTER_OFF),
        (declared("POST /mlflow/runs/create"), 503, HTML, FLASK_OFF),  # not an artifact route
        (declared("POST /mlflow/runs/create"), 503, JSON_TYPE, ROUTER_OFF),
    ],
)
def test_other_503s_of_an_artifact_route_are_not_taken_for_artifact_serving_off(
    spec: RouteSpec, status: int, content_type: str, body: str
) -> None:
    assert known_failure(spec, status, body.encode("latin-1"), "lab", content_type=content_type) is None


def test_the_artifact_routes_read_are_those_mlflow_refuses_without_artifact_serving() -> None:
    """ARTIFACT_PROXY is held to MLflow's code: every route whose handler answers 503 when the server does not serve
    artifacts (tests/support/mlflow_surface.py `artifact_serving_routes`), and no other."""
    pytest.importorskip("mlflow.server")
    from tests.support.mlflow_surface import artifact_serving_routes, normalised

    ours = {f"{spec.method} {normalised(path)}" for spec in ARTIFACT_PROXY for path in spec.paths()}
    ours_upstream = {_upstream(spec) for spec in ARTIFACT_PROXY}
    mlflows = artifact_serving_routes()
    assert ours_upstream <= mlflows
    assert {route for route in mlflows if " /api/" in route} == ours_upstream
    assert {route.replace(" /api/", " /ajax-api/") for route in ours_upstream} <= ours


# -- a store started with --artifacts-only, or without --enable-workspaces ------------------------------------------

# As a real `mlflow server` sent them: the 503 of a tracking route of an `--artifacts-only` server (naming the rule),
# the 500 of any call with a workspace header to a server without workspaces, and the 503 of a workspace route there.
ARTIFACTS_ONLY = (
    "Endpoint: /api/2.0/mlflow/runs/get disabled due to the mlflow server running in `--artifacts-only` mode. To "
    "enable tracking server functionality, run `mlflow server` without `--artifacts-only`"
)
NO_WORKSPACES = {
    "error_code": "FEATURE_DISABLED",
    "message": "Workspace APIs are not available: workspaces are not enabled on this server",
    "sqlstate": "KAM00",
    "error_class": "FEATURE_DISABLED",
}
WORKSPACES_OFF = (
    "Endpoint: /api/3.0/mlflow/workspaces/<workspace_name> disabled because the server is running without workspaces "
    "support. To enable workspace, run `mlflow server` with `--enable-workspaces`"
)
TRACKING = [spec for spec in FORWARDED_ROUTES if spec not in ARTIFACT_PROXY]


@pytest.mark.parametrize("spec", [*TRACKING[::7], declared("POST /mlflow/runs/create")], ids=str)
def test_a_tracking_route_of_an_artifacts_only_store_is_501_not_implemented(spec: RouteSpec) -> None:
    for rule in ("/api/2.0/mlflow/runs/get", "/ajax-api/3.0/mlflow/traces/<trace_id>/tags"):
        error = known_failure(
            spec, 503, ARTIFACTS_ONLY.replace("/api/2.0/mlflow/runs/get", rule).encode(), "lab", content_type=HTML
        )
        assert isinstance(error, FeatureNotServed)
        assert (error.status, error.error_code, error.headers) == (501, "NOT_IMPLEMENTED", {})
        assert "'lab'" in error.message and "--artifacts-only" in error.message


@pytest.mark.parametrize("spec", [*FORWARDED_ROUTES[::7], declared("POST /mlflow/runs/create")], ids=str)
def test_a_call_in_a_workspace_of_a_store_without_workspaces_is_501_not_implemented(spec: RouteSpec) -> None:
    """MLflow maps no status to FEATURE_DISABLED, so it answers 500, which the stock client retries for minutes."""
    for document in (NO_WORKSPACES, {"error_code": NO_WORKSPACES["error_code"], "message": NO_WORKSPACES["message"]}):
        error = known_failure(spec, 500, json.dumps(document).encode(), "lab", content_type=JSON_TYPE)
        assert isinstance(error, FeatureNotServed)
        assert (error.status, error.error_code, error.headers) == (501, "NOT_IMPLEMENTED", {})
        assert "'lab'" in error.message and "--enable-workspaces" in error.message


RUNS_GET = declared("GET /mlflow/runs/get")


@pytest.mark.parametrize(
    ("status", "content_type", "body"),
    [
        (500, HTML, ARTIFACTS_ONLY),  # MLflow answers it 503 only
        (502, HTML, ARTIFACTS_ONLY),
        (503, JSON_TYPE, ARTIFACTS_ONLY),
        (503, "", ARTIFACTS_ONLY),
        (503, HTML, ARTIFACTS_ONLY + " "),
        (503, HTML, "<p>" + ARTIFACTS_ONLY),
        (503, HTML, ARTIFACTS_ONLY.replace("Endpoint: /api", "Endpoint: api")),
        (503, HTML, WORKSPACES_OFF),  # a workspace route's, which the gateway never forwards
        (503, JSON_TYPE, json.dumps(NO_WORKSPACES)),
        (500, HTML, json.dumps(NO_WORKSPACES)),
        (500, JSON_TYPE, json.dumps({**NO_WORKSPACES, "error_code": "INTERNAL_ERROR"})),
        (500, JSON_TYPE, json.dumps({**NO_WORKSPACES, "message": "Workspace 'x' not found"})),
        (500, JSON_TYPE, json.dumps([NO_WORKSPACES])),
        (503, HTML, "<html><body>503 Service Temporarily Unavailable</body></html>"),
    ],
)
def test_other_answers_are_not_taken_for_a_feature_the_store_was_started_without(
    status: int, content_type: str, body: str
) -> None:
    assert known_failure(RUNS_GET, status, body.encode(), "lab", content_type=content_type) is None


# -- error answers outside MLflow's error shape --------------------------------------------------------------------

RUNS_GET = declared("GET /mlflow/runs/get")
LIST_ARTIFACTS = declared("GET /mlflow-artifacts/artifacts")
ASSESSMENTS_CREATE = declared("POST /mlflow/traces/{trace_id:str}/assessments", 3)
FLASK_500 = b"<!doctype html>\n<html lang=en>\n<title>500 Internal Server Error</title>\n<h1>Internal Server Error</h1>"


@pytest.mark.parametrize(
    ("status", "content_type", "body", "answered", "error_code", "what"),
    [
        (500, HTML, None, 502, "INTERNAL_ERROR", "an HTML page"),
        (500, "text/plain", None, 502, "INTERNAL_ERROR", "a body of type 'text/plain'"),
        (500, "", b"", 502, "INTERNAL_ERROR", "no body"),
        (500, JSON_TYPE, b"[1]", 502, "INTERNAL_ERROR", "JSON that is not an MLflow error"),
        (507, HTML, None, 502, "INTERNAL_ERROR", "an HTML page"),
        (501, HTML, None, 501, "NOT_IMPLEMENTED", "an HTML page"),
        (
            503,
            JSON_TYPE,
            b'{"detail": "busy"}',
            503,
            "TEMPORARILY_UNAVAILABLE",
            "JSON that is not an MLflow error: busy",
        ),
        (504, JSON_TYPE, b"{}", 504, "DEADLINE_EXCEEDED", "JSON that is not an MLflow error"),
        (400, HTML, None, 400, "BAD_REQUEST", "an HTML page"),
        (404, HTML, None, 404, "ENDPOINT_NOT_FOUND", "an HTML page"),
        (405, "text/plain", None, 405, "BAD_REQUEST", "a body of type 'text/plain'"),
        (422, JSON_TYPE, b'{"detail": [{"loc": ["x"]}]}', 422, "BAD_REQUEST", "JSON that is not an MLflow error"),
        (429, HTML, None, 429, "RESOURCE_EXHAUSTED", "an HTML page"),
        (409, HTML, None, 409, "ALREADY_EXISTS", "an HTML page"),
        (401, HTML, None, 502, "INTERNAL_ERROR", "an HTML page"),
        (403, HTML, None, 502, "INTERNAL_ERROR", "an HTML page"),
    ],
)
def test_an_error_outside_mlflows_shape_is_answered_in_it(
    status: int, content_type: str, body: bytes | None, answered: int, error_code: str, what: str
) -> None:
    """A store's error page (Flask's, werkzeug's, a proxy's), FastAPI's `detail`, plain text or nothing: MLflow's
    shape, the status saying whose the failure is (a 500 the store's: 502; a 401 or 403 the gateway's credentials:
    502), never a 500, never the page."""
    for spec in (RUNS_GET, LIST_ARTIFACTS, declared("GET /get-artifact"), declared("POST /graphql")):
        error = unshaped_error(spec, status, content_type, body, "lab")
        assert error is not None, (spec.name, status)
        assert (error.status, error.error_code) == (answered, error_code), (spec.name, status)
        assert error.message == f"The store of workspace 'lab' answered {status} with {what}.", error.message
        assert ("Retry-After" in error.headers) == (error_code == "TEMPORARILY_UNAVAILABLE")


@pytest.mark.parametrize("status", [400, 404, 409, 500, 503])
def test_an_mlflow_error_goes_out_as_it_came(status: int) -> None:
    body = json.dumps({"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "gone", "sqlstate": "KAM00"}).encode()
    for content_type in (JSON_TYPE, "application/json; charset=utf-8"):
        assert unshaped_error(RUNS_GET, status, content_type, body, "lab") is None


def test_a_success_a_json_error_not_read_and_a_provider_answer_are_not_judged() -> None:
    """Successes are never judged here (the download's bytes go out as they are); a JSON error of no known length
    is not read; an AI-gateway provider's errors and an OTLP export's are theirs, whatever their shape."""
    for status in (200, 201, 206, 304):
        assert unshaped_error(declared("GET /get-artifact"), status, HTML, FLASK_500, "lab") is None
    assert unshaped_error(RUNS_GET, 500, JSON_TYPE, None, "lab") is None
    for spec in FORWARDED_ROUTES:
        if spec.body in (Body.PAYLOAD, Body.OPAQUE):
            assert unshaped_error(spec, 500, HTML, None, "lab") is None, spec.name


CONSTRAINT = {
    "error_code": "INTERNAL_ERROR",
    "message": "Failed to create assessment for trace 'tr-0123' due to a constraint violation.",
    "sqlstate": "XXM00",
    "error_class": "CLIENT_INTERNAL_ERROR",
}


def test_an_assessment_id_taken_is_already_existing() -> None:
    """MLflow 3.17.2's 500 for an assessment whose client-chosen id a row holds: 400 RESOURCE_ALREADY_EXISTS, on
    that route only, naming no trace."""
    error = known_failure(ASSESSMENTS_CREATE, 500, json.dumps(CONSTRAINT).encode(), "lab", content_type=JSON_TYPE)
    assert isinstance(error, AlreadyExists) and (error.status, error.error_code) == (400, "RESOURCE_ALREADY_EXISTS")
    assert "tr-" not in error.message
    for spec, status, document in (
        (declared("POST /mlflow/runs/create"), 500, CONSTRAINT),
        (ASSESSMENTS_CREATE, 503, CONSTRAINT),
        (ASSESSMENTS_CREATE, 500, {**CONSTRAINT, "message": "(sqlite3.OperationalError) database is locked"}),
        (ASSESSMENTS_CREATE, 500, {**CONSTRAINT, "error_code": "TEMPORARILY_UNAVAILABLE"}),
    ):
        assert known_failure(spec, status, json.dumps(document).encode(), "lab", content_type=JSON_TYPE) is None


NOT_ACTIVE = {
    "error_code": "INVALID_STATE",
    "message": "Cannot rename a non-active experiment.",
    "sqlstate": "XXM00",
    "error_class": "CLIENT_INTERNAL_ERROR",
}


def test_renaming_a_deleted_experiment_is_an_invalid_state_not_a_failure() -> None:
    """MLflow's SqlAlchemyStore.rename_experiment of a deleted experiment: 500 INVALID_STATE, the same on every try."""
    error = known_failure(EXPERIMENTS_UPDATE, 500, json.dumps(NOT_ACTIVE).encode(), content_type=JSON_TYPE)
    assert isinstance(error, InvalidState) and (error.status, error.error_code) == (409, "INVALID_STATE")
    assert error.message.startswith("Cannot rename a non-active experiment")
    # Another message, status or route is the store's own failure, forwarded as it came.
    for spec, status, body in (
        (EXPERIMENTS_UPDATE, 500, {**NOT_ACTIVE, "message": "(sqlite3.OperationalError) database is locked"}),
        (EXPERIMENTS_UPDATE, 503, NOT_ACTIVE),
        (declared("POST /mlflow/experiments/restore"), 500, NOT_ACTIVE),
    ):
        assert known_failure(spec, status, json.dumps(body).encode(), content_type=JSON_TYPE) is None
