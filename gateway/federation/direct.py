"""The gateway's own calls to a workspace's store (not a client's): reads for authorization, existence
checks of the permissions API, and undoing a creation whose owner could not be recorded."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from urllib.parse import quote

import msgspec

from gateway.core.errors import StoreUnavailable
from gateway.core.links import WorkspaceLink
from gateway.core.ports import Store, StoreTimedOut, StoreUnreachable
from gateway.federation.renames import renames, rewrite_json

log = logging.getLogger(__name__)


class DirectCalls:
    """Sent with the store's credentials, in the workspace's store namespace."""

    def __init__(self, stores: Mapping[str, Store]) -> None:
        self.stores = stores

    async def fetch(self, link: WorkspaceLink, path: str, query: str) -> tuple[int, bytes]:
        """A read of the gateway's own (ids for authorization): (status, body)."""
        store = self.stores[link.store]
        try:
            response = await store.request(
                "GET", path, query=query, headers=[], workspace=link.upstream_workspace, idempotent=True
            )
            body = await response.read()
        except (StoreUnreachable, StoreTimedOut) as exc:
            raise StoreUnavailable(f"The store of workspace '{link.name}' is unreachable; try again shortly.") from exc
        if renames(link) and body[:1] == b"{":
            body = rewrite_json(body, link.upstream_workspace or link.name, link.name)
        return response.status, body

    async def exists(self, link: WorkspaceLink, kind: str, object_id: str) -> bool:
        if kind == "experiment":
            status, _ = await self.fetch(link, "/api/2.0/mlflow/experiments/get", f"experiment_id={quote(object_id)}")
        else:
            status, _ = await self.fetch(
                link, "/api/2.0/mlflow/registered-models/get", f"name={quote(object_id, safe='')}"
            )
        return status == 200

    async def undo_create(self, link: WorkspaceLink, kind: str, object_id: str) -> None:
        """Compensate a creation whose owner could not be recorded."""
        store = self.stores[link.store]
        if kind == "experiment":
            path, body = "/api/2.0/mlflow/experiments/delete", {"experiment_id": object_id}
            method = "POST"
        else:
            path, body = "/api/2.0/mlflow/registered-models/delete", {"name": object_id}
            method = "DELETE"
        try:
            response = await store.request(
                method,
                path,
                headers=[("content-type", "application/json")],
                body=msgspec.json.encode(body),
                workspace=link.upstream_workspace,
            )
            response.release()
        except Exception:
            log.exception("could not undo the creation of %s %s", kind, object_id)
