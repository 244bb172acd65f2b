"""Registry webhooks of the workflow's events, against real gateways, a real mlflow store and a real HTTP receiver
on loopback: created with the stock databricks-sdk by a model's manager, refused for others and for URLs off the
operator's allow-list; each request, decision and comment POSTed once, signed with the webhook's secret
(X-Databricks-Signature), which is never answered nor logged. With gateways of their own (their own database, quick
retries): a refused delivery is retried until accepted, a delivery pending while the gateway is down is sent
after its restart, and two gateway processes sharing the database send every delivery exactly once.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import requests

from gateway.devstack import GatewayProcess
from tests.conftest import ADMIN_TOKEN, GATEWAY_ENV, OUTBOUND_ALLOWED, OUTBOUND_PORT, Stack
from tests.integration.test_registry_workflow import (
    WORKSPACE,
    Org,
    make_model,
    model_of,
    org,  # noqa: F401 - the module's fixture of principals
    registry,
)
from tests.support.identity import Admin, Person, unique
from tests.support.own_gateway import own_config
from tests.support.waiting import logged_so_far

pytestmark = pytest.mark.integration

RECEIVER = f"http://127.0.0.1:{OUTBOUND_PORT}"  # paths under /allowed are allowed (OUTBOUND_ALLOWED)
ELSEWHERE = f"{RECEIVER}/elsewhere"
SECRET = "whsec-" + uuid.uuid4().hex


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def event(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


@dataclass
class Receiver:
    """Records every POST; answers each path with the statuses queued for it (then 200)."""

    requests: list[Received] = field(default_factory=list)
    answers: dict[str, list[int]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def at(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if r.path == path]

    def wait_for(self, path: str, count: int, timeout: float = 60.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            seen = self.at(path)
            if len(seen) >= count:
                return seen
            time.sleep(0.1)
        raise AssertionError(f"{path} received {len(self.at(path))} of {count}: {self.at(path)}")


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    received = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            with received.lock:
                received.requests.append(Received(self.path, dict(self.headers), body))
                queued = received.answers.get(self.path) or [200]
                status = queued.pop(0) if len(queued) > 1 else queued[0]  # the last status stays
            self.send_response(status)
            self.send_header("content-type", "text/plain")
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", OUTBOUND_PORT), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield received
    server.shutdown()
    server.server_close()


def signed(received: Received, secret: str = SECRET) -> bool:
    expected = hmac.new(secret.encode(), received.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(received.headers.get("X-Databricks-Signature", ""), expected)


def api(url: str, who_token: str, method: str, path: str, workspace: str = WORKSPACE, **kw: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {who_token}", "X-MLFLOW-WORKSPACE": workspace}
    return requests.request(method, f"{url}/api/2.0/mlflow/{path}", headers=headers, timeout=60, **kw)


def webhook_with_a_co_manager(stack: Stack, owner: Person, name: str, path: str) -> tuple[dict[str, Any], str, Person]:
    """A COMMENT_CREATED webhook `owner` made on model `name` for RECEIVER + `path`, with SECRET and an
    Authorization value of its own; returned with that value and another person granted CAN_MANAGE on the model."""
    credential = "Bearer receiver-credential-" + uuid.uuid4().hex
    spec = {"url": RECEIVER + path, "secret": SECRET, "authorization": credential}
    made = api(
        stack.url,
        owner.token,
        "POST",
        "registry-webhooks/create",
        json={"model_name": name, "events": ["COMMENT_CREATED"], "http_url_spec": spec},
    )
    assert made.status_code == 200, made.text
    admin = Admin.of(stack)
    co_manager = admin.person(f"{unique('co-manager')}@example.com")
    admin.grant(
        f"registered-models/{model_of(stack, owner, name)['id']}",
        "CAN_MANAGE",
        user=co_manager.name,
        workspace=WORKSPACE,
    )
    return made.json()["webhook"], credential, co_manager


def test_the_workflows_events_reach_an_allowed_receiver_signed_and_nothing_else_does(
    stack: Stack,
    org: Org,  # noqa: F811
    receiver: Receiver,
) -> None:
    from databricks.sdk.errors import DatabricksError
    from databricks.sdk.service.ml import HttpUrlSpec, RegistryWebhookEvent

    name = make_model(stack, org, versions=2, prefix="hooked")
    path = f"/allowed/{uuid.uuid4().hex[:8]}"
    owner = registry(stack, org.owner)
    events = [RegistryWebhookEvent.TRANSITION_REQUEST_CREATED, RegistryWebhookEvent.COMMENT_CREATED]

    def refused(who: Any, url: str, model: str | None = name) -> str:
        with pytest.raises(DatabricksError) as caught:
            who.create_webhook(events=events, http_url_spec=HttpUrlSpec(url=url, secret=SECRET), model_name=model)
        return str(caught.value.error_code)

    # Only the model's manager, only to an allowed URL; registry-wide webhooks are the workspace managers'.
    assert refused(owner, ELSEWHERE) == "PERMISSION_DENIED"
    assert refused(owner, "http://user@127.0.0.1/allowed") == "INVALID_PARAMETER_VALUE"
    assert refused(registry(stack, org.production), RECEIVER + path) == "PERMISSION_DENIED"
    assert refused(registry(stack, org.outsider), RECEIVER + path) == "RESOURCE_DOES_NOT_EXIST"
    assert refused(owner, RECEIVER + path, model=None) == "PERMISSION_DENIED"
    created = owner.create_webhook(
        events=events,
        http_url_spec=HttpUrlSpec(url=RECEIVER + path, secret=SECRET, authorization="Bearer rcv-token"),
        model_name=name,
        description="release channel",
    ).webhook
    assert (created.model_name, created.http_url_spec.url) == (name, RECEIVER + path)
    # The gateway's own decision events, through the REST call (the SDK's enum knows Databricks' events only).
    decisions = api(
        stack.url,
        org.owner.token,
        "POST",
        "registry-webhooks/create",
        json={
            "model_name": name,
            "events": [
                "TRANSITION_REQUEST_APPROVED",
                "TRANSITION_REQUEST_REJECTED",
                "TRANSITION_REQUEST_CANCELLED",
                "MODEL_VERSION_TRANSITIONED_TO_PRODUCTION",
            ],
            "http_url_spec": {"url": RECEIVER + path + "/decisions", "secret": SECRET},
        },
    )
    assert decisions.status_code == 200, decisions.text
    listed = api(stack.url, org.owner.token, "GET", "registry-webhooks/list", params={"model_name": name}).json()
    assert sorted(w["http_url_spec"]["url"] for w in listed["webhooks"]) == [
        RECEIVER + path,
        RECEIVER + path + "/decisions",
    ]
    assert SECRET not in json.dumps(listed) and "rcv-token" not in json.dumps(listed)

    requester, production = registry(stack, org.requester), registry(stack, org.production)
    requester.create_transition_request(name, "1", "Production", comment="ready")
    requester.create_comment(name, "1", "looks good")
    production.approve_transition_request(name, "1", "Production", False)
    requester.create_transition_request(name, "2", "Staging")
    registry(stack, org.staging).reject_transition_request(name, "2", "Staging", comment="not yet")
    requester.create_transition_request(name, "2", "Production")
    requester.delete_transition_request(name, "2", "Production", org.requester.name)

    main = receiver.wait_for(path, 4)
    decided = receiver.wait_for(path + "/decisions", 4)
    assert all(signed(r) for r in main + decided)
    assert all(r.headers.get("Authorization") == "Bearer rcv-token" for r in main)
    assert all("Authorization" not in r.headers for r in decided)
    r, p, s = org.requester.name, org.production.name, org.staging.name
    assert sorted(
        (
            e["event"],
            e["model_name"],
            e["version"],
            e.get("to_stage") or "",
            e["user_id"],
            e.get("text") or e.get("comment"),
        )
        for e in (x.event for x in main)
    ) == [
        ("COMMENT_CREATED", name, "1", "", r, "looks good"),
        ("TRANSITION_REQUEST_CREATED", name, "1", "Production", r, "ready"),
        ("TRANSITION_REQUEST_CREATED", name, "2", "Production", r, None),
        ("TRANSITION_REQUEST_CREATED", name, "2", "Staging", r, None),
    ]
    assert sorted((e["event"], e["version"], e["user_id"]) for e in (x.event for x in decided)) == [
        ("MODEL_VERSION_TRANSITIONED_TO_PRODUCTION", "1", p),
        ("TRANSITION_REQUEST_APPROVED", "1", p),
        ("TRANSITION_REQUEST_CANCELLED", "2", r),
        ("TRANSITION_REQUEST_REJECTED", "2", s),
    ]
    assert {x.event["webhook_id"] for x in main} == {created.id}
    assert len({x.headers["X-Fedgate-Delivery"] for x in main + decided}) == 8

    # A test event is sent now and its answer reported; deleting a webhook ends its deliveries.
    tested = owner.test_registry_webhook(created.id)
    assert tested.status_code == 200
    assert receiver.wait_for(path, 5)[-1].event.get("test") is True
    assert settled(stack.database_url, created.id, 4) == [("delivered", 1)] * 4
    owner.delete_webhook(id=created.id)
    requester.create_comment(name, "2", "after the webhook went")  # queued in its transaction, if at all
    assert deliveries(stack.database_url, created.id) == [("delivered", 1)] * 4

    # The secret and the Authorization value are in no log line and no audit row.
    logged = logged_so_far(stack.url, stack.gateway.log_path)
    assert SECRET not in logged and "rcv-token" not in logged
    model_id = model_of(stack, org.owner, name)["id"]

    async def audited() -> str:
        connection = await asyncpg.connect(stack.database_url)
        try:
            rows = await connection.fetch("SELECT details::text FROM audit_log WHERE target LIKE $1", f"%{model_id}")
        finally:
            await connection.close()
        return " ".join(row[0] for row in rows)

    details = asyncio.run(audited())
    assert created.id in details  # the webhook's creation and deletion are audited, by id
    assert SECRET not in details and "rcv-token" not in details


def test_a_webhooks_secrets_are_sealed_in_the_database_and_still_sign_its_deliveries(
    stack: Stack,
    org: Org,  # noqa: F811
    receiver: Receiver,
) -> None:
    """The row holds the secret and the Authorization value sealed with the built-in vault's keys (never as given);
    the receiver still verifies the HMAC with the plain secret; an update's new secret is sealed too."""
    name = make_model(stack, org, versions=1, prefix="sealed")
    path = f"/allowed/sealed-{uuid.uuid4().hex[:8]}"

    def ok(method: str, call: str, **kw: Any) -> dict[str, Any]:
        answer = api(stack.url, org.owner.token, method, call, **kw)
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    spec = {"url": RECEIVER + path, "secret": SECRET, "authorization": "Bearer sealed-token"}
    hook = ok(
        "POST",
        "registry-webhooks/create",
        json={"model_name": name, "events": ["COMMENT_CREATED"], "http_url_spec": spec},
    )["webhook"]
    assert SECRET not in json.dumps(hook) and "sealed-token" not in json.dumps(hook)

    def stored() -> tuple[str, str]:
        async def run() -> tuple[str, str]:
            connection = await asyncpg.connect(stack.database_url)
            try:
                row = await connection.fetchrow(
                    'SELECT secret, "authorization" FROM registry_webhooks WHERE id = $1', hook["id"]
                )
            finally:
                await connection.close()
            assert row is not None
            return str(row["secret"]), str(row["authorization"])

        return asyncio.run(run())

    secret, authorization = stored()
    assert SECRET not in secret and "sealed-token" not in authorization
    assert secret.startswith("fgv1:t1:") and authorization.startswith("fgv1:t1:")  # the tests' active vault key

    registry(stack, org.requester).create_comment(name, "1", "sealed but signed")
    [first] = receiver.wait_for(path, 1)
    assert signed(first) and first.headers.get("Authorization") == "Bearer sealed-token"
    assert first.event["comment"] == "sealed but signed"

    # A new secret (the URL and Authorization kept) is sealed afresh, and the next delivery is signed with it.
    rotated = "whsec-" + uuid.uuid4().hex
    ok(
        "PATCH",
        "registry-webhooks/update",
        json={"id": hook["id"], "http_url_spec": {"url": RECEIVER + path, "secret": rotated}},
    )
    secret_now, authorization_now = stored()
    assert rotated not in secret_now and secret_now != secret and authorization_now == authorization
    registry(stack, org.requester).create_comment(name, "1", "with the new secret")
    second = receiver.wait_for(path, 2)[-1]
    assert signed(second, rotated) and not signed(second, SECRET)

    # A sealed value moved to another webhook's row does not open there: that webhook's delivery is not sent unsigned.
    other_path = f"/allowed/moved-{uuid.uuid4().hex[:8]}"
    other = ok(
        "POST",
        "registry-webhooks/create",
        json={"model_name": name, "events": ["COMMENT_CREATED"], "http_url_spec": {"url": RECEIVER + other_path}},
    )["webhook"]
    database_admin(
        stack.database_url,
        f"UPDATE registry_webhooks SET secret = '{secret_now}' WHERE id = '{other['id']}'",
    )
    registry(stack, org.requester).create_comment(name, "1", "to the moved secret")
    receiver.wait_for(path, 3)
    found = deliveries_detail(stack.database_url, other["id"])
    assert found and all(state != "delivered" and "cannot be opened" in (error or "") for state, error in found)
    assert receiver.at(other_path) == []
    logged = logged_so_far(stack.url, stack.gateway.log_path)
    assert rotated not in logged and "sealed-token" not in logged
    ok("DELETE", "registry-webhooks/delete", params={"id": other["id"]})


