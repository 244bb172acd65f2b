"""Calls that make the store call out, through the gateway: the operator's allow-list decides where.

The test gateway allows destinations under `OUTBOUND_ALLOWED` only (tests/conftest.py), where this module runs
a receiver; store `a` itself accepts plain-http loopback destinations, so anything the gateway let through
would reach it. Webhooks (with the stock client): a workspace manager creates one to an allowed URL, the store
delivers a test event and a real registry event to the receiver; a refused URL, a malformed one, an update to a
refused URL and the test of a webhook stored around the gateway are refused before the store sees them, and
users below CAN_MANAGE on the workspace are refused.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from mlflow import MlflowClient
from mlflow.entities.webhook import WebhookAction, WebhookEntity, WebhookEvent
from mlflow.exceptions import MlflowException

from tests.conftest import OUTBOUND_ALLOWED, OUTBOUND_PORT, Stack
from tests.support.identity import Admin, Person, unique

pytestmark = pytest.mark.integration

ELSEWHERE = f"http://127.0.0.1:{OUTBOUND_PORT}/elsewhere"  # the same receiver, outside the allowed prefix


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """What reached the receiver, in order."""

    requests: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def at(self, prefix: str) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if r.path.startswith(prefix)]

    def wait_for(self, condition: Callable[[list[Received]], bool], timeout: float = 20.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                seen = list(self.requests)
            if condition(seen):
                return seen
            time.sleep(0.1)
        raise AssertionError(f"the receiver did not get what was expected: {seen}")


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    received = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            with received.lock:
                received.requests.append(Received("POST", self.path, dict(self.headers), body))
            self.send_response(200)
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


@dataclass(frozen=True)
class Cast:
    manager: Person  # CAN_MANAGE on team-a
    user: Person  # CAN_USE on team-a
    outsider: Person  # holds nothing in team-a


@pytest.fixture(scope="module")
def cast(stack: Stack) -> Cast:
    admin = Admin.of(stack)
    suffix = uuid.uuid4().hex[:6]
    manager, user, outsider = (admin.person(f"{r}.{suffix}@example.com") for r in ("manager", "user", "outsider"))
    admin.grant("workspaces/team-a", "CAN_MANAGE", user=manager.name)
    admin.grant("workspaces/team-a", "CAN_USE", user=user.name)
    admin.grant("workspaces/team-b", "CAN_USE", user=outsider.name)
    return Cast(manager, user, outsider)


@pytest.fixture
def client_as(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Callable[[Person], MlflowClient]:
    """The stock client of team-a, as `person` (the token is read per call)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", stack.url)
    monkeypatch.setenv("MLFLOW_WORKSPACE", "team-a")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")

    def client(person: Person) -> MlflowClient:
        os.environ["MLFLOW_TRACKING_TOKEN"] = person.token
        return MlflowClient(stack.url)

    yield client
    os.environ.pop("MLFLOW_TRACKING_TOKEN", None)


CREATED = [WebhookEvent(WebhookEntity.REGISTERED_MODEL, WebhookAction.CREATED)]


def _refusal(action: Callable[[], Any]) -> MlflowException:
    with pytest.raises(MlflowException) as caught:
        action()
    return caught.value


def test_a_webhook_to_an_allowed_destination_is_delivered(
    stack: Stack, cast: Cast, receiver: Receiver, client_as: Callable[[Person], MlflowClient]
) -> None:
    client = client_as(cast.manager)
    url = f"{OUTBOUND_ALLOWED}/hook-{uuid.uuid4().hex[:6]}"
    webhook = client.create_webhook(name=unique("hook"), url=url, events=CREATED, secret="s3cret")
    try:
        assert webhook.url == url
        assert [w.webhook_id for w in client.list_webhooks()].count(webhook.webhook_id) == 1
        result = client.test_webhook(webhook.webhook_id)
        assert result.success, result
        path = url.removeprefix(f"http://127.0.0.1:{OUTBOUND_PORT}")
        # MLflow 3.17.2 delivers registry events as they happen: one when a registered model is created.
        name = unique("hooked-model")
        client.create_registered_model(name)
        seen = receiver.wait_for(lambda got: any(name.encode() in r.body for r in got if r.path == path))
        event = next(r for r in seen if r.path == path and name.encode() in r.body)
        assert json.loads(event.body)["entity"] == "registered_model"
        assert any(k.lower() == "x-mlflow-signature" for k in event.headers)
    finally:
        client.delete_webhook(webhook.webhook_id)


