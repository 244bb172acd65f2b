"""Dual mode's recovery of writes of unknown outcome (federation/intents.py): the central copy of what the write
touched is checked against the workspace store and made level with it, within seconds of the crash.

What a write touched is found from what it named before it was sent: its run (the reconciler's
`repair_run`: params, tags, full metric histories, status, life cycle, artifacts), the runs a runs/create
may have made (the experiment's runs started since a little before it was noted), its experiment (copy,
name, tags, life cycle), its logged model (copy, tags, params, status) or its registered model (created
or deleted, description, tags, versions, aliases). Repairs go through the mirror's idempotent paths, so a
write that did reach the outbox is not copied twice, and wait until the object's outbox entries are applied
(an older entry applied after the repair would undo a newer tag or status it copied).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.core.links import WorkspaceLink
from gateway.core.ports import Store
from gateway.core.route_table import (
    EXPERIMENTS_CREATE,
    LOGGED_MODELS_CREATE,
    RUNS_CREATE,
    Resource,
    RouteSpec,
)
from gateway.dual.mirror import REGISTRY_KEY, Mirror
from gateway.dual.reconcile import Progress, Reconciler
from gateway.federation.hooks import UnsettledWrite
from gateway.stores.client import Refused, own_store

log = logging.getLogger(__name__)

CREATE_SLACK_MS = 5 * 60 * 1000  # runs/create: runs started this long before the write was noted are checked too
PENDING = text("SELECT EXISTS (SELECT 1 FROM outbox WHERE order_key = :key AND state = 'pending')")


class EntriesPending(Exception):
    """The object's outbox entries are not all applied yet: repaired after them, or an older entry applied
    after the repair would undo a newer value (a tag, a status) the repair had copied."""


class DualRecovery:
    """A `Recovery` (federation/hooks.py) for the mirrored writes of dual workspaces."""

    essential = True  # a mirrored write is not sent unless it was noted

    def __init__(
        self,
        reconciler: Reconciler,
        mirror: Mirror,
        stores: Mapping[str, Store],
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        self._reconciler = reconciler
        self._mirror = mirror
        self._stores = stores
        self._sessionmaker = sessionmaker

    async def _drained(self, link: WorkspaceLink, key: str) -> None:
        """Raise EntriesPending while the relay still has entries of `key` (an object key of mirror.order_key)."""
        async with self._sessionmaker() as session:
            if await session.scalar(PENDING, {"key": f"{link.workspace_id}/{key}"}):
                raise EntriesPending(f"outbox entries of {key} are still pending")

    def wants(self, spec: RouteSpec, link: WorkspaceLink) -> bool:
        return link.mirror is not None and spec.mirrored

    def coalesces(self, spec: RouteSpec, link: WorkspaceLink) -> bool:
        return False  # each mirrored write keeps a note of its own

    async def recover(self, write: UnsettledWrite) -> None:
        link, spec = write.link, write.spec
        if spec == RUNS_CREATE or spec.starts_run:  # the prompt lab and jobs create runs too
            await self._recover_new_runs(link, write)
        elif (run_id := write.get("run_id")) is not None:
            await self._drained(link, f"run:{run_id}")
            await self.repair_run(link, run_id)
        elif spec.resource in (Resource.REGISTERED_MODEL, Resource.MODEL_VERSION):
            models = sorted(found for found in {write.get("name"), write.get("new_name")} if found is not None)
            await self._drained(link, REGISTRY_KEY)
            for model in models:
                await self._mirror.repair_registered_model(link, model)
        elif spec == LOGGED_MODELS_CREATE:
            await self._recover_new_logged_models(link, write)
        elif (model_id := write.get("model_id")) is not None:
            await self._drained(link, f"logged_model:{model_id}")
            await self._mirror.repair_logged_model(link, model_id)
        elif spec == EXPERIMENTS_CREATE:
            name = write.get("name")
            experiment_id = await self._mirror.experiment_named(link, name) if name else None
            if experiment_id is not None:
                await self._drained(link, f"experiment:{experiment_id}")
                await self._mirror.repair_experiment(link, experiment_id)
        elif (experiment_id := write.get("experiment_id")) is not None:
            await self._drained(link, f"experiment:{experiment_id}")
            await self._mirror.repair_experiment(link, experiment_id)
        else:
            log.warning("a write of unknown outcome names nothing to repair", extra={"route": spec.name})

    async def repair_run(self, link: WorkspaceLink, run_id: str) -> None:
        try:
            found = await own_store(self._stores, link).get("/api/2.0/mlflow/runs/get", {"run_id": run_id})
        except Refused as exc:
            if exc.not_found:
                return  # the run is not in the workspace store: nothing to copy
            raise
        await self._reconciler.repair_run(link, found["run"], Progress(link.name, "recent"))

    async def _recover_new_runs(self, link: WorkspaceLink, write: UnsettledWrite) -> None:
        experiment_id = write.get("experiment_id")
        if experiment_id is None:
            return
        since = int(write.noted_at * 1000) - CREATE_SLACK_MS
        body = {
            "experiment_ids": [experiment_id],
            "filter": f"attributes.start_time >= {since}",
            "run_view_type": "ALL",
            "max_results": 500,
        }
        own = own_store(self._stores, link)
        async for page in own.pages("POST", "/api/2.0/mlflow/runs/search", body):
            for run in page.get("runs") or []:
                await self._drained(link, f"run:{run['info']['run_id']}")
                await self._reconciler.repair_run(link, run, Progress(link.name, "recent"))

    async def _recover_new_logged_models(self, link: WorkspaceLink, write: UnsettledWrite) -> None:
        experiment_id = write.get("experiment_id")
        if experiment_id is None:
            return
        since = int(write.noted_at * 1000) - CREATE_SLACK_MS
        body = {"experiment_ids": [experiment_id], "max_results": 100}
        own = own_store(self._stores, link)
        async for page in own.pages("POST", "/api/2.0/mlflow/logged-models/search", body):
            for model in page.get("models") or []:
                info = model.get("info") or {}
                if int(info.get("creation_timestamp_ms") or info.get("creation_timestamp") or 0) >= since:
                    await self._drained(link, f"logged_model:{info['model_id']}")
                    await self._mirror.repair_logged_model(link, str(info["model_id"]))