def test_a_webhooks_secret_and_authorization_go_to_no_other_url_than_the_one_they_were_given_for(
    stack: Stack,
    org: Org,  # noqa: F811
    receiver: Receiver,
) -> None:
    """The secret and the Authorization value are never answered, not even to the webhook's managers. Another
    manager of the model who moved the webhook to a URL of their own (any allowed one they can read) while the
    stored values were kept would receive the Authorization value verbatim, and signatures made with the secret.
    A new URL takes them again (or "" for none)."""
    name = make_model(stack, org, versions=1, prefix="moved-url")
    theirs, mine = f"/allowed/receiver-{uuid.uuid4().hex[:8]}", f"/allowed/co-manager-{uuid.uuid4().hex[:8]}"
    hook, credential, co_manager = webhook_with_a_co_manager(stack, org.owner, name, theirs)

    def update(http_url_spec: dict[str, Any]) -> requests.Response:
        body = {"id": hook["id"], "http_url_spec": http_url_spec}
        return api(stack.url, co_manager.token, "PATCH", "registry-webhooks/update", json=body)

    for partial in ({"url": RECEIVER + mine}, {"url": RECEIVER + mine, "secret": "whsec-mine"}):
        moved = update(partial)
        assert moved.status_code == 400 and moved.json()["error_code"] == "INVALID_PARAMETER_VALUE", moved.text
        assert "authorization" in moved.json()["message"]
    moved = update({"url": RECEIVER + mine, "authorization": "Bearer mine"})
    assert moved.status_code == 400 and "secret" in moved.json()["message"], moved.text
    registry(stack, org.requester).create_comment(name, "1", "still to the receiver")
    [delivered] = receiver.wait_for(theirs, 1)
    assert delivered.headers.get("Authorization") == credential and signed(delivered)
    assert receiver.at(mine) == []

    # The same URL keeps them; a new URL with both given again (here: none) is taken.
    kept = update({"url": RECEIVER + theirs, "enable_ssl_verification": True})
    assert kept.status_code == 200, kept.text
    taken = update({"url": RECEIVER + mine, "secret": "", "authorization": ""})
    assert taken.status_code == 200, taken.text
    registry(stack, org.requester).create_comment(name, "1", "to the new url")
    [arrived] = receiver.wait_for(mine, 1)
    assert "Authorization" not in arrived.headers and "X-Databricks-Signature" not in arrived.headers
    assert len(receiver.at(theirs)) == 1
    assert api(stack.url, org.owner.token, "DELETE", "registry-webhooks/delete", params={"id": hook["id"]}).ok


