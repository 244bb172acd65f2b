"""Every malformed value a client sends to a gateway-owned route gets an MLflow-style error (error_code, message)
with a 4xx status, never a 500: non-ASCII digits ('²', fullwidth, Arabic-Indic), numbers of thousands of digits,
wrong JSON types, nulls, nested objects where strings are expected, page tokens that are not base64 or not ours,
overlong strings and NUL bytes, in the query, the path and the body of each route family the gateway answers
itself (not the MLflow routes it forwards). The cases that answered 500 before are kept as explicit regressions."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import quote

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import ADMIN_TOKEN, Stack

pytestmark = pytest.mark.integration
WORKSPACE_ID = "1001"  # team-a
SCIM = "/api/2.0/preview/scim/v2"

NASTY_TEXT = [
    "²",
    "\uff11\uff12",  # fullwidth: int() takes them, \d matches them
    "\u0663",  # Arabic-Indic
    "9" * 5000,  # int() refuses more than 4,300 digits
    "9" * 30,  # more than a bigint
    "-1",
    "0",
    "",
    " ",
    "\x00",
    "a\x00b",
    "x" * 20_000,
    "NaN",
    "1e999",
    "!!!not base64!!!",
    "eyJ",  # a truncated base64 of '{"'
    base64.urlsafe_b64encode(b'{"s": 1, "o": "x"}').decode(),
    base64.urlsafe_b64encode(b"[1, 2]").decode(),
    base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    "w²",
    "1001-²",
    "registered-models/team-a/1/²/x",
    'members[value eq "²"]',
]
NASTY_JSON: list[Any] = [*NASTY_TEXT, None, True, 10**30, -(10**30), 1.5, 1e308, [], [None], {}, {"a": {"b": [1]}}]

text_values = st.one_of(st.sampled_from(NASTY_TEXT), st.text(max_size=30))
json_values = st.one_of(st.sampled_from(NASTY_JSON), st.text(max_size=30), st.integers())

# (method, path, scoped to a workspace, query parameters, body fields); "{}" in a path takes a fuzzed segment.
Route = tuple[str, str, bool, tuple[str, ...], tuple[str, ...]]
FAMILIES: dict[str, list[Route]] = {
    "secrets": [
        ("GET", "/api/2.0/secrets/list", True, ("scope",), ()),
        ("GET", "/api/2.0/secrets/acls/list", True, ("scope",), ()),
        ("GET", "/api/2.0/secrets/acls/get", True, ("scope", "principal"), ()),
        ("POST", "/api/2.0/secrets/put", True, (), ("scope", "key", "string_value", "bytes_value")),
        ("POST", "/api/2.0/secrets/get", True, (), ("scope", "key")),
        ("POST", "/api/2.0/secrets/get-many", True, (), ("scope", "keys")),
        ("POST", "/api/2.0/secrets/scopes/create", True, (), ("scope", "initial_manage_principal")),
        ("POST", "/api/2.0/secrets/acls/put", True, (), ("scope", "principal", "permission")),
    ],
    "registry": [
        ("GET", "/api/2.0/mlflow/transition-requests/list", True, ("name", "version"), ()),
        ("POST", "/api/2.0/mlflow/transition-requests/create", True, (), ("name", "version", "stage", "comment")),
        ("POST", "/api/2.0/mlflow/databricks/model-versions/transition-stage", True, (), ("name", "version", "stage")),
        ("GET", "/api/2.0/mlflow/activities/list", True, ("name", "version", "page_token", "max_results"), ()),
        ("GET", "/api/2.0/mlflow/registry-webhooks/list", True, ("model_name", "page_token", "max_results"), ()),
        ("POST", "/api/2.0/mlflow/registry-webhooks/create", True, (), ("model_name", "events", "http_url_spec")),
        ("POST", "/api/2.0/mlflow/comments/create", True, (), ("name", "version", "comment")),
        ("PATCH", "/api/2.0/mlflow/comments/update", True, (), ("id", "comment")),
        ("GET", "/api/2.0/mlflow/alias-requests/list", True, ("name", "page_token"), ()),
        ("POST", "/api/2.0/mlflow/alias-requests/create", True, (), ("name", "alias", "version")),
        ("GET", "/api/2.0/mlflow/registry-settings/get", True, ("name",), ()),
        ("GET", "/api/2.0/fedgate/registry/promotion-requests/list", True, ("page_token", "max_results", "status"), ()),
        ("POST", "/api/2.0/fedgate/registry/promotion-requests/approve", True, (), ("request_id", "comment")),
        ("POST", "/api/2.0/fedgate/registry/promote", True, (), ("name", "version", "target_workspace")),
    ],
    "sql": [
        ("POST", "/api/2.0/sql/statements", True, (), ("statement", "wait_timeout", "parameters", "row_limit")),
        ("GET", "/api/2.0/sql/statements/{}", True, (), ()),
        ("GET", "/api/2.0/sql/statements/{}/result/chunks/0", True, (), ()),
        ("GET", "/api/2.0/sql/queries", True, ("page_size", "page_token"), ()),
        ("GET", "/api/2.0/sql/queries/{}", True, (), ()),
        ("POST", "/api/2.0/sql/queries", True, (), ("query",)),
        ("GET", "/api/2.0/sql/alerts", True, ("page_size", "page_token"), ()),
        ("GET", "/api/2.0/sql/alerts/{}/history", True, ("page_size", "page_token"), ()),
        ("POST", "/api/2.0/sql/alerts", True, (), ("alert",)),
        ("GET", "/api/2.0/permissions/queries/{}", True, (), ()),
    ],
    "principals": [
        ("GET", f"{SCIM}/Users", False, ("filter", "startIndex", "count"), ()),
        ("GET", f"{SCIM}/Groups/{{}}", False, (), ()),
        ("POST", f"{SCIM}/Users", False, (), ("userName", "displayName", "emails", "groups")),
        ("POST", f"{SCIM}/Groups", False, (), ("displayName", "members")),
        ("PATCH", f"{SCIM}/Groups/1", False, (), ("Operations", "schemas")),
        ("POST", "/api/2.0/token/create", False, (), ("lifetime_seconds", "comment")),
        ("GET", "/api/2.0/token-management/tokens", False, ("created_by_id", "created_by_username"), ()),
        ("GET", "/api/2.0/token-management/tokens/{}", False, (), ()),
        ("POST", "/api/2.0/token-management/on-behalf-of/tokens", False, (), ("owner_id", "lifetime_seconds")),
    ],
    "workspaces": [
        ("GET", "/api/3.0/mlflow/workspaces/{}", False, (), ()),
        ("POST", "/api/3.0/mlflow/workspaces", False, (), ("name", "workspace_id", "description")),
        ("GET", "/api/2.0/fedgate/links", False, (), ()),
        ("GET", "/api/2.0/fedgate/links/{}/dead-letters", False, ("page_token", "max_results"), ()),
        ("POST", "/api/2.0/fedgate/links/team-a/dead-letters/discard", False, (), ("id", "all")),
        ("POST", "/api/2.0/fedgate/links/team-a/dead-letters/retry", False, (), ("id", "all")),
    ],
    "search": [
        ("GET", "/api/2.0/fedgate/index/status", False, (), ()),
        ("GET", "/api/2.0/fedgate/runs/metrics-recursive", True, ("run_id", "metric_key", "max_results"), ()),
        ("GET", "/api/2.0/mlflow/registered-models/search", False, ("page_token", "max_results", "filter"), ()),
        ("GET", "/api/2.0/mlflow/model-versions/search", False, ("page_token", "max_results", "filter"), ()),
        ("POST", "/api/2.0/mlflow/runs/search", False, (), ("experiment_ids", "page_token", "max_results")),
        ("POST", "/api/2.0/mlflow/experiments/search", False, (), ("page_token", "max_results", "view_type")),
        ("GET", "/api/2.0/mlflow/experiments/get", False, ("experiment_id",), ()),
        ("GET", "/api/2.0/mlflow-artifacts/artifacts", False, ("path",), ()),
    ],
    "access": [
        ("GET", "/api/2.0/fedgate/audit-log", False, ("page_token", "since", "max_results", "actor"), ()),
        ("GET", "/api/2.0/permissions/experiments/{}", True, (), ()),
        ("GET", "/api/2.0/permissions/registered-models/{}", True, (), ()),
        ("GET", "/api/2.1/unity-catalog/permissions/catalog/{}", True, (), ()),
        ("GET", "/api/2.0/fedgate/console/access/principals", False, ("kind", "page_token", "max_results"), ()),
        ("GET", "/api/2.0/fedgate/console/access/principals/{}", False, (), ()),
        ("GET", "/api/2.0/fedgate/console/access/audit", False, ("page_token", "since", "max_results"), ()),
        ("POST", "/api/2.0/fedgate/console/access/revoke", False, (), ("principal_id", "domain", "object")),
        ("GET", "/api/2.0/fedgate/sessions", False, ("page_token",), ()),
        ("POST", "/api/2.0/fedgate/sessions/end", False, (), ("session_id", "id")),
    ],
}
# What a body field holds when it is not the one fuzzed: a plausible value, so the fuzzed one is what is judged.
PLAUSIBLE: dict[str, Any] = {
    "statement": "SELECT 1",
    "wait_timeout": "0s",
    "name": "fuzz-model",
    "version": "1",
    "stage": "Staging",
    "scope": "fuzz-scope",
    "key": "k",
}


def _session() -> requests.Session:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
    return session


SESSION = _session()


def send(stack: Stack, method: str, path: str, scoped: bool, **kwargs: Any) -> requests.Response:
    headers = {"X-Databricks-Workspace-Id": WORKSPACE_ID} if scoped else {}
    return SESSION.request(method, f"{stack.url}{path}", headers=headers, timeout=120, **kwargs)


def assert_clean_refusal(answer: requests.Response, case: object) -> None:
    assert answer.status_code < 500, (case, answer.status_code, answer.text[:500])
    if answer.status_code >= 400:
        try:
            body = answer.json()
        except ValueError:
            raise AssertionError((case, answer.status_code, answer.text[:500])) from None
        assert isinstance(body, dict) and body.get("error_code") and body.get("message"), (case, body)
        assert "Traceback" not in answer.text, case


@st.composite
def cases(draw: st.DrawFn, family: str) -> tuple[str, str, bool, dict[str, Any]]:
    method, path, scoped, query, fields = draw(st.sampled_from(FAMILIES[family]))
    places = (["path"] if "{}" in path else []) + (["query"] if query else []) + (["body"] if fields else [])
    place = draw(st.sampled_from(places)) if places else "none"
    kwargs: dict[str, Any] = {}
    segment = "1"
    if place == "path":
        segment = draw(text_values)
    if place == "query":
        kwargs["params"] = {draw(st.sampled_from(query)): draw(text_values)}
    if fields:
        body = {field: PLAUSIBLE.get(field, "x") for field in fields}
        if place == "body":
            body[draw(st.sampled_from(fields))] = draw(json_values)
        kwargs["json"] = body if draw(st.integers(0, 9)) else draw(json_values)  # now and then not an object
    return method, path.replace("{}", quote(segment, safe="") or "%20"), scoped, kwargs


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_malformed_values_never_answer_500(stack: Stack, family: str) -> None:
    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(case=cases(family))
    def check(case: tuple[str, str, bool, dict[str, Any]]) -> None:
        method, path, scoped, kwargs = case
        assert_clean_refusal(send(stack, method, path, scoped, **kwargs), case)

    check()


# Each answered 500 before its fix.
REGRESSIONS: list[tuple[str, str, bool, dict[str, Any]]] = [
    # int() of a '²' that str.isdigit() let through, or of 5,000 digits (more than int() reads)
    ("GET", "/api/2.0/sql/alerts", True, {"params": {"page_token": "²"}}),
    ("GET", "/api/2.0/fedgate/console/access/principals", False, {"params": {"page_token": "²"}}),
    ("POST", "/api/3.0/mlflow/workspaces", False, {"json": {"name": "fuzz-ws", "workspace_id": "²"}}),
    ("POST", "/api/3.0/mlflow/workspaces", False, {"json": {"name": "fuzz-ws", "workspace_id": "9" * 30}}),
    ("POST", "/api/2.0/fedgate/links/team-a/dead-letters/discard", False, {"json": {"id": "²"}}),
    ("POST", "/api/2.0/fedgate/links/team-a/dead-letters/retry", False, {"json": {"id": "9" * 5000}}),
    # a NUL character PostgreSQL refuses in text
    ("GET", "/api/2.0/mlflow/activities/list", True, {"params": {"name": "\x00"}}),
]


@pytest.mark.parametrize(
    ("method", "path", "scoped", "kwargs"), REGRESSIONS, ids=[json.dumps(r)[:80] for r in REGRESSIONS]
)
def test_former_500s_are_4xx(stack: Stack, method: str, path: str, scoped: bool, kwargs: dict[str, Any]) -> None:
    answer = send(stack, method, path, scoped, **kwargs)
    assert 400 <= answer.status_code < 500, (path, kwargs, answer.status_code, answer.text[:300])
    assert_clean_refusal(answer, (path, kwargs))