def test_destinations_off_the_allow_list_are_refused_before_the_store_sees_them(
    stack: Stack, cast: Cast, receiver: Receiver, client_as: Callable[[Person], MlflowClient]
) -> None:
    client = client_as(cast.manager)
    before = {w.webhook_id for w in client.list_webhooks()}
    refused = _refusal(lambda: client.create_webhook(name=unique("hook"), url=f"{ELSEWHERE}/x", events=CREATED))
    assert refused.error_code == "PERMISSION_DENIED", refused.message
    assert "not an allowed destination" in refused.message
    for malformed in (
        f"http://allowed@127.0.0.1:{OUTBOUND_PORT}/allowed/x",  # user information: the host is what follows '@'
        f"http://127.0.0.1:{OUTBOUND_PORT}/allowed/../elsewhere/x",  # escapes the allowed prefix
        f"http://127.0.0.1:{OUTBOUND_PORT}\\@evil.example/allowed/x",
        f"http://2130706433:{OUTBOUND_PORT}/allowed/x",  # 127.0.0.1, spelt as a number
    ):
        bad = _refusal(lambda url=malformed: client.create_webhook(name=unique("hook"), url=url, events=CREATED))
        assert bad.error_code == "INVALID_PARAMETER_VALUE", (malformed, bad.message)
    assert {w.webhook_id for w in client.list_webhooks()} == before

    webhook = client.create_webhook(name=unique("hook"), url=f"{OUTBOUND_ALLOWED}/kept", events=CREATED)
    try:
        moved = _refusal(lambda: client.update_webhook(webhook.webhook_id, url=f"{ELSEWHERE}/moved"))
        assert moved.error_code == "PERMISSION_DENIED"
        assert client.get_webhook(webhook.webhook_id).url == f"{OUTBOUND_ALLOWED}/kept"
    finally:
        client.delete_webhook(webhook.webhook_id)

    # A webhook written to the store around the gateway is not tested through it.
    direct = requests.post(
        f"{stack.stores['a'].url}/api/2.0/mlflow/webhooks",
        json={
            "name": unique("direct"),
            "url": f"{ELSEWHERE}/direct",
            "events": [{"entity": "REGISTERED_MODEL", "action": "CREATED"}],
        },
        timeout=30,
    )
    assert direct.status_code == 200, direct.text
    stored = direct.json()["webhook"]["webhook_id"]
    try:
        untested = _refusal(lambda: client.test_webhook(stored))
        assert untested.error_code == "PERMISSION_DENIED"
    finally:
        requests.delete(f"{stack.stores['a'].url}/api/2.0/mlflow/webhooks/{stored}", timeout=30)
    assert receiver.at("/elsewhere") == []


def test_webhooks_are_for_workspace_managers(
    stack: Stack, cast: Cast, client_as: Callable[[Person], MlflowClient]
) -> None:
    user = client_as(cast.user)
    for action in (
        lambda: user.list_webhooks(),
        lambda: user.create_webhook(name=unique("hook"), url=f"{OUTBOUND_ALLOWED}/u", events=CREATED),
    ):
        assert _refusal(action).error_code == "PERMISSION_DENIED"
    outsider = client_as(cast.outsider)
    assert _refusal(lambda: outsider.list_webhooks()).error_code == "RESOURCE_DOES_NOT_EXIST"