def test_turning_a_webhooks_tls_checks_off_takes_its_secret_and_authorization_again(
    stack: Stack,
    org: Org,  # noqa: F811
    receiver: Receiver,
) -> None:
    """Kept while another manager turned `enable_ssl_verification` off, the secret and the Authorization value
    would go over connections whose server is no longer checked (to whoever answers for the URL's host). Turning
    it off is treated like a new URL: they are given again (or "" for none)."""
    name = make_model(stack, org, versions=1, prefix="tls-off")
    path = f"/allowed/tls-{uuid.uuid4().hex[:8]}"
    hook, credential, co_manager = webhook_with_a_co_manager(stack, org.owner, name, path)

    def update(http_url_spec: dict[str, Any]) -> requests.Response:
        body = {"id": hook["id"], "http_url_spec": {"url": RECEIVER + path, **http_url_spec}}
        return api(stack.url, co_manager.token, "PATCH", "registry-webhooks/update", json=body)

    def verified() -> bool:
        listed = api(stack.url, org.owner.token, "GET", "registry-webhooks/list", params={"model_name": name})
        [webhook] = [w for w in listed.json()["webhooks"] if w["id"] == hook["id"]]
        return bool(webhook["http_url_spec"].get("enable_ssl_verification", True))  # a default is not answered

    for partial in ({}, {"secret": "whsec-mine"}, {"authorization": "Bearer mine"}):
        off = update({**partial, "enable_ssl_verification": False})
        assert off.status_code == 400 and off.json()["error_code"] == "INVALID_PARAMETER_VALUE", off.text
        missing = [field for field in ("secret", "authorization") if field not in partial]
        assert all(f"http_url_spec.{field}" in off.json()["message"] for field in missing), off.text
        assert "enable_ssl_verification" in off.json()["message"] and credential not in off.text
        assert verified()
    registry(stack, org.requester).create_comment(name, "1", "still checked, still signed")
    [delivered] = receiver.wait_for(path, 1)
    assert delivered.headers.get("Authorization") == credential and signed(delivered)

    # Keeping the checks on keeps them; turning them off with both given again (here: none) is taken.
    kept = update({"enable_ssl_verification": True})
    assert kept.status_code == 200, kept.text
    off = update({"secret": "", "authorization": "", "enable_ssl_verification": False})
    assert off.status_code == 200, off.text
    assert not verified()
    again = update({"enable_ssl_verification": False})  # already off: nothing held to downgrade
    assert again.status_code == 200, again.text
    assert api(stack.url, org.owner.token, "DELETE", "registry-webhooks/delete", params={"id": hook["id"]}).ok


