"""What the gateway answers for a store started without a feature the call needs, with real `mlflow server`s.

MLflow 3.17.2 refuses such calls itself, the same on every retry, in shapes that are not its error shape or not a
status a client gives up on: the tracking routes of a server started with `--artifacts-only` answer 503 text/html,
and every call with a workspace header to a server started without `--enable-workspaces` answers 500
`FEATURE_DISABLED`. The gateway answers both 501 NOT_IMPLEMENTED, naming the workspace and what the operator must
change, without Retry-After (it took the first for a proxy's 503 and answered TEMPORARILY_UNAVAILABLE with
Retry-After, and passed the second on as it came; the stock client retries both for minutes), and a write answered
so is settled, not handed to crash recovery. (The `--no-serve-artifacts` case is in test_rest_surface.py.)
"""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import mlflow
import pytest
import requests
from mlflow.exceptions import RestException
from mlflow.utils.request_utils import _TRANSIENT_FAILURE_RESPONSE_CODES

from gateway.core.errors import mlflow_error
from gateway.core.route_table import FORWARDED_ROUTES, Body, RouteSpec
from gateway.devstack import GatewayProcess, MlflowServer, free_port
from tests.conftest import ADMIN_TOKEN
from tests.support.balancer import Balancer
from tests.support.mlflow_surface import artifacts_only_routes, normalised
from tests.support.own_gateway import own_gateway
from tests.support.stock_client import stock_client_env
from tests.support.waiting import until

pytestmark = pytest.mark.integration

PROXY, FLAT = "proxy", "flat"  # the artifacts-only store's workspace; the workspace of a store without workspaces
NOWHERE = "nowhere"  # the workspace of a store that serves artifacts with no destination
BEHIND = "behind"  # a workspace whose store is behind a proxy that has no backend ready: a real outage
ARTIFACTS_ONLY_TEXT = re.compile(
    r"Endpoint: /\S+ disabled due to the mlflow server running in `--artifacts-only` mode\. .*"
)
NO_WORKSPACES = {
    "error_code": "FEATURE_DISABLED",
    "message": "Workspace APIs are not available: workspaces are not enabled on this server",
    "sqlstate": "KAM00",
    "error_class": "FEATURE_DISABLED",
}


@dataclass(frozen=True)
class Misconfigured:
    """One gateway on a database of its own over three stores: `proxy`, an `mlflow server --artifacts-only`,
    `flat`, an `mlflow server` without `--enable-workspaces` that the gateway's configuration addresses by workspace
    (`workspaces = true`), and `behind`, a load balancer whose one backend never gets ready (it answers 503 text/plain
    "no replica is ready" with Retry-After: 1, as a proxy in front of a store that is down). The links are configured,
    so the gateway only warns about them at start-up."""

    artifacts_only: MlflowServer
    flat: MlflowServer
    nowhere: MlflowServer
    gateway: GatewayProcess
    database_url: str

    def http(self, workspace: str) -> requests.Session:
        session = requests.Session()
        session.headers.update({"Authorization": f"Bearer {ADMIN_TOKEN}", "X-MLFLOW-WORKSPACE": workspace})
        return session

    def intents(self, workspace_id: str) -> int:
        """How many write intents the gateway holds for a workspace (noted before a write is sent, kept while
        recovery is due)."""

        async def count() -> int:
            connection = await asyncpg.connect(self.database_url)
            try:
                query = "SELECT count(*) FROM write_intents WHERE workspace_id = $1"
                return int(await connection.fetchval(query, int(workspace_id)))
            finally:
                await connection.close()

        return asyncio.run(count())


