"""The index's own API: sync state of every workspace and starting a sync (account admins); recursive run
metrics (anyone who may read the run)."""

from __future__ import annotations

import re
from typing import Any

from litestar import Controller, Request, get, post

from gateway.authz.decide import Authorizer
from gateway.authz.ports import Workspaces
from gateway.authz.workspace_choice import requested_workspace
from gateway.core.errors import InvalidParameter, ResourceNotFound
from gateway.core.principal import Principal
from gateway.core.workspace_headers import read_workspace_headers
from gateway.federation.call import ACCOUNT_SCOPE
from gateway.index.run_metrics import RunMetrics
from gateway.index.schemas import IndexStatus, SyncAnswer, SyncRequest
from gateway.index.sync import IndexSync
from gateway.principals.guards import account_admin

RUN_ID_RE = re.compile(r"^[A-Za-z0-9][\w\-]{0,255}\Z")


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


class RunMetricsController(Controller):
    path = "/api/2.0/fedgate/runs"
    opt = {
        "access": "CAN_READ on the run's experiment (or on its workspace); descendants the caller may not read are "
        "left out"
    }

    @get("/metrics-recursive", name="run metrics recursive")
    async def recursive(
        self,
        request: Request[Principal, Any, Any],
        run_metrics: RunMetrics,
        workspaces: Workspaces,
        authorizer: Authorizer,
        run_id: str | None = None,
    ) -> dict[str, Any]:
        """`{run_id: {metric: value or list}}` for the run and its descendants, from the account index
        (gateway/index/run_metrics.py). X-MLFLOW-WORKSPACE, when sent, must name the run's workspace."""
        if not run_id:
            raise InvalidParameter("Missing value for required parameter 'run_id'.")
        if not RUN_ID_RE.match(run_id):
            raise InvalidParameter(f"Invalid run id {run_id[:100]!r}.")
        headers, _ = read_workspace_headers(request.scope["headers"])
        named = None if headers.name == ACCOUNT_SCOPE else await requested_workspace(request, workspaces, authorizer)
        return await run_metrics.recursive(request.user, run_id, named)