def test_a_webhook_sends_nothing_once_whoever_chose_its_url_no_longer_manages_the_model(
    stack: Stack,
    org: Org,  # noqa: F811
    receiver: Receiver,
) -> None:
    """A webhook posts the model's events (comments, requests, decisions, who made them) to the URL its manager chose.
    Once that manager no longer manages the model (the group that gave them CAN_MANAGE lost them), their receiver got
    every event after, for as long as the webhook lived: the model's comments reached someone who could no longer
    read the model. The deliveries of such a webhook now fail, naming why; another manager who gives the webhook its
    URL again takes it over, and it sends again."""
    name = make_model(stack, org, versions=1, prefix="revoked-hook")
    admin = Admin.of(stack)
    leaver = admin.person(f"{unique('leaver')}@example.com")
    team = unique("model-team")
    team_id = admin.group(team, members=[leaver.id])
    admin.grant(
        f"registered-models/{model_of(stack, org.owner, name)['id']}", "CAN_MANAGE", group=team, workspace=WORKSPACE
    )
    path = f"/allowed/leaver-{uuid.uuid4().hex[:8]}"
    spec = {"url": RECEIVER + path, "secret": SECRET}
    made = api(
        stack.url,
        leaver.token,
        "POST",
        "registry-webhooks/create",
        json={"model_name": name, "events": ["COMMENT_CREATED"], "http_url_spec": spec},
    )
    assert made.status_code == 200, made.text
    hook = made.json()["webhook"]
    requester = registry(stack, org.requester)
    requester.create_comment(name, "1", "while a manager")
    [first] = receiver.wait_for(path, 1)
    assert first.event["comment"] == "while a manager" and signed(first)

    removed = admin.http().patch(
        f"{stack.url}/api/2.0/preview/scim/v2/Groups/{team_id}",
        json={"Operations": [{"op": "remove", "path": f'members[value eq "{leaver.id}"]'}]},
        timeout=60,
    )
    assert removed.status_code == 200, removed.text
    listed = api(stack.url, leaver.token, "GET", "registry-webhooks/list", params={"model_name": name})
    assert listed.status_code == 404, listed.text  # the model is hidden from them now
    requester.create_comment(name, "1", "after they left: not theirs to read")
    assert [state for state, _ in settled(stack.database_url, hook["id"], 2)] == ["delivered", "failed"]
    found = deliveries_detail(stack.database_url, hook["id"], timeout=0)
    assert "no longer manages" in (found[1][1] or ""), found
    assert len(receiver.at(path)) == 1

    # The model's owner gives the webhook its URL again: theirs now, it sends again.
    again = api(
        stack.url,
        org.owner.token,
        "PATCH",
        "registry-webhooks/update",
        json={"id": hook["id"], "http_url_spec": {**spec}},
    )
    assert again.status_code == 200, again.text
    requester.create_comment(name, "1", "sent for the owner")
    assert receiver.wait_for(path, 2)[-1].event["comment"] == "sent for the owner"
    assert api(stack.url, org.owner.token, "DELETE", "registry-webhooks/delete", params={"id": hook["id"]}).ok


