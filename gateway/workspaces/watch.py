"""Keep every replica's link table in step with the database."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.core.ports import ChangeFeed
from gateway.core.watch import ReloadLoop
from gateway.workspaces.repository import WorkspaceRepository
from gateway.workspaces.service import WorkspaceService


def link_watcher(
    service: WorkspaceService,
    sessionmaker: async_sessionmaker[AsyncSession],
    change_feed: Callable[[Callable[[], None]], ChangeFeed],
    poll_seconds: float = 5.0,
) -> ReloadLoop:
    seen = {"version": ""}

    async def check(notified: bool) -> None:
        async with sessionmaker() as session:
            version = await WorkspaceRepository(session).version()
            if notified or version != seen["version"]:
                await service.reload(session)
                seen["version"] = version

    return ReloadLoop("workspace link watcher", change_feed, check, poll_seconds)