@pytest.fixture(scope="module")
def misconfigured(workdir: Path, database_url: str) -> Iterator[Misconfigured]:
    artifacts_only = MlflowServer(workdir / "store-artifacts-only", artifacts_only=True)
    flat = MlflowServer(workdir / "store-flat")
    # Three stores only linked in the tests: an artifact proxy of no configured workspace, a store started with
    # --no-serve-artifacts, and `nowhere`, one serving artifacts with no destination (its configured workspace).
    spare_proxy = MlflowServer(workdir / "store-spare-proxy", artifacts_only=True)
    unserving = MlflowServer(workdir / "store-unserving", serve_artifacts=False)
    nowhere = MlflowServer(workdir / "store-nowhere", artifacts_destination=False)
    servers = (artifacts_only, flat, spare_proxy, unserving, nowhere)
    try:
        for server in servers:
            server.start(timeout=180)
        with (
            Balancer([f"http://127.0.0.1:{free_port()}"]) as lb,
            own_gateway(
                database_url,
                workdir / "fedgate-misconfigured.toml",
                f"""
[account]
id = "7002"
[stores.proxy]
url = "{artifacts_only.url}"
[stores.flat]
url = "{flat.url}"
workspaces = true
[stores.behind]
url = "{lb.url}"
[stores.spare_proxy]
url = "{spare_proxy.url}"
[stores.unserving]
url = "{unserving.url}"
[stores.nowhere]
url = "{nowhere.url}"
[[workspaces]]
name = "{NOWHERE}"
id = "6105"
store = "nowhere"
[[workspaces]]
name = "{PROXY}"
id = "6101"
store = "proxy"
[[workspaces]]
name = "{FLAT}"
id = "6102"
store = "flat"
[[workspaces]]
name = "{BEHIND}"
id = "6104"
store = "behind"
""",
                prefix="misconfigured",
            ) as own,
        ):
            yield Misconfigured(artifacts_only, flat, nowhere, own.process, own.config.database_url)
    finally:
        for server in servers:
            server.stop()


# Path parameters, by name, of a call of any route: well-formed values of nothing that exists.
_VALUES = {
    "alias": "champion",
    "artifact_path": "1/2/artifacts/file.txt",
    "key": "k",
    "name": "model",
    "path": "p",
    "request_id": "tr-0123456789abcdef0123456789abcdef",
    "trace_id": "tr-0123456789abcdef0123456789abcdef",
    "version": "1",
}


def _call(spec: RouteSpec) -> tuple[str, str, bytes | None]:
    """(method, path, body) of a call of `spec` at its first path on the gateway, naming nothing that exists."""
    path = re.sub(r"\{(\w+):\w+\}", lambda m: _VALUES.get(m.group(1), "x1"), spec.paths()[0])
    body = b"{}" if spec.method != "GET" and spec.body in (Body.JSON, Body.GRAPHQL) else None
    return spec.method, path, body


def _refused_as_not_served(answer: requests.Response, workspace: str, flag: str) -> bool:
    if answer.status_code != 501 or "Retry-After" in answer.headers:
        return False
    document = answer.json()
    return (
        document.get("error_code") == "NOT_IMPLEMENTED"
        and f"'{workspace}'" in document["message"]
        and (flag in document["message"])
    )


def test_every_tracking_route_of_an_artifacts_only_store_answers_501(misconfigured: Misconfigured) -> None:
    """Every forwarded route whose MLflow handler refuses in `--artifacts-only` mode (read from MLflow's code:
    `_disable_if_artifacts_only`), called through the gateway: none answers the 503 TEMPORARILY_UNAVAILABLE with
    Retry-After it answered before, nor any other 5xx but 501 NOT_IMPLEMENTED naming the workspace and the flag;
    the calls the gateway forwards as they are answer that 501."""
    gated = artifacts_only_routes()
    specs = [
        spec for spec in FORWARDED_ROUTES if f"{spec.method} {normalised(spec.upstream_prefix + spec.path)}" in gated
    ]
    assert len(specs) > 150, len(specs)
    direct = requests.get(f"{misconfigured.artifacts_only.url}/api/2.0/mlflow/runs/get?run_id=r", timeout=60)
    assert direct.status_code == 503 and direct.headers["Content-Type"] == "text/html; charset=utf-8"
    assert ARTIFACTS_ONLY_TEXT.fullmatch(direct.text), direct.text
    wrong, answered, outage = [], 0, 0
    session, behind = misconfigured.http(PROXY), misconfigured.http(BEHIND)
    for spec in specs:
        method, path, body = _call(spec)
        headers = {"Content-Type": "application/json"} if body is not None else {}
        through = session.request(method, f"{misconfigured.gateway.url}{path}", data=body, headers=headers, timeout=60)
        if _refused_as_not_served(through, PROXY, "--artifacts-only"):
            answered += 1
            # The same call to a store behind a proxy that answers 503 itself is an outage, as before.
            down = behind.request(method, f"{misconfigured.gateway.url}{path}", data=body, headers=headers, timeout=60)
            if (down.status_code, down.json().get("error_code"), down.headers.get("Retry-After")) == (
                503,
                "TEMPORARILY_UNAVAILABLE",
                "1",
            ):
                outage += 1
            else:
                wrong.append(f"{method} {path} behind a proxy: {down.status_code} {down.text[:200]!r}")
        elif through.status_code >= 500 or "Retry-After" in through.headers:
            wrong.append(f"{method} {path}: {through.status_code} {through.text[:200]!r}")
    assert wrong == [], wrong
    assert answered > 100, answered  # the rest the gateway refused itself (a body it reads, say), as for any store
    assert outage == answered