# -- gateways of their own: retries, a restart, two processes -------------------------------------------


@dataclass
class OwnGateways:
    config: Path
    database_url: str
    store_url: str
    gateways: list[GatewayProcess]

    def start(self) -> GatewayProcess:
        gateway = GatewayProcess(self.config, GATEWAY_ENV).start()
        self.gateways.append(gateway)
        return gateway


def database_admin(url: str, statement: str) -> None:
    async def run() -> None:
        connection = await asyncpg.connect(url)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(run())


def deliveries(url: str, webhook_id: str) -> list[tuple[str, int]]:
    async def run() -> list[tuple[str, int]]:
        connection = await asyncpg.connect(url)
        try:
            rows = await connection.fetch(
                "SELECT state, attempts FROM registry_webhook_deliveries WHERE webhook_id = $1 ORDER BY id", webhook_id
            )
        finally:
            await connection.close()
        return [(row["state"], row["attempts"]) for row in rows]

    return asyncio.run(run())


def deliveries_detail(url: str, webhook_id: str, timeout: float = 30.0) -> list[tuple[str, str | None]]:
    """The webhook's deliveries (state, last error) once each has an error recorded."""
    deadline = time.monotonic() + timeout

    async def run() -> list[tuple[str, str | None]]:
        connection = await asyncpg.connect(url)
        try:
            rows = await connection.fetch(
                "SELECT state, last_error FROM registry_webhook_deliveries WHERE webhook_id = $1 ORDER BY id",
                webhook_id,
            )
        finally:
            await connection.close()
        return [(row["state"], row["last_error"]) for row in rows]

    while True:
        found = asyncio.run(run())
        if (found and all(error for _, error in found)) or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def settled(url: str, webhook_id: str, count: int, timeout: float = 30.0) -> list[tuple[str, int]]:
    """The webhook's deliveries once `count` of them are no longer pending (or as they are at the deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        found = deliveries(url, webhook_id)
        if sum(state != "pending" for state, _ in found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


@pytest.fixture(scope="module")
def own(stack: Stack) -> Iterator[OwnGateways]:
    """Gateways of their own database, on store `a`, retrying quickly."""
    with own_config(
        stack.database_url,
        stack.workdir / "registry_hooks.toml",
        f"""
