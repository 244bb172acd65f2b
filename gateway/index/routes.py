"""The index's own API: sync state of every workspace, and starting a sync (account admins)."""

from __future__ import annotations

from litestar import Controller, get, post

from gateway.core.errors import InvalidParameter, ResourceNotFound
from gateway.index.schemas import IndexStatus, SyncAnswer, SyncRequest
from gateway.index.sync import IndexSync
from gateway.principals.guards import account_admin


class IndexController(Controller):
    path = "/api/2.0/fedgate/index"
    opt = {"access": "account admins"}
    guards = [account_admin("Only account admins may see or start the index sync.")]

    @get("/status", name="index status")
    async def status(self, index_sync: IndexSync) -> IndexStatus:
        return IndexStatus(workspaces=await index_sync.status())

    @post("/sync", name="index sync", status_code=200)
    async def sync(self, data: SyncRequest, index_sync: IndexSync) -> SyncAnswer:
        """`{"workspace", "full", "wait"}`: a pass over one workspace's store, in the background unless `wait`.

        A waited-for pass queues behind one already running, so its answer covers the store as it is now.
        """
        name, full, wait = data.workspace, data.full, data.wait
        if not name:
            raise InvalidParameter("'workspace' (a workspace name) is required.")
        link = index_sync.links.get(name)
        if link is None:
            raise ResourceNotFound(f"Workspace '{name}' not found")
        if wait:
            return SyncAnswer(sync=await index_sync.sync(link, everything=full, queue=True))
        started = index_sync.launch(link, everything=full)
        return SyncAnswer(sync={"workspace": name, "state": "started" if started else "already running"})
