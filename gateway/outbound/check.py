"""The before-send check of calls that name a destination the store will send requests to.

Webhooks (`/api/2.0/mlflow/webhooks`): the `url` of a webhook created or updated, and, when one is tested, the
URL the store holds for it (a webhook stored around the gateway, or before the allow-list changed, is tested
only if its URL is allowed now).

A destination the strict parse refuses answers 400 INVALID_PARAMETER_VALUE; one the allow-list does not hold
answers 403 PERMISSION_DENIED (audited like every refusal). Nothing of a refused call reaches the store.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import msgspec

from gateway.core.destinations import AllowList, DestinationError, parse_destination
from gateway.core.errors import InvalidParameter, PermissionDenied
from gateway.core.links import WorkspaceLink
from gateway.core.route_table import Resource, RouteSpec
from gateway.federation.hooks import Held, PendingCall

# (link, path, query) -> (status, body): the gateway's own reads of a workspace's store (federation/direct.py)
Fetch = Callable[[WorkspaceLink, str, str], Awaitable[tuple[int, bytes]]]

WEBHOOK_TEST = "POST /mlflow/webhooks/{webhook_id:str}/test"


class DestinationCheck:
    """Refuses a call whose destination is malformed or not on the allow-list (an empty list allows none)."""

    def __init__(self, allowed: AllowList, fetch: Fetch) -> None:
        self.allowed = allowed
        self.fetch = fetch

    def wants(self, spec: RouteSpec, link: WorkspaceLink) -> bool:
        return spec.destinations

    async def check(self, call: PendingCall) -> Held | None:
        if call.spec.resource is Resource.WEBHOOK:
            await self._webhook(call)
        return None

    async def _webhook(self, call: PendingCall) -> None:
        if call.spec.name == WEBHOOK_TEST:
            webhook_id = str(call.path_params.get("webhook_id", ""))
            status, body = await self.fetch(call.link, f"/api/2.0/mlflow/webhooks/{quote(webhook_id, safe='')}", "")
            if status != 200:
                return  # the store answers for a webhook it does not have
            stored = msgspec.json.decode(body).get("webhook") or {}
            self.require("webhook URL", stored.get("url"), stored=True)
            return
        if "url" in call.body.document:
            self.require("webhook URL", call.body.document["url"])

    def require(self, what: str, value: Any, *, stored: bool = False) -> None:
        """`value` is a destination on the allow-list, or the call is refused."""
        try:
            destination = parse_destination(value)
        except DestinationError as exc:
            if stored:
                raise PermissionDenied(
                    f"The {what} the store holds is not one this gateway can check: {exc}."
                ) from None
            raise InvalidParameter(f"Invalid {what} {value!r}: {exc}.") from None
        if not self.allowed.allows(destination):
            raise PermissionDenied(
                f"The {what} {destination} is not an allowed destination of this gateway ([outbound] "
                "allowed_destinations); ask an account admin to allow it."
            )
