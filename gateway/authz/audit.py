"""The append-only audit log: access changes are written in their own transaction, denials in batches."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.authz.repository import AuditRepository

log = logging.getLogger(__name__)


def entry(
    actor: str, action: str, target: str, outcome: str, details: dict[str, Any] | None = None, request_id: str = ""
) -> dict[str, Any]:
    return {
        "actor": actor,
        "action": action,
        "target": target,
        "outcome": outcome,
        "details": details or {},
        "request_id": request_id,
    }


class AuditTrail:
    """Denied requests are queued and written in the background so a flood of them cannot stall requests."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], max_pending: int = 10_000) -> None:
        self._sessionmaker = sessionmaker
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(max_pending)
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0

    async def write(self, session: AsyncSession, *entries: dict[str, Any]) -> None:
        """Within the caller's transaction: the change and its audit record commit together."""
        await AuditRepository(session).append(list(entries))

    def record(self, item: dict[str, Any]) -> None:
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self.dropped += 1

    def start(self) -> None:
        self._task = asyncio.create_task(self._drain(), name="audit writer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()

    async def flush(self, first: dict[str, Any] | None = None) -> None:
        batch = [first] if first is not None else []
        while not self._queue.empty() and len(batch) < 500:
            batch.append(self._queue.get_nowait())
        if batch:
            async with self._sessionmaker() as session, session.begin():
                await AuditRepository(session).append(batch)

    async def _drain(self) -> None:
        while True:
            first = await self._queue.get()
            try:
                await self.flush(first)
            except Exception as exc:
                log.warning("audit entries could not be written: %s", type(exc).__name__)
                await asyncio.sleep(1)