def test_every_call_in_a_workspace_of_a_store_without_workspaces_answers_501(misconfigured: Misconfigured) -> None:
    """The store refuses the workspace header on every route (but server-info) before any handler runs: 500
    FEATURE_DISABLED, which the gateway passed on as it came and the stock client retried for minutes."""
    direct = requests.get(
        f"{misconfigured.flat.url}/api/2.0/mlflow/experiments/search",
        headers={"X-MLFLOW-WORKSPACE": FLAT},
        timeout=60,
    )
    assert (direct.status_code, direct.headers["Content-Type"], direct.json()) == (
        500,
        "application/json",
        NO_WORKSPACES,
    )
    wrong, answered = [], 0
    session = misconfigured.http(FLAT)
    for spec in FORWARDED_ROUTES:
        method, path, body = _call(spec)
        headers = {"Content-Type": "application/json"} if body is not None else {}
        through = session.request(method, f"{misconfigured.gateway.url}{path}", data=body, headers=headers, timeout=60)
        if _refused_as_not_served(through, FLAT, "--enable-workspaces"):
            answered += 1
        elif through.status_code >= 500 or "Retry-After" in through.headers:
            wrong.append(f"{method} {path}: {through.status_code} {through.text[:200]!r}")
    assert wrong == [], wrong
    assert answered > 100, answered


@pytest.mark.parametrize(
    ("workspace", "workspace_id", "flag"), [(PROXY, "6101", "--artifacts-only"), (FLAT, "6102", "--enable-workspaces")]
)
def test_a_write_so_refused_is_settled_not_recovered(
    misconfigured: Misconfigured, workspace: str, workspace_id: str, flag: str
) -> None:
    """The store refused the write before any handler ran: nothing to recover. Before, the 5xx left the write of
    unknown outcome, handed to crash recovery, which asked the store again and again (it answers the same). A write
    to the store behind a proxy that answers 503 is of unknown outcome, and its note is kept for recovery."""
    held = functools.partial(misconfigured.intents, workspace_id)
    until(held, lambda count: count == 0, "no write intent held before the writes")
    session = misconfigured.http(workspace)
    for path, body in (
        ("/api/2.0/mlflow/experiments/create", {"name": f"refused-{workspace}"}),
        ("/api/2.0/mlflow/runs/create", {"experiment_id": "1"}),
        ("/api/2.0/mlflow/registered-models/create", {"name": f"refused-{workspace}"}),
    ):
        answer = session.post(f"{misconfigured.gateway.url}{path}", json=body, timeout=60)
        assert _refused_as_not_served(answer, workspace, flag), (path, answer.status_code, answer.text)
    until(held, lambda count: count == 0, "the refused writes' intents dropped, not kept for recovery")
    down = misconfigured.http(BEHIND).post(
        f"{misconfigured.gateway.url}/api/2.0/mlflow/experiments/create", json={"name": "down"}, timeout=60
    )
    assert (down.status_code, down.json()["error_code"]) == (503, "TEMPORARILY_UNAVAILABLE"), down.text
    assert until(functools.partial(misconfigured.intents, "6104"), lambda count: count > 0, "a note kept for recovery")