[account]
id = "7001"
[server]
webhook_poll_seconds = 0.5
webhook_retry_seconds = 0.2
webhook_max_attempts = 30
[stores.a]
url = "{stack.stores["a"].url}"
[outbound]
allowed_destinations = ["{OUTBOUND_ALLOWED}"]
[[workspaces]]
name = "hooks"
id = "4001"
store = "a"
""",
        prefix="registry_hooks",
    ) as config:
        own = OwnGateways(config.path, config.database_url, stack.stores["a"].url, [])
        try:
            yield own
        finally:
            for gateway in own.gateways:
                gateway.stop()


def hooked_model(gateway: GatewayProcess, path: str) -> tuple[str, str]:
    """A model with one version in `hooks`, and a webhook of its comments to `path`: (model name, webhook id)."""
    name = unique("hooks-model")

    def ok(method: str, call: str, **kw: Any) -> dict[str, Any]:
        answer = api(gateway.url, ADMIN_TOKEN, method, call, workspace="hooks", **kw)
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    experiment_id = ok("POST", "experiments/create", json={"name": unique("hooks")})["experiment_id"]
    run_id = ok("POST", "runs/create", json={"experiment_id": experiment_id})["run"]["info"]["run_id"]
    ok("POST", "registered-models/create", json={"name": name})
    ok("POST", "model-versions/create", json={"name": name, "source": f"runs:/{run_id}/model", "run_id": run_id})
    webhook = ok(
        "POST",
        "registry-webhooks/create",
        json={
            "model_name": name,
            "events": ["COMMENT_CREATED"],
            "http_url_spec": {"url": RECEIVER + path, "secret": SECRET},
        },
    )["webhook"]
    return name, str(webhook["id"])


def comment(gateway: GatewayProcess, name: str, text: str) -> None:
    body = {"name": name, "version": "1", "comment": text}
    answer = api(gateway.url, ADMIN_TOKEN, "POST", "comments/create", workspace="hooks", json=body)
    assert answer.status_code == 200, answer.text


def test_a_refused_delivery_is_retried_until_accepted_and_survives_a_restart(
    own: OwnGateways, receiver: Receiver
) -> None:
    gateway = own.start()
    flaky = f"/allowed/flaky-{uuid.uuid4().hex[:6]}"
    receiver.answers[flaky] = [500, 502, 200]
    name, webhook_id = hooked_model(gateway, flaky)
    comment(gateway, name, "retried")
    seen = receiver.wait_for(flaky, 3)
    assert len({r.headers["X-Fedgate-Delivery"] for r in seen}) == 1 and len({r.body for r in seen}) == 1
    assert all(signed(r) for r in seen)
    assert settled(own.database_url, webhook_id, 1) == [("delivered", 3)]

    # Refused while the gateway goes down: still pending in the database, sent by the restarted gateway.
    down = f"/allowed/down-{uuid.uuid4().hex[:6]}"
    receiver.answers[down] = [503]
    name, webhook_id = hooked_model(gateway, down)
    comment(gateway, name, "across a restart")
    receiver.wait_for(down, 1)
    gateway.stop()
    own.gateways.remove(gateway)
    [(state, attempts)] = deliveries(own.database_url, webhook_id)
    assert state == "pending" and attempts >= 1
    receiver.answers[down] = [200]
    before = len(receiver.at(down))
    own.start()
    seen = receiver.wait_for(down, before + 1)
    assert seen[-1].event["comment"] == "across a restart" and signed(seen[-1])
    [(state, _)] = settled(own.database_url, webhook_id, 1)
    assert state == "delivered"


def test_two_gateway_processes_send_each_delivery_once(own: OwnGateways, receiver: Receiver) -> None:
    first = own.gateways[0] if own.gateways else own.start()
    second = own.start()
    path = f"/allowed/pair-{uuid.uuid4().hex[:6]}"
    name, webhook_id = hooked_model(first, path)
    count = 30
    threads = [
        threading.Thread(target=comment, args=((first, second)[i % 2], name, f"comment {i}")) for i in range(count)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    receiver.wait_for(path, count)
    # Each delivery was claimed once (a claim counts an attempt), and the receiver saw each once.
    assert settled(own.database_url, webhook_id, count) == [("delivered", 1)] * count
    seen = receiver.at(path)
    assert len(seen) == count
    assert len({r.headers["X-Fedgate-Delivery"] for r in seen}) == count
    assert sorted(r.event["comment"] for r in seen) == sorted(f"comment {i}" for i in range(count))
