"""The gateway's own records of one accepted write, committed together before the client hears of it.

A write the store accepted can leave up to three records: the run's route (which workspace a run
id belongs to), the account-wide index rows, and (dual mode) the outbox entry for the central
store. They are written in one PostgreSQL transaction on a small asyncpg pool: one round trip per
statement and one commit, no ORM on the request path.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg

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
    def __init__(
        self, dsn: str, index: IndexWriter | None, max_connections: int = 10, *, flush_before_answer: bool = True
    ) -> None:
        self._dsn = dsn
        self._max = max_connections
        self.index = index
        # False: PostgreSQL's asynchronous commit. A PostgreSQL (not gateway) crash can then lose the last
        # fraction of a second of entries; the reconciler and the index sync repair from the stores.
        self._settings = {} if flush_before_answer else {"synchronous_commit": "off"}
        self._pool: asyncpg.Pool | None = None
        self._lock = asyncio.Lock()

    async def record(self, write: AcceptedWrite, experiment_of_run: Callable[[str], Awaitable[str | None]]) -> None:
        """Raises only when the outbox entry could not be committed (the client must repeat the call).

        The index and the run route are derived data: if they cannot be written, the call still
        succeeds and the index sync catches up from the store.
        """
        pool = self._pool or await self._open()
        try:
            async with pool.acquire() as conn, conn.transaction():
                if write.run_route is not None:
                    run_id, experiment_id = write.run_route
                    await conn.execute(INSERT_RUN_ROUTE, run_id, write.workspace, experiment_id, write.principal)
                if write.indexed and self.index is not None:
                    if write.outbox is None:
                        await self._index(conn, write, experiment_of_run)
                    else:
                        # A savepoint: an index failure must not take the outbox entry down with it.
                        try:
                            async with conn.transaction():
                                await self._index(conn, write, experiment_of_run)
                        except Exception as exc:  # derived data: logged, counted, repaired by the sync
                            self._failed(write, exc)
                if write.outbox is not None:
                    entry = write.outbox
                    await conn.execute(
                        INSERT_OUTBOX, write.workspace_id, entry.order_key, entry.route, entry.payload.decode()
                    )
        except Exception as exc:
            if write.outbox is not None:
                raise
            self._failed(write, exc)

    async def _index(
        self, conn: asyncpg.Connection, write: AcceptedWrite, experiment_of_run: Callable[[str], Awaitable[str | None]]
    ) -> None:
        assert self.index is not None
        await self.index.apply(
            conn, write.route, write.workspace_id, write.request, write.response, write.principal, experiment_of_run
        )

    def _failed(self, write: AcceptedWrite, exc: BaseException) -> None:
        INDEX_FAILURES.inc()
        if self.index is not None:
            self.index.forget()  # cached run keys may belong to a rolled-back insert
        log.warning(
            "bookkeeping of an accepted write failed; the index sync catches up",
            extra={"route": write.route, "reason": f"{type(exc).__name__}: {exc}"},
        )

    async def _open(self) -> asyncpg.Pool:
        async with self._lock:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(
                    self._dsn, min_size=1, max_size=self._max, server_settings=self._settings
                )
            return self._pool

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