# What the stock client (MLflow 3.17.2) reports, word for word, for a call in each workspace.
TOLD = {
    PROXY: (
        "NOT_IMPLEMENTED: The store of workspace 'proxy' is an artifact proxy without tracking: it runs with "
        "--artifacts-only. An operator must link the workspace to a tracking server (mlflow server without "
        "--artifacts-only)."
    ),
    FLAT: (
        "NOT_IMPLEMENTED: The store of workspace 'flat' runs without workspaces (no --enable-workspaces), though the "
        "gateway's configuration addresses it by workspace. An operator must start it with --enable-workspaces."
    ),
}


@pytest.mark.parametrize("workspace", [PROXY, FLAT])
def test_the_stock_client_is_told_at_once_what_the_store_lacks(misconfigured: Misconfigured, workspace: str) -> None:
    """The stock client's common calls fail with the gateway's 501 and its message: MLflow's client retries only
    408, 429, 500, 502, 503 and 504 (each for minutes, respecting Retry-After), so a 501 is reported at once. The
    client runs with retries off here so that the old answers (503 with Retry-After; 500) fail the test rather than
    retry it for minutes; what it reports is the same with them on, as a 501 is never retried."""
    assert 501 not in _TRANSIENT_FAILURE_RESPONSE_CODES
    assert {500, 503} <= _TRANSIENT_FAILURE_RESPONSE_CODES
    url = misconfigured.gateway.url
    with stock_client_env(
        MLFLOW_TRACKING_URI=url, MLFLOW_TRACKING_TOKEN=ADMIN_TOKEN, MLFLOW_HTTP_REQUEST_MAX_RETRIES="0"
    ):
        mlflow.set_tracking_uri(url)
        mlflow.set_workspace(workspace)
        client = mlflow.MlflowClient(url)
        calls: list[Any] = [
            lambda: mlflow.create_experiment(f"told-{workspace}"),
            lambda: mlflow.search_experiments(),
            lambda: client.create_run("1"),
            lambda: client.log_metric("0123456789abcdef0123456789abcdef", "m", 1.0),
            lambda: client.search_registered_models(),
        ]
        told = []
        for call in calls:
            with pytest.raises(RestException) as caught:
                call()
            told.append((caught.value.get_http_status_code(), caught.value.error_code, str(caught.value)))
    assert told == [(501, "NOT_IMPLEMENTED", TOLD[workspace])] * len(calls)


