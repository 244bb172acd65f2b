"""Refusals: cheap, uniform, MLflow-shaped, never a traceback, never an oracle, audited safely, rate-limited.

Against the session's real gateway (embedded PostgreSQL, real `mlflow server` stores); the flood test
starts a second gateway over the same database with a tiny anonymous-denial budget, so the shared
gateway (generous default) is never limited by the rest of the suite.
"""

from __future__ import annotations

import asyncio
import http.client
import secrets
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import requests

from gateway.devstack import LOOPBACK, GatewayProcess
from tests.conftest import ADMIN_TOKEN, GATEWAY_ENV, Stack
from tests.support.identity import SCIM, Admin, unique
from tests.support.oidc import OidcIssuer
from tests.support.waiting import logged_so_far, until

pytestmark = pytest.mark.integration
DEEP = b"[" * 5000 + b"]" * 5000
DEEP_OBJECT = b'{"a":' * 5000 + b"1" + b"}" * 5000
MISSING_ID = "987654321"
# The tight replicas' budget refills one denial per 100 s: longer than a test, so however slowly a loaded machine
# answers the flood, every call past the burst finds the budget spent.
REFILL_PER_SECOND = "0.01"


@dataclass
class Cast:
    owner_token: str
    stranger_token: str  # CAN_USE on team-a: enters the workspace, reads nothing of the owner's
    experiment_id: str
    model_id: str
    stranger_id: int


@pytest.fixture(scope="module")
def cast(stack: Stack) -> Cast:
    admin = Admin.of(stack)
    owning = admin.person(f"{unique('owner')}@example.com", comment="denials")
    stranger = admin.person(f"{unique('stranger')}@example.com", comment="denials")
    group = unique("denials")
    admin.group(group, [owning.id, stranger.id])
    admin.grant("workspaces/team-a", "CAN_USE", group=group)
    owner = owning.http(stack)
    experiment = owner.post(f"{stack.url}/api/2.0/mlflow/experiments/create", json={"name": unique("hidden")})
    assert experiment.status_code == 200, experiment.text
    model_name = unique("hidden-model")
    model = owner.post(f"{stack.url}/api/2.0/mlflow/registered-models/create", json={"name": model_name})
    assert model.status_code == 200, model.text
    model_id = owner.get(f"{stack.url}/api/2.0/mlflow/databricks/registered-models/get", params={"name": model_name})
    assert model_id.status_code == 200, model_id.text
    return Cast(
        owning.token,
        stranger.token,
        experiment.json()["experiment_id"],
        model_id.json()["registered_model_databricks"]["id"],
        stranger.id,
    )


class LogWindow:
    """What the gateway logged since the window opened."""

    def __init__(self, url: str, path: Path | None) -> None:
        assert path is not None
        self.url = url
        self.path = path
        self.start = path.stat().st_size

    def text(self) -> str:
        """Every line logged since the window opened, those of the calls answered so far included."""
        logged_so_far(self.url, self.path)
        with self.path.open("rb") as handle:
            handle.seek(self.start)
            return handle.read().decode("utf-8", "replace")


@pytest.fixture
def log_window(stack: Stack) -> Iterator[LogWindow]:
    window = LogWindow(stack.url, stack.gateway.log_path)
    yield window


def assert_mlflow_error(response: requests.Response, status: int, codes: set[str] | None = None) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text[:500])
    assert response.headers.get("content-type", "").startswith("application/json"), response.headers
    body = response.json()
    assert isinstance(body.get("error_code"), str) and isinstance(body.get("message"), str), body
    assert "Traceback" not in body["message"] and 'File "' not in body["message"], body
    if codes is not None:
        assert body["error_code"] in codes, body
    return dict(body)


# -- the permissions API is no existence oracle ----------------------------------------------------------


