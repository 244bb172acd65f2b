"""After a creation: the creator's CAN_MANAGE is recorded before the answer goes out, never an ownerless object."""

from __future__ import annotations

import asyncio
import logging

import msgspec

from gateway.core.errors import StoreUnavailable
from gateway.core.links import WorkspaceLink
from gateway.core.principal import Principal
from gateway.federation.guard.checks import Checks
from gateway.federation.guard.request import After, Request

log = logging.getLogger(__name__)

ATTEMPTS = 3


def recording_owner(checks: Checks, request: Request, kind: str, field_name: str, name: str | None = None) -> After:
    """An `after` step making the caller owner of what a successful answer created.

    `kind` "experiment": the id is read from the answer's `field_name`; "registered_model": it is `name`.
    """
    principal, link = request.principal, request.link

    async def after(status: int, answer: bytes) -> bytes | None:
        if status != 200:
            return None
        created = msgspec.json.decode(answer).get(field_name) if kind == "experiment" else name
        if created:
            await record_owner(checks, principal, link, kind, str(created))
        return None

    return after


async def record_owner(checks: Checks, principal: Principal, link: WorkspaceLink, kind: str, created: str) -> None:
    """Record the owner (ATTEMPTS tries); failing that, undo the creation and answer 503."""
    for attempt in range(ATTEMPTS):
        try:
            await checks.ownership.record_owner(principal, link, kind, created)
            return
        except Exception as exc:
            log.warning("recording the owner of %s %s failed (%s)", kind, created, type(exc).__name__)
            await asyncio.sleep(0.2 * (attempt + 1))
    await checks.undo(link, kind, created)
    raise StoreUnavailable(
        f"The {kind.replace('_', ' ')} was created but its owner could not be recorded, "
        "so the creation was undone; try again."
    )
