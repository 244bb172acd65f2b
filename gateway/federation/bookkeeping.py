"""The gateway's own records of one accepted write, committed before the client hears of its success.

A write the store accepted can leave three records: the outbox entry for the central store (dual
mode), the run's route (which workspace a run id belongs to) and the account-wide index rows. The
outbox entry is the only one that cannot be derived again from the stores, so it is committed
durably, on its own, as one autocommitted INSERT. Run route and index rows are derived data: they are
written at the same time on a second connection with PostgreSQL's asynchronous commit, and whatever
a crash or an error loses there, the index sync brings back from the store. The client waits for the
slower of the two, not their sum.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg

from gateway.db.pools import PoolOpener
from gateway.index.writer import IndexWriter
from gateway.observability.metrics import INDEX_FAILURES

log = logging.getLogger(__name__)

INSERT_OUTBOX = "INSERT INTO outbox (workspace_id, order_key, route, payload) VALUES ($1, $2, $3, $4::jsonb)"
INSERT_RUN_ROUTE = (
    "INSERT INTO run_routes (run_id, workspace, experiment_id, created_by) VALUES ($1, $2, $3, $4) "
    "ON CONFLICT (run_id) DO NOTHING"
)


@dataclass(slots=True)
class OutboxEntry:
    order_key: str
    route: str
    payload: bytes  # {"request", "response"[, "path_params"]} or {"path"}


@dataclass(slots=True)
class AcceptedWrite:
    route: str
    workspace: str
    workspace_id: int
    principal: str
    request: bytes
    response: bytes
    run_route: tuple[str, str] | None = None  # (run id, experiment id) of a created run
    outbox: OutboxEntry | None = None
    indexed: bool = False


class Bookkeeping:
    def __init__(self, open_pool: PoolOpener, index: IndexWriter | None, *, flush_before_answer: bool = True) -> None:
        self._open_pool = open_pool  # the pools "outbox" and "derived" (gateway/db/pools.py)
        self.index = index
        # False: the outbox too uses asynchronous commit. A PostgreSQL (not gateway) crash can then lose the
        # last fraction of a second of entries; the reconciler copies those writes from the workspace store.
        self._outbox_settings = {} if flush_before_answer else {"synchronous_commit": "off"}
        self._pools: dict[str, asyncpg.Pool] = {}
        self._lock = asyncio.Lock()

    async def record(self, write: AcceptedWrite, experiment_of_run: Callable[[str], Awaitable[str | None]]) -> None:
        """Raises only when the outbox entry could not be committed (the client must repeat the call)."""
        derived = write.run_route is not None or (write.indexed and self.index is not None)
        if write.outbox is None:
            if derived:
                await self._derive(write, experiment_of_run)
            return
        if not derived:
            await self._queue(write.workspace_id, write.outbox)
            return
        await asyncio.gather(self._queue(write.workspace_id, write.outbox), self._derive(write, experiment_of_run))

    async def _queue(self, workspace_id: int, entry: OutboxEntry) -> None:
        pool = await self._pool("outbox", self._outbox_settings)
        await pool.execute(INSERT_OUTBOX, workspace_id, entry.order_key, entry.route, entry.payload.decode())

    async def _derive(self, write: AcceptedWrite, experiment_of_run: Callable[[str], Awaitable[str | None]]) -> None:
        """Run route and index rows; never raises (logged, counted, and repaired by the index sync)."""
        try:
            pool = await self._pool("derived", {"synchronous_commit": "off"})
            async with pool.acquire() as conn:
                if write.run_route is not None:
                    run_id, experiment_id = write.run_route
                    await conn.execute(INSERT_RUN_ROUTE, run_id, write.workspace, experiment_id, write.principal)
                if write.indexed and self.index is not None:
                    await self.index.apply(
                        conn,
                        write.route,
                        write.workspace_id,
                        write.request,
                        write.response,
                        write.principal,
                        experiment_of_run,
                    )
        except Exception as exc:
            INDEX_FAILURES.inc()
            if self.index is not None:
                self.index.forget()  # cached run keys may belong to a lost insert
            log.warning(
                "index rows of an accepted write were not written; the index sync catches up",
                extra={"route": write.route, "reason": f"{type(exc).__name__}: {exc}"},
            )

    async def _pool(self, name: str, settings: dict[str, str]) -> asyncpg.Pool:
        if (pool := self._pools.get(name)) is not None:
            return pool
        async with self._lock:
            if name not in self._pools:
                self._pools[name] = await self._open_pool(name, settings)
            return self._pools[name]

    async def close(self) -> None:
        for pool in self._pools.values():
            await pool.close()
