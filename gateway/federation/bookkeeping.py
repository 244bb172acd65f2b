"""The gateway's own records of accepted writes: the pools they are written through, and run routes.

A write the store accepted can leave three records, each written by its after-write hook (hooks.py):
the outbox entry for the central store (dual mode, dual/capture.py), the run's route (which workspace
a run id belongs to, `RunRoutes` below) and the account-wide index rows (index/write_through.py). The
outbox entry is the only one that cannot be derived again from the stores, so it is committed
durably, on its own, as one autocommitted INSERT on the pool "outbox"; failing that, the call answers
503. Run routes and index rows are derived data: they are written at the same time on the pool
"derived" with PostgreSQL's asynchronous commit (`Bookkeeping.derive`, which never raises), and
whatever a crash or an error loses there, the index sync brings back from the store. The hooks run
concurrently, so the client waits for the slowest, not their sum.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping

import asyncpg
import msgspec

from gateway.core.links import WorkspaceLink
from gateway.core.route_table import RUNS_CREATE, RouteSpec
from gateway.db.pools import PoolOpener
from gateway.federation.hooks import AcceptedWrite
from gateway.federation.locate import RunDirectory
from gateway.federation.repository import record_run_route
from gateway.federation.schemas import CreateRunResponse, started_run
from gateway.observability.metrics import INDEX_FAILURES

log = logging.getLogger(__name__)

DERIVED_SETTINGS = {"synchronous_commit": "off"}


class Bookkeeping:
    """The pools "outbox" and "derived" (gateway/db/pools.py) of the after-write hooks, opened on first use."""

    def __init__(self, open_pool: PoolOpener) -> None:
        self._open_pool = open_pool
        self._pools: dict[str, asyncpg.Pool] = {}
        self._lock = asyncio.Lock()

    async def pool(self, name: str, settings: Mapping[str, str]) -> asyncpg.Pool:
        if (pool := self._pools.get(name)) is not None:
            return pool
        async with self._lock:
            if name not in self._pools:
                self._pools[name] = await self._open_pool(name, settings)
            return self._pools[name]

    async def derive(
        self,
        route: str,
        write: Callable[[asyncpg.Connection], Awaitable[object]],
        on_failure: Callable[[], None] | None = None,
    ) -> bool:
        """Derived rows, written on one connection of the pool "derived" (asynchronous commit).

        Never raises: a failure is counted, logged and repaired by the index sync; False then.
        """
        try:
            pool = await self.pool("derived", DERIVED_SETTINGS)
            async with pool.acquire() as conn:
                await write(conn)
        except Exception as exc:
            INDEX_FAILURES.inc()
            if on_failure is not None:
                on_failure()
            log.warning(
                "index rows of an accepted write were not written; the index sync catches up",
                extra={"route": route, "reason": f"{type(exc).__name__}: {exc}"},
            )
            return False
        return True

    async def close(self) -> None:
        for pool in self._pools.values():
            await pool.close()


class RunRoutes:
    """After-write hook: the workspace of every run created through the gateway, for calls naming only a run."""

    def __init__(self, bookkeeping: Bookkeeping, runs: RunDirectory) -> None:
        self._bookkeeping = bookkeeping
        self._runs = runs

    def wants(self, spec: RouteSpec, link: WorkspaceLink) -> bool:
        return spec == RUNS_CREATE or spec.starts_run  # and the runs the store creates for the prompt lab or jobs

    def needs_answer(self, spec: RouteSpec, link: WorkspaceLink) -> bool:
        return True  # the run's id is in the answer

    async def record(self, write: AcceptedWrite) -> None:
        if write.spec.starts_run:
            found = started_run_of(write)
            if found is None or found[1] is None:
                return
            run_id, experiment_id = found[0], found[1]
        else:
            try:
                created = msgspec.json.decode(write.response, type=CreateRunResponse).run.info
            except msgspec.DecodeError:
                log.warning("runs/create answer without a run id; run not recorded", extra={"ws": write.link.name})
                return
            run_id, experiment_id = created.run_id, created.experiment_id

        async def insert(conn: asyncpg.Connection) -> None:
            await record_run_route(conn, run_id, write.link.name, experiment_id, write.principal)

        await self._bookkeeping.derive(write.spec.name, insert)
        self._runs.remember(run_id, write.link.name, experiment_id)


def started_run_of(write: AcceptedWrite) -> tuple[str, str | None] | None:
    """The run the store created for an accepted write of a STARTS_RUN route (None: its answer names none)."""
    try:
        request = msgspec.json.decode(write.request) if write.request[:1] == b"{" else {}
        response = msgspec.json.decode(write.response) if write.response[:1] == b"{" else {}
    except msgspec.DecodeError:
        return None
    return started_run(request, response) if isinstance(response, dict) and isinstance(request, dict) else None
