"""The before-send check of destinations (gateway/outbound/check.py), with the store's answers faked."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.core.destinations import AllowList
from gateway.core.errors import GatewayError, InvalidParameter, PermissionDenied
from gateway.core.links import WorkspaceLink
from gateway.core.principal import Principal
from gateway.core.route_table import FORWARDED_ROUTES, Resource, declared
from gateway.federation.canonical import canonical_body
from gateway.federation.hooks import PendingCall
from gateway.outbound import DestinationCheck

LINK = WorkspaceLink("team-a", 1001, "workspace", "store-a", "store-a", None)
MANAGER = Principal(name="manager@example.com", kind="user", id=1, subjects=frozenset({1}))
ALLOWED = AllowList(["https://hooks.example.com/mlflow"])
STORED = {
    "wh-allowed": "https://hooks.example.com/mlflow/team-a",
    "wh-elsewhere": "https://intranet.example.com/admin",
    "wh-odd": "http://hooks.example.com@169.254.169.254/",
}


async def fetch(link: WorkspaceLink, path: str, query: str) -> tuple[int, bytes]:
    webhook_id = path.rsplit("/", 1)[-1]
    if webhook_id not in STORED:
        return 404, b'{"error_code": "RESOURCE_DOES_NOT_EXIST"}'
    return 200, json.dumps({"webhook": {"webhook_id": webhook_id, "url": STORED[webhook_id]}}).encode()


CHECK = DestinationCheck(ALLOWED, fetch)


async def run(name: str, body: dict[str, Any], **path: str) -> None:
    spec = declared(name)
    call = PendingCall(spec, LINK, MANAGER, canonical_body(json.dumps(body).encode()), "req-1", path)
    assert CHECK.wants(spec, LINK)
    await CHECK.check(call)


CREATE, UPDATE, TEST = (
    "POST /mlflow/webhooks",
    "PATCH /mlflow/webhooks/{webhook_id:str}",
    "POST /mlflow/webhooks/{webhook_id:str}/test",
)


@pytest.mark.parametrize(
    ("name", "body", "path", "refused"),
    [
        (CREATE, {"url": "https://hooks.example.com/mlflow/team-a", "events": []}, {}, None),
        (CREATE, {"url": "HTTPS://Hooks.Example.com.:443/mlflow"}, {}, None),
        (CREATE, {"url": "https://hooks.example.com/other"}, {}, PermissionDenied),
        (CREATE, {"url": "http://hooks.example.com/mlflow/team-a"}, {}, PermissionDenied),
        (CREATE, {"url": "https://hooks.example.com@169.254.169.254/mlflow"}, {}, InvalidParameter),
        (CREATE, {"url": "https://hooks.example.com/mlflow/../admin"}, {}, InvalidParameter),
        (CREATE, {"url": 5}, {}, InvalidParameter),
        (CREATE, {"url": None}, {}, InvalidParameter),
        (CREATE, {"name": "no url: the store refuses it"}, {}, None),
        (UPDATE, {"name": "renamed"}, {"webhook_id": "wh-elsewhere"}, None),  # the URL is not changed
        (UPDATE, {"url": "https://intranet.example.com/x"}, {"webhook_id": "wh-allowed"}, PermissionDenied),
        (TEST, {}, {"webhook_id": "wh-allowed"}, None),
        (TEST, {}, {"webhook_id": "wh-elsewhere"}, PermissionDenied),
        (TEST, {}, {"webhook_id": "wh-odd"}, PermissionDenied),
        (TEST, {}, {"webhook_id": "wh-missing"}, None),  # the store answers for a webhook it does not have
    ],
)
async def test_webhook_destinations(
    name: str, body: dict[str, Any], path: dict[str, str], refused: type[GatewayError] | None
) -> None:
    if refused is None:
        await run(name, body, **path)
        return
    with pytest.raises(GatewayError) as caught:
        await run(name, body, **path)
    assert type(caught.value) is refused, caught.value.message


async def test_an_empty_allow_list_refuses_every_destination() -> None:
    check = DestinationCheck(AllowList(), fetch)
    body = canonical_body(b'{"url": "https://hooks.example.com/mlflow/team-a"}')
    with pytest.raises(PermissionDenied):
        await check.check(PendingCall(declared(CREATE), LINK, MANAGER, body, "req-1"))


def test_every_route_that_names_a_webhook_url_is_checked() -> None:
    checked = {spec.name for spec in FORWARDED_ROUTES if spec.destinations}
    webhooks = {spec.name for spec in FORWARDED_ROUTES if spec.resource is Resource.WEBHOOK}
    assert webhooks - checked == {"GET /mlflow/webhooks", "GET /mlflow/webhooks/{webhook_id:str}",
                                  "DELETE /mlflow/webhooks/{webhook_id:str}"}  # fmt: skip


# -- the AI gateway: provider keys and model definitions ---------------------------------------------------

PROVIDERS_ALLOWED = AllowList(
    ["https://llm.example.com/v1", "api.openai.com", "bedrock-runtime.us-east-1.amazonaws.com"]
)
SECRETS = {
    "s-plain": {},
    "s-llm": {"api_base": "https://llm.example.com/v1"},
    "s-intranet": {"api_base": "https://intranet.example.com/v1"},
    "s-bedrock": {"aws_region_name": "us-east-1"},
}
MODELS = {"d-ollama": ("ollama", "s-llm"), "d-openai": ("openai", "s-plain")}


async def gateway_fetch(link: WorkspaceLink, path: str, query: str) -> tuple[int, bytes]:
    from urllib.parse import parse_qs

    params = {k: v[0] for k, v in parse_qs(query).items()}
    if path.endswith("/secrets/get") and params.get("secret_id") in SECRETS:
        secret_id = params["secret_id"]
        return 200, json.dumps({"secret": {"secret_id": secret_id, "auth_config": SECRETS[secret_id]}}).encode()
    if path.endswith("/model-definitions/get") and params.get("model_definition_id") in MODELS:
        provider, secret_id = MODELS[params["model_definition_id"]]
        return 200, json.dumps({"model_definition": {"provider": provider, "secret_id": secret_id}}).encode()
    if path.endswith("/model-definitions/list"):
        using = [
            {"model_definition_id": m, "provider": p, "secret_id": s}
            for m, (p, s) in MODELS.items()
            if s == params.get("secret_id")
        ]
        return 200, json.dumps({"model_definitions": using}).encode()
    return 404, b'{"error_code": "RESOURCE_DOES_NOT_EXIST"}'


GATEWAY_CHECK = DestinationCheck(PROVIDERS_ALLOWED, gateway_fetch)
SECRET_CREATE, SECRET_UPDATE = "POST /mlflow/gateway/secrets/create", "POST /mlflow/gateway/secrets/update"
MODEL_CREATE, MODEL_UPDATE = (
    "POST /mlflow/gateway/model-definitions/create",
    "POST /mlflow/gateway/model-definitions/update",
)


def key(**auth_config: str) -> dict[str, Any]:
    return {"secret_name": "k", "secret_value": {"api_key": "sk"}, "auth_config": auth_config}


@pytest.mark.parametrize(
    ("name", "body", "refused"),
    [
        (SECRET_CREATE, key(api_base="https://llm.example.com/v1"), None),
        (SECRET_CREATE, key(api_base="  https://llm.example.com/v1/chat  "), None),  # stripped, as MLflow does
        (SECRET_CREATE, key(api_base=" "), None),  # blank: no destination of its own
        (SECRET_CREATE, key(api_base="https://intranet.example.com/v1"), PermissionDenied),
        (SECRET_CREATE, key(api_base="http://169.254.169.254/latest"), PermissionDenied),
        (SECRET_CREATE, key(api_base="https://llm.example.com@169.254.169.254/v1"), InvalidParameter),
        (SECRET_CREATE, key(base_url="https://intranet.example.com"), InvalidParameter),
        (SECRET_CREATE, key(custom_llm_provider="openai"), InvalidParameter),
        (
            SECRET_CREATE,
            {**key(), "secret_value": {"api_key": "sk", "api_base": "https://x.example"}},
            InvalidParameter,
        ),
        (SECRET_CREATE, key(aws_region_name="us-east-1"), None),
        (SECRET_CREATE, key(aws_region_name="evil.example/#"), InvalidParameter),
        (SECRET_CREATE, key(vertex_location="x.evil.example#"), InvalidParameter),
        (SECRET_CREATE, key(deployment_name="../../admin"), InvalidParameter),
        (SECRET_CREATE, {**key(), "provider": "openai"}, None),  # api.openai.com is allowed
        (SECRET_CREATE, {**key(), "provider": "anthropic"}, PermissionDenied),  # api.anthropic.com is not
        (SECRET_CREATE, {**key(), "provider": "ollama"}, PermissionDenied),  # the store's own localhost:11434
        (SECRET_CREATE, {**key(), "provider": "cohere"}, InvalidParameter),  # LiteLLM's default is unknown
        (SECRET_CREATE, {**key(api_base="https://llm.example.com/v1"), "provider": "cohere"}, None),
        (SECRET_CREATE, {**key(aws_region_name="us-east-1"), "provider": "bedrock"}, None),
        (SECRET_CREATE, {**key(aws_region_name="eu-west-1"), "provider": "bedrock"}, PermissionDenied),
        (SECRET_CREATE, {**key(api_base="https://llm.example.com/v1"), "provider": "gemini"}, PermissionDenied),
        # A key's new auth_config is checked for every model definition using it: d-ollama uses s-llm.
        (SECRET_UPDATE, {"secret_id": "s-llm", "auth_config": {"api_base": "https://llm.example.com/v1/b"}}, None),
        (SECRET_UPDATE, {"secret_id": "s-llm", "auth_config": {"organization": "o"}}, PermissionDenied),
        (SECRET_UPDATE, {"secret_id": "s-llm", "secret_value": {"api_key": "new"}}, None),  # auth_config kept
        (MODEL_CREATE, {"name": "m", "provider": "openai", "secret_id": "s-plain", "model_name": "x"}, None),
        (
            MODEL_CREATE,
            {"name": "m", "provider": "ollama", "secret_id": "s-plain", "model_name": "x"},
            PermissionDenied,
        ),
        (MODEL_CREATE, {"name": "m", "provider": "ollama", "secret_id": "s-llm", "model_name": "x"}, None),
        (
            MODEL_CREATE,
            {"name": "m", "provider": "openai", "secret_id": "s-intranet", "model_name": "x"},
            PermissionDenied,
        ),
        (MODEL_CREATE, {"name": "m", "provider": "bedrock", "secret_id": "s-bedrock", "model_name": "x"}, None),
        (MODEL_CREATE, {"name": "m", "provider": "openai", "secret_id": "s-missing", "model_name": "x"}, None),
        (MODEL_UPDATE, {"model_definition_id": "d-openai", "name": "renamed"}, None),
        (MODEL_UPDATE, {"model_definition_id": "d-openai", "provider": "ollama"}, PermissionDenied),
        (MODEL_UPDATE, {"model_definition_id": "d-openai", "secret_id": "s-intranet"}, PermissionDenied),
        (MODEL_UPDATE, {"model_definition_id": "d-ollama", "provider": "openai"}, None),
    ],
)
async def test_provider_destinations(name: str, body: dict[str, Any], refused: type[GatewayError] | None) -> None:
    spec = declared(name, 3)
    call = PendingCall(spec, LINK, MANAGER, canonical_body(json.dumps(body).encode()), "req-1")
    assert GATEWAY_CHECK.wants(spec, LINK)
    if refused is None:
        await GATEWAY_CHECK.check(call)
        return
    with pytest.raises(GatewayError) as caught:
        await GATEWAY_CHECK.check(call)
    assert type(caught.value) is refused, caught.value.message
