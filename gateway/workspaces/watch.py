"""Keep every replica's link table in step: reload on NOTIFY, and poll a fingerprint as a backstop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.ports import ChangeFeed
from gateway.workspaces.repository import WorkspaceRepository
from gateway.workspaces.service import WorkspaceService

log = logging.getLogger(__name__)


class LinkWatcher:
    def __init__(
        self,
        service: WorkspaceService,
        sessionmaker: async_sessionmaker[AsyncSession],
        change_feed: Callable[[Callable[[], None]], ChangeFeed],
        poll_seconds: float = 5.0,
    ) -> None:
        self.service = service
        self.sessionmaker = sessionmaker
        self.poll_seconds = poll_seconds
        self._wake = asyncio.Event()
        self._listener = change_feed(self._wake.set)
        self._task: asyncio.Task[None] | None = None
        self._version = ""

    def start(self) -> None:
        self._listener.start()
        self._task = asyncio.create_task(self._run(), name="workspace link watcher")

    async def stop(self) -> None:
        await self._listener.stop()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll_seconds)
            notified = self._wake.is_set()
            self._wake.clear()
            try:
                async with self.sessionmaker() as session:
                    version = await WorkspaceRepository(session).version()
                    if notified or version != self._version:
                        await self.service.reload(session)
                        self._version = version
            except Exception as exc:
                log.warning("reloading workspace links failed: %s", type(exc).__name__)
