"""Calls that make the store call out, through the gateway: the operator's allow-list decides where.

The test gateway allows destinations under `OUTBOUND_ALLOWED` only (tests/conftest.py), where this module runs
a receiver; store `a` itself accepts plain-http loopback destinations, so anything the gateway let through
would reach it. Webhooks (with the stock client): a workspace manager creates one to an allowed URL, the store
delivers a test event and a real registry event to the receiver; a refused URL, a malformed one, an update to a
refused URL and the test of a webhook stored around the gateway are refused before the store sees them, and
users below CAN_MANAGE on the workspace are refused. The store's AI gateway: a workspace manager configures a
provider key whose `api_base` is the receiver (answering as an OpenAI-compatible provider), a model definition,
an endpoint and a binding; a user of the workspace invokes the endpoint (whole and streamed answers) but cannot
configure it; provider destinations off the list are refused before the store sees them.
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

from gateway.core.errors import mlflow_error
from tests.conftest import OUTBOUND_ALLOWED, OUTBOUND_PORT, Stack
from tests.support.identity import Admin, Person, unique
from tests.support.waiting import until

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
    """What reached the receiver, in order. Under `/v1/chat/completions` it answers as an OpenAI-compatible
    provider; a streamed answer sends its first chunk and holds the rest until `release` is set."""

    requests: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    release: threading.Event = field(default_factory=threading.Event)
    held: list[bool] = field(default_factory=list)  # per streamed answer: the client read its first chunk in time

    def at(self, prefix: str) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if r.path.startswith(prefix)]

    def wait_for(self, condition: Callable[[list[Received]], bool], timeout: float = 60.0) -> list[Received]:
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
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            with received.lock:
                received.requests.append(Received("POST", self.path, dict(self.headers), body))
            if self.path.endswith("/chat/completions"):
                self.chat(json.loads(body))
                return
            self.send_response(200)
            self.send_header("content-type", "text/plain")
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def chat(self, request: dict[str, Any]) -> None:
            model = request.get("model", "fake")
            if not request.get("stream"):
                message = {"role": "assistant", "content": "hello from the fake provider"}
                answer = json.dumps({
                    "id": "c-1", "object": "chat.completion", "created": 1, "model": model,
                    "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8},
                }).encode()  # fmt: skip
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)
                return
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("connection", "close")
            self.end_headers()
            for index, word in enumerate(("first", "second")):
                if index:  # the rest only once the client has seen the first chunk (False: it never did)
                    received.held.append(received.release.wait(30))
                delta = {"role": "assistant", "content": word}
                chunk = {"id": "c-1", "object": "chat.completion.chunk", "created": 1, "model": model,
                         "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}  # fmt: skip
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.flush()
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
            self.close_connection = True

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
    # The store had this event before the webhook existed, as it has in a whole suite's run (earlier modules
    # create registered models in team-a): the next one must still reach the webhook. MLflow keeps the webhooks
    # of an event in a cache (MLFLOW_WEBHOOK_CACHE_TTL); the test store keeps none (tests/conftest.py).
    client.create_registered_model(unique("model-before-hook"))
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


# -- the store's AI gateway ------------------------------------------------------------------------------

PROVIDER_BASE = f"{OUTBOUND_ALLOWED}/v1"  # the receiver answers as an OpenAI-compatible provider here


def _gateway(client: MlflowClient) -> Any:
    """The stock client's store: its AI-gateway calls (`RestStore`'s gateway mixin)."""
    return client._tracking_client.store


def _endpoint(manager: Any, label: str, api_key: str) -> tuple[Any, Any, Any, str]:
    """A manager's secret, model definition and endpoint (named `label-…`) with the receiver as the provider:
    (secret, model, endpoint, its name)."""
    from mlflow.entities.gateway_endpoint import GatewayEndpointModelConfig, GatewayModelLinkageType

    secret = manager.create_gateway_secret(
        secret_name=unique("key"), secret_value={"api_key": api_key}, provider="openai",
        auth_config={"api_base": PROVIDER_BASE},
    )  # fmt: skip
    model = manager.create_gateway_model_definition(
        name=unique("model"), secret_id=secret.secret_id, provider="openai", model_name="fake-4"
    )
    name = unique(label)
    endpoint = manager.create_gateway_endpoint(
        name=name,
        model_configs=[GatewayEndpointModelConfig(model.model_definition_id, GatewayModelLinkageType.PRIMARY)],
        usage_tracking=False,
    )
    return secret, model, endpoint, name


def test_an_ai_gateway_endpoint_is_configured_by_managers_and_invoked_by_users(
    stack: Stack, cast: Cast, receiver: Receiver, client_as: Callable[[Person], MlflowClient]
) -> None:
    from mlflow.entities.gateway_endpoint import GatewayEndpointTag, GatewayResourceType

    manager = _gateway(client_as(cast.manager))
    secret, model, endpoint, name = _endpoint(manager, "chat", "sk-test-91f")
    try:
        manager.set_gateway_endpoint_tag(endpoint.endpoint_id, GatewayEndpointTag("team", "a"))
        binding = manager.create_endpoint_binding(endpoint.endpoint_id, GatewayResourceType.SCORER, "scorer-1")
        assert [b.resource_id for b in manager.list_endpoint_bindings(endpoint_id=endpoint.endpoint_id)] == [
            binding.resource_id
        ]
        assert secret.secret_id in {s.secret_id for s in manager.list_secret_infos()}
        assert "sk-test-91f" not in str(manager.get_secret_info(secret_id=secret.secret_id).to_proto())

        # A user of the workspace sees the endpoints and invokes them; the store calls the allowed provider.
        user = _gateway(client_as(cast.user))
        assert user.get_gateway_endpoint(name=name).endpoint_id == endpoint.endpoint_id
        assert name in {e.name for e in user.list_gateway_endpoints()}
        as_user = cast.user.http(stack)
        chat = {"messages": [{"role": "user", "content": "hi"}]}
        answer = as_user.post(f"{stack.url}/gateway/{name}/mlflow/invocations", json=chat, timeout=60)
        assert answer.status_code == 200, answer.text
        assert answer.json()["choices"][0]["message"]["content"] == "hello from the fake provider"
        sent = receiver.at("/allowed/v1/chat/completions")[-1]
        assert {k.lower(): v for k, v in sent.headers.items()}.get("authorization") == "Bearer sk-test-91f"
        openai_style = as_user.post(
            f"{stack.url}/gateway/mlflow/v1/chat/completions", json={**chat, "model": name}, timeout=60
        )
        assert openai_style.status_code == 200, openai_style.text
        assert name in {
            m["id"] for m in as_user.get(f"{stack.url}/gateway/mlflow/v1/models", timeout=30).json()["data"]
        }

        # A streamed answer reaches the client chunk by chunk: the provider holds its second chunk until the
        # client has read the first.
        receiver.release.clear()
        with as_user.post(
            f"{stack.url}/gateway/{name}/mlflow/invocations", json={**chat, "stream": True}, stream=True, timeout=60
        ) as streamed:
            assert streamed.status_code == 200
            lines = (line for line in streamed.iter_lines(chunk_size=1) if line)
            assert b'"first"' in next(lines)
            receiver.release.set()
            assert any(b'"second"' in line for line in lines)
        assert receiver.held[-1], "the first chunk reached the client only after the provider's whole answer"

        # Configuration is for the workspace's managers; nothing at all for those outside it.
        for refused in (
            lambda: user.list_secret_infos(),
            lambda: user.get_secret_info(secret_id=secret.secret_id),
            lambda: user.create_gateway_secret(secret_name=unique("key"), secret_value={"api_key": "x"}),
            lambda: user.create_gateway_model_definition(
                name=unique("model"), secret_id=secret.secret_id, provider="openai", model_name="x"
            ),
            lambda: user.update_gateway_endpoint(endpoint.endpoint_id, name=unique("renamed")),
            lambda: user.create_endpoint_binding(endpoint.endpoint_id, GatewayResourceType.SCORER, "scorer-2"),
            lambda: user.delete_gateway_endpoint(endpoint.endpoint_id),
        ):
            assert _refusal(refused).error_code == "PERMISSION_DENIED"
        outsider = _gateway(client_as(cast.outsider))
        assert _refusal(lambda: outsider.list_gateway_endpoints()).error_code == "RESOURCE_DOES_NOT_EXIST"
        invoked = cast.outsider.http(stack).post(
            f"{stack.url}/gateway/{name}/mlflow/invocations", json=chat, timeout=30
        )
        assert (invoked.status_code, invoked.json()["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")

        manager = _gateway(client_as(cast.manager))  # the token is read per call: the manager's again
        manager.delete_endpoint_binding(endpoint.endpoint_id, GatewayResourceType.SCORER.value, "scorer-1")
        assert manager.list_endpoint_bindings(endpoint_id=endpoint.endpoint_id) == []
    finally:
        receiver.release.set()
        manager = _gateway(client_as(cast.manager))
        manager.delete_gateway_endpoint(endpoint.endpoint_id)
        manager.delete_gateway_model_definition(model.model_definition_id)
        manager.delete_gateway_secret(secret.secret_id)


def test_provider_destinations_off_the_allow_list_are_refused_before_the_store_sees_them(
    stack: Stack, cast: Cast, receiver: Receiver, client_as: Callable[[Person], MlflowClient]
) -> None:
    manager = _gateway(client_as(cast.manager))
    before = {s.secret_id for s in manager.list_secret_infos()}

    def key(**auth_config: str) -> Callable[[], Any]:
        return lambda: manager.create_gateway_secret(
            secret_name=unique("key"), secret_value={"api_key": "sk"}, provider="openai", auth_config=auth_config
        )

    for refused in (key(api_base=f"{ELSEWHERE}/v1"), key()):  # no api_base: api.openai.com, not allowed
        assert _refusal(refused).error_code == "PERMISSION_DENIED"
    for malformed in (
        key(api_base=f"http://allowed@127.0.0.1:{OUTBOUND_PORT}/allowed/v1"),
        key(api_base=f"http://127.0.0.1:{OUTBOUND_PORT}/allowed/../elsewhere/v1"),
        key(base_url=f"{ELSEWHERE}/v1"),
    ):
        assert _refusal(malformed).error_code == "INVALID_PARAMETER_VALUE"
    assert {s.secret_id for s in manager.list_secret_infos()} == before

    # A key that is allowed cannot be moved elsewhere, nor given to a provider that calls elsewhere.
    secret = manager.create_gateway_secret(
        secret_name=unique("key"), secret_value={"api_key": "sk"}, auth_config={"api_base": PROVIDER_BASE}
    )
    try:
        moved = _refusal(lambda: manager.update_gateway_secret(secret.secret_id, auth_config={"api_base": ELSEWHERE}))
        assert moved.error_code == "PERMISSION_DENIED"
        assert manager.get_secret_info(secret_id=secret.secret_id).auth_config["api_base"] == PROVIDER_BASE
        fixed = _refusal(
            lambda: manager.create_gateway_model_definition(
                name=unique("model"), secret_id=secret.secret_id, provider="gemini", model_name="x"
            )
        )
        assert fixed.error_code == "PERMISSION_DENIED"
    finally:
        manager.delete_gateway_secret(secret.secret_id)
    assert receiver.at("/elsewhere") == []


def test_the_deployments_proxy_refuses_dot_and_encoded_segments_in_gateway_path(stack: Stack, cast: Cast) -> None:
    """The store accepts any `gateway/<segment>/invocations` and posts to `<deployments target>/<gateway_path>`;
    `..`, an escape, `?` or `#` in that segment would reach other paths of the deployments server."""
    url = f"{stack.url}/ajax-api/2.0/mlflow/gateway-proxy"
    headers = {"Authorization": f"Bearer {cast.user.token}", "X-MLFLOW-WORKSPACE": "team-a"}
    # A plain endpoint name is the store's to answer (store `a` has no deployments target: an empty gateway).
    allowed = requests.post(
        url, json={"gateway_path": "gateway/chat/invocations", "json_data": {}}, headers=headers, timeout=30
    )
    assert (allowed.status_code, allowed.json()) == (200, {"endpoints": []})
    for path in (
        "gateway/../invocations",
        "/gateway/./invocations/",
        "gateway/%2e%2e/invocations",
        "gateway/..%2Fadmin%2Fx/invocations",
        "gateway/%2E%2E/invocations",
        "gateway/x?/invocations",
        "gateway/x#/invocations",
    ):
        refused = requests.post(url, json={"gateway_path": path, "json_data": {}}, headers=headers, timeout=30)
        assert (refused.status_code, refused.json()) == (
            400,
            mlflow_error("INVALID_PARAMETER_VALUE", f"Invalid gateway_path: {path} for method: POST"),
        ), path


def test_the_raw_proxy_sends_the_provider_the_path_the_store_reads(
    stack: Stack, cast: Cast, receiver: Receiver, client_as: Callable[[Person], MlflowClient]
) -> None:
    """`POST /gateway/proxy/<endpoint>/<path>` posts to `<provider base>/<path>`. The store decodes the target
    before its router splits it, so an endpoint segment holding `%2F` names the endpoint and the path's start
    (`<name>%2Fchat/completions`: endpoint `<name>`, path `chat/completions`). The gateway read the endpoint from
    the decoded target and the path from the raw one, by position (`completions`), and sent the provider another
    path than the store does for the same target. Each spelling, sent to the store directly and through the gateway:
    the provider receives the same path from both, or the gateway refuses it in MLflow's shape."""
    manager = _gateway(client_as(cast.manager))
    secret, model, endpoint, name = _endpoint(manager, "proxied", "sk-test-proxy")
    chat = {"model": "fake-4", "messages": [{"role": "user", "content": "hi"}]}
    headers = {"Authorization": f"Bearer {cast.user.token}", "X-MLFLOW-WORKSPACE": "team-a"}
    try:
        for target in (
            f"/gateway/proxy/{name}/chat/completions",
            f"/gateway/proxy/{name}%2Fchat/completions",
            f"/gateway/proxy/{name}/chat%2Fcompletions",
        ):
            before = len(receiver.at("/allowed/"))
            direct = requests.post(f"{stack.stores['a'].url}{target}", json=chat, timeout=60)
            assert direct.status_code == 200, (target, direct.text)
            from_store = receiver.at("/allowed/")[before:]
            through = requests.post(f"{stack.url}{target}", json=chat, headers=headers, timeout=60)
            from_gateway = receiver.at("/allowed/")[before + len(from_store) :]
            if through.status_code == 200:
                assert [r.path for r in from_gateway] == [r.path for r in from_store], target
            else:
                assert 400 <= through.status_code < 500 and "error_code" in through.json(), (target, through.text)
                assert from_gateway == [], target
    finally:
        manager.delete_gateway_endpoint(endpoint.endpoint_id)
        manager.delete_gateway_model_definition(model.model_definition_id)
        manager.delete_gateway_secret(secret.secret_id)


