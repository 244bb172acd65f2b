"""Where objects live: which workspace holds a run, which experiment holds a run, logged model or trace.

One component answers for every step that asks: the forwarder's resolution (a call that names only
a run), the guard's lookups and the index write-through (a run it meets mid-life). Runs the gateway
saw created are in the run directory (the `run_routes` table, cached); anything else is asked of the
workspace's store once and cached.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.core.bounded import BoundedCache
from gateway.core.links import WorkspaceLink
from gateway.federation.guard.lookups import StoreLookups
from gateway.federation.repository import RunRouteRepository

Fetch = Callable[[WorkspaceLink, str, str], Awaitable[tuple[int, bytes]]]


class RunDirectory:
    """run_id → (workspace, experiment), for calls that name only a run. Cached; the database is the truth."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], cache_size: int = 100_000) -> None:
        self._sessionmaker = sessionmaker
        self._cache: BoundedCache[str, tuple[str, str]] = BoundedCache(cache_size)  # aged from when kept

    def _remember(self, run_id: str, workspace: str, experiment_id: str) -> None:
        self._cache.put(run_id, (workspace, experiment_id))

    def remember(self, run_id: str, workspace: str, experiment_id: str) -> None:
        """A run the gateway saw created (its route is written by the run-routes hook, bookkeeping.py)."""
        self._remember(run_id, workspace, experiment_id)

    async def _lookup(self, run_id: str) -> tuple[str, str] | None:
        if (cached := self._cache.peek(run_id)) is not None:
            return cached
        async with self._sessionmaker() as session:
            found = await RunRouteRepository(session).lookup(run_id)
        if found is not None:
            self._remember(run_id, *found)
        return found

    async def workspace_of(self, run_id: str) -> str | None:
        found = await self._lookup(run_id)
        return found[0] if found else None

    async def experiment_of(self, run_id: str, workspace: str) -> str | None:
        found = await self._lookup(run_id)
        return found[1] if found and found[0] == workspace else None


class Locator:
    """The guard's `Lookups` and the index writer's way to a run's experiment, over one shared cache."""

    def __init__(self, fetch: Fetch, runs: RunDirectory, cache_size: int = 100_000) -> None:
        self.runs = runs
        self._store = StoreLookups(fetch, runs.experiment_of, cache_size)

    async def workspace_of_run(self, run_id: str) -> str | None:
        return await self.runs.workspace_of(run_id)

    async def experiment_of(self, link: WorkspaceLink, kind: str, object_id: str) -> str | None:
        """The experiment holding a run, logged model or trace (`kind` "run", "logged_model", "trace")."""
        return await self._store.experiment_of(link, kind, object_id)

    async def trace(self, link: WorkspaceLink, trace_id: str) -> dict[str, Any] | None:
        return await self._store.trace(link, trace_id)

    async def stage_of(self, link: WorkspaceLink, name: str, version: str) -> str:
        return await self._store.stage_of(link, name, version)

    async def holds_assessment(self, link: WorkspaceLink, trace_id: str, assessment_id: str) -> bool:
        return await self._store.holds_assessment(link, trace_id, assessment_id)

    async def holds_dataset(self, link: WorkspaceLink, dataset_id: str) -> bool:
        return await self._store.holds_dataset(link, dataset_id)

    async def promotions_experiment(self, link: WorkspaceLink, experiment_id: str) -> bool:
        return await self._store.promotions_experiment(link, experiment_id)

    def forget_experiment(self, link: WorkspaceLink, experiment_id: str) -> None:
        self._store.forget_experiment(link, experiment_id)
