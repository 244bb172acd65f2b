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