INVOCATIONS_ROUTE = "POST /gateway/{endpoint_name:str}/mlflow/invocations v2"
RAW_PROXY_ROUTE = "POST /gateway/proxy/{endpoint_name:str}/{path:path} v2"


def _counted(stack: Stack, route: str, status: int) -> float:
    """The gateway's count of answers of `route` with `status` (its one worker's `/metrics`)."""
    line = f'fedgate_requests_total{{method="POST",route="{route}",status="{status}"}} '
    text = requests.get(f"{stack.url}/metrics", timeout=30).text
    return next((float(row[len(line) :]) for row in text.splitlines() if row.startswith(line)), 0.0)


def test_a_target_both_ai_gateway_routes_match_is_the_route_the_store_runs(stack: Stack, cast: Cast) -> None:
    """MLflow's AI-gateway router (FastAPI) tries its routes in the order declared and declares the invocations of
    an endpoint (`{endpoint_name}/mlflow/invocations`) before the raw proxy (`proxy/{endpoint_name}/{path:path}`):
    `/gateway/proxy/mlflow/invocations` invokes the endpoint named `proxy`. The gateway's router prefers the static
    segment `proxy`, and counted the call as the raw proxy of an endpoint named `mlflow`; it is now the invocations
    route of `proxy`, for the store and the gateway alike."""
    target = "/gateway/proxy/mlflow/invocations"
    chat = {"messages": [{"role": "user", "content": "hi"}]}
    headers = {"Authorization": f"Bearer {cast.user.token}", "X-MLFLOW-WORKSPACE": "team-a"}
    direct = requests.post(f"{stack.stores['a'].url}{target}", json=chat, timeout=60)
    invoked, proxied = _counted(stack, INVOCATIONS_ROUTE, 404), _counted(stack, RAW_PROXY_ROUTE, 404)
    through = requests.post(f"{stack.url}{target}", json=chat, headers=headers, timeout=60)
    assert (through.status_code, through.json()) == (direct.status_code, direct.json())
    assert direct.status_code == 404 and "name='proxy'" in direct.text, direct.text  # no endpoint of that name
    # A call is counted once its answer is sent.
    until(lambda: _counted(stack, INVOCATIONS_ROUTE, 404), lambda count: count == invoked + 1, "the invocation")
    assert _counted(stack, RAW_PROXY_ROUTE, 404) == proxied