def _same_answer(hidden: requests.Response, missing: requests.Response, hidden_id: str) -> None:
    assert hidden.status_code == missing.status_code == 404, (hidden.text, missing.text)
    hidden_body = hidden.json()
    missing_body = missing.json()
    assert hidden_body["error_code"] == missing_body["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    # Only the id the caller sent may differ between the two answers.
    assert hidden_body["message"].replace(hidden_id, "<id>") == missing_body["message"].replace(MISSING_ID, "<id>")
    assert set(hidden.headers.get("content-type", "").split(";")) == set(
        missing.headers.get("content-type", "").split(";")
    )


@pytest.mark.parametrize("kind", ["experiments", "registered-models"])
def test_permissions_api_answers_hidden_and_missing_objects_alike(stack: Stack, cast: Cast, kind: str) -> None:
    stranger = stack.http("team-a", token=cast.stranger_token)
    hidden_id = cast.experiment_id if kind == "experiments" else cast.model_id
    base = f"{stack.url}/api/2.0/permissions/{kind}"
    acl = {"access_control_list": [{"user_name": "nobody@example.com", "permission_level": "CAN_READ"}]}
    for suffix, method, body in (
        ("", "get", None),
        ("/permissionLevels", "get", None),
        ("", "put", acl),
        ("", "patch", acl),
    ):
        hidden = getattr(stranger, method)(f"{base}/{hidden_id}{suffix}", json=body)
        missing = getattr(stranger, method)(f"{base}/{MISSING_ID}{suffix}", json=body)
        _same_answer(hidden, missing, hidden_id)
    # The owner still sees its own object (the check did not just hide everything).
    owner = stack.http("team-a", token=cast.owner_token)
    assert owner.get(f"{base}/{hidden_id}").status_code == 200


# -- audit rows keep untrusted values short ---------------------------------------------------------------


def _audit_entry(stack: Stack, request_id: str, since: datetime) -> dict[str, Any] | None:
    page_token = ""
    while True:
        params: dict[str, Any] = {"max_results": 1000, "actor": "anonymous", "since": since.isoformat()}
        if page_token:
            params["page_token"] = page_token
        answer = stack.http().get(f"{stack.url}/api/2.0/fedgate/audit-log", params=params)
        assert answer.status_code == 200, answer.text
        for item in answer.json()["entries"]:
            if item["request_id"] == request_id:
                return dict(item)
        page_token = answer.json().get("next_page_token", "")
        if not page_token:
            return None


def test_an_anonymous_32kb_workspace_header_is_audited_truncated(stack: Stack) -> None:
    since = datetime.now(UTC) - timedelta(seconds=30)
    request_id = uuid.uuid4().hex
    huge = "w" * 32 * 1024
    response = requests.get(
        f"{stack.url}/api/2.0/mlflow/experiments/search",
        headers={"X-MLFLOW-WORKSPACE": huge, "X-Request-Id": request_id, "User-Agent": "u" * 8192},
        timeout=30,
    )
    assert_mlflow_error(response, 401, {"UNAUTHENTICATED"})
    # Denials are queued and written in the background, after the answer.
    found = until(lambda: _audit_entry(stack, request_id, since), bool, "the audit row of the anonymous denial")
    assert found is not None
    workspace = found["details"]["workspace"]
    assert workspace.startswith("w" * 64) and len(workspace) < 1024, len(workspace)
    assert "truncated" in workspace
    assert len(str(found["details"])) < 4096


# -- malformed bodies on the gateway's own APIs -------------------------------------------------------------


def own_api_bodies(stack: Stack, cast: Cast) -> list[tuple[str, str, dict[str, str]]]:
    """(method, url, headers) of every kind of handler of the gateway's own that decodes a JSON body."""
    url = stack.url
    ws = {"X-MLFLOW-WORKSPACE": "team-a"}
    return [
        ("POST", f"{url}{SCIM}/Users", {}),
        ("POST", f"{url}{SCIM}/Groups", {}),
        ("PATCH", f"{url}{SCIM}/Users/{cast.stranger_id}", {}),
        ("POST", f"{url}/api/2.0/token/create", {}),
        ("POST", f"{url}/api/2.0/token/delete", {}),
        ("POST", f"{url}/api/2.0/token-management/on-behalf-of/tokens", {}),
        ("PATCH", f"{url}/api/2.0/permissions/workspaces/team-a", {}),
        ("PUT", f"{url}/api/2.0/permissions/experiments/{cast.experiment_id}", ws),
        ("PATCH", f"{url}/api/2.0/permissions/registered-models/{cast.model_id}", ws),
        ("PATCH", f"{url}/api/2.1/unity-catalog/permissions/catalog/system", {}),
        ("POST", f"{url}/api/2.0/sql/statements", {}),
        ("POST", f"{url}/api/2.0/fedgate/index/sync", {}),
        ("POST", f"{url}/api/3.0/mlflow/workspaces", {}),
        ("PATCH", f"{url}/api/3.0/mlflow/workspaces/team-a", {}),
        ("POST", f"{url}/api/2.0/fedgate/links/team-a/reconcile", {}),
        ("POST", f"{url}/api/2.0/fedgate/links/team-a/dead-letters/retry", {}),
        ("POST", f"{url}/api/2.0/fedgate/links/team-a/dead-letters/discard", {}),
    ]


@pytest.mark.parametrize("body", [DEEP, DEEP_OBJECT], ids=["array", "object"])
def test_deeply_nested_json_to_the_gateways_own_apis_answers_400(
    stack: Stack, cast: Cast, log_window: LogWindow, body: bytes
) -> None:
    session = stack.http()
    for method, url, headers in own_api_bodies(stack, cast):
        response = session.request(
            method, url, data=body, headers={**headers, "Content-Type": "application/json"}, timeout=30
        )
        assert_mlflow_error(response, 400, {"INVALID_PARAMETER_VALUE", "MALFORMED_REQUEST"})
    assert "Traceback" not in log_window.text()


def test_unparseable_json_to_the_gateways_own_apis_answers_400(stack: Stack, cast: Cast, log_window: LogWindow) -> None:
    session = stack.http()
    for body in (b'{"userName": ', b"\xff\xfe", b"[1, 2"):
        for method, url, headers in own_api_bodies(stack, cast)[:3]:
            response = session.request(
                method, url, data=body, headers={**headers, "Content-Type": "application/json"}, timeout=30
            )
            assert_mlflow_error(response, 400, {"INVALID_PARAMETER_VALUE", "MALFORMED_REQUEST"})
    assert "Traceback" not in log_window.text()


# -- every refusal path: MLflow-shaped, no traceback ------------------------------------------------------------


def test_every_refusal_answers_mlflow_style_without_traceback(stack: Stack, cast: Cast, log_window: LogWindow) -> None:
    url = stack.url
    ws = {"X-MLFLOW-WORKSPACE": "team-a"}
    stranger = {**ws, "Authorization": f"Bearer {cast.stranger_token}"}
    admin_headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    json_headers = {"Content-Type": "application/json"}
    search = f"{url}/api/2.0/mlflow/experiments/search?max_results=1"
    cases: list[tuple[str, str, str, dict[str, str], bytes | None, int]] = [
        ("401 no token", "GET", search, ws, None, 401),
        ("401 bad bearer", "GET", search, {**ws, "Authorization": "Bearer fgt_" + "x" * 43}, None, 401),
        ("401 bad basic", "GET", search, {**ws, "Authorization": "Basic dG9rZW46bm9wZQ=="}, None, 401),
        ("401 other scheme", "GET", search, {**ws, "Authorization": "Negotiate YII="}, None, 401),
        ("403 audit log", "GET", f"{url}/api/2.0/fedgate/audit-log", stranger, None, 403),
        (
            "403 workspace acl",
            "PATCH",
            f"{url}/api/2.0/permissions/workspaces/team-a",
            {**stranger, **json_headers},
            b'{"access_control_list": []}',
            403,
        ),
        (
            "404 hidden experiment",
            "GET",
            f"{url}/api/2.0/mlflow/experiments/get?experiment_id={cast.experiment_id}",
            stranger,
            None,
            404,
        ),
        ("404 hidden acl", "GET", f"{url}/api/2.0/permissions/experiments/{cast.experiment_id}", stranger, None, 404),
        ("400 malformed scim", "POST", f"{url}{SCIM}/Users", {**admin_headers, **json_headers}, b"{not json", 400),
        ("400 deep scim", "POST", f"{url}{SCIM}/Users", {**admin_headers, **json_headers}, DEEP, 400),
        (
            "400 deep sql",
            "POST",
            f"{url}/api/2.0/sql/statements",
            {**admin_headers, **json_headers},
            DEEP_OBJECT,
            400,
        ),
    ]
    timings: dict[str, float] = {}
    for name, method, target, headers, body, status in cases:
        started = time.perf_counter()
        response = requests.request(method, target, headers=headers, data=body, timeout=30)
        timings[name] = (time.perf_counter() - started) * 1000
        assert_mlflow_error(response, status)
    print({name: f"{ms:.1f} ms" for name, ms in timings.items()})
    assert "Traceback" not in log_window.text()


def test_a_sign_in_form_with_more_fields_than_the_page_posts_is_refused_not_failed(
    stack: Stack, log_window: LogWindow
) -> None:
    """The sign-in page posts two fields (`next`, `token`). A post of more than eight (anyone can send one: the
    same-origin check reads headers a script outside a browser sets) made the form parser raise ValueError, which
    no refusal caught: a 500 logged as the gateway's own failure. It is the sign-in page again, 400."""
    fields = [("token", "fgt_" + "x" * 43), ("next", "/")] + [(f"f{i}", "1") for i in range(7)]
    for headers in ({"Origin": stack.url}, {"Sec-Fetch-Site": "same-origin"}):
        answer = requests.post(
            f"{stack.url}/fedgate/sign-in/token", data=fields, headers=headers, allow_redirects=False, timeout=30
        )
        assert answer.status_code == 400, (answer.status_code, answer.text[:300])
        assert answer.headers["content-type"].startswith("text/html"), answer.headers
        assert "The sign-in form could not be read" in answer.text, answer.text[:2000]
        assert "fedgate_session" not in answer.headers.get("set-cookie", "")
    logged = log_window.text()
    assert "unexpected error" not in logged, logged[-2000:]


OVERSIZED_SIGN_IN = {"token": "fgt_" + "x" * (64 * 1024), "next": "/"}


def _head_only_sign_in(url: str, length: int) -> int:
    """The status the gateway answers a token sign-in announcing `length` bytes whose body never comes."""
    host, port = url.removeprefix("http://").split(":")
    head = [
        "POST /fedgate/sign-in/token HTTP/1.1",
        f"Host: {host}:{port}",
        f"Origin: {url}",
        "Content-Type: application/x-www-form-urlencoded",
        f"Content-Length: {length}",
    ]
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        answer = b""
        while b"\r\n" not in answer:
            data = sock.recv(4096)
            assert data, "the gateway closed the connection without an answer"
            answer += data
    return int(answer.split(b" ", 2)[1])


def test_an_anonymous_sign_in_post_larger_than_the_form_is_refused_with_the_page(
    stack: Stack, log_window: LogWindow
) -> None:
    """The token sign-in is open to anyone, and read up to `max_json_body_bytes` (32 MB) of a body where the form
    posts a token and a path: 16 KiB is its limit. A larger post is the sign-in page again, 413; one announcing
    more is refused before any of it is read (an answer to a head whose body never comes shows it)."""
    answer = requests.post(
        f"{stack.url}/fedgate/sign-in/token",
        data=OVERSIZED_SIGN_IN,
        headers={"Origin": stack.url},
        allow_redirects=False,
        timeout=30,
    )
    assert answer.status_code == 413, (answer.status_code, answer.text[:300])
    assert answer.headers["content-type"].startswith("text/html"), answer.headers
    assert "The sign-in form is larger than this page ever posts" in answer.text, answer.text[:2000]
    assert "fedgate_session" not in answer.headers.get("set-cookie", "")
    assert _head_only_sign_in(stack.url, 32 * 1024 * 1024) == 413
    assert _head_only_sign_in(stack.url, 16 * 1024 + 1) == 413
    # The page's own post is well within it.
    fine = requests.post(
        f"{stack.url}/fedgate/sign-in/token",
        data={"token": "fgt_" + "y" * 43, "next": "/" + "p" * 8000},
        headers={"Origin": stack.url},
        allow_redirects=False,
        timeout=30,
    )
    assert fine.status_code == 401, (fine.status_code, fine.text[:300])
    assert "Traceback" not in log_window.text()


# -- the audit log cannot be emptied ----------------------------------------------------------------------


def test_truncate_of_the_audit_log_is_refused(stack: Stack) -> None:
    async def attempt() -> str:
        connection = await asyncpg.connect(stack.database_url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            transaction = connection.transaction()
            await transaction.start()
            try:
                await connection.execute("TRUNCATE audit_log")
                return "truncated"
            except asyncpg.PostgresError as exc:
                return str(exc)
            finally:
                await transaction.rollback()  # never keep a TRUNCATE that got through
        finally:
            await connection.close()

    outcome = asyncio.run(attempt())
    assert "append-only" in outcome, outcome


# -- anonymous floods are rate-limited ------------------------------------------------------------------------


@pytest.fixture
def tight_gateway(stack: Stack) -> Iterator[GatewayProcess]:
    """A second replica over the same database whose anonymous-denial budget is 5, refilled at one per 100 s."""
    env = {
        **GATEWAY_ENV,
        "FEDGATE_SERVER_ANONYMOUS_DENIALS_BURST": "5",
        "FEDGATE_SERVER_ANONYMOUS_DENIALS_PER_SECOND": REFILL_PER_SECOND,
    }
    gateway = GatewayProcess(stack.workdir / "fedgate.toml", env)
    gateway.log_path = stack.workdir / f"tight-{uuid.uuid4().hex[:6]}.log"
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop()


def _metric(url: str, name: str) -> float:
    text = requests.get(f"{url}/metrics", timeout=30).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def test_an_anonymous_flood_gets_429_after_the_burst(tight_gateway: GatewayProcess) -> None:
    url = f"{tight_gateway.url}/api/2.0/mlflow/experiments/search?max_results=1"
    answers = [requests.get(url, headers={"X-MLFLOW-WORKSPACE": "team-a"}, timeout=30) for _ in range(12)]
    statuses = [a.status_code for a in answers]
    assert statuses[:5] == [401] * 5, statuses
    assert 429 in statuses[5:], statuses
    limited = next(a for a in answers if a.status_code == 429)
    body = assert_mlflow_error(limited, 429, {"REQUEST_LIMIT_EXCEEDED"})
    assert body["message"]
    assert int(limited.headers["Retry-After"]) >= 1
    # Bad credentials draw on the same budget.
    bad = requests.get(url, headers={"Authorization": "Bearer fgt_" + "y" * 43}, timeout=30)
    assert bad.status_code == 429, bad.text
    # A valid credential from the same address is never limited.
    ok = requests.get(url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "X-MLFLOW-WORKSPACE": "team-a"})
    assert ok.status_code == 200, ok.text
    assert _metric(tight_gateway.url, "fedgate_rate_limited_total") >= 1
    assert _metric(tight_gateway.url, 'fedgate_denied_total{reason="Unauthenticated"}') >= 5
    assert "Traceback" not in logged_so_far(tight_gateway.url, tight_gateway.log_path)


def test_a_flood_of_failed_browser_sign_ins_gets_429_after_the_burst(tight_gateway: GatewayProcess) -> None:
    """Guessed tokens on the web UI's sign-in form spend the address's budget like any anonymous denial, so a
    flood answers 429 instead of writing an audit row per guess; the sign-in page says so."""
    url = f"{tight_gateway.url}/fedgate/sign-in/token"
    guesses = [
        requests.post(
            url,
            data={"token": f"fgt_{uuid.uuid4().hex}{uuid.uuid4().hex[:11]}"},
            headers={"Origin": tight_gateway.url},
            allow_redirects=False,
            timeout=30,
        )
        for _ in range(12)
    ]
    statuses = [answer.status_code for answer in guesses]
    assert statuses[:5] == [401] * 5, statuses
    assert 429 in statuses[5:], statuses
    limited = next(answer for answer in guesses if answer.status_code == 429)
    assert int(limited.headers["Retry-After"]) >= 1
    assert limited.headers["content-type"].startswith("text/html") and "Too many failed sign-ins" in limited.text
    assert "fedgate_session" not in limited.headers.get("set-cookie", "")
    assert _metric(tight_gateway.url, "fedgate_rate_limited_total") >= 1


def test_oversized_sign_in_posts_spend_the_anonymous_denial_budget(tight_gateway: GatewayProcess) -> None:
    """An oversized post to the token sign-in is a failed sign-in: it spends the address's budget like a guessed
    token, so a flood of them answers 429 (the sign-in page saying so) instead of being read one after another."""
    url = f"{tight_gateway.url}/fedgate/sign-in/token"
    answers = [
        requests.post(
            url, data=OVERSIZED_SIGN_IN, headers={"Origin": tight_gateway.url}, allow_redirects=False, timeout=30
        )
        for _ in range(8)
    ]
    statuses = [answer.status_code for answer in answers]
    assert statuses[:5] == [413] * 5, statuses
    assert 429 in statuses[5:], statuses
    limited = next(answer for answer in answers if answer.status_code == 429)
    assert int(limited.headers["Retry-After"]) >= 1
    assert limited.headers["content-type"].startswith("text/html") and "Too many failed sign-ins" in limited.text


@pytest.fixture
def dual_stack_gateway(stack: Stack) -> Iterator[GatewayProcess]:
    """A replica with the tight budget listening on `::` with two workers: uvicorn binds that socket for both
    families, and an IPv4 client's address reads `::ffff:a.b.c.d`."""
    env = {
        **GATEWAY_ENV,
        "FEDGATE_SERVER_ANONYMOUS_DENIALS_BURST": "5",
        "FEDGATE_SERVER_ANONYMOUS_DENIALS_PER_SECOND": REFILL_PER_SECOND,
    }
    gateway = GatewayProcess(stack.workdir / "fedgate.toml", env, host="::")
    gateway.log_path = stack.workdir / f"dual-{uuid.uuid4().hex[:6]}.log"
    gateway.start(workers=2)
    try:
        yield gateway
    finally:
        gateway.stop()


def _status_from(gateway: GatewayProcess, source: str, path: str) -> int:
    """The status of one GET from the loopback address `source`, on a connection of its own (a worker of its own
    choosing: each worker keeps its own budgets)."""
    connection = http.client.HTTPConnection(LOOPBACK, gateway.port, timeout=30, source_address=(source, 0))
    try:
        connection.request("GET", path, headers={"X-MLFLOW-WORKSPACE": "team-a", "Connection": "close"})
        return connection.getresponse().status
    finally:
        connection.close()


def test_ipv4_clients_of_a_dual_stack_socket_each_have_a_budget_of_their_own(
    dual_stack_gateway: GatewayProcess,
) -> None:
    """Seen through a socket of both families, every IPv4 address was in the IPv6 /64 `::/64`, one client to the
    anonymous-denial budget: one address's flood had every other IPv4 client's anonymous calls, failed sign-ins and
    sign-in starts at the identity provider answer 429. Each IPv4 address is a client of its own."""
    search = "/api/2.0/mlflow/experiments/search?max_results=1"
    flood: list[int] = []
    while flood[-20:] != [429] * 20:  # every worker's budget for the flooding address spent
        assert len(flood) < 500, flood
        flood.append(_status_from(dual_stack_gateway, "127.0.0.2", search))
    assert flood[:5] == [401] * 5, flood
    others = [_status_from(dual_stack_gateway, "127.0.0.3", search) for _ in range(5)]
    assert others == [401] * 5, others


@pytest.fixture(scope="module")
def tight_sign_in_gateway(stack: Stack) -> Iterator[GatewayProcess]:
    """A replica with an identity provider for the web UI and an anonymous-denial budget of 5."""
    issuer = OidcIssuer().start()
    issuer.register("fedgate-ui", "http://127.0.0.1:1/fedgate/sign-in/callback", "ui-secret")
    env = {
        **GATEWAY_ENV,
        "FEDGATE_SERVER_ANONYMOUS_DENIALS_BURST": "5",
        "FEDGATE_SERVER_ANONYMOUS_DENIALS_PER_SECOND": REFILL_PER_SECOND,
        "FEDGATE_OIDC_ISSUER": issuer.url,
        "FEDGATE_OIDC_AUDIENCE": "fedgate",
        "FEDGATE_OIDC_CLIENT_ID": "fedgate-ui",
        "FEDGATE_OIDC_CLIENT_SECRET_ENV": "UI_CLIENT_SECRET",
        "UI_CLIENT_SECRET": "ui-secret",
    }
    gateway = GatewayProcess(stack.workdir / "fedgate.toml", env)
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop()
        issuer.stop()


def _sign_in_attempts(stack: Stack) -> int:
    async def count() -> int:
        connection = await asyncpg.connect(stack.database_url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            return int(await connection.fetchval("SELECT count(*) FROM sign_in_attempts"))
        finally:
            await connection.close()

    return asyncio.run(count())


def test_a_flood_of_started_sign_ins_gets_429_after_the_burst(
    stack: Stack, tight_sign_in_gateway: GatewayProcess
) -> None:
    """Each start of a sign-in with the identity provider stores an attempt for an anonymous caller: the
    address's budget bounds them, so a flood answers 429 and stores nothing more."""
    before = _sign_in_attempts(stack)
    url = f"{tight_sign_in_gateway.url}/fedgate/sign-in/oidc"
    starts = [requests.get(url, allow_redirects=False, timeout=30) for _ in range(12)]
    statuses = [answer.status_code for answer in starts]
    assert statuses[:5] == [302] * 5, statuses
    assert 429 in statuses[5:], statuses
    limited = next(answer for answer in starts if answer.status_code == 429)
    assert int(limited.headers["Retry-After"]) >= 1
    assert limited.headers["content-type"].startswith("text/html") and "Too many sign-ins" in limited.text
    assert "set-cookie" not in limited.headers
    assert _sign_in_attempts(stack) - before == statuses.count(302) < len(statuses)


def test_a_flood_of_failing_credentials_on_public_routes_gets_429_after_the_burst(
    tight_gateway: GatewayProcess,
) -> None:
    """Public routes answer without credentials, but credentials that fail there cost a lookup like anywhere:
    a flood of guessed tokens at server-info spends the address's budget; callers without any are not limited."""
    url = f"{tight_gateway.url}/api/3.0/mlflow/server-info"
    guesses = [
        requests.get(
            url, headers={"Authorization": f"Bearer fgt_{uuid.uuid4().hex}{uuid.uuid4().hex[:11]}"}, timeout=30
        )
        for _ in range(12)
    ]
    statuses = [answer.status_code for answer in guesses]
    assert statuses[:5] == [200] * 5, statuses
    assert 429 in statuses[5:], statuses
    limited = next(answer for answer in guesses if answer.status_code == 429)
    assert_mlflow_error(limited, 429, {"REQUEST_LIMIT_EXCEEDED"})
    assert int(limited.headers["Retry-After"]) >= 1
    # No credentials: a public route's ordinary caller, never limited; a valid credential is never limited.
    assert requests.get(url, timeout=30).status_code == 200
    assert requests.get(f"{tight_gateway.url}/health/live", timeout=30).status_code == 200
    assert requests.get(url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30).status_code == 200


def test_made_up_session_cookies_on_public_routes_spend_the_budget_once_each(tight_gateway: GatewayProcess) -> None:
    """A session cookie that names no session costs a lookup on a public route as anywhere, so it spends the
    address's budget the first time this replica finds it dead; a signed-out browser that keeps sending its
    dead cookie is not locked out for that, and a cookie no session was ever made with is not looked up."""
    url = f"{tight_gateway.url}/api/3.0/mlflow/server-info"

    def with_cookie(value: str) -> requests.Response:
        return requests.get(url, headers={"Cookie": f"fedgate_session={value}"}, timeout=30)

    # Not of the shape of the ids the gateway issues: ignored, nothing spent however often.
    malformed = ["x", "fgt_" + "a" * 40, "a" * 44, "a" * 42 + "!"] * 4
    assert [with_cookie(value).status_code for value in malformed] == [200] * len(malformed)
    # A dead session's id, as a browser whose session ended keeps sending it: one unit spent, once.
    dead = secrets.token_urlsafe(32)
    assert [with_cookie(dead).status_code for _ in range(12)] == [200] * 12
    # A flood of made-up ids: each a lookup, each spends; 429 once the rest of the burst (4) is spent.
    flood = [with_cookie(secrets.token_urlsafe(32)) for _ in range(8)]
    statuses = [answer.status_code for answer in flood]
    assert statuses[:4] == [200] * 4 and 429 in statuses[4:], statuses
    assert_mlflow_error(next(answer for answer in flood if answer.status_code == 429), 429, {"REQUEST_LIMIT_EXCEEDED"})
    # Callers without a cookie, and the browser with its known-dead one, still answer.
    assert requests.get(url, timeout=30).status_code == 200
    assert with_cookie(dead).status_code == 200


def test_made_up_sign_in_cookies_at_the_sign_in_callback_spend_the_budget(tight_gateway: GatewayProcess) -> None:
    """The sign-in callback looks up the attempt its cookie names: one that names none spends the budget."""
    url = f"{tight_gateway.url}/fedgate/sign-in/callback?code=c&state=s"
    answers = [
        requests.get(
            url, headers={"Cookie": f"fedgate_sign_in={secrets.token_urlsafe(32)}"}, allow_redirects=False, timeout=30
        )
        for _ in range(8)
    ]
    statuses = [answer.status_code for answer in answers]
    assert 429 not in statuses[:5] and 429 in statuses[5:], statuses
    limited = next(answer for answer in answers if answer.status_code == 429)
    assert int(limited.headers["Retry-After"]) >= 1 and "Too many failed sign-ins" in limited.text


def test_an_audit_log_page_token_in_other_digits_or_too_long_is_no_failure(stack: Stack) -> None:
    """A page token that is not a row id reads from the start, as before; `²` (a digit to str.isdigit(), not to
    int()) and a number past a BIGINT answered 500."""
    for token in ("²", "\uff11\uff12", "9" * 19, "1" * 5000):
        answer = stack.http().get(
            f"{stack.url}/api/2.0/fedgate/audit-log", params={"max_results": 1, "page_token": token}, timeout=30
        )
        assert answer.status_code == 200, (token[:20], answer.text)