def test_linking_a_workspace_on_a_store_without_workspaces_is_refused(misconfigured: Misconfigured) -> None:
    """The store's server-info says `workspaces_enabled: false`, and every call of the link would be refused: the
    link is refused, naming the flag (before, it was made, with a warning about an experiment search's 500)."""
    answer = misconfigured.http(FLAT).post(
        f"{misconfigured.gateway.url}/api/3.0/mlflow/workspaces",
        json={"name": "flat-two", "workspace_id": "6103", "store": "flat"},
        timeout=60,
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "--enable-workspaces" in answer.json()["message"] and "'flat'" in answer.json()["message"]
    listed = misconfigured.http(FLAT).get(f"{misconfigured.gateway.url}/api/3.0/mlflow/workspaces", timeout=60)
    assert "flat-two" not in {workspace["name"] for workspace in listed.json()["workspaces"]}


def test_linking_a_workspace_on_an_artifacts_only_store_is_refused(misconfigured: Misconfigured) -> None:
    """MLflow 3.17.2's server-info does not tell --artifacts-only; the store's experiment search does (503
    text/html, matched as the forwarder matches it), and every call of such a link would answer 501: the link is
    refused, naming the flag. Before, it was made, with a warning about the search's 503."""
    session = misconfigured.http(FLAT)
    answer = session.post(
        f"{misconfigured.gateway.url}/api/3.0/mlflow/workspaces",
        json={"name": "linked-proxy", "workspace_id": "6106", "store": "spare_proxy"},
        timeout=60,
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    message = answer.json()["message"]
    assert "--artifacts-only" in message and "'spare_proxy'" in message, message
    listed = session.get(f"{misconfigured.gateway.url}/api/3.0/mlflow/workspaces", timeout=60)
    assert "linked-proxy" not in {workspace["name"] for workspace in listed.json()["workspaces"]}


def test_linking_a_workspace_on_a_store_without_artifact_serving_warns(misconfigured: Misconfigured) -> None:
    """MLflow 3.17.2's server-info does not tell --no-serve-artifacts; the store's artifact listing does (503
    text/html). Such a store still tracks, so the link is made, with a warning naming the flag and what its artifact
    calls will answer (before, it was made without one)."""
    session = misconfigured.http(FLAT)
    answer = session.post(
        f"{misconfigured.gateway.url}/api/3.0/mlflow/workspaces",
        json={"name": "linked-unserving", "workspace_id": "6107", "store": "unserving"},
        timeout=60,
    )
    assert answer.status_code == 201, answer.text
    warning = answer.headers.get("X-Fedgate-Warning", "")
    assert "--no-serve-artifacts" in warning and "'unserving'" in warning and "501" in warning, answer.headers


def test_an_artifact_transfer_on_a_store_without_a_destination_answers_501(misconfigured: Misconfigured) -> None:
    """A store serving artifacts with an empty --artifacts-destination: MLflow's artifact router answers uploads and
    downloads 503 `{"detail": "Artifact serving is not configured."}`, the same on every retry, which the gateway
    passed on as it came (a 503 without an error code, which the stock client retried for minutes). It answers 501
    NOT_IMPLEMENTED naming the workspace and the flag."""
    session, url = misconfigured.http(NOWHERE), misconfigured.gateway.url
    made = session.post(f"{url}/api/2.0/mlflow/experiments/create", json={"name": "nowhere"}, timeout=60)
    assert made.status_code == 200, made.text
    experiment_id = made.json()["experiment_id"]
    run = session.post(f"{url}/api/2.0/mlflow/runs/create", json={"experiment_id": experiment_id}, timeout=60)
    assert run.status_code == 200, run.text
    path = f"/api/2.0/mlflow-artifacts/artifacts/{experiment_id}/{run.json()['run']['info']['run_id']}/artifacts/f.txt"
    direct = requests.get(f"{misconfigured.nowhere.url}{path}", timeout=60)
    assert (direct.status_code, direct.headers["Content-Type"], direct.json()) == (
        503,
        "application/json",
        {"detail": "Artifact serving is not configured."},
    )
    for method, data in (("GET", None), ("PUT", b"bytes")):
        answer = session.request(method, f"{url}{path}", data=data, timeout=60)
        assert _refused_as_not_served(answer, NOWHERE, "--artifacts-destination"), (
            method,
            answer.status_code,
            answer.text,
        )


def test_an_artifact_listing_on_a_store_without_a_destination_is_an_mlflow_error(misconfigured: Misconfigured) -> None:
    """MLflow's artifact listing (a Flask handler) of a store serving artifacts with no destination raises a KeyError
    (`_MLFLOW_SERVER_ARTIFACT_DESTINATION`) and Flask answers its 500 HTML page, which went out as it came. The
    failure is the store's: 502 INTERNAL_ERROR in MLflow's shape, naming the workspace, no page passed on."""
    session, url = misconfigured.http(NOWHERE), misconfigured.gateway.url
    made = session.post(f"{url}/api/2.0/mlflow/experiments/create", json={"name": "nowhere-listing"}, timeout=60)
    assert made.status_code == 200, made.text
    path = f"/api/2.0/mlflow-artifacts/artifacts?path={made.json()['experiment_id']}"
    direct = requests.get(f"{misconfigured.nowhere.url}{path}", timeout=60)
    assert (direct.status_code, direct.headers["Content-Type"]) == (500, "text/html; charset=utf-8"), direct.text
    answer = session.get(f"{url}{path}", timeout=60)
    assert (answer.status_code, answer.headers["Content-Type"]) == (502, "application/json"), answer.text
    assert answer.json() == mlflow_error(
        "INTERNAL_ERROR", f"The store of workspace '{NOWHERE}' answered 500 with an HTML page."
    )
