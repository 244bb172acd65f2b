"""The index's own API: sync state of every workspace, and starting a sync (account admins)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post

from gateway.core.errors import InvalidParameter, ResourceNotFound
from gateway.core.principal import Principal
from gateway.index.sync import IndexSync
from gateway.principals.guards import account_admin


class IndexController(Controller):
    path = "/api/2.0/fedgate/index"
    include_in_schema = False
    opt = {"access": "account admins"}
    guards = [account_admin("Only account admins may see or start the index sync.")]

    @get("/status", name="index status")
    async def status(self, request: Request[Principal, Any, Any], index_sync: IndexSync) -> dict[str, Any]:
        return {"workspaces": await index_sync.status()}

    @post("/sync", name="index sync", status_code=200)
    async def sync(
        self, request: Request[Principal, Any, Any], data: dict[str, Any], index_sync: IndexSync
    ) -> dict[str, Any]:
        """`{"workspace", "full", "wait"}`: a pass over one workspace's store, in the background unless `wait`.

        A waited-for pass queues behind one already running, so its answer covers the store as it is now.
        """
        name, full, wait = data.get("workspace"), data.get("full", False), data.get("wait", False)
        if not isinstance(name, str) or not name:
            raise InvalidParameter("'workspace' (a workspace name) is required.")
        if not isinstance(full, bool) or not isinstance(wait, bool):
            raise InvalidParameter("'full' and 'wait' must be true or false.")
        link = index_sync.links.get(name)
        if link is None:
            raise ResourceNotFound(f"Workspace '{name}' not found")
        if wait:
            return {"sync": await index_sync.sync(link, everything=full, queue=True)}
        started = index_sync.launch(link, everything=full)
        return {"sync": {"workspace": name, "state": "started" if started else "already running"}}
